import t from 'tap'
import https from 'node:https'
import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import { constants as h2 } from 'node:http2'
import { closedPort, echoHandler, gateway, httpUpstream, origin, waitFor, type Seen } from './helpers/servers.js'
import { rawExchange } from './helpers/clients.js'
import { codeOf, h2Gateway, h2Request, h2Session, rawH2Request } from './helpers/h2.js'
import { rawUpstream } from './helpers/servers.js'
import { within } from './helpers/http-faults.js'

// Requests from HTTP/2 clients (Fastify `http2: true`, h2c and h2 over TLS with `allowHTTP1`) to HTTP/1.1 upstreams:
// the pseudo-header fields never go upstream, `:authority` is the Host, responses carry no connection-specific
// field, bodies stream both ways, and every refusal and failure has the code and status it has over HTTP/1.1.

const seen = (body: Buffer): Seen => JSON.parse(body.toString()) as Seen
const names = (raw: string[]): string[] => raw.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase())

for (const tls of [false, true]) {
  const scheme = tls ? 'h2 over TLS' : 'h2c'
  t.test(`${scheme}: a GET reaches the upstream without pseudo-headers, :authority as Host and X-Forwarded-Host`, async (t) => {
    const upstream = await httpUpstream(t)
    const gw = await h2Gateway(t, {
      routes: [
        { prefix: '/keep/', upstream: origin(upstream), preserveHost: true },
        {
          prefix: '/vars/',
          upstream: origin(upstream),
          requestHeaders: { set: { 'x-vars': '$host|$http_host|$scheme|$request_uri|$server_protocol|$request_method' } }
        }
      ]
    }, { tls })
    const session = await h2Session(t, gw)
    const authority = `127.0.0.1:${gw.port}`
    const kept = await h2Request(session, { ':path': '/keep/a?x=1', 'x-custom': 'yes', cookie: ['a=1', 'b=2'] })
    t.equal(kept.status, 200)
    const upSeen = seen(kept.body)
    t.equal(upSeen.url, '/keep/a?x=1')
    t.notOk(names(upSeen.rawHeaders).some((n) => n.startsWith(':')), 'no pseudo-header field upstream')
    t.same(upSeen.rawHeaders.filter((_, i) => i > 0 && upSeen.rawHeaders[i - 1].toLowerCase() === 'host'), [authority], 'preserveHost: Host is :authority, once')
    t.equal(upSeen.headers['x-forwarded-host'], authority)
    t.equal(upSeen.headers['x-forwarded-proto'], tls ? 'https' : 'http')
    t.equal(upSeen.headers['x-custom'], 'yes')
    t.same(names(upSeen.rawHeaders).filter((n) => n === 'cookie'), ['cookie'], 'split Cookie fields go as one (RFC 9113 §8.2.3)')
    t.equal(upSeen.headers.cookie, 'a=1; b=2')

    const vars = await h2Request(session, { ':path': '/vars/b?y=2' })
    const varsSeen = seen(vars.body)
    t.equal(varsSeen.headers.host, origin(upstream).slice('http://'.length), 'without preserveHost: the upstream\'s own Host')
    t.equal(varsSeen.headers['x-vars'], `127.0.0.1|${authority}|${tls ? 'https' : 'http'}|/vars/b?y=2|HTTP/2.0|GET`)
  })
}

t.test('host routes choose by :authority over h2, as by Host over HTTP/1.1', async (t) => {
  const upstream = await httpUpstream(t)
  const gw = await h2Gateway(t, { routes: [{ prefix: '/', host: ['a.example', '~^(?<tenant>[a-z]+)\\.tenants\\.example$'], upstream: origin(upstream), requestHeaders: { set: { 'x-tenant': '$tenant' } } }] })
  const session = await h2Session(t, gw)
  const named = await h2Request(session, { ':path': '/x', ':authority': 'A.Example:8443' })
  t.equal(named.status, 200, 'the name, in any case, with a port')
  t.equal(seen(named.body).url, '/x')
  const captured = await h2Request(session, { ':path': '/y', ':authority': 'blue.tenants.example' })
  t.equal(captured.status, 200)
  t.equal(seen(captured.body).headers['x-tenant'], 'blue', 'the regex name\'s capture')
  const other = await h2Request(session, { ':path': '/x', ':authority': 'b.example' })
  t.equal(other.status, 404, 'no route for another name')
})

t.test('h2 over TLS with allowHTTP1: HTTP/1.1 clients on the same port are proxied as before', async (t) => {
  const upstream = await httpUpstream(t)
  const gw = await h2Gateway(t, { upstream: origin(upstream), requestHeaders: { set: { 'x-proto': '$server_protocol' } } }, { tls: true })
  const req = https.request(`${gw.url}/one`, { ca: gw.ca as string, agent: false })
  req.end()
  const [res] = await within(once(req, 'response'), 3000, 'the HTTP/1.1 answer') as [IncomingMessage]
  const chunks: Buffer[] = []
  for await (const chunk of res) chunks.push(chunk as Buffer)
  t.equal(res.statusCode, 200)
  t.equal(res.httpVersion, '1.1')
  const upSeen = seen(Buffer.concat(chunks))
  t.equal(upSeen.headers['x-proto'], 'HTTP/1.1')
  t.equal(upSeen.headers['x-forwarded-proto'], 'https')
})

t.test('$http_host and $server_protocol of an HTTP/1.0 request without Host', async (t) => {
  const upstream = await httpUpstream(t)
  const { port } = await gateway(t, { upstream: origin(upstream), requestHeaders: { set: { 'x-vars': '[$http_host]|$server_protocol' } } })
  const answer = await rawExchange(t, port, 'GET /old HTTP/1.0\r\n\r\n')
  const upSeen = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as Seen
  t.equal(upSeen.headers['x-vars'], '[]|HTTP/1.0')
})

t.test('connection-specific response fields never reach an HTTP/2 client (RFC 9113 §8.2.2)', async (t) => {
  const upstream = await httpUpstream(t, (req, res) => {
    if (req.url === '/426') {
      res.writeHead(426, 'Upgrade Required', { upgrade: 'foo/2', connection: 'upgrade, x-private', 'x-private': 'no', 'x-public': 'yes' })
      res.end('upgrade please')
      return
    }
    // Chunked, kept alive, with a Keep-Alive and a Proxy-Connection field and a reason phrase of its own.
    res.writeHead(200, 'Fine Thanks', { 'keep-alive': 'timeout=5', 'proxy-connection': 'keep-alive', connection: 'keep-alive', 'x-public': 'yes' })
    res.write('chunk one, ')
    res.end('chunk two')
  })
  // A hook's Keep-Alive too: Node would refuse the whole answer.
  const gw = await h2Gateway(t, { upstream: origin(upstream) }, {
    setup: (app) => { app.addHook('onRequest', async (request, reply) => { reply.header('keep-alive', 'timeout=5').header('x-hook', 'kept') }) }
  })
  const session = await h2Session(t, gw)
  for (const path of ['/chunked', '/426']) {
    const answer = await h2Request(session, { ':path': path })
    t.equal(answer.status, path === '/426' ? 426 : 200)
    t.ok(answer.ended, 'a complete answer')
    for (const name of ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'x-private']) {
      t.equal(answer.headers[name], undefined, `${path}: no ${name}`)
    }
    t.equal(answer.headers['x-public'], 'yes')
    t.equal(answer.headers['x-hook'], 'kept')
    t.equal(answer.body.toString(), path === '/426' ? 'upgrade please' : 'chunk one, chunk two')
  }
})

t.test('request and response bodies stream both ways over h2 (no Content-Length, 4 MiB each way), HEAD has none', async (t) => {
  const upstream = await httpUpstream(t, (req, res) => {
    if (req.method === 'HEAD') {
      res.writeHead(200, { 'content-length': '123', 'x-head': 'yes' })
      res.end()
      return
    }
    // Echoes the body back as it arrives.
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-te': req.headers['transfer-encoding'] ?? 'none' })
    req.pipe(res)
  })
  const gw = await h2Gateway(t, { upstream: origin(upstream) })
  const session = await h2Session(t, gw)
  const body = Buffer.alloc(4 * 1024 * 1024)
  for (let i = 0; i < body.length; i++) body[i] = (i * 7) & 0xff
  const answer = await h2Request(session, { ':method': 'POST', ':path': '/echo' }, body, 15_000)
  t.equal(answer.status, 200)
  t.equal(answer.headers['x-te'], 'chunked', 'a body without Content-Length goes chunked to the HTTP/1.1 upstream')
  t.equal(answer.body.length, body.length)
  t.ok(answer.body.equals(body), 'the bytes came back exactly')
  const head = await h2Request(session, { ':method': 'HEAD', ':path': '/h' })
  t.equal(head.status, 200)
  t.equal(head.headers['content-length'], '123')
  t.equal(head.body.length, 0)
  const empty = await h2Request(session, { ':method': 'POST', ':path': '/echo', 'content-length': '0' })
  t.equal(empty.status, 200)
  t.equal(empty.headers['x-te'], 'none', 'a request whose HEADERS end the stream has no body upstream')
})

t.test('refusals before routing and upstream failures have their HTTP/1.1 codes over h2', async (t) => {
  const silent = await rawUpstream(t, () => {})
  const refused = await closedPort()
  const upstream = await httpUpstream(t, echoHandler)
  const gw = await h2Gateway(t, {
    limits: { headers: 10, body: 100 },
    routes: [
      { prefix: '/ok/', upstream: origin(upstream) },
      { prefix: '/silent/', upstream: origin(silent), timeouts: { read: 200 } },
      { prefix: '/refused/', upstream: `http://127.0.0.1:${refused}` }
    ]
  })
  const session = await h2Session(t, gw)
  const cases: Array<[string, Record<string, string | string[]>, number, string, string?]> = [
    ['connection refused', { ':path': '/refused/x' }, 502, 'FST_WS_PROXY_CONNECT_FAILED'],
    ['upstream silent', { ':path': '/silent/x' }, 504, 'FST_WS_PROXY_READ_TIMEOUT'],
    ['a body over limits.body', { ':method': 'POST', ':path': '/ok/x', 'content-length': '200' }, 413, 'FST_WS_PROXY_BODY_TOO_LARGE', 'x'.repeat(200)],
    ['a streamed body over limits.body', { ':method': 'POST', ':path': '/ok/x' }, 413, 'FST_WS_PROXY_BODY_TOO_LARGE', 'x'.repeat(200)],
    ['too many fields', { ':path': '/ok/x', ...Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`x-f${i}`, 'v'])) }, 431, 'FST_WS_PROXY_TOO_MANY_HEADERS'],
    ['a repeated Server (Node\'s client refuses to repeat Authorization, see below)', { ':path': '/ok/x', server: ['a', 'b'] }, 400, 'FST_WS_PROXY_DUPLICATE_HEADER'],
    ['a target with dot segments', { ':path': '/ok/../ok/x' }, 400, 'FST_WS_PROXY_BAD_PATH'],
    ['CONNECT', { ':method': 'CONNECT', ':authority': 'example.com:443' }, 405, 'FST_WS_PROXY_METHOD_NOT_ALLOWED']
  ]
  for (const [what, headers, status, code, body] of cases) {
    const answer = await h2Request(session, headers, body)
    t.equal(answer.status, status, `${what}: ${status}`)
    t.equal(codeOf(answer), code, `${what}: ${code}`)
    t.equal(answer.headers.connection, undefined, `${what}: no Connection field`)
  }
  // Exactly 10 fields pass, and the session is still usable after every refusal.
  const ten = await h2Request(session, { ':path': '/ok/y', ...Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`x-f${i}`, 'v'])) })
  t.equal(ten.status, 200, 'the pseudo-header fields do not count against limits.headers')
  t.equal(session.destroyed, false)
})

t.test('h2 heads Node\'s client will not send: no :authority nor Host, a repeated Host or Authorization, Host and :authority', async (t) => {
  const upstream = await httpUpstream(t)
  const gw = await h2Gateway(t, { upstream: origin(upstream) })
  const base: Array<[string, string]> = [[':method', 'GET'], [':scheme', 'http'], [':path', '/x']]
  // nghttp2 resets these before Node or the proxy see them.
  for (const extra of [[], [['host', 'a.example'], ['host', 'b.example']], [['host', '']], [[':authority', 'a b']]] as Array<Array<[string, string]>>) {
    const answer = await rawH2Request(t, gw.port, [...base, ...extra])
    t.equal(answer.rstCode, 1, `${JSON.stringify(extra)}: PROTOCOL_ERROR`)
  }
  const twice = await rawH2Request(t, gw.port, [...base, [':authority', 'a.example'], ['authorization', 'Basic a'], ['authorization', 'Basic b']])
  t.equal(twice.status, 400)
  t.match(twice.body, /"code":"FST_WS_PROXY_DUPLICATE_HEADER".*authorization/)
  const differs = await rawH2Request(t, gw.port, [...base, [':authority', 'a.example'], ['host', 'b.example']])
  t.equal(differs.status, 400)
  t.match(differs.body, /"code":"FST_WS_PROXY_BAD_HOST".*differs from :authority/)
  const same = await rawH2Request(t, gw.port, [...base, [':authority', 'a.example'], ['host', 'a.example']])
  t.equal(same.status, 200, 'Host and :authority that agree')
  const port = await rawH2Request(t, gw.port, [...base, [':authority', 'a.example:x']])
  t.equal(port.status, 400)
  t.match(port.body, /"code":"FST_WS_PROXY_BAD_HOST".*not a valid host/)
  // RFC 9113 §8.3.1: Host may stand in for :authority.
  const hostOnly = await rawH2Request(t, gw.port, [...base, ['host', 'a.example:8443']])
  t.equal(hostOnly.status, 200)
  t.equal(JSON.parse(hostOnly.body).headers['x-forwarded-host'], 'a.example:8443')
})

t.test('a client that resets its stream (RST_STREAM) aborts the upstream request, and the session goes on', async (t) => {
  let upstreamClosed = false
  let sawRequest = false
  const upstream = await httpUpstream(t, (req, res) => {
    if (req.url === '/other') {
      res.end('other')
      return
    }
    sawRequest = true
    res.on('close', () => { upstreamClosed = true })
    res.writeHead(200)
    res.write('first part')
    // ...and never ends.
  })
  // No `Keep-Alive: timeout=5` on its answers: undici would keep the connection it dials after the abort for 3 s.
  upstream.keepAliveTimeout = 0
  const gw = await h2Gateway(t, { upstream: origin(upstream), pool: { keepAliveTimeout: 200 } })
  const session = await h2Session(t, gw)
  const stream = session.request({ ':path': '/slow' })
  stream.on('error', () => {})
  stream.end()
  const [chunk] = await within(once(stream, 'data'), 3000, 'the first part') as [Buffer]
  t.equal(chunk.toString(), 'first part')
  stream.close(h2.NGHTTP2_CANCEL)
  await waitFor(() => upstreamClosed, 2000, 'the upstream request to be aborted')
  t.ok(sawRequest)
  await waitFor(() => gw.app.wsProxy.upstreamConnections === 0, 2500, 'the upstream socket to be released')
  const after = await h2Request(session, { ':path': '/other' })
  t.equal(after.status, 200, 'the session still serves')
})
