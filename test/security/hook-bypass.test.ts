// Issue 23, replayed as raw bytes: what an onRequest hook refuses (`/api/admin`, `/ws/admin`) never reaches an
// upstream, whatever the spelling of the target, for plain requests and upgrades, with the hook added before or
// after the plugin, without the normaliser (non-canonical targets → 400) and with `rewriteUrl: wsProxyRewriteUrl`
// (hooks see the canonical path, which is exactly what is mapped upstream).
import t from 'tap'
import { closedPort } from '../helpers/servers.js'
import { acceptFor, openWs, messages, wsHandshakeHead, wsUrl } from '../helpers/ws.js'
import { errorOf, exchange, fillers, guardedGateway, head, isAdmin, issueRoutes, recordingUpstream, upgrade, type RawAnswer } from './support.js'

const NOT_CANONICAL = 'not in canonical form (see wsProxyRewriteUrl)'

/** What a target gets: a status, the refusal reason of a 400 BAD_PATH, the upstream path of an accepted one. */
interface Outcome { status: number, reason?: string, upstream?: string, forwardedHost?: string }
interface Row { target: string, without: Outcome, with: Outcome }

const bad = (reason: string): Outcome => ({ status: 400, reason })
const ok = (upstream: string, forwardedHost?: string): Outcome => ({ status: 200, upstream, forwardedHost })
const FORBIDDEN: Outcome = { status: 403 }
const NOT_FOUND: Outcome = { status: 404 }

const ROWS: Row[] = [
  // The issue's table, row by row.
  { target: 'http://evil.example/api/admin', without: bad(NOT_CANONICAL), with: FORBIDDEN },
  { target: 'http://evil.example/ws/admin', without: bad(NOT_CANONICAL), with: FORBIDDEN },
  { target: 'http://Xadmin/public/x', without: bad(NOT_CANONICAL), with: ok('/x', 'Xadmin') },
  { target: 'http://X../static/x', without: bad('invalid authority'), with: bad('invalid authority') },
  { target: '/api/..%2fadmin', without: bad('encoded slash or backslash'), with: bad('encoded slash or backslash') },
  { target: '/api/%2E%2E%2Fadmin', without: bad('encoded slash or backslash'), with: bad('encoded slash or backslash') },
  { target: '/ws/..%2f..%2fadmin', without: bad('encoded slash or backslash'), with: bad('encoded slash or backslash') },
  { target: '/api//admin', without: bad(NOT_CANONICAL), with: FORBIDDEN },
  { target: '/ws//admin', without: bad(NOT_CANONICAL), with: FORBIDDEN },
  { target: '/api/x#frag', without: bad(NOT_CANONICAL), with: ok('/x') },
  { target: '/ws/x#frag', without: bad(NOT_CANONICAL), with: ok('/ws/x') },
  { target: 'HTTP://h/ws/x', without: bad(NOT_CANONICAL), with: ok('/ws/x', 'h') },
  // Other spellings of the same paths.
  { target: 'http://evil.example/static/x?q=1', without: bad(NOT_CANONICAL), with: ok('/base/x?q=1', 'evil.example') },
  { target: 'https://h:8443/ws/x', without: bad(NOT_CANONICAL), with: ok('/ws/x', 'h:8443') },
  { target: 'ftp://h/api/admin', without: bad('unsupported scheme'), with: bad('unsupported scheme') },
  { target: 'http://user:pw@h/api/admin', without: bad('invalid authority'), with: bad('invalid authority') },
  { target: '/api/%61dmin', without: bad(NOT_CANONICAL), with: FORBIDDEN },
  { target: '/api/%61%64%6d%69%6e', without: bad(NOT_CANONICAL), with: FORBIDDEN },
  { target: '/api/./admin', without: bad(NOT_CANONICAL), with: FORBIDDEN },
  { target: '/api/x/../admin', without: bad(NOT_CANONICAL), with: FORBIDDEN },
  { target: '/static/../api/admin', without: bad(NOT_CANONICAL), with: FORBIDDEN },
  { target: '/ws/x/..//./admin', without: bad(NOT_CANONICAL), with: FORBIDDEN },
  { target: '/api/..', without: bad(NOT_CANONICAL), with: NOT_FOUND },
  { target: '/api/../admin', without: bad(NOT_CANONICAL), with: NOT_FOUND },
  { target: '/api/..;/admin', without: bad('dot segment with parameters'), with: bad('dot segment with parameters') },
  { target: '/api/.;x/admin', without: bad('dot segment with parameters'), with: bad('dot segment with parameters') },
  { target: '/api/%2e/admin', without: bad('encoded dot segment'), with: bad('encoded dot segment') },
  { target: '/api/%2e%2e/admin', without: bad('encoded dot segment'), with: bad('encoded dot segment') },
  { target: '/api/.%2E/admin', without: bad('encoded dot segment'), with: bad('encoded dot segment') },
  { target: '/api/a%5cadmin', without: bad('encoded slash or backslash'), with: bad('encoded slash or backslash') },
  { target: '/api/a%2Fadmin', without: bad('encoded slash or backslash'), with: bad('encoded slash or backslash') },
  { target: '/api/%zzadmin', without: bad('invalid percent-encoding'), with: bad('invalid percent-encoding') },
  { target: '/api/%7Euser/%c3%a9', without: bad(NOT_CANONICAL), with: ok('/~user/%C3%A9') },
  { target: '/API/admin', without: NOT_FOUND, with: NOT_FOUND },
  // Controls: canonical targets pass the same way with or without the normaliser.
  { target: '/api/admin', without: FORBIDDEN, with: FORBIDDEN },
  { target: '/ws/admin?x=1', without: FORBIDDEN, with: FORBIDDEN },
  { target: '/api/x', without: ok('/x'), with: ok('/x') },
  { target: '/api/x/?next=..%2fadmin#', without: bad(NOT_CANONICAL), with: ok('/x/?next=..%2fadmin') },
  { target: '/api/x?next=..%2fadmin//%61', without: ok('/x?next=..%2fadmin//%61'), with: ok('/x?next=..%2fadmin//%61') },
  { target: '/static/a/b', without: ok('/base/a/b'), with: ok('/base/a/b') },
  { target: '/public/x/', without: ok('/x/'), with: ok('/x/') },
  { target: '/ws/chat', without: ok('/ws/chat'), with: ok('/ws/chat') },
  { target: '/api/.well-known/x', without: ok('/.well-known/x'), with: ok('/.well-known/x') }
]

/** The route mapping (nginx proxy_pass) of a path the hook saw. */
function mapped (path: string): string {
  for (const [prefix, to] of [['/api/', '/'], ['/static/', '/base/'], ['/public/', '/']]) {
    if (path.startsWith(prefix)) return to + path.slice(prefix.length)
  }
  return path
}

for (const rewrite of [false, true]) {
  for (const order of ['before', 'after'] as const) {
    t.test(`every spelling of the issue's targets, ${rewrite ? 'with' : 'without'} wsProxyRewriteUrl, hook added ${order} the plugin`, async (t) => {
      const upstream = await recordingUpstream(t)
      const gw = await guardedGateway(t, { routes: issueRoutes(upstream.origin) }, { rewrite, hook: order })
      let accepted = 0
      for (const row of ROWS) {
        const want = rewrite ? row.with : row.without
        for (const kind of ['http', 'upgrade'] as const) {
          const label = `${kind} ${row.target}`
          const before = { arrivals: upstream.arrivals.length, hooks: gw.hookSeen.length }
          const answer = await exchange(t, gw.port, kind === 'http' ? head(row.target, ['Connection: close']) : upgrade(row.target))
          const status = kind === 'upgrade' && want.status === 200 ? 101 : want.status
          t.equal(answer.status, status, label)
          if (want.reason !== undefined) {
            t.match(errorOf(answer), { statusCode: 400, code: 'FST_WS_PROXY_BAD_PATH', message: `Request target refused: ${want.reason}` }, label)
            // Only what is not canonical is left to the route; everything else never reaches routing.
            if (want.reason !== NOT_CANONICAL) t.equal(gw.hookSeen.length, before.hooks, `${label}: refused before any hook`)
          }
          if (want.upstream === undefined) {
            t.equal(upstream.arrivals.length, before.arrivals, `${label}: nothing reached the upstream`)
            continue
          }
          accepted++
          t.equal(upstream.arrivals.length, before.arrivals + 1, label)
          const got = upstream.arrivals[upstream.arrivals.length - 1]
          t.equal(got.kind, kind, label)
          t.equal(got.url, want.upstream, `${label}: the upstream got the mapped canonical path`)
          t.equal(got.line, `GET ${want.upstream} HTTP/1.1`, label)
          const seen = gw.hookSeen[gw.hookSeen.length - 1]
          t.equal(gw.hookSeen.length, before.hooks + 1, label)
          t.equal(mapped(seen.split('?')[0]) + (seen.includes('?') ? seen.slice(seen.indexOf('?')) : ''), got.url, `${label}: the upstream path is the mapping of what the hook saw`)
          t.equal(got.headers['x-forwarded-host'], want.forwardedHost ?? 'gateway.test', `${label}: X-Forwarded-Host`)
          t.equal(got.headers.host, upstream.origin.slice('http://'.length), `${label}: Host is the upstream's`)
        }
      }
      // Late arrivals would show here: the upstream got exactly the accepted requests, none of them an admin path.
      t.equal(upstream.arrivals.length, accepted)
      for (const got of upstream.arrivals) t.notOk(got.url.startsWith('/admin') || isAdmin(got.url), `${got.line}: not an admin path`)
    })
  }
}

/** A WebSocket handshake answer: a 101 with the right accept, or the refusal. */
function isWebSocket101 (answer: RawAnswer): boolean {
  return answer.status === 101 && answer.headers['sec-websocket-accept'] === acceptFor('dGhlIHNhbXBsZSBub25jZQ==')
}

for (const rewrite of [false, true]) {
  t.test(`WebSocket handshakes to a real ws upstream, ${rewrite ? 'with' : 'without'} wsProxyRewriteUrl`, async (t) => {
    const upstream = await recordingUpstream(t)
    const gw = await guardedGateway(t, { routes: issueRoutes(upstream.origin) }, { rewrite })
    const cases: Array<[string, number, string | null]> = [
      ['/ws/admin', 403, null],
      ['/ws//admin', rewrite ? 403 : 400, null],
      ['http://evil.example/ws/admin', rewrite ? 403 : 400, null],
      ['/ws/x/../admin', rewrite ? 403 : 400, null],
      ['/ws/%2e%2e/admin', 400, null],
      ['/ws/..%2fadmin', 400, null],
      ['/api/%61dmin', rewrite ? 403 : 400, null],
      ['HTTP://h/ws/chat', rewrite ? 101 : 400, '/ws/chat'],
      ['/ws/./chat#x', rewrite ? 101 : 400, '/ws/chat'],
      ['/api/chat', 101, '/chat']
    ]
    for (const [target, status, path] of cases) {
      const before = upstream.arrivals.length
      const answer = await exchange(t, gw.port, wsHandshakeHead(target))
      t.equal(answer.status, status, target)
      if (status === 101) {
        t.ok(isWebSocket101(answer), `${target}: a real WebSocket handshake`)
        t.equal(upstream.arrivals[before].url, path, target)
        t.equal(upstream.arrivals[before].kind, 'upgrade', target)
      } else {
        t.equal(upstream.arrivals.length, before, `${target}: nothing reached the upstream`)
      }
    }
    const ws = await openWs(t, wsUrl(gw.url, '/ws/echo'))
    ws.send('hello')
    t.equal((await messages(ws, 1))[0].data.toString(), 'hello', 'a WebSocket through the guarded route still echoes')
    ws.terminate()
  })
}

t.test('the issue\'s other rows: header count, Host, h2c, CONNECT, error bodies (both normaliser settings)', async (t) => {
  for (const rewrite of [false, true]) {
    const upstream = await recordingUpstream(t)
    const down = await closedPort()
    const routes = [...issueRoutes(upstream.origin) ?? [], { prefix: '/down/', upstream: `http://127.0.0.1:${down}/` }]
    const gw = await guardedGateway(t, { routes }, { rewrite })
    const label = (text: string): string => `${rewrite ? 'with' : 'without'} normaliser: ${text}`
    const refusals: Array<[string, string[], string | null, number, string]> = [
      ['1,000 fields then X-Internal-User', [...fillers(1000), 'X-Internal-User: admin'], 'gateway.test', 431, 'FST_WS_PROXY_TOO_MANY_HEADERS'],
      ['Host: a + Host: b', ['Host: b'], 'a', 400, 'FST_WS_PROXY_BAD_HOST'],
      ['Host: evil.example/x?y', [], 'evil.example/x?y', 400, 'FST_WS_PROXY_BAD_HOST'],
      ['Host: evil example', [], 'evil example', 400, 'FST_WS_PROXY_BAD_HOST'],
      ['Host: (empty)', [], '', 400, 'FST_WS_PROXY_BAD_HOST'],
      ['Host: user:pw@evil', [], 'user:pw@evil', 400, 'FST_WS_PROXY_BAD_HOST']
    ]
    for (const [name, lines, host, status, code] of refusals) {
      for (const bytes of [head('/api/x', lines, { host }), upgrade('/ws/x', lines, { host })]) {
        const hooks = gw.hookSeen.length
        const answer = await exchange(t, gw.port, bytes, { waitClose: true })
        t.equal(answer.status, status, label(name))
        t.equal(errorOf(answer).code, code, label(name))
        t.equal(answer.headers.connection, 'close', label(name))
        t.ok(answer.closed, label(`${name}: connection closed`))
        t.equal(gw.hookSeen.length, hooks, label(`${name}: no hook ran`))
      }
    }
    t.equal(upstream.arrivals.length, 0, label('none of these reached the upstream'))
    t.equal(upstream.connections(), 0, label('not even a connection was opened'))

    const h2c = await exchange(t, gw.port, upgrade('/api/x', ['HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA'], { protocol: 'h2c' }).replace('Connection: Upgrade', 'Connection: Upgrade, HTTP2-Settings'))
    t.equal(h2c.status, 200, label('h2c is proxied as a plain request'))
    t.equal(upstream.arrivals.length, 1)
    t.equal(upstream.arrivals[0].kind, 'http', label('no upgrade reached the upstream'))
    t.equal(upstream.arrivals[0].headers.upgrade, undefined)
    t.equal(upstream.arrivals[0].headers['http2-settings'], undefined)

    const connect = await exchange(t, gw.port, 'CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n', { waitClose: true })
    t.equal(connect.status, 405, label('CONNECT'))
    t.equal(errorOf(connect).code, 'FST_WS_PROXY_METHOD_NOT_ALLOWED')

    const failed = await exchange(t, gw.port, head('/down/x', ['Connection: close']))
    t.equal(failed.status, 502, label('connect refused'))
    t.equal(errorOf(failed).code, 'FST_WS_PROXY_CONNECT_FAILED')
    t.notMatch(failed.body, /127\.0\.0\.1|ECONNREFUSED/, label('no address in the body'))
    t.notMatch(failed.body, String(down))
    t.equal(upstream.arrivals.length, 1, label('nothing else reached the upstream'))
  }
})

// With Fastify's case-insensitive routing the route `/api/*` also matches `/API/admin`; a hook comparing
// `request.url` as written lets it through, so the proxy's prefixes stay case-sensitive, as nginx locations: 404.
t.test('case-insensitive routing: /API/admin is a 404 and never reaches the upstream as /admin', async (t) => {
  const upstream = await recordingUpstream(t)
  const gw = await guardedGateway(t, { routes: issueRoutes(upstream.origin) }, { fastify: { routerOptions: { caseSensitive: false } } })
  for (const target of ['/API/admin', '/Api/admin', '/WS/admin']) {
    const answer = await exchange(t, gw.port, head(target, ['Connection: close']))
    t.equal(answer.status, 404, target)
  }
  t.same(upstream.arrivals.map((got) => got.url), [], 'nothing reached the upstream')
  t.equal((await exchange(t, gw.port, head('/api/admin', ['Connection: close']))).status, 403, 'the hook still refuses the spelling it knows')
})
