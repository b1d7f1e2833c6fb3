// The gateway's `listen.tls` and `listen.http2`, in this process: HTTPS with ALPN h2 and http/1.1, HTTPS alone,
// h2c; `$scheme` is https over TLS; WebSockets (wss://) over HTTP/1.1 on the same port; the health endpoints over
// h2; a drain sends GOAWAY to HTTP/2 sessions and cuts what is left at its deadline; `--check` names the file of
// `listen.tls` that is missing, not PEM, or not the certificate's key. Real sockets, certificates made by openssl.
import t from 'tap'
import http from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'
import { once } from 'node:events'
import { copyFileSync, readFileSync } from 'node:fs'
import { basename } from 'node:path'
import type { AddressInfo } from 'node:net'
import tls, { type TLSSocket } from 'node:tls'
import type { FastifyInstance } from 'fastify'
import { WebSocket } from 'ws'
import { H2C_WARNING, checkGatewayConfig, loadGatewayConfig, type CheckedGatewayConfig } from '../src/gateway/config.js'
import { drainGateway, startGateway } from '../src/gateway/start.js'
import { demoCertificate, type DemoCertificate } from '../src/demo/certificate.js'
import { echoHandler, httpUpstream, origin, waitFor, within, wsUpstream, type Seen, type Teardown } from './helpers/servers.js'
import { configDir, inProcess } from './helpers/cli.js'
import { closePayload, maskedFrame, openH2WebSocket } from './helpers/h2-ws.js'

const { dir, write } = configDir('gateway-tls')
t.setTimeout(120_000)

/** Two certificates for 127.0.0.1, made by the same code as `--demo --tls` (removed at the end). */
async function certificates (): Promise<[DemoCertificate, DemoCertificate]> {
  const pair = await Promise.all([demoCertificate(), demoCertificate()])
  t.teardown(async () => { await Promise.all(pair.map(async (c) => { await c.remove() })) })
  return pair
}
const [first, second] = await certificates()

interface Running { app: FastifyInstance, config: CheckedGatewayConfig, port: number, drain: () => Promise<void> }

/** A gateway from a config file (as the CLI loads it) in front of an upstream serving HTTP and a WebSocket echo. */
async function gatewayWith (t: Teardown, listen: Record<string, unknown>, upstream: string, extra: Record<string, unknown> = {}): Promise<Running> {
  const file = write(`gateway-${Math.random().toString(36).slice(2)}.json`, {
    listen: { port: 0, ...listen }, logLevel: 'silent', upstream, health: {}, closeGracePeriod: 1000, ...extra
  })
  const config = await loadGatewayConfig(file)
  const app = await startGateway(config)
  let drained: Promise<void> | null = null
  const drain = async (): Promise<void> => { await (drained ??= drainGateway(app, config)) }
  t.teardown(drain)
  return { app, config, port: (app.server.address() as AddressInfo).port, drain }
}

async function echoUpstream (t: Teardown): Promise<string> {
  const { server } = await wsUpstream(t)
  server.removeAllListeners('request')
  server.on('request', echoHandler)
  return origin(server)
}

interface H2Answer { status: number, headers: http2.IncomingHttpHeaders, body: string }

/** One request on an HTTP/2 session. */
async function h2Request (session: http2.ClientHttp2Session, path: string): Promise<H2Answer> {
  const stream = session.request({ ':path': path })
  const [headers] = await within(once(stream, 'response'), 5000, `the answer to ${path}`) as [http2.IncomingHttpHeaders]
  let body = ''
  stream.setEncoding('utf8')
  stream.on('data', (chunk: string) => { body += chunk })
  await within(once(stream, 'end'), 5000, `the body of ${path}`)
  return { status: Number(headers[':status']), headers, body }
}

async function h2Session (t: Teardown, authority: string, ca?: string): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(authority, ca === undefined ? {} : { ca })
  t.teardown(() => { session.destroy() })
  await within(once(session, 'connect'), 5000, `an HTTP/2 session with ${authority}`)
  return session
}

/** An HTTPS request over HTTP/1.1: status, the protocol ALPN chose, the body. */
async function httpsGet (port: number, path: string, ca: string): Promise<{ status: number, alpn: string | false, body: string }> {
  // Node's client offers no ALPN unless asked.
  const req = https.get({ host: '127.0.0.1', port, path, ca, agent: false, ALPNProtocols: ['http/1.1'] } as https.RequestOptions)
  const [res] = await within(once(req, 'response'), 5000, `GET ${path} over HTTPS`) as [http.IncomingMessage]
  let body = ''
  res.setEncoding('utf8')
  res.on('data', (chunk: string) => { body += chunk })
  await once(res, 'end')
  return { status: res.statusCode as number, alpn: (res.socket as TLSSocket).alpnProtocol ?? false, body }
}

async function wssEcho (port: number, ca: string, text: string): Promise<string> {
  const ws = new WebSocket(`wss://127.0.0.1:${port}/chat`, { ca })
  try {
    await within(once(ws, 'open'), 5000, 'the wss:// handshake')
    ws.send(text)
    const [data] = await within(once(ws, 'message'), 5000, 'the echo') as [Buffer]
    ws.close(1000)
    await within(once(ws, 'close'), 5000, 'the close')
    return data.toString()
  } finally {
    ws.terminate()
  }
}

const tlsFiles = (c: DemoCertificate): Record<string, string> => ({ cert: c.files.cert, key: c.files.key })
const cert = readFileSync(first.files.cert, 'utf8')

t.test('TLS with http2: ALPN h2 for HTTP/2 clients, http/1.1 for the others, wss:// over HTTP/1.1, $scheme https', async (t) => {
  const upstream = await echoUpstream(t)
  const { port } = await gatewayWith(t, { tls: tlsFiles(first), http2: true }, upstream, { metrics: { path: '/metrics' } })

  const session = await h2Session(t, `https://127.0.0.1:${port}`, cert)
  t.equal(session.alpnProtocol, 'h2', 'ALPN chose h2')
  const live = await h2Request(session, '/healthz')
  t.same({ status: live.status, body: JSON.parse(live.body) }, { status: 200, body: { status: 'live' } }, 'the liveness route over h2')
  const ready = await h2Request(session, '/readyz')
  t.equal(ready.status, 200, 'the readiness route over h2')
  t.notOk('connection' in ready.headers, 'no connection-specific field on an h2 response')
  const proxied = await h2Request(session, '/api/x?y=1')
  t.equal(proxied.status, 200, 'a proxied GET over h2')
  const metrics = await h2Request(session, '/metrics')
  t.equal(metrics.status, 200, 'the metrics route over h2')
  t.match(metrics.body, /^fastify_ws_proxy_requests_total\{[^}]*\} 1$/m, 'the h2 request is counted')
  const overH2 = JSON.parse(proxied.body) as Seen
  t.equal(overH2.url, '/api/x?y=1')
  t.equal(overH2.headers['x-forwarded-proto'], 'https', 'over h2 too, $scheme is https')
  t.equal(overH2.headers['x-forwarded-host'], `127.0.0.1:${port}`, ':authority is the client\'s host')

  const h1 = await httpsGet(port, '/api/x?y=1', cert)
  t.equal(h1.alpn, 'http/1.1', 'an HTTP/1.1 client gets http/1.1 from ALPN')
  t.equal(h1.status, 200)
  const seen = JSON.parse(h1.body) as Seen
  t.equal(seen.url, '/api/x?y=1')
  t.equal(seen.headers['x-forwarded-proto'], 'https', '$scheme is https')

  t.equal(await wssEcho(port, cert, 'over TLS'), 'over TLS', 'a wss:// WebSocket on the same port echoes')

  // And a WebSocket over HTTP/2 (RFC 8441) on the session that carried the requests above.
  t.equal(session.remoteSettings.enableConnectProtocol, true, 'the gateway advertises extended CONNECT')
  const ws = await openH2WebSocket(t, session, '/chat', { ':scheme': 'https' })
  t.equal(ws.status, 200, 'the extended CONNECT is accepted')
  ws.stream.write(maskedFrame(1, Buffer.from('over h2')))
  const [echo] = await ws.reader.next(1)
  t.same({ opcode: echo.opcode, text: echo.payload.toString() }, { opcode: 1, text: 'over h2' }, 'echoed over the h2 stream')
  ws.stream.write(maskedFrame(8, closePayload(1000)))
  const close = (await ws.reader.next(2))[1]
  t.same({ opcode: close.opcode, code: close.payload.readUInt16BE(0) }, { opcode: 8, code: 1000 }, 'the upstream answered the Close')
  await new Promise((resolve) => setImmediate(resolve))
})

t.test('TLS without http2: HTTPS over HTTP/1.1 only (ALPN offers no h2), wss:// echoes', async (t) => {
  const upstream = await echoUpstream(t)
  const { port } = await gatewayWith(t, { tls: tlsFiles(first) }, upstream)
  const h1 = await httpsGet(port, '/healthz', cert)
  t.same({ status: h1.status, body: JSON.parse(h1.body) }, { status: 200, body: { status: 'live' } })
  t.equal(h1.alpn, 'http/1.1', 'ALPN: the server offers http/1.1 only')
  const proxied = await httpsGet(port, '/p', cert)
  t.equal((JSON.parse(proxied.body) as Seen).headers['x-forwarded-proto'], 'https')
  t.equal(await wssEcho(port, cert, 'h1 only'), 'h1 only')
  // An HTTP/2 client that insists on h2 finds no h2 here.
  const session = http2.connect(`https://127.0.0.1:${port}`, { ca: cert })
  t.teardown(() => { session.destroy() })
  const [err] = await within(once(session, 'error'), 5000, 'the h2 refusal') as [Error]
  t.match(err, { code: 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL' }, 'the TLS handshake fails: no application protocol')
})

t.test('h2c (http2 without tls): prior-knowledge HTTP/2 in clear text, $scheme http; a drain closes its sessions', async (t) => {
  const upstream = await echoUpstream(t)
  const { port, drain } = await gatewayWith(t, { http2: true }, upstream)
  const session = await h2Session(t, `http://127.0.0.1:${port}`)
  const live = await h2Request(session, '/healthz')
  t.equal(live.status, 200, 'the liveness route over h2c')
  const proxied = await h2Request(session, '/p')
  t.equal(proxied.status, 200, 'a proxied GET over h2c')
  t.equal((JSON.parse(proxied.body) as Seen).headers['x-forwarded-proto'], 'http', '$scheme is http')
  const goaway = once(session, 'goaway')
  const started = Date.now()
  await within(drain(), 5000, 'the drain')
  await within(goaway, 1000, 'GOAWAY')
  t.ok(Date.now() - started < 1000, 'an idle h2c session does not hold the drain')
})

t.test('a drain sends GOAWAY to HTTP/2 sessions at once and cuts what is still in flight at its deadline', async (t) => {
  let hung = 0
  let slowSeen = 0
  const upstream = await httpUpstream(t, (req, res) => {
    if (req.url === '/hang') { hung++; return }
    slowSeen++
    setTimeout(() => res.end('slow'), 300)
  })
  const { port, drain } = await gatewayWith(t, { tls: tlsFiles(first), http2: true }, origin(upstream), { closeGracePeriod: 1500 })
  const session = await h2Session(t, `https://127.0.0.1:${port}`, cert)
  t.equal((await h2Request(session, '/healthz')).status, 200)
  // An HTTP/1.1 request whose upstream never answers: it holds the drain until the deadline cuts its connection.
  const req = https.get({ host: '127.0.0.1', port, path: '/hang', ca: cert, agent: false })
  const cut = new Promise<string>((resolve) => {
    req.on('error', (err: NodeJS.ErrnoException) => resolve(String(err.code)))
    req.on('response', (res) => resolve(`a ${String(res.statusCode)} answer`))
  })
  await waitFor(() => hung === 1, 2000, 'the request to reach the upstream')

  // A stream in flight on the session when the drain begins finishes after GOAWAY.
  const inFlight = h2Request(session, '/slow')
  await waitFor(() => slowSeen === 1, 2000, 'the h2 request to reach the upstream')
  const goaway = once(session, 'goaway')
  const started = Date.now()
  const drained = drain()
  await within(goaway, 1000, 'GOAWAY on the h2 session')
  t.ok(Date.now() - started < 500, 'GOAWAY as the drain begins')
  const slow = await inFlight
  t.same({ status: slow.status, body: slow.body }, { status: 200, body: 'slow' }, 'the stream in flight finished after GOAWAY')
  t.equal(await within(cut, 5000, 'the cut'), 'ECONNRESET', 'the request in flight is cut at the deadline')
  await within(drained, 5000, 'the drain')
  const took = Date.now() - started
  t.ok(took >= 1400 && took < 4000, `the drain ended at its deadline (${took} ms)`)
})

t.test('--check validates listen.tls: files read, PEM parsed, the key matching the certificate; relative paths from the config file', async (t) => {
  const upstream = 'http://127.0.0.1:1'
  // Relative to the config file's directory, wherever the process runs.
  copyFileSync(first.files.cert, `${dir}/cert.pem`)
  copyFileSync(first.files.key, `${dir}/key.pem`)
  const ok = write('tls-ok.json', { upstream, listen: { tls: { cert: 'cert.pem', key: './key.pem', ca: 'cert.pem' }, http2: true } })
  const good = await inProcess(t, ['--check', '-c', ok])
  t.same(good, { code: 0, out: `config ok: ${ok}\n`, err: '' })
  const printed = await inProcess(t, ['--print-config', '-c', ok])
  t.same((JSON.parse(printed.out) as { listen: unknown }).listen,
    { host: '127.0.0.1', port: 8080, tls: { cert: 'cert.pem', key: './key.pem', ca: 'cert.pem' }, http2: true }, '--print-config shows the paths as written')

  const h2c = write('h2c.json', { upstream, listen: { http2: true } })
  const warned = await inProcess(t, ['--check', '-c', h2c])
  t.same(warned, { code: 0, out: `config ok: ${h2c}\n`, err: `warning: ${h2c}: ${H2C_WARNING}\n` }, 'h2c is valid, with a warning')
  t.match(H2C_WARNING, /HTTP\/1\.1 clients, browsers and most health checkers cannot connect/)

  const missing = write('tls-missing.json', { upstream, listen: { tls: { cert: 'nope.pem', key: `${dir}/gone.pem` } } })
  const noFiles = await inProcess(t, ['--check', '-c', missing])
  t.equal(noFiles.code, 1)
  t.equal(noFiles.err, `error: ${missing}: Invalid fastify-ws-proxy option listen/tls/cert: cannot read "nope.pem": ENOENT\n` +
    `  listen/tls/key: cannot read "${dir}/gone.pem": ENOENT\n`)

  const notPem = write('tls-not-pem.json', { upstream, listen: { tls: { cert: 'tls-ok.json', key: 'cert.pem', ca: basename(ok) } } })
  const garbage = await inProcess(t, ['--check', '-c', notPem])
  t.equal(garbage.code, 1)
  t.equal(garbage.err, `error: ${notPem}: Invalid fastify-ws-proxy option listen/tls/ca: "tls-ok.json" does not hold PEM certificates\n` +
    '  listen/tls/cert: "tls-ok.json" does not hold a PEM certificate\n' +
    '  listen/tls/key: "cert.pem" does not hold an unencrypted PEM private key\n')

  const mismatched = write('tls-mismatch.json', { upstream, listen: { tls: { cert: first.files.cert, key: second.files.key } } })
  const wrongKey = await inProcess(t, ['--check', '-c', mismatched])
  t.equal(wrongKey.code, 1)
  t.equal(wrongKey.err, `error: ${mismatched}: Invalid fastify-ws-proxy option listen/tls/key: ` +
    `"${second.files.key}" is not the private key of the certificate in listen/tls/cert ("${first.files.cert}")\n`)

  const schema = write('tls-schema.json', { upstream, listen: { tls: { cert: 'cert.pem' }, http2: 'yes' } })
  const invalid = await inProcess(t, ['--check', '-c', schema])
  t.equal(invalid.code, 1)
  t.match(invalid.err, /listen\/http2: expected boolean, got "yes"/)
  t.match(invalid.err, /listen\/tls\/key: .*required/)
})

t.test('a config with listen.tls whose files were not loaded is never served in clear text', async (t) => {
  const config = checkGatewayConfig({ upstream: 'http://127.0.0.1:1', listen: { port: 0, tls: tlsFiles(first) }, logLevel: 'silent' })
  await t.rejects(startGateway(config), { message: 'listen.tls: the certificate files were not loaded (loadTls)' })
})

t.test('--tls goes with --demo only', async (t) => {
  const { code, err } = await inProcess(t, ['--tls', '-c', 'x.json'])
  t.equal(code, 2)
  t.equal(err, 'error: --tls goes with --demo; a config serves HTTPS with "listen": { "tls": ... } (see --help)\n')
})

t.test('the server limits hold for HTTP/1.1 over TLS, with and without http2: 431 past maxHeaderSize, 408 past headersTimeout', async (t) => {
  const upstream = await echoUpstream(t)
  for (const http2 of [true, false]) {
    const { port } = await gatewayWith(t, { tls: tlsFiles(first), http2 }, upstream, { server: { maxHeaderSize: 2048, headersTimeout: 500 } })
    const exchange = async (head: string, what: string): Promise<string> => {
      const socket = tls.connect({ host: '127.0.0.1', port, ca: cert, ALPNProtocols: ['http/1.1'] })
      t.teardown(() => { socket.destroy() })
      await within(once(socket, 'secureConnect'), 5000, 'a TLS handshake')
      let received = ''
      socket.setEncoding('latin1')
      socket.on('data', (chunk: string) => { received += chunk })
      socket.write(head)
      await within(once(socket, 'close'), 5000, what)
      return received
    }
    const big = await exchange(`GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'b'.repeat(3000)}\r\n\r\n`, 'the 431')
    t.match(big, /^HTTP\/1\.1 431 /, `http2 ${String(http2)}: a head past maxHeaderSize is refused`)
    const started = Date.now()
    const slow = await exchange('GET / HTTP/1.1\r\nHost: a\r\n', 'the 408')
    t.match(slow, /^HTTP\/1\.1 408 /, `http2 ${String(http2)}: an unfinished head is cut after headersTimeout`)
    t.ok(Date.now() - started < 2500, `within headersTimeout and its checking interval (${Date.now() - started} ms)`)
  }
})

t.test('a plain HTTP gateway\'s drain still cuts a request in flight at its deadline (closeAllConnections)', async (t) => {
  let hung = 0
  const upstream = await httpUpstream(t, () => { hung++ })
  const { port, drain } = await gatewayWith(t, {}, origin(upstream), { closeGracePeriod: 800 })
  const req = http.get({ host: '127.0.0.1', port, path: '/hang', agent: false })
  const cut = new Promise<string>((resolve) => { req.on('error', (err: NodeJS.ErrnoException) => resolve(String(err.code))) })
  await waitFor(() => hung === 1, 2000, 'the request to reach the upstream')
  const started = Date.now()
  await within(drain(), 5000, 'the drain')
  t.equal(await within(cut, 1000, 'the cut'), 'ECONNRESET')
  t.ok(Date.now() - started >= 700, 'at the deadline')
})

t.test('over TLS, a connection that made its handshake and sent no request (a preconnect) does not hold the drain', async (t) => {
  const upstream = await echoUpstream(t)
  for (const http2 of [false, true]) {
    const { port, drain } = await gatewayWith(t, { tls: tlsFiles(first), http2 }, upstream, { closeGracePeriod: 5000 })
    const socket = tls.connect({ host: '127.0.0.1', port, ca: cert, ALPNProtocols: ['http/1.1'] })
    t.teardown(() => { socket.destroy() })
    await within(once(socket, 'secureConnect'), 5000, 'a TLS handshake')
    const closed = once(socket, 'close')
    const started = Date.now()
    await within(drain(), 4000, 'the drain')
    await within(closed, 1000, 'the preconnect to close')
    const took = Date.now() - started
    t.ok(took < 2500, `http2 ${String(http2)}: the drain ended in ${took} ms, long before the 5000 ms grace period`)
  }
})
