// routes[].getUpstream (JavaScript API): the upstream of each request and upgrade, a URL or a group (`http://name`)
// with the path rules of `upstream`, `undefined` for the route's own. Called once per request, synchronously. A throw
// or an answer that names no upstream is a coded 500 (FST_WS_PROXY_GET_UPSTREAM_FAILED), logged with the route, that
// never reaches any upstream and names nothing internal unless `exposeErrors`. URLs get pools in a bounded LRU
// (DYNAMIC_ORIGINS origins); an evicted origin's pool lets its requests in flight finish.
import t from 'tap'
import http, { type IncomingMessage, type ServerResponse, type Server } from 'node:http'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Value } from '@sinclair/typebox/value'
import { DYNAMIC_ORIGINS, PluginOptionsSchema, resolveOptions, type GetUpstream } from '../src/index.js'
import { checkGatewayConfig, gatewayJsonSchema } from '../src/gateway/config.js'
import { gateway, httpUpstream, logCapture, origin, portOf, recordUnhandled, waitFor, within, wsUpstream, type Teardown } from './helpers/servers.js'
import { request } from './helpers/clients.js'
import { messages, openWs, unexpectedResponse, wsUrl } from './helpers/ws.js'
import { problemsOf } from './helpers/options.js'

/** An upstream answering with its name, the URL and the Host it received; `hits` lists the URLs. */
async function named (t: Teardown, name: string, hold?: (req: IncomingMessage, res: ServerResponse) => boolean): Promise<{ server: Server, hits: string[] }> {
  const hits: string[] = []
  const server = await httpUpstream(t, (req, res) => {
    hits.push(req.url as string)
    if (hold?.(req, res) === true) return
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ name, url: req.url, host: req.headers.host }))
  })
  return { server, hits }
}

async function connections (server: Server): Promise<number> {
  return await new Promise((resolve, reject) => server.getConnections((err, n) => err === null ? resolve(n) : reject(err)))
}

async function get (url: string, headers: Record<string, string> = {}): Promise<{ status: number, json: Record<string, unknown> }> {
  const answer = await request(url, { headers })
  return { status: answer.status, json: JSON.parse(answer.body.toString()) as Record<string, unknown> }
}

t.test('a URL, a group or undefined per request, called once each; Host and paths as `upstream` gives them', async (t) => {
  const a = await named(t, 'a')
  const b = await named(t, 'b')
  const g = await named(t, 'g')
  let calls = 0
  const pick: GetUpstream = (request) => {
    calls++
    const tenant = request.headers['x-tenant']
    return tenant === 'b' ? origin(b.server) : tenant === 'b-v2' ? `${origin(b.server)}/v2/` : tenant === 'g' ? 'http://pool' : undefined
  }
  const { url } = await gateway(t, {
    upstreams: { pool: { servers: [{ url: origin(g.server) }] } },
    routes: [{ prefix: '/api/', upstream: origin(a.server), getUpstream: pick }]
  })
  t.match(await get(url + '/api/x'), { status: 200, json: { name: 'a', url: '/api/x', host: `127.0.0.1:${portOf(a.server)}` } }, 'undefined: the route\'s upstream')
  t.match(await get(url + '/api/x?q=1', { 'x-tenant': 'b' }), { status: 200, json: { name: 'b', url: '/api/x?q=1', host: `127.0.0.1:${portOf(b.server)}` } },
    'a URL without a path: the URI as is, its host:port as Host')
  t.match(await get(url + '/api/x', { 'x-tenant': 'b-v2' }), { status: 200, json: { name: 'b', url: '/v2/x' } }, 'a URL with a path replaces the prefix')
  t.match(await get(url + '/api/y', { 'x-tenant': 'g' }), { status: 200, json: { name: 'g', url: '/api/y', host: 'pool' } }, 'a group name: the configured group')
  t.match(await get(url + '/api/z', { 'x-tenant': 'b' }), { status: 200, json: { name: 'b' } }, 'the same string again')
  t.match(await get(url + '/api/w', { 'x-tenant': 'g' }), { status: 200, json: { name: 'g' } }, 'the same group again')
  t.equal(calls, 6, 'once per request')
  t.same({ a: a.hits, b: b.hits, g: g.hits }, { a: ['/api/x'], b: ['/api/x?q=1', '/v2/x', '/api/z'], g: ['/api/y', '/api/w'] })
})

t.test('a group balanced on a request template: the chosen route reads the request\'s variables for its key', async (t) => {
  const a = await named(t, 'a')
  const b = await named(t, 'b')
  const own = await named(t, 'own')
  // The route itself uses no variable; the group getUpstream names hashes on `$http_x_user`.
  const { url } = await gateway(t, {
    upstreams: { sticky: { balance: 'hash', hash: '$http_x_user', servers: [{ url: origin(a.server) }, { url: origin(b.server) }] } },
    routes: [{ prefix: '/api/', upstream: origin(own.server), getUpstream: () => 'http://sticky' }]
  })
  const seen = new Map<string, Set<unknown>>()
  for (let i = 0; i < 4; i++) {
    for (const user of ['u1', 'u2', 'u3', 'u4', 'u5', 'u6']) {
      const answer = await get(url + `/api/${user}`, { 'x-user': user })
      t.equal(answer.status, 200)
      seen.set(user, (seen.get(user) ?? new Set()).add(answer.json.name))
    }
  }
  t.ok([...seen.values()].every((names) => names.size === 1), 'each key always on the same server')
  t.same(new Set([...seen.values()].map((names) => [...names][0])), new Set(['a', 'b']), 'the keys spread over both servers')
  t.same(own.hits, [], 'nothing went to the route\'s own upstream')
})

t.test('a unix socket URL, as nginx writes it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wsp-unix-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'u.sock')
  const server = http.createServer((req, res) => { res.end(JSON.stringify({ url: req.url, host: req.headers.host })) })
  await new Promise<void>((resolve) => server.listen(path, resolve))
  t.teardown(() => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve) }))
  const { url } = await gateway(t, { routes: [{ prefix: '/u/', upstream: 'http://127.0.0.1:1', getUpstream: () => `http://unix:${path}:/base/` }] })
  t.match(await get(url + '/u/x'), { status: 200, json: { url: '/base/x', host: 'localhost' } })
})

t.test('rewritePrefix applies to a URL without a path; one with a path beside it is refused', async (t) => {
  const b = await named(t, 'b')
  const { url } = await gateway(t, {
    exposeErrors: true,
    routes: [{ prefix: '/api/', upstream: 'http://127.0.0.1:1', rewritePrefix: '/r/', getUpstream: (request) => origin(b.server) + (request.url.endsWith('path') ? '/p/' : '') }]
  })
  t.match(await get(url + '/api/x'), { status: 200, json: { url: '/r/x' } })
  const refused = await get(url + '/api/with-path')
  t.match(refused, { status: 500, json: { code: 'FST_WS_PROXY_GET_UPSTREAM_FAILED', message: /route \/api\/ failed: it returned no valid upstream: the URL has a path.*rewritePrefix/ } })
  t.same(b.hits, ['/r/x'])
})

t.test('a throw or an answer that names no upstream: coded 500, logged with the route, nothing upstream, no address in the body', async (t) => {
  const a = await named(t, 'a')
  const unhandled = recordUnhandled(t)
  const log = logCapture()
  const answers: Record<string, () => unknown> = {
    throws: () => { throw new Error(`cannot reach ${origin(a.server)}`) },
    number: () => 42,
    null: () => null,
    ftp: () => 'ftp://127.0.0.1:21',
    garbage: () => 'http://[bad',
    query: () => `${origin(a.server)}/x?y=1`,
    scheme: () => 'https://pool'
  }
  const { url } = await gateway(t, {
    exposeErrors: false,
    upstreams: { pool: { servers: [{ url: origin(a.server) }] } },
    routes: [{ prefix: '/', upstream: 'http://pool', getUpstream: (request) => answers[request.headers['x-case'] as string]?.() as string | undefined }]
  }, { logger: { level: 'info', stream: log.stream } })
  for (const name of Object.keys(answers)) {
    const answer = await request(url + '/x', { headers: { 'x-case': name } })
    t.equal(answer.status, 500, name)
    const body = JSON.parse(answer.body.toString()) as { code: string, message: string }
    t.equal(body.code, 'FST_WS_PROXY_GET_UPSTREAM_FAILED', name)
    t.match(body.message, /^getUpstream of route \/ failed: it (threw|returned no upstream|returned no valid upstream) \(details in the log, request req-/, name)
    t.notMatch(body.message, /127\.0\.0\.1|pool|ftp/, `${name}: the body names nothing internal`)
  }
  t.same(a.hits, [], 'nothing reached the upstream')
  const failures = log.records.filter((r) => r.msg?.startsWith('getUpstream failed') === true)
  t.equal(failures.length, Object.keys(answers).length)
  t.match(failures[0], { level: 50, route: '/', err: { message: /cannot reach/ } }, 'the log has the route and the error')
  t.match(failures[1], { err: { message: 'expected a string or undefined, got number' } })
  t.match(failures[2], { err: { message: 'expected a string or undefined, got null' } })
  t.match(await get(url + '/after'), { status: 200, json: { name: 'a' } }, 'the process and the route carry on')
  t.same(unhandled, [])
})

t.test('exposeErrors puts the reason in the body', async (t) => {
  const { url } = await gateway(t, { routes: [{ prefix: '/', upstream: 'http://127.0.0.1:1', getUpstream: () => { throw new Error('no tenant') } }] })
  t.match(await get(url + '/'), { status: 500, json: { message: 'getUpstream of route / failed: it threw: no tenant' } })
})

t.test('upgrades: chosen once per handshake; a throw refuses the handshake with 500 and opens nothing upstream', async (t) => {
  const { server } = await wsUpstream(t)
  const upgrades: string[] = []
  server.on('upgrade', (req: IncomingMessage) => { upgrades.push(req.url as string) })
  let calls = 0
  const { url } = await gateway(t, {
    routes: [{
      prefix: '/ws/',
      upstream: 'http://127.0.0.1:1',
      getUpstream: (request) => {
        calls++
        if (request.headers['x-fail'] !== undefined) throw new Error('refused')
        return origin(server)
      }
    }]
  })
  const ws = await openWs(t, wsUrl(url, '/ws/room'))
  ws.send('ping')
  t.equal((await messages(ws, 1))[0].data.toString(), 'ping')
  t.equal(calls, 1)
  const refused = await unexpectedResponse(t, wsUrl(url, '/ws/room'), { 'x-fail': '1' })
  t.equal(refused.status, 500)
  t.match(JSON.parse(refused.body.toString()), { code: 'FST_WS_PROXY_GET_UPSTREAM_FAILED' })
  t.same(upgrades, ['/ws/room'], 'the refused handshake reached no upstream')
  t.equal(calls, 2)
})

t.test('undefined for an upgrade means the route\'s upgradeUpstream', async (t) => {
  const { server } = await wsUpstream(t)
  const upgrades: string[] = []
  server.on('upgrade', (req: IncomingMessage) => { upgrades.push(req.url as string) })
  const plain = await named(t, 'plain')
  const { url } = await gateway(t, {
    routes: [{ prefix: '/ws/', upstream: 'http://127.0.0.1:1', upgradeUpstream: origin(server), getUpstream: (request) => request.raw.headers.upgrade === undefined ? origin(plain.server) : undefined }]
  })
  const ws = await openWs(t, wsUrl(url, '/ws/up'))
  ws.send('x')
  t.equal((await messages(ws, 1))[0].data.toString(), 'x')
  t.match(await get(url + '/ws/plain'), { status: 200, json: { name: 'plain' } })
  t.same(upgrades, ['/ws/up'])
})

t.test(`origins beyond ${DYNAMIC_ORIGINS} evict the least recently used; its request in flight still finishes`, async (t) => {
  let release: (() => void) | null = null
  const first = await named(t, 'first', (_req, res) => {
    if (release !== null) return false
    release = () => { res.end('{"name":"first","late":true}') }
    return true
  })
  const others: Server[] = []
  for (let i = 0; i < DYNAMIC_ORIGINS; i++) others.push((await named(t, `o${i}`)).server)
  const to: GetUpstream = (request) => request.headers['x-to'] as string
  // Two routes share the registration's origins; each keeps its own proxies per returned string.
  const { app, url } = await gateway(t, {
    routes: [{ prefix: '/a/', upstream: 'http://127.0.0.1:1', getUpstream: to }, { prefix: '/b/', upstream: 'http://127.0.0.1:1', getUpstream: to }]
  })
  const held = request(url + '/a/held', { headers: { 'x-to': origin(first.server) } })
  await waitFor(() => release !== null, 2000, 'the first origin to hold its request')
  // Every other origin once: the first (held) one is now the least recently used and is evicted.
  for (const server of others) t.equal((await request(url + '/b/', { headers: { 'x-to': origin(server) } })).status, 200)
  t.equal(app.wsProxy.upstreamConnections, DYNAMIC_ORIGINS, 'the evicted pool is no longer counted')
  t.equal(await connections(first.server), 1, 'its connection is still open, the request in flight');
  (release as unknown as () => void)()
  const late = await within(held, 3000, 'the held response')
  t.same(JSON.parse(late.body.toString()), { name: 'first', late: true }, 'the request in flight finished on the evicted pool')
  let open = 1
  for (let i = 0; i < 100 && open > 0; i++) {
    open = await connections(first.server)
    if (open > 0) await new Promise((resolve) => setTimeout(resolve, 20))
  }
  t.equal(open, 0, 'then the evicted pool closed its connection')
  t.match(await get(url + '/a/again', { 'x-to': origin(first.server) }), { status: 200, json: { name: 'first', url: '/a/again' } },
    'the route that knew the evicted origin gets a new pool for it')
  t.match(await get(url + '/b/again', { 'x-to': origin(first.server) }), { status: 200, json: { name: 'first', url: '/b/again' } },
    `a route's own ${DYNAMIC_ORIGINS + 1}th string: its least recently used one is forgotten`)
  t.equal(app.wsProxy.upstreamConnections, DYNAMIC_ORIGINS, 'still one pool per kept origin')
  t.same(first.hits, ['/a/held', '/a/again', '/b/again'])
})

t.test('options: a function is required, kept as given (never cloned), refused from a JSON config; the schemas accept it', async (t) => {
  const getUpstream: GetUpstream = () => undefined
  const rewriteRequestHeaders = (_request: unknown, headers: Record<string, string | string[]>) => headers
  const options = { routes: [{ prefix: '/', upstream: 'http://127.0.0.1:1', getUpstream, rewriteRequestHeaders }] }
  const resolved = resolveOptions(options)
  t.equal(resolved.routes[0].getUpstream, getUpstream)
  t.equal(resolved.routes[0].rewriteRequestHeaders, rewriteRequestHeaders)
  t.equal(options.routes[0].getUpstream, getUpstream, 'the caller\'s options are untouched')
  t.ok(Value.Check(PluginOptionsSchema, options), 'the TypeBox schema validates options holding functions')

  const bad = problemsOf({ routes: [{ prefix: '/', upstream: 'http://127.0.0.1:1', getUpstream: 'http://x', rewriteRequestHeaders: {} }] })
  t.match(bad.problems, [
    { path: 'routes/0/getUpstream', reason: 'expected a function (request) => string | undefined' },
    { path: 'routes/0/rewriteRequestHeaders', reason: 'expected a function (request, headers) => headers' }
  ])
  t.throws(() => checkGatewayConfig({ routes: [{ prefix: '/', upstream: 'http://127.0.0.1:1', getUpstream: 'http://x' }, { prefix: '/b/', upstream: 'http://127.0.0.1:1', rewriteRequestHeaders: null }] }), {
    code: 'FST_WS_PROXY_INVALID_OPTION',
    problems: [
      { path: 'routes/0/getUpstream', reason: 'functions cannot come from a JSON config (give it to the plugin in JavaScript)' },
      { path: 'routes/1/rewriteRequestHeaders', reason: 'functions cannot come from a JSON config (give it to the plugin in JavaScript)' }
    ]
  })
  t.throws(() => checkGatewayConfig({ routes: [null] }), { code: 'FST_WS_PROXY_INVALID_OPTION', problems: [{ path: 'routes/0' }] }, 'a route that is not an object is the schema\'s to report')
  t.match(problemsOf({ routes: [null] }).problems, [{ path: 'routes/0' }])
  const route = JSON.stringify(gatewayJsonSchema())
  t.notMatch(route, /getUpstream|rewriteRequestHeaders/, 'the JSON Schema file leaves them out')
})
