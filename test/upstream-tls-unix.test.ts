import t from 'tap'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import https from 'node:https'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { WebSocketServer } from 'ws'
import { gateway, listen, portOf, waitFor, type Teardown } from './helpers/servers.js'
import { request } from './helpers/clients.js'
import { selfSignedCert } from './helpers/http-faults.js'
import { messages, openWs, unexpectedResponse, wsClosed, wsUrl } from './helpers/ws.js'

// Upstream groups over TLS (CA, verification, SNI, client certificates, plugin- and group-level settings) and over
// unix sockets (balancing, WebSocket tunnels). Every upstream is a real node:https / node:http server.

const cert = selfSignedCert()
const noCert = cert === null && 'openssl is not available to make a test certificate'

/** What a TLS upstream saw of a request: the SNI it was reached under and the client certificate presented. */
interface TlsSeen {
  url: string
  servername: string | false | null
  authorized: boolean
  peerCN: string | null
  host: string | undefined
}

interface ErrorBody { statusCode: number, code: string, error: string, message: string }

function errorBody (body: Buffer): ErrorBody {
  return JSON.parse(body.toString()) as ErrorBody
}

function tlsSeenOf (socket: TLSSocket, req: IncomingMessage): TlsSeen {
  const peer = socket.getPeerCertificate()
  return {
    url: req.url as string,
    servername: socket.servername,
    authorized: socket.authorized,
    peerCN: peer === null || Object.keys(peer).length === 0 ? null : String(peer.subject.CN),
    host: req.headers.host
  }
}

/**
 * An https upstream on 127.0.0.1 with the self-signed certificate: answers what it saw as JSON, and runs a `ws`
 * server that greets each connection with the SNI it came under, then echoes.
 */
async function tlsUpstream (t: Teardown, options: https.ServerOptions = {}): Promise<{ server: https.Server, seen: TlsSeen[], port: number }> {
  const pair = cert as { key: string, cert: string }
  const seen: TlsSeen[] = []
  const server = https.createServer({ key: pair.key, cert: pair.cert, ...options }, (req, res) => {
    const entry = tlsSeenOf(req.socket as TLSSocket, req)
    seen.push(entry)
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify(entry))
  })
  await listen(t, server)
  const wss = new WebSocketServer({ server })
  wss.on('connection', (ws, req) => {
    ws.send(`sni=${String((req.socket as TLSSocket).servername)}`)
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
  })
  t.teardown(() => new Promise<void>((resolve) => wss.close(() => resolve())))
  return { server, seen, port: portOf(server) }
}

/** A fresh temporary directory for unix sockets, removed at teardown. */
function socketDir (t: Teardown): string {
  const dir = mkdtempSync(join(tmpdir(), 'wsp-unix-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/**
 * An http upstream listening on the unix socket `path`, answering `name` (and the Host it got), with a `ws` server
 * that echoes `name:message`. Closed, with every connection, at teardown.
 */
async function unixUpstream (t: Teardown, path: string, name: string): Promise<{ server: http.Server, hits: () => number }> {
  let hits = 0
  const server = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    hits++
    res.setHeader('x-backend', name)
    res.end(`${name} ${req.headers.host ?? ''}`)
  })
  const sockets = new Set<Socket>()
  server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  const wss = new WebSocketServer({ server })
  wss.on('connection', (ws) => {
    ws.on('message', (data) => ws.send(`${name}:${String(data)}`))
  })
  server.listen(path)
  await once(server, 'listening')
  t.teardown(async () => {
    await new Promise<void>((resolve) => wss.close(() => resolve()))
    for (const socket of sockets) socket.destroy()
    if (server.listening) await new Promise((resolve) => server.close(resolve))
  })
  return { server, hits: () => hits }
}

// undici takes a request's TLS server name from its Host header unless the request names one, and the proxy sends
// `Host: <group name>` (nginx `$proxy_host`) to a group, or the client's Host with `preserveHost`. These tests pin
// that the TLS name is the server's (URL host or `tls.servername`) whatever Host says.
t.test('TLS upstream groups', { skip: noCert }, async (t) => {
  if (cert === null) return

  // A group (any name) of one https server trusted through `tls.ca`: GET and upgrade work, SNI is the URL's host name.
  t.test('GET and WebSocket through a group named "api" with tls.ca; SNI is the server URL host', async (t) => {
    const { seen, port } = await tlsUpstream(t)
    const { url, app } = await gateway(t, {
      upstreams: { api: { servers: [{ url: `https://localhost:${port}` }], tls: { ca: cert.cert } } },
      routes: [{ prefix: '/', upstream: 'https://api' }]
    })
    const res = await request(`${url}/items?x=1`)
    t.equal(res.status, 200, res.body.toString())
    t.equal(seen[0]?.servername, 'localhost', 'SNI is the server URL host name')
    t.equal(app.wsProxy.group('api').servers()[0].lastError, null)
    const ws = await openWs(t, wsUrl(url, '/socket'))
    t.equal((await messages(ws, 1))[0].data.toString(), 'sni=localhost')
    ws.close(1000)
    await wsClosed(ws)
  })

  // Control for the group-name bug: the same group named after the certificate works (GET), and servers() reports it.
  t.test('GET through a group with tls.ca verifies the upstream certificate', async (t) => {
    const { seen, port } = await tlsUpstream(t)
    const { url, app } = await gateway(t, {
      upstreams: { localhost: { servers: [{ url: `https://localhost:${port}` }], tls: { ca: cert.cert } } },
      routes: [{ prefix: '/', upstream: 'https://localhost' }]
    })
    const res = await request(`${url}/items?x=1`)
    t.equal(res.status, 200)
    t.equal(seen.length, 1)
    t.equal(seen[0].url, '/items?x=1', 'the request URI passes unchanged')
    t.equal(seen[0].servername, 'localhost')
    const [server] = app.wsProxy.group('localhost').servers()
    t.equal(server.url, `https://localhost:${port}`)
    t.equal(server.address, `localhost:${port}`)
    t.equal(server.requests, 1)
    t.equal(server.lastError, null)
  })

  // A WebSocket upgrade goes over a verified TLS connection and echoes both ways; the tunnel counts on its server.
  t.test('WebSocket upgrade to an https group echoes text and binary', async (t) => {
    const { port } = await tlsUpstream(t)
    const { url, app } = await gateway(t, {
      upstreams: { localhost: { servers: [{ url: `https://localhost:${port}` }], tls: { ca: cert.cert } } },
      routes: [{ prefix: '/', upstream: 'https://localhost' }]
    })
    const ws = await openWs(t, wsUrl(url, '/socket'))
    const [greeting] = await messages(ws, 1)
    t.equal(greeting.data.toString(), 'sni=localhost', 'the upstream saw SNI localhost on the upgraded connection')
    ws.send('over tls')
    ws.send(Buffer.from([0, 1, 2, 255]))
    const [text, binary] = await messages(ws, 2)
    t.equal(text.data.toString(), 'over tls')
    t.equal(text.isBinary, false)
    t.same([...binary.data], [0, 1, 2, 255])
    t.equal(binary.isBinary, true)
    const api = app.wsProxy.group('localhost')
    t.equal(api.servers()[0].liveTunnels, 1)
    ws.close(1000, 'bye')
    t.same(await wsClosed(ws), { code: 1000, reason: 'bye' })
    await waitFor(() => api.servers()[0].liveTunnels === 0, 3000, 'the tunnel to leave its server')
  })

  // Verification is on by default: without `ca` the self-signed certificate is refused before any request leaves.
  t.test('without tls.ca the certificate is refused: 502 FST_WS_PROXY_CONNECT_FAILED, for GET and upgrade', async (t) => {
    const { seen, port } = await tlsUpstream(t)
    const { url, app } = await gateway(t, {
      upstreams: { localhost: { servers: [{ url: `https://localhost:${port}` }] } },
      routes: [{ prefix: '/', upstream: 'https://localhost' }]
    })
    const res = await request(`${url}/`)
    t.equal(res.status, 502)
    const body = errorBody(res.body)
    t.equal(body.code, 'FST_WS_PROXY_CONNECT_FAILED')
    t.match(body.message, /DEPTH_ZERO_SELF_SIGNED_CERT/, 'the message says the certificate was refused')
    const refused = await unexpectedResponse(t, wsUrl(url, '/socket'))
    t.equal(refused.status, 502)
    t.equal(errorBody(refused.body).code, 'FST_WS_PROXY_CONNECT_FAILED')
    t.equal(seen.length, 0, 'no request reached the upstream')
    const [server] = app.wsProxy.group('localhost').servers()
    t.equal(server.failures, 2, 'both attempts failed')
    t.match(server.lastError, { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' })
    t.equal(server.state, 'up', 'a group of one server is never marked failed')
  })

  // rejectUnauthorized: false accepts the unverifiable certificate (GET and upgrade).
  t.test('tls.rejectUnauthorized: false accepts an unverified certificate', async (t) => {
    const { seen, port } = await tlsUpstream(t)
    const { url } = await gateway(t, {
      upstreams: { localhost: { servers: [{ url: `https://localhost:${port}` }], tls: { rejectUnauthorized: false } } },
      routes: [{ prefix: '/', upstream: 'https://localhost' }]
    })
    const res = await request(`${url}/insecure`)
    t.equal(res.status, 200)
    t.equal(seen[0].url, '/insecure')
    const ws = await openWs(t, wsUrl(url, '/'))
    t.equal((await messages(ws, 1))[0].data.toString(), 'sni=localhost')
    ws.close(1000)
    await wsClosed(ws)
  })

  // Without servername an IP URL is verified against the certificate's IP SAN and sends no SNI; a wrong name is refused.
  t.test('an IP server URL verifies against the IP SAN without SNI; a wrong tls.servername is refused', async (t) => {
    const { seen, port } = await tlsUpstream(t)
    const { url } = await gateway(t, {
      upstreams: {
        ip: { servers: [{ url: `https://127.0.0.1:${port}` }], tls: { ca: cert.cert } },
        wrong: { servers: [{ url: `https://127.0.0.1:${port}` }], tls: { ca: cert.cert, servername: 'wrong.example' } }
      },
      routes: [
        { prefix: '/ip/', upstream: 'https://ip' },
        { prefix: '/wrong/', upstream: 'https://wrong' }
      ]
    })
    const ip = await request(`${url}/ip/x`)
    t.equal(ip.status, 200, 'the IP SAN verifies')
    t.equal(seen[0].servername, false, 'and no SNI is sent for an IP address')
    const wrong = await request(`${url}/wrong/x`)
    t.equal(wrong.status, 502)
    t.equal(errorBody(wrong.body).code, 'FST_WS_PROXY_CONNECT_FAILED')
    t.match(errorBody(wrong.body).message, /ERR_TLS_CERT_ALTNAME_INVALID/)
    t.equal(seen.length, 1, 'the refused connection sent no request')
  })

  // tls.servername: an IP URL is verified against the certificate's DNS name and sends it as SNI.
  t.test('tls.servername names the certificate and the SNI for an IP server URL', async (t) => {
    const { seen, port } = await tlsUpstream(t)
    const { url } = await gateway(t, {
      upstreams: { named: { servers: [{ url: `https://127.0.0.1:${port}` }], tls: { ca: cert.cert, servername: 'localhost' } } },
      routes: [{ prefix: '/', upstream: 'https://named' }]
    })
    const res = await request(`${url}/x`)
    t.equal(res.status, 200, res.body.toString())
    t.equal(seen[0]?.servername, 'localhost', 'SNI is the configured servername')
  })

  // The same with an IP Host (preserveHost, client on 127.0.0.1): tls.servername is used, as documented.
  t.test('tls.servername is the SNI when the Host sent upstream is an IP address', async (t) => {
    const { seen, port } = await tlsUpstream(t)
    const { url } = await gateway(t, {
      upstreams: { named: { servers: [{ url: `https://127.0.0.1:${port}` }], tls: { ca: cert.cert, servername: 'localhost' } } },
      routes: [{ prefix: '/', upstream: 'https://named', preserveHost: true }]
    })
    const res = await request(`${url}/x`)
    t.equal(res.status, 200)
    t.equal(seen[0].servername, 'localhost')
    t.equal(seen[0].host, new URL(url).host, 'the client\'s Host went upstream')
  })

  // An explicit tls.servername wins over the URL's host name for a single-URL route too (documented default only).
  t.test('plugin-level tls.servername is the SNI of a single-URL route to a DNS name', async (t) => {
    const { seen, port } = await tlsUpstream(t)
    const { url } = await gateway(t, {
      tls: { rejectUnauthorized: false, servername: 'custom.example' },
      routes: [{ prefix: '/', upstream: `https://localhost:${port}` }]
    })
    const res = await request(`${url}/x`)
    t.equal(res.status, 200)
    t.equal(seen[0]?.servername, 'custom.example')
  })

  // With preserveHost the client's Host must not choose the name the upstream certificate is verified against.
  t.test('preserveHost: the client\'s Host does not become the TLS server name', async (t) => {
    const { seen, port } = await tlsUpstream(t)
    const { url } = await gateway(t, {
      upstreams: { localhost: { servers: [{ url: `https://localhost:${port}` }], tls: { ca: cert.cert } } },
      routes: [{ prefix: '/', upstream: 'https://localhost', preserveHost: true }]
    })
    const res = await request(`${url}/x`, { headers: { host: 'client.example' } })
    t.equal(res.status, 200, res.body.toString())
    t.equal(seen[0]?.servername, 'localhost')
    t.equal(seen[0]?.host, 'client.example')
  })

  // Mutual TLS: an upstream that requires a client certificate accepts the proxy's tls.cert/tls.key (GET and upgrade).
  t.test('mutual TLS: tls.cert and tls.key are presented as the client certificate', async (t) => {
    const { seen, port } = await tlsUpstream(t, { requestCert: true, rejectUnauthorized: true, ca: cert.cert })
    const { url } = await gateway(t, {
      upstreams: { localhost: { servers: [{ url: `https://localhost:${port}` }], tls: { ca: cert.cert, cert: cert.cert, key: cert.key } } },
      routes: [{ prefix: '/', upstream: 'https://localhost' }]
    })
    const res = await request(`${url}/mtls`)
    t.equal(res.status, 200)
    t.equal(seen[0].authorized, true, 'the upstream verified the client certificate')
    t.equal(seen[0].peerCN, 'localhost')
    const ws = await openWs(t, wsUrl(url, '/'))
    t.equal((await messages(ws, 1))[0].data.toString(), 'sni=localhost')
    ws.send('mtls')
    t.equal((await messages(ws, 1))[0].data.toString(), 'mtls')
    ws.close(1000)
    await wsClosed(ws)
  })

  // Mutual TLS: without a client certificate the upstream refuses the connection and the client gets a 502.
  t.test('mutual TLS: without tls.cert the upstream refuses the proxy (502, nothing reached the handler)', async (t) => {
    const { seen, port } = await tlsUpstream(t, { requestCert: true, rejectUnauthorized: true, ca: cert.cert })
    const { url } = await gateway(t, {
      upstreams: { localhost: { servers: [{ url: `https://localhost:${port}` }], tls: { ca: cert.cert } } },
      routes: [{ prefix: '/', upstream: 'https://localhost' }]
    })
    const res = await request(`${url}/mtls`)
    t.equal(res.status, 502)
    // TLS 1.3 completes the client's side of the handshake before the server's alert: connect failure or reset.
    t.match(errorBody(res.body).code, /^FST_WS_PROXY_(CONNECT_FAILED|UPSTREAM_RESET)$/)
    const refused = await unexpectedResponse(t, wsUrl(url, '/'))
    t.equal(refused.status, 502, 'the upgrade is refused too')
    t.equal(seen.length, 0)
  })

  // The plugin-level `tls` applies to a route naming an https URL (a one-server group), GET and upgrade.
  t.test('plugin-level tls applies to a single-URL https route; without it the certificate is refused', async (t) => {
    const { seen, port } = await tlsUpstream(t)
    const { url } = await gateway(t, {
      tls: { ca: cert.cert },
      routes: [{ prefix: '/', upstream: `https://localhost:${port}` }]
    })
    const res = await request(`${url}/single`)
    t.equal(res.status, 200)
    t.equal(seen[0].url, '/single')
    t.equal(seen[0].servername, 'localhost')
    const ws = await openWs(t, wsUrl(url, '/'))
    t.equal((await messages(ws, 1))[0].data.toString(), 'sni=localhost')
    ws.close(1000)
    await wsClosed(ws)

    const bare = await gateway(t, { routes: [{ prefix: '/', upstream: `https://localhost:${port}` }] })
    const refused = await request(`${bare.url}/single`)
    t.equal(refused.status, 502)
    t.equal(errorBody(refused.body).code, 'FST_WS_PROXY_CONNECT_FAILED')
    t.equal(seen.length, 1, 'the refused request never arrived')
  })

  // A group's own `tls` replaces the plugin-level one; a group without `tls` uses the plugin's.
  t.test('group-level tls overrides plugin-level tls; groups without tls inherit it', async (t) => {
    const { seen, port } = await tlsUpstream(t)
    const { url } = await gateway(t, {
      tls: { rejectUnauthorized: false },
      upstreams: {
        strict: { servers: [{ url: `https://localhost:${port}` }], tls: { rejectUnauthorized: true } },
        inherits: { servers: [{ url: `https://localhost:${port}` }] }
      },
      routes: [
        { prefix: '/strict/', upstream: 'https://strict' },
        { prefix: '/inherits/', upstream: 'https://inherits' }
      ]
    })
    const strict = await request(`${url}/strict/x`)
    t.equal(strict.status, 502, 'the group\'s own tls verifies (no ca: refused)')
    t.match(errorBody(strict.body).message, /DEPTH_ZERO_SELF_SIGNED_CERT/)
    const inherits = await request(`${url}/inherits/x`)
    t.equal(inherits.status, 200, 'the plugin\'s rejectUnauthorized: false applies')
    t.equal(seen.length, 1)
    t.equal(seen[0].url, '/inherits/x')
  })

  // A group of two https servers balances between them (round-robin) with the shared group tls.
  t.test('a group of two https servers alternates between them', async (t) => {
    const a = await tlsUpstream(t)
    const b = await tlsUpstream(t)
    const { url, app } = await gateway(t, {
      upstreams: { localhost: { servers: [{ url: `https://localhost:${a.port}` }, { url: `https://localhost:${b.port}` }], tls: { ca: cert.cert } } },
      routes: [{ prefix: '/', upstream: 'https://localhost' }]
    })
    for (let i = 0; i < 6; i++) t.equal((await request(`${url}/r${i}`)).status, 200)
    t.equal(a.seen.length, 3)
    t.equal(b.seen.length, 3)
    t.same(app.wsProxy.group('localhost').servers().map((s) => s.requests), [3, 3])
  })

  // `resolve` on an https group: the address found for `localhost` still verifies and sends SNI `localhost`.
  t.test('DNS re-resolution of an https server keeps the host name for SNI and verification', async (t) => {
    const { seen, port } = await tlsUpstream(t)
    const { url, app } = await gateway(t, {
      upstreams: { api: { servers: [{ url: `https://localhost:${port}` }], tls: { ca: cert.cert }, resolve: { interval: 60_000, family: 4 } } },
      routes: [{ prefix: '/', upstream: 'https://api' }]
    })
    const api = app.wsProxy.group('api')
    await api.resolve()
    t.same(api.servers().map((s) => [s.url, s.resolvedFrom]), [[`https://127.0.0.1:${port}`, 'localhost']])
    const res = await request(`${url}/resolved`)
    t.equal(res.status, 200, res.body.toString())
    t.equal(seen[0]?.servername, 'localhost', 'SNI is the name the address was resolved from')
  })

  // The same through a group whose name is the certificate's, with an IP Host: the resolved address verifies.
  t.test('DNS re-resolution of an https server: the resolved address is reached and verified', async (t) => {
    const { seen, port } = await tlsUpstream(t)
    const { url, app } = await gateway(t, {
      upstreams: { localhost: { servers: [{ url: `https://localhost:${port}` }], tls: { ca: cert.cert }, resolve: { interval: 60_000, family: 4 } } },
      routes: [{ prefix: '/', upstream: 'https://localhost' }]
    })
    const api = app.wsProxy.group('localhost')
    await api.resolve()
    t.same(api.servers().map((s) => [s.url, s.resolvedFrom]), [[`https://127.0.0.1:${port}`, 'localhost']])
    const res = await request(`${url}/resolved`)
    t.equal(res.status, 200)
    t.equal(seen[0].servername, 'localhost')
  })
})

t.test('unix socket upstream groups', async (t) => {
  // Two servers on unix sockets: round-robin alternates strictly, and servers() names them as unix addresses.
  t.test('a group of two unix-socket servers alternates between them', async (t) => {
    const dir = socketDir(t)
    const pathA = join(dir, 'a.sock')
    const pathB = join(dir, 'b.sock')
    const a = await unixUpstream(t, pathA, 'a')
    const b = await unixUpstream(t, pathB, 'b')
    const { url, app } = await gateway(t, {
      upstreams: { local: { servers: [{ url: `http://unix:${pathA}:` }, { url: `http://unix:${pathB}:` }] } },
      routes: [{ prefix: '/', upstream: 'http://local' }]
    })
    const order: string[] = []
    for (let i = 0; i < 8; i++) {
      const res = await request(`${url}/n${i}`)
      t.equal(res.status, 200)
      order.push(res.headers['x-backend'] as string)
    }
    for (let i = 1; i < order.length; i++) t.not(order[i], order[i - 1], `request ${i} went to the other server`)
    t.equal(a.hits(), 4)
    t.equal(b.hits(), 4)
    const servers = app.wsProxy.group('local').servers()
    t.same(servers.map((s) => [s.url, s.address, s.state, s.requests]), [
      [`http://unix:${pathA}:`, `unix:${pathA}`, 'up', 4],
      [`http://unix:${pathB}:`, `unix:${pathB}`, 'up', 4]
    ])
  })

  // WebSocket tunnels over unix-socket servers: each echoes, and the two tunnels land on different servers.
  t.test('WebSocket upgrades work over unix-socket servers of a group', async (t) => {
    const dir = socketDir(t)
    const pathA = join(dir, 'a.sock')
    const pathB = join(dir, 'b.sock')
    await unixUpstream(t, pathA, 'a')
    await unixUpstream(t, pathB, 'b')
    const { url, app } = await gateway(t, {
      upstreams: { local: { servers: [{ url: `http://unix:${pathA}:` }, { url: `http://unix:${pathB}:` }] } },
      routes: [{ prefix: '/', upstream: 'http://local' }]
    })
    const first = await openWs(t, wsUrl(url, '/ws'))
    const second = await openWs(t, wsUrl(url, '/ws'))
    first.send('one')
    second.send('two')
    const [one] = await messages(first, 1)
    const [two] = await messages(second, 1)
    t.match(one.data.toString(), /^[ab]:one$/)
    t.match(two.data.toString(), /^[ab]:two$/)
    t.not(one.data.toString()[0], two.data.toString()[0], 'the two tunnels went to different servers')
    t.same(app.wsProxy.group('local').servers().map((s) => s.liveTunnels), [1, 1])
    for (let i = 0; i < 5; i++) first.send(`m${i}`)
    t.same((await messages(first, 5)).map((m) => m.data.toString().slice(2)), ['m0', 'm1', 'm2', 'm3', 'm4'], 'in order')
    first.close(1000)
    second.close(1000)
    await Promise.all([wsClosed(first), wsClosed(second)])
    const api = app.wsProxy.group('local')
    await waitFor(() => api.servers().every((s) => s.liveTunnels === 0), 3000, 'both tunnels to leave their servers\' load')
    t.same(api.servers().map((s) => s.liveTunnels), [0, 0])
  })

  // A single-URL route to a unix socket still works next to groups (the route's own one-server group).
  t.test('a single-URL unix-socket route tunnels a WebSocket', async (t) => {
    const dir = socketDir(t)
    const path = join(dir, 's.sock')
    await unixUpstream(t, path, 's')
    const { url } = await gateway(t, { routes: [{ prefix: '/', upstream: `http://unix:${path}:` }] })
    const res = await request(`${url}/`)
    t.equal(res.body.toString(), 's localhost', 'Host is localhost for a unix socket, as nginx')
    const ws = await openWs(t, wsUrl(url, '/'))
    ws.send('hi')
    t.equal((await messages(ws, 1))[0].data.toString(), 's:hi')
    ws.close(1000)
    await wsClosed(ws)
  })
})
