// routes[].host, nginx `server_name`: exact names (any case, port and trailing dot ignored), `*.domain` (every
// subdomain at any depth, not the domain), `.domain` (the domain and its subdomains), `~regex` (on the lower-cased
// Host without port). A Host selects ONE name (exact, then the longest wildcard, then regexes in route order), then
// only the routes listing that name compete on the path; what they do not serve falls to the routes without `host`,
// else Fastify's 404 and nothing reaches an upstream. Upgrades, the bare-prefix 301, hooks, the 404 handler, the
// app's own routes and a second registration of the plugin follow the same rules.
import t from 'tap'
import type { IncomingMessage, Server } from 'node:http'
import Fastify from 'fastify'
import wsProxyPlugin, { resolveOptions, type WsProxyOptions } from '../src/index.js'
import { gateway, httpUpstream, origin, portOf, wsUpstream, type Teardown } from './helpers/servers.js'
import { rawExchange, request } from './helpers/clients.js'
import { messages, openWs, parseHead, rawClient, unexpectedResponse, wsHandshakeHead, wsUrl } from './helpers/ws.js'
import { problemsOf } from './helpers/options.js'

/** An upstream that answers every request with its name and the URL it received; `hits` lists those URLs. */
async function named (t: Teardown, name: string): Promise<{ server: Server, hits: string[] }> {
  const hits: string[] = []
  const server = await httpUpstream(t, (req, res) => {
    hits.push(req.url as string)
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ name, url: req.url }))
  })
  return { server, hits }
}

/** A `ws` upstream that greets every WebSocket with its name, then echoes; `upgrades` counts the handshakes. */
async function namedWs (t: Teardown, name: string): Promise<{ server: Server, upgrades: string[] }> {
  const { server, wss } = await wsUpstream(t)
  const upgrades: string[] = []
  server.on('upgrade', (req: IncomingMessage) => { upgrades.push(req.url as string) })
  wss.on('connection', (ws) => { ws.send(`hello from ${name}`) })
  return { server, upgrades }
}

/** GET `path` with exactly this Host; resolves with the status and the upstream's name (or the body). */
async function via (url: string, host: string, path: string): Promise<{ status: number, name: string | undefined, url: string | undefined, body: string }> {
  const answer = await request(url + path, { headers: { host } })
  const body = answer.body.toString()
  const parsed = answer.headers['content-type'] === 'application/json' ? JSON.parse(body) as { name?: string, url?: string } : {}
  return { status: answer.status, name: parsed.name, url: parsed.url, body }
}

t.test('exact beats a wildcard with a longer path; a name without the path falls to the host-less route', async (t) => {
  const api = await named(t, 'api')
  const wild = await named(t, 'wild')
  const rest = await named(t, 'rest')
  const { url } = await gateway(t, {
    routes: [
      { prefix: '/', host: 'api.example.com', upstream: origin(api.server) },
      { prefix: '/v1/', host: '*.example.com', upstream: origin(wild.server) },
      { prefix: '/', upstream: origin(rest.server) }
    ]
  })
  t.match(await via(url, 'API.example.com:8080', '/v1/x'), { status: 200, name: 'api', url: '/v1/x' }, 'exact (any case, port ignored) beats the wildcard\'s longer path')
  t.match(await via(url, 'api.example.com.', '/other'), { status: 200, name: 'api' }, 'trailing dot ignored')
  t.match(await via(url, 'x.example.com', '/v1/x'), { status: 200, name: 'wild', url: '/v1/x' })
  t.match(await via(url, 'a.b.X.Example.COM:81', '/v1/deep'), { status: 200, name: 'wild' }, 'a wildcard covers subdomains at any depth')
  t.match(await via(url, 'x.example.com', '/other'), { status: 200, name: 'rest', url: '/other' }, 'the selected name has no route for the path: host-less route')
  t.match(await via(url, 'example.com', '/v1/x'), { status: 200, name: 'rest' }, '*.example.com is not example.com')
  t.match(await via(url, 'other.org', '/v1/x'), { status: 200, name: 'rest' }, 'a Host no route names: host-less route')
  t.match(await via(url, '127.0.0.1', '/'), { status: 200, name: 'rest' })
  t.same({ api: api.hits, wild: wild.hits }, { api: ['/v1/x', '/other'], wild: ['/v1/x', '/v1/deep'] })
})

t.test('without a host-less route, a Host no route serves gets Fastify\'s 404 and nothing reaches an upstream', async (t) => {
  const api = await named(t, 'api')
  const wild = await named(t, 'wild')
  const { url, port } = await gateway(t, {
    routes: [
      { prefix: '/', host: 'api.example.com', upstream: origin(api.server) },
      { prefix: '/v1/', host: '*.example.com', upstream: origin(wild.server) }
    ]
  })
  for (const [host, path] of [['other.org', '/'], ['x.example.com', '/other'], ['example.com', '/v1/x'], ['127.0.0.1', '/v1/x']]) {
    const answer = await via(url, host, path)
    t.equal(answer.status, 404, `${host} ${path}`)
    t.match(JSON.parse(answer.body), { statusCode: 404, error: 'Not Found', message: `Route GET:${path} not found` })
  }
  // HTTP/1.0 may omit Host: it selects no name.
  const bare = await rawExchange(t, port, 'GET /v1/x HTTP/1.0\r\n\r\n')
  t.equal(parseHead(bare).status, 404, 'no Host: no name, no route')
  t.same({ api: api.hits, wild: wild.hits }, { api: [], wild: [] })
  t.match(await via(url, 'api.example.com', '/v1/x'), { status: 200, name: 'api' }, 'the named hosts still work')
})

t.test('precedence: exact, then the longest wildcard, then regexes in route order; `.domain` covers the domain', async (t) => {
  const [w1, w2, dot, r1, r2, shared, ip] = await Promise.all(['w1', 'w2', 'dot', 'r1', 'r2', 'shared', 'ip'].map((name) => named(t, name)))
  const { url, port } = await gateway(t, {
    routes: [
      { prefix: '/', host: '*.example.com', upstream: origin(w1.server) },
      { prefix: '/', host: '*.EU.example.com.', upstream: origin(w2.server) },
      { prefix: '/', host: '.example.org', upstream: origin(dot.server) },
      { prefix: '/', host: '~^(www|m)\\.shop\\.test$', upstream: origin(r1.server) },
      { prefix: '/', host: ['~shop', 'shop.test', '~^www\\.'], upstream: origin(r2.server) },
      // Names other routes list too: only the path decides between the routes of one name.
      { prefix: '/a/', host: ['*.example.com', '~shop'], upstream: origin(shared.server) },
      { prefix: '/', host: '~^\\[::1\\]$', upstream: origin(ip.server) }
    ]
  })
  const cases: Array<[string, string, string]> = [
    ['x.example.com', '/', 'w1'],
    ['x.eu.example.com', '/', 'w2'],
    ['a.b.eu.example.com:443', '/', 'w2'],
    ['eu.example.com', '/', 'w1'],
    ['www.example.com', '/', 'w1'],
    ['example.org', '/', 'dot'],
    ['EXAMPLE.ORG.', '/', 'dot'],
    ['a.b.example.org', '/', 'dot'],
    ['WWW.Shop.Test:8443', '/', 'r1'],
    ['m.shop.test', '/', 'r1'],
    ['api.shop.test', '/', 'r2'],
    ['shop.test', '/', 'r2'],
    ['www.other.test', '/', 'r2'],
    ['x.example.com', '/a/1', 'shared'],
    ['x.example.com', '/b', 'w1'],
    ['api.shop.test', '/a/1', 'shared'],
    ['www.shop.test', '/a/1', 'r1'],
    ['[::1]:8080', '/', 'ip']
  ]
  for (const [host, path, name] of cases) t.match(await via(url, host, path), { status: 200, name }, `${host} ${path} → ${name}`)
  t.equal((await via(url, 'example.net', '/')).status, 404, 'nothing matches, no host-less route')
  const lower = await rawExchange(t, port, 'GET / HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n')
  t.match(lower, /^HTTP\/1\.1 200 [^]*"name":"ip"/, 'an IPv6 literal without port, through raw bytes')
})

t.test('routes may share a prefix on different hosts; one host twice on a prefix, or a bad name, fails register', async (t) => {
  const a = await named(t, 'a')
  const b = await named(t, 'b')
  const none = await named(t, 'none')
  const { url } = await gateway(t, {
    routes: [
      { prefix: '/p/', host: 'a.test', upstream: origin(a.server) },
      { prefix: '/p/', host: ['b.test', 'c.test'], upstream: origin(b.server) },
      { prefix: '/p/', upstream: origin(none.server) }
    ]
  })
  t.match(await via(url, 'a.test', '/p/1'), { name: 'a' })
  t.match(await via(url, 'c.test', '/p/1'), { name: 'b' })
  t.match(await via(url, 'd.test', '/p/1'), { name: 'none' })

  const register = async (options: WsProxyOptions): Promise<void> => { await Fastify().register(wsProxyPlugin, options).ready() }
  await t.rejects(register({
    routes: [
      { prefix: '/p/', host: 'a.test', upstream: 'http://x' },
      { prefix: '/p/', host: ['b.test', 'A.Test.'], upstream: 'http://y' },
      { prefix: '/q/', upstream: 'http://x' },
      { prefix: '/q/', upstream: 'http://y' },
      { prefix: '/r/', host: '~^r$', upstream: 'http://x' },
      { prefix: '/r/', host: '~^r$', upstream: 'http://y' },
      { prefix: '/r/', host: '~^R$', upstream: 'http://y' }
    ]
  }), {
    code: 'FST_WS_PROXY_INVALID_OPTION',
    problems: [
      { path: 'routes/1/prefix', reason: 'duplicate prefix "/p/" on host "a.test" (also routes/0/prefix)' },
      { path: 'routes/3/prefix', reason: 'duplicate prefix "/q/" (also routes/2/prefix)' },
      { path: 'routes/5/prefix', reason: 'duplicate prefix "/r/" on host "~^r$" (also routes/4/prefix)' }
    ]
  }, 'a regex is compared as written; names lower-cased without the trailing dot')

  const err = problemsOf({
    routes: [
      { prefix: '/0/', host: '~(', upstream: 'http://x' },
      { prefix: '/1/', host: ['ok.test', 'a b'], upstream: 'http://x' },
      { prefix: '/2/', host: '*.', upstream: 'http://x' },
      { prefix: '/3/', host: '*x.com', upstream: 'http://x' },
      { prefix: '/4/', host: ['.a..b'], upstream: 'http://x' },
      { prefix: '/5/', host: '.', upstream: 'http://x' },
      { prefix: '/6/', host: ['*.ok.test', '~ok', '~[z-a]'], upstream: 'http://x' }
    ]
  })
  t.equal(err.code, 'FST_WS_PROXY_INVALID_OPTION')
  const name = 'expected a host name, `*.domain`, `.domain` or `~regex`'
  t.match(err.problems, [
    { path: 'routes/0/host', reason: /^invalid regular expression: / },
    { path: 'routes/1/host/1', reason: name },
    { path: 'routes/2/host', reason: name },
    { path: 'routes/3/host', reason: name },
    { path: 'routes/4/host/0', reason: name },
    { path: 'routes/5/host', reason: name },
    { path: 'routes/6/host/2', reason: /^invalid regular expression: / }
  ])
  t.equal(err.problems.length, 7)
  await t.rejects(register({ routes: [{ prefix: '/', host: '~(', upstream: 'http://x' }] }), { code: 'FST_WS_PROXY_INVALID_OPTION', problems: [{ path: 'routes/0/host' }] })
})

t.test('upgrades: a real WebSocket per host, the same precedence, 404 for a Host no route serves', async (t) => {
  const a = await namedWs(t, 'a')
  const b = await namedWs(t, 'b')
  const { url, port } = await gateway(t, {
    routes: [
      { prefix: '/chat/', host: 'a.test', upstream: origin(a.server) },
      { prefix: '/chat/', host: '*.b.test', upstream: origin(b.server) }
    ]
  })
  const wsA = await openWs(t, wsUrl(url, '/chat/room'), undefined, { headers: { host: 'A.TEST:9000' } })
  t.equal((await messages(wsA, 1))[0].data.toString(), 'hello from a')
  wsA.send('to a')
  t.equal((await messages(wsA, 1))[0].data.toString(), 'to a', 'the tunnel echoes')
  const wsB = await openWs(t, wsUrl(url, '/chat/room'), undefined, { headers: { host: 'x.y.b.test' } })
  t.equal((await messages(wsB, 1))[0].data.toString(), 'hello from b')

  const refused = await unexpectedResponse(t, wsUrl(url, '/chat/room'), { host: 'b.test' })
  t.equal(refused.status, 404, '*.b.test is not b.test')
  const raw = await rawClient(t, port)
  raw.socket.write(wsHandshakeHead('/chat/room'))
  await raw.close()
  t.equal(parseHead(raw.text).status, 404, 'Host gateway.test selects no name')
  t.same({ a: a.upgrades, b: b.upgrades }, { a: ['/chat/room'], b: ['/chat/room'] }, 'nothing refused reached an upstream')
})

t.test('the bare-prefix 301 is per host', async (t) => {
  const a = await namedWs(t, 'a')
  const rest = await named(t, 'rest')
  const { url } = await gateway(t, {
    routes: [
      { prefix: '/chat/', host: 'a.test', upstream: origin(a.server) },
      { prefix: '/', upstream: origin(rest.server) }
    ]
  })
  const redirected = await request(`${url}/chat?x=1`, { headers: { host: 'a.test' } })
  t.equal(redirected.status, 301)
  t.equal(redirected.headers.location, '/chat/?x=1')
  t.equal((await request(`${url}/chat`, { headers: { host: 'A.test.' } })).headers.location, '/chat/')
  t.match(await via(url, 'other.test', '/chat'), { status: 200, name: 'rest', url: '/chat' }, 'no 301 on a host the route does not serve')
  const ws = await openWs(t, wsUrl(url, '/chat/'), undefined, { headers: { host: 'a.test' } })
  t.equal((await messages(ws, 1))[0].data.toString(), 'hello from a')
})

t.test('two registrations on one app share one host table: both hosts work', async (t) => {
  const a = await namedWs(t, 'a')
  const b = await namedWs(t, 'b')
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(wsProxyPlugin, { routes: [{ prefix: '/', host: 'a.test', upstream: origin(a.server) }] })
  await app.register(wsProxyPlugin, { routes: [{ prefix: '/', host: ['b.test'], upstream: origin(b.server) }, { prefix: '/only-b/', host: '*.b.test', upstream: origin(b.server) }] })
  await app.register(wsProxyPlugin, { routes: [{ prefix: '/c/', upstream: origin(b.server) }] })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const url = `http://127.0.0.1:${portOf(app.server)}`
  const wsA = await openWs(t, wsUrl(url, '/x'), undefined, { headers: { host: 'a.test' } })
  t.equal((await messages(wsA, 1))[0].data.toString(), 'hello from a', 'the first registration\'s host')
  const wsB = await openWs(t, wsUrl(url, '/x'), undefined, { headers: { host: 'b.test' } })
  t.equal((await messages(wsB, 1))[0].data.toString(), 'hello from b', 'the second registration\'s host')
  const wsC = await openWs(t, wsUrl(url, '/only-b/x'), undefined, { headers: { host: 'c.b.test' } })
  t.equal((await messages(wsC, 1))[0].data.toString(), 'hello from b', 'a wildcard of the second registration')
  t.equal((await request(`${url}/x`, { headers: { host: 'c.test' } })).status, 404)
  t.same({ a: a.upgrades, b: b.upgrades }, { a: ['/x'], b: ['/x', '/only-b/x'] })

  // Each registration checks its own routes; the shared router refuses one name twice at one path across them.
  const overlap = Fastify()
  t.teardown(() => overlap.close())
  await overlap.register(wsProxyPlugin, { routes: [{ prefix: '/', host: 'a.test', upstream: origin(a.server) }] })
  const second = async (): Promise<void> => { await overlap.register(wsProxyPlugin, { routes: [{ prefix: '/', host: ['b.test', 'A.test'], upstream: origin(b.server) }] }).ready() }
  await t.rejects(second(),
    { message: 'fastify-ws-proxy: host "a.test" already has a route at this path' })
})

t.test('hooks, the app\'s own routes and its 404 handler keep working next to routes with host', async (t) => {
  const a = await named(t, 'a')
  const hooked: string[] = []
  const { url } = await gateway(t, { routes: [{ prefix: '/', host: 'a.test', upstream: origin(a.server) }] }, {}, (app) => {
    app.addHook('onRequest', async (request) => { hooked.push(`${request.headers.host as string} ${request.url} ${request.routeOptions.url ?? '-'}`) })
    app.get('/health', async () => ({ ok: true }))
    app.setNotFoundHandler(async (request, reply) => reply.code(404).send({ custom: true, url: request.url }))
  })
  t.match(await via(url, 'a.test', '/x'), { status: 200, name: 'a' })
  for (const host of ['a.test', 'b.test']) {
    const health = await request(`${url}/health`, { headers: { host } })
    t.same([health.status, JSON.parse(health.body.toString())], [200, { ok: true }], `the app's /health on ${host}`)
  }
  const missing = await request(`${url}/x`, { headers: { host: 'b.test' } })
  t.same([missing.status, JSON.parse(missing.body.toString())], [404, { custom: true, url: '/x' }], 'the app\'s 404 handler')
  t.same(hooked, ['a.test /x /*', 'a.test /health /health', 'b.test /health /health', 'b.test /x -'])
  t.same(a.hits, ['/x'])

  // The constraint is the plugin's: a value that is not a list of names is refused as such.
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(wsProxyPlugin, { routes: [{ prefix: '/', host: 'a.test', upstream: origin(a.server) }] })
  t.throws(() => app.get('/mine', { constraints: { fastifyWsProxyHost: 'a.test' } }, async () => 'x'),
    { message: 'fastify-ws-proxy host constraint: expected an array of host keys' })
})

t.test('a name listed twice in one route (any case, trailing dot) is one name, not a duplicate route', async (t) => {
  const resolved = resolveOptions({ routes: [{ prefix: '/', upstream: 'http://x', host: ['a.test', 'A.test.'] }] })
  t.same(resolved.routes[0].hosts?.map((pattern) => pattern.key), ['a.test', 'a.test'])
})
