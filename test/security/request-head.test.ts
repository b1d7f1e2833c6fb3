// The request gate's checks of a request head for a proxied path, before routing and so before any hook: the field
// count (431 past `limits.headers`, capped by Node's `maxHeadersCount`), Host (one, valid `host[:port]`), and the
// fields Node keeps once (repeated → 400). For HTTP and upgrades; `inject()` is checked by the route itself; paths
// the plugin does not proxy are left alone.
import t, { type Test } from 'tap'
import Fastify, { type FastifyServerOptions } from 'fastify'
import wsProxyPlugin, { wsProxyRewriteUrl } from '../../src/index.js'
import { values } from '../helpers/clients.js'
import { logCapture } from '../helpers/servers.js'
import { errorOf, exchange, fillers, guardedGateway, head, recordingUpstream, upgrade, type GuardOptions, type RawAnswer } from './support.js'

/** The routes of these tests: one with a URI, one without. */
function routes (upstream: string) {
  return [{ prefix: '/api/', upstream: upstream + '/' }, { prefix: '/ws/', upstream }]
}

/** A head for `/api/x` (plain) or `/ws/x` (upgrade to `foo`). */
function request (kind: 'http' | 'upgrade', lines: string[], options: { host?: string | null, version?: string } = {}): string {
  return kind === 'http' ? head('/api/x', ['Connection: close', ...lines], options) : upgrade('/ws/x', lines, options)
}

/** Fields `request()` adds itself: Host and Connection, and Upgrade for an upgrade. */
const own = (kind: 'http' | 'upgrade'): number => kind === 'http' ? 2 : 3

const accepted = (kind: 'http' | 'upgrade'): number => kind === 'http' ? 200 : 101

function refused (t: Test, answer: RawAnswer, status: number, code: string, message: string, label: string): void {
  t.equal(answer.status, status, label)
  t.same(errorOf(answer), { statusCode: status, code, error: status === 431 ? 'Request Header Fields Too Large' : 'Bad Request', message }, label)
  t.equal(answer.headers['content-type'], 'application/json; charset=utf-8', label)
  t.equal(answer.headers.connection, 'close', label)
  t.ok(answer.closed, `${label}: the connection is closed`)
}

async function setup (t: Test, options: Record<string, unknown> = {}, guard: GuardOptions = {}) {
  const upstream = await recordingUpstream(t)
  const gw = await guardedGateway(t, { routes: routes(upstream.origin), ...options }, guard)
  return { upstream, gw }
}

for (const kind of ['http', 'upgrade'] as const) {
  t.test(`${kind}: more than limits.headers fields (default 100) → 431 before any hook`, async (t) => {
    const { upstream, gw } = await setup(t)
    // Host and the upgrade's own fields count: 100 fields in all pass, 101 do not.
    t.equal((await exchange(t, gw.port, request(kind, fillers(100 - own(kind))))).status, accepted(kind), '100 fields pass')
    t.equal(gw.hookSeen.length, 1)
    const answer = await exchange(t, gw.port, request(kind, fillers(101 - own(kind))), { waitClose: true })
    refused(t, answer, 431, 'FST_WS_PROXY_TOO_MANY_HEADERS', 'Request has more than 100 header fields', '101 fields')
    t.equal(gw.hookSeen.length, 1, 'no hook ran for the refused one')
    t.equal(upstream.arrivals.length, 1, 'nothing more reached the upstream')
  })

  t.test(`${kind}: a custom limits.headers`, async (t) => {
    const { upstream, gw } = await setup(t, { limits: { headers: 10 } })
    t.equal((await exchange(t, gw.port, request(kind, fillers(10 - own(kind))))).status, accepted(kind))
    refused(t, await exchange(t, gw.port, request(kind, fillers(11 - own(kind))), { waitClose: true }), 431, 'FST_WS_PROXY_TOO_MANY_HEADERS', 'Request has more than 10 header fields', '11 fields')
    t.equal(gw.hookSeen.length, 1)
    t.equal(upstream.arrivals.length, 1)
  })

  t.test(`${kind}: Node's maxHeadersCount below limits.headers caps it`, async (t) => {
    const { upstream, gw } = await setup(t, {}, { setup: (app) => { app.server.maxHeadersCount = 20 } })
    t.equal((await exchange(t, gw.port, request(kind, fillers(20 - own(kind))))).status, accepted(kind))
    refused(t, await exchange(t, gw.port, request(kind, fillers(21 - own(kind))), { waitClose: true }), 431, 'FST_WS_PROXY_TOO_MANY_HEADERS', 'Request has more than 20 header fields', '21 fields')
    t.equal(gw.hookSeen.length, 1)
    t.equal(upstream.arrivals.length, 1)
  })

  t.test(`${kind}: 1,000 fields then X-Internal-User: Node's own 1,000 caps any limits.headers`, async (t) => {
    const { upstream, gw } = await setup(t, { limits: { headers: 5000 } })
    const lines = [...fillers(1000, 'A'), 'X-Internal-User: admin']
    refused(t, await exchange(t, gw.port, request(kind, lines), { waitClose: true }), 431, 'FST_WS_PROXY_TOO_MANY_HEADERS', 'Request has more than 1000 header fields', 'past Node\'s 1000')
    t.equal(gw.hookSeen.length, 0)
    t.equal(upstream.arrivals.length, 0)
  })

  t.test(`${kind}: with maxHeadersCount 0 (no Node limit) the field the hook reads is the field forwarded`, async (t) => {
    const { upstream, gw } = await setup(t, { limits: { headers: 1100 } }, { setup: (app) => { app.server.maxHeadersCount = 0 } })
    const lines = [...fillers(1000, 'A'), 'X-Internal-User: admin']
    t.equal((await exchange(t, gw.port, request(kind, lines))).status, accepted(kind))
    t.equal(gw.hookHeaders[0]['x-internal-user'], 'admin', 'the hook saw the 1,001st field')
    // The upstream's own Node keeps 1,000 fields in `headers`: its raw list shows what was sent.
    t.same(values(upstream.arrivals[0].rawHeaders, 'x-internal-user'), ['admin'], 'and the upstream got it, once')
    refused(t, await exchange(t, gw.port, request(kind, fillers(1101 - own(kind))), { waitClose: true }), 431, 'FST_WS_PROXY_TOO_MANY_HEADERS', 'Request has more than 1100 header fields', 'past limits.headers')
  })

  t.test(`${kind}: Host must be one valid host[:port], before any hook`, async (t) => {
    const { upstream, gw } = await setup(t)
    const bad: Array<[string, string[], string | null, string]> = [
      ['two Hosts', ['Host: b'], 'a', 'more than one'],
      ['two Hosts, same value', ['host: a'], 'a', 'more than one'],
      ['a path and query', [], 'evil.example/x?y', 'not a valid host[:port]'],
      ['a space', [], 'evil example', 'not a valid host[:port]'],
      ['empty', [], '', 'empty'],
      ['userinfo', [], 'user:pw@evil', 'not a valid host[:port]'],
      ['a port past 65535', [], 'h:65536', 'not a valid host[:port]'],
      ['an empty port', [], 'h:', 'not a valid host[:port]'],
      ['an empty label', [], 'a..b', 'not a valid host[:port]'],
      ['an escape', [], 'a%2eb', 'not a valid host[:port]'],
      ['a bad IPv6 literal', [], '[::1', 'not a valid host[:port]']
    ]
    for (const [name, lines, host, why] of bad) {
      refused(t, await exchange(t, gw.port, request(kind, lines, { host }), { waitClose: true }), 400, 'FST_WS_PROXY_BAD_HOST', `Invalid Host header: ${why}`, name)
    }
    t.equal(gw.hookSeen.length, 0, 'no hook ran')
    t.equal(upstream.arrivals.length, 0, 'nothing reached the upstream')
    for (const host of ['[::1]:8080', 'example.com.', 'h:65535', '10.0.0.1:80', 'under_score.example', 'X-Y.Example']) {
      t.equal((await exchange(t, gw.port, request(kind, [], { host }))).status, accepted(kind), host)
      t.equal(upstream.arrivals[upstream.arrivals.length - 1].headers['x-forwarded-host'], host, `${host}: forwarded as X-Forwarded-Host`)
    }
  })

  t.test(`${kind}: a repeated field Node keeps once → 400, other repeated fields pass`, async (t) => {
    const { upstream, gw } = await setup(t)
    for (const name of ['Authorization', 'authorization', 'User-Agent', 'Content-Type', 'Referer', 'Proxy-Authorization', 'From', 'Max-Forwards']) {
      const lines = [`${name}: one`, `${name.toUpperCase()}: two`]
      refused(t, await exchange(t, gw.port, request(kind, lines), { waitClose: true }), 400, 'FST_WS_PROXY_DUPLICATE_HEADER', `Request has more than one ${name.toLowerCase()} header`, name)
    }
    t.equal(gw.hookSeen.length, 0)
    t.equal(upstream.arrivals.length, 0)
    const answer = await exchange(t, gw.port, request(kind, ['Accept: a', 'Accept: b', 'Cookie: a=1', 'Cookie: b=2', 'X-Custom: 1', 'X-Custom: 2', 'Authorization: Bearer x']))
    t.equal(answer.status, accepted(kind), 'list fields and cookies may repeat')
    t.equal(upstream.arrivals[0].headers.authorization, 'Bearer x')
  })

  t.test(`${kind}: HTTP/1.0 without Host passes; HTTP/1.1 without Host is refused`, async (t) => {
    const { upstream, gw } = await setup(t, {}, { fastify: { http: { requireHostHeader: false } } as FastifyServerOptions })
    if (kind === 'http') {
      const answer = await exchange(t, gw.port, head('/api/x', [], { host: null, version: '1.0' }), { waitClose: true })
      t.equal(answer.status, 200)
      t.equal(upstream.arrivals.length, 1)
    }
    refused(t, await exchange(t, gw.port, request(kind, [], { host: null }), { waitClose: true }), 400, 'FST_WS_PROXY_BAD_HOST', 'Invalid Host header: missing', 'HTTP/1.1 without Host')
    t.equal(upstream.arrivals.length, kind === 'http' ? 1 : 0)
  })
}

t.test('refusals before routing are logged at info with their error, for requests and upgrades', async (t) => {
  const upstream = await recordingUpstream(t)
  const logs = logCapture()
  const gw = await guardedGateway(t, { routes: routes(upstream.origin) }, { fastify: { logger: { level: 'info', stream: logs.stream } } })
  await exchange(t, gw.port, request('http', ['Host: b'], { host: 'a' }), { waitClose: true })
  await exchange(t, gw.port, request('upgrade', fillers(100)), { waitClose: true })
  const plain = logs.records.filter((r) => r.msg === 'request refused before routing')
  const upgrades = logs.records.filter((r) => r.msg === 'upgrade refused before routing')
  t.equal(plain.length, 1)
  t.equal(plain[0].level, 30)
  t.match(plain[0], { err: { code: 'FST_WS_PROXY_BAD_HOST' }, method: 'GET', client: '127.0.0.1' })
  t.equal(upgrades.length, 1)
  t.match(upgrades[0], { level: 30, err: { code: 'FST_WS_PROXY_TOO_MANY_HEADERS' }, method: 'GET', client: '127.0.0.1' })
})

t.test('Node itself refuses an HTTP/1.1 request without Host by default (the gate never sees it)', async (t) => {
  const { upstream, gw } = await setup(t)
  const answer = await exchange(t, gw.port, head('/api/x', [], { host: null }), { waitClose: true })
  t.equal(answer.status, 400)
  t.equal(gw.hookSeen.length, 0)
  t.equal(upstream.arrivals.length, 0)
})

t.test('X-Forwarded-Host and $host only carry the validated Host; a client\'s X-Forwarded-Host is replaced', async (t) => {
  const upstream = await recordingUpstream(t)
  const gw = await guardedGateway(t, {
    routes: [
      { prefix: '/api/', upstream: upstream.origin + '/', requestHeaders: { set: { 'X-Host': '$host', 'X-Http-Host': '$http_host' } } },
      { prefix: '/keep/', upstream: upstream.origin + '/', preserveHost: true }
    ]
  })
  const answer = await exchange(t, gw.port, head('/api/x', ['X-Forwarded-Host: evil example/x', 'Connection: close'], { host: 'App.Example:8443' }))
  t.equal(answer.status, 200)
  const got = upstream.arrivals[0].headers
  t.equal(got['x-forwarded-host'], 'App.Example:8443')
  t.equal(got['x-host'], 'app.example')
  t.equal(got['x-http-host'], 'App.Example:8443')
  await exchange(t, gw.port, head('/keep/x', ['Connection: close'], { host: 'front.example' }))
  t.equal(upstream.arrivals[1].headers.host, 'front.example', 'preserveHost forwards the validated Host')
  t.equal((await exchange(t, gw.port, head('/keep/x', [], { host: 'front example' }), { waitClose: true })).status, 400, 'never an invalid one')
  t.equal(upstream.arrivals.length, 2)
})

t.test('absolute form with wsProxyRewriteUrl: the authority is the effective Host (RFC 9112 §3.2.2), for HTTP and upgrades', async (t) => {
  const upstream = await recordingUpstream(t)
  const gw = await guardedGateway(t, {
    routes: [
      { prefix: '/api/', upstream: upstream.origin + '/', requestHeaders: { set: { 'X-Host': '$host' } } },
      { prefix: '/keep/', upstream: upstream.origin, preserveHost: true }
    ]
  }, { rewrite: true })
  await exchange(t, gw.port, head('http://Authority.Example:81/api/x?q', ['Connection: close'], { host: 'other.example' }))
  let got = upstream.arrivals[0]
  t.equal(got.url, '/x?q')
  t.equal(got.headers['x-forwarded-host'], 'Authority.Example:81')
  t.equal(got.headers['x-host'], 'authority.example')
  t.equal(gw.hookHeaders[0].host, 'Authority.Example:81', 'hooks see the authority as Host')
  t.equal(gw.hookSeen[0], '/api/x?q')
  const answer = await exchange(t, gw.port, upgrade('HTTPS://[::1]:8443/keep/t', [], { host: 'other.example' }))
  t.equal(answer.status, 101)
  got = upstream.arrivals[1]
  t.equal(got.kind, 'upgrade')
  t.equal(got.url, '/keep/t')
  t.equal(got.headers.host, '[::1]:8443', 'preserveHost sends the authority')
  t.equal(got.headers['x-forwarded-host'], '[::1]:8443')
  // The Host field itself is still checked: an absolute-form target does not excuse a bad one.
  t.equal((await exchange(t, gw.port, head('http://a.example/api/x', ['Host: b'], { host: 'a.example' }), { waitClose: true })).status, 400)
  t.equal(upstream.arrivals.length, 2)
})

t.test('inject(): the route handler itself refuses what the gate would have (after hooks)', async (t) => {
  const upstream = await recordingUpstream(t)
  for (const rewrite of [false, true]) {
    const app = Fastify({ logger: false, ...(rewrite ? { rewriteUrl: wsProxyRewriteUrl } : {}) })
    t.teardown(() => app.close())
    let hooks = 0
    app.addHook('onRequest', async () => { hooks++ })
    await app.register(wsProxyPlugin, { routes: routes(upstream.origin), limits: { headers: 5 } })
    const tooMany = await app.inject({ url: '/api/x', headers: { a: '1', b: '2', c: '3', d: '4', e: '5' } })
    t.equal(tooMany.statusCode, 431)
    t.equal(tooMany.json().code, 'FST_WS_PROXY_TOO_MANY_HEADERS')
    const host = await app.inject({ url: '/api/x', headers: { host: 'evil example' } })
    t.equal(host.statusCode, 400)
    t.equal(host.json().message, 'Invalid Host header: not a valid host[:port]')
    const twice = await app.inject({ url: '/api/x', headers: { authorization: ['Bearer a', 'Bearer b'] as unknown as string } })
    t.equal(twice.statusCode, 400)
    t.equal(twice.json().code, 'FST_WS_PROXY_DUPLICATE_HEADER')
    const encoded = await app.inject({ url: '/api/..%2fadmin' })
    t.equal(encoded.statusCode, 400)
    t.equal(encoded.json().message, 'Request target refused: encoded slash or backslash')
    const escaped = await app.inject({ url: '/api/%61dmin' })
    if (rewrite) {
      t.equal(escaped.statusCode, 200, 'rewritten to /api/admin')
      t.same(escaped.json(), { url: '/admin' })
    } else {
      t.equal(escaped.statusCode, 400)
      t.equal(escaped.json().message, 'Request target refused: not in canonical form (see wsProxyRewriteUrl)')
    }
    t.equal(hooks, 5, 'inject() requests go through the hooks first')
  }
  t.equal(upstream.arrivals.length, 1)
})

t.test('requests for paths the plugin does not proxy are left to the app', async (t) => {
  const upstream = await recordingUpstream(t)
  const gw = await guardedGateway(t, { routes: routes(upstream.origin) }, {
    setup: (app) => {
      app.get('/own/*', async (request) => ({ url: request.url, fields: request.raw.rawHeaders.length / 2 }))
    }
  })
  const cases: Array<[string, string[], string | null]> = [
    ['200 fields', fillers(199), 'gateway.test'],
    ['two Hosts', ['Host: b'], 'a'],
    ['a bad Host', [], 'evil example'],
    ['two Authorization', ['Authorization: a', 'Authorization: b'], 'gateway.test']
  ]
  for (const [name, lines, host] of cases) {
    const answer = await exchange(t, gw.port, head('/own/x', ['Connection: close', ...lines], { host }))
    t.equal(answer.status, 200, name)
  }
  t.equal(gw.hookSeen.length, cases.length, 'the hook ran for each')
  const apiLike = await exchange(t, gw.port, head('/apix/y', ['Connection: close', ...fillers(150)]))
  t.equal(apiLike.status, 404, 'a path beside a prefix is not claimed')
  t.equal(upstream.arrivals.length, 0)
})

// The gate decides by prefix, before routing (docs/security.md, "Where the guarantees stop"): an app's own route
// nested under a proxied prefix answers what the gate lets through, and gets the gate's refusals too.
t.test('an app\'s own route nested under a proxied prefix is gated by prefix, as documented', async (t) => {
  const upstream = await recordingUpstream(t)
  const gw = await guardedGateway(t, { routes: routes(upstream.origin) }, {
    setup: (app) => {
      app.get('/api/own/:id', async (request) => ({ id: (request.params as { id: string }).id }))
    }
  })
  t.equal((await exchange(t, gw.port, head('/api/own/x', ['Connection: close']))).status, 200, 'the app\'s route answers')
  const slash = await exchange(t, gw.port, head('/api/own/a%2Fb', ['Connection: close']))
  t.equal(slash.status, 400, 'an encoded slash is refused under the prefix')
  const many = await exchange(t, gw.port, head('/api/own/x', ['Connection: close', ...fillers(120)]))
  t.equal(many.status, 431, 'so are 120 fields')
  t.equal(upstream.arrivals.length, 0)
})
