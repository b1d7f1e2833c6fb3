// The plugin's limits, as a client and an upstream see them on the wire:
// - tunnel caps (`limits.tunnels`, a route's `limits.tunnels`, `limits.tunnelsPerClient`): a slot is taken when an
//   upgrade is dispatched (handshakes in flight count) and given back when the handshake fails or the tunnel
//   closes; beyond a cap the upgrade gets a coded 503 with Retry-After and the upstream is never contacted;
// - `limits.body` (nginx client_max_body_size): 413 by Content-Length before anything goes upstream, or counted
//   as a chunked body streams, when the upstream request is aborted and the client still reads a complete 413;
// - `limits.responseHead`: a longer upstream head is a 502;
// - the refusals as `wsProxy.metrics()` counts them.
// Limits protect the gateway and its upstreams, so each test checks what did NOT reach the upstream as well.
import t, { type Test } from 'tap'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { WebSocket } from 'ws'
import { gateway, httpUpstream, origin, waitFor, wsUpstream } from './helpers/servers.js'
import { request } from './helpers/clients.js'
import { errorBody, openRequest, readBody, scriptedUpstream, type ErrorBody } from './helpers/http-faults.js'
import {
  headUpstream, logCapture, messages, openWs, parseHead, pattern, rawClient, switching, unexpectedResponse, upgradeHead,
  within, wsClosed, wsHandshakeHead, wsUrl
} from './helpers/ws.js'

const tooMany = (message: string): ErrorBody => ({ statusCode: 503, code: 'FST_WS_PROXY_TOO_MANY_TUNNELS', error: 'Service Unavailable', message })
const tooLarge = (limit: number): ErrorBody => ({ statusCode: 413, code: 'FST_WS_PROXY_BODY_TOO_LARGE', error: 'Payload Too Large', message: `Request body larger than ${limit} bytes` })

/** A WebSocket echo upstream that counts the TCP connections it accepts. */
async function countedWsUpstream (t: Test) {
  const { server, wss } = await wsUpstream(t)
  let connections = 0
  server.on('connection', () => { connections++ })
  return { server, wss, connections: () => connections }
}

/** A raw WebSocket handshake on its own connection; resolves with the answer once the gateway has closed it. */
async function rawUpgrade (t: Test, port: number, path: string, extra: string[] = []) {
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead(path, extra))
  await client.close()
  const text = client.text
  const head = parseHead(text)
  return { head, body: Buffer.from(text.slice(text.indexOf('\r\n\r\n') + 4), 'latin1'), ended: client.ended }
}

/** An echo round trip: the tunnel is open and carries bytes. */
async function echoes (t: Test, ws: WebSocket, text: string): Promise<void> {
  ws.send(text)
  const [message] = await messages(ws, 1)
  t.equal(message.data.toString(), text, `the tunnel echoes ${JSON.stringify(text)}`)
}

t.test('limits.tunnels: beyond the cap an upgrade gets 503 + Retry-After and never reaches the upstream', async (t) => {
  const upstream = await countedWsUpstream(t)
  const logs = logCapture()
  const { app, url, port } = await gateway(t, { upstream: origin(upstream.server), limits: { tunnels: 2 } }, { logger: { level: 'warn', stream: logs.stream } })
  const first = await openWs(t, wsUrl(url, '/one'))
  const second = await openWs(t, wsUrl(url, '/two'))
  await echoes(t, first, 'first')
  await echoes(t, second, 'second')
  t.equal(app.wsProxy.tunnels, 2)

  const refused = await rawUpgrade(t, port, '/three')
  t.equal(refused.head.statusLine, 'HTTP/1.1 503 Service Unavailable')
  t.equal(refused.head.headers['retry-after'], '5', 'the default retryAfter')
  t.equal(refused.head.headers['content-type'], 'application/json; charset=utf-8')
  t.equal(refused.head.headers.connection, 'close')
  t.equal(refused.head.headers.upgrade, undefined)
  t.same(errorBody(refused.body), tooMany('Too many tunnels: the limits.tunnels limit of 2 is reached'))
  t.ok(refused.ended, 'the gateway ended the refused connection')
  t.equal(upstream.connections(), 2, 'the upstream accepted exactly the two tunnels')
  t.equal(upstream.wss.clients.size, 2)
  t.equal(app.wsProxy.upstreamConnections, 0, 'no pooled connection was opened for the refusal')

  const warned = logs.records.filter((r) => r.msg === 'upgrade refused: tunnel limit reached')
  t.equal(warned.length, 1)
  t.equal(warned[0].level, 40, 'at warn')
  t.equal(warned[0].err?.code, 'FST_WS_PROXY_TOO_MANY_TUNNELS')
  t.equal(warned[0].client, '127.0.0.1')

  first.close(1000)
  await wsClosed(first)
  await waitFor(() => app.wsProxy.tunnels === 1, 2000, 'the first tunnel to close')
  const third = await openWs(t, wsUrl(url, '/three'))
  await echoes(t, third, 'third')
  await echoes(t, second, 'second still')
  t.equal(upstream.connections(), 3, 'the freed slot let exactly one more through')

  // Full again: the next one is refused as before.
  const again = await rawUpgrade(t, port, '/four')
  t.equal(again.head.status, 503)
  t.equal(upstream.connections(), 3)
})

t.test('a route\'s limits.tunnels caps that route only; retryAfter sets Retry-After', async (t) => {
  const upstream = await countedWsUpstream(t)
  const { app, url } = await gateway(t, {
    routes: [
      { prefix: '/a/', upstream: origin(upstream.server), limits: { tunnels: 1 } },
      { prefix: '/b/', upstream: origin(upstream.server) }
    ],
    limits: { retryAfter: 7 }
  })
  const a = await openWs(t, wsUrl(url, '/a/first'))
  await echoes(t, a, 'on a')

  const refused = await unexpectedResponse(t, wsUrl(url, '/a/second'))
  t.equal(refused.status, 503)
  t.equal(refused.headers['retry-after'], '7')
  t.same(errorBody(refused.body), tooMany('Too many tunnels: the route limits.tunnels limit of 1 is reached'))
  t.equal(upstream.connections(), 1, 'the refused upgrade never reached the upstream')

  const b1 = await openWs(t, wsUrl(url, '/b/first'))
  const b2 = await openWs(t, wsUrl(url, '/b/second'))
  await echoes(t, b1, 'on b')
  await echoes(t, b2, 'on b again')
  t.equal(app.wsProxy.tunnels, 3, 'route b has no cap of its own')
  t.equal(upstream.connections(), 3)

  // Plain requests on the capped route are not tunnels: they still pass.
  const plain = await request(`${url}/a/plain`)
  t.equal(plain.status, 200, 'a plain GET takes no slot')
})

t.test('a route\'s limits.tunnels covers its upgrades sent to upgradeUpstream; refusals count on the upgrade side', async (t) => {
  const http = await httpUpstream(t)
  const upstream = await countedWsUpstream(t)
  const { app, url, port } = await gateway(t, {
    routes: [{ prefix: '/live/', upstream: origin(http), upgradeUpstream: origin(upstream.server), limits: { tunnels: 1 } }]
  })
  const live = await openWs(t, wsUrl(url, '/live/feed'))
  await echoes(t, live, 'live')
  const refused = await rawUpgrade(t, port, '/live/second')
  t.equal(refused.head.status, 503)
  t.same(errorBody(refused.body), tooMany('Too many tunnels: the route limits.tunnels limit of 1 is reached'))
  t.equal(upstream.connections(), 1)
  t.equal((await request(`${url}/live/plain`)).status, 200, 'plain requests go on')

  const [plain, upgrades] = app.wsProxy.metrics().routes
  t.equal(plain.upstream, origin(http))
  t.same(plain.tunnels.rejected, { global: 0, route: 0, client: 0 })
  t.same(plain.requests, { '1xx': 0, '2xx': 1, '3xx': 0, '4xx': 0, '5xx': 0 })
  t.equal(upgrades.upstream, origin(upstream.server))
  t.same(upgrades.tunnels.rejected, { global: 0, route: 1, client: 0 })
  t.same(upgrades.requests, { '1xx': 1, '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 1 })
})

t.test('limits.tunnelsPerClient counts by request.ip (X-Forwarded-For with trustProxy)', async (t) => {
  const upstream = await countedWsUpstream(t)
  const { app, url, port } = await gateway(t, { upstream: origin(upstream.server), limits: { tunnelsPerClient: 1 } }, { trustProxy: true })
  const one = await openWs(t, wsUrl(url, '/one'), undefined, { headers: { 'X-Forwarded-For': '10.0.0.1' } })
  await echoes(t, one, 'from 10.0.0.1')

  const refused = await rawUpgrade(t, port, '/one-again', ['X-Forwarded-For: 10.0.0.1'])
  t.equal(refused.head.status, 503)
  t.equal(refused.head.headers['retry-after'], '5')
  t.same(errorBody(refused.body), tooMany('Too many tunnels: the limits.tunnelsPerClient limit of 1 is reached'))
  t.equal(upstream.connections(), 1)

  const two = await openWs(t, wsUrl(url, '/two'), undefined, { headers: { 'X-Forwarded-For': '10.0.0.2' } })
  await echoes(t, two, 'from 10.0.0.2')
  t.equal(app.wsProxy.tunnels, 2)
  t.equal(upstream.connections(), 2)

  // 10.0.0.1 gets its slot back when its tunnel closes.
  one.close(1000)
  await wsClosed(one)
  await waitFor(() => app.wsProxy.tunnels === 1, 2000, 'the tunnel of 10.0.0.1 to close')
  const back = await openWs(t, wsUrl(url, '/one-back'), undefined, { headers: { 'X-Forwarded-For': '10.0.0.1' } })
  await echoes(t, back, 'from 10.0.0.1 again')
  t.equal(upstream.connections(), 3)
})

t.test('a handshake the upstream refuses gives its slot back: five refusals in a row are all the upstream\'s 403', async (t) => {
  let seen = 0
  const upstream = await httpUpstream(t, (req: IncomingMessage, res: ServerResponse) => {
    seen++
    // No 'upgrade' listener: Node hands the upgrade request to this handler, which refuses it.
    res.writeHead(403, { 'Content-Type': 'text/plain', 'Content-Length': 9 })
    res.end('forbidden')
  })
  const { app, port } = await gateway(t, { upstream: origin(upstream), limits: { tunnels: 1 } })
  for (let i = 0; i < 5; i++) {
    const answer = await rawUpgrade(t, port, `/refused/${i}`)
    t.equal(answer.head.statusLine, 'HTTP/1.1 403 Forbidden', `refusal ${i + 1} is the upstream's`)
    t.equal(answer.body.toString(), 'forbidden')
    t.equal(answer.head.headers['retry-after'], undefined)
  }
  t.equal(seen, 5, 'every handshake reached the upstream')
  t.equal(app.wsProxy.tunnels, 0)
  const route = app.wsProxy.metrics().routes[0]
  t.same(route.tunnels.rejected, { global: 0, route: 0, client: 0 })
  t.equal(route.requests['4xx'], 5)
})

t.test('handshakes in flight hold a slot; a client leaving mid-handshake gives it back', async (t) => {
  const upstream = await headUpstream(t, () => {})
  const { app, port } = await gateway(t, { upstream: origin(upstream), limits: { tunnels: 1 } })

  const first = await rawClient(t, port)
  first.socket.write(upgradeHead('/pending'))
  await waitFor(() => upstream.accepted.length === 1 && upstream.accepted[0].head !== '', 2000, 'the first handshake to reach the upstream')

  const refused = await rawClient(t, port)
  refused.socket.write(upgradeHead('/while-pending'))
  await refused.close()
  t.equal(parseHead(refused.text).status, 503, 'the pending handshake holds the only slot')
  t.equal(upstream.accepted.length, 1)

  // The upstream accepts the first: the slot passes to its tunnel.
  upstream.accepted[0].socket.write(switching())
  await first.contains('\r\n\r\n')
  t.match(first.text, /^HTTP\/1\.1 101 Switching Protocols\r\n/)
  await waitFor(() => app.wsProxy.tunnels === 1, 2000, 'the tunnel to open')
  const refusedToo = await rawClient(t, port)
  refusedToo.socket.write(upgradeHead('/while-tunnel'))
  await refusedToo.close()
  t.equal(parseHead(refusedToo.text).status, 503, 'the tunnel holds the slot')

  first.socket.destroy()
  await waitFor(() => app.wsProxy.tunnels === 0, 2000, 'the tunnel to close')

  // A client that gives up while the upstream still decides: its slot comes back.
  const quitter = await rawClient(t, port)
  quitter.socket.write(upgradeHead('/quitter'))
  await waitFor(() => upstream.accepted.length === 2 && upstream.accepted[1].head !== '', 2000, 'the quitter\'s handshake to reach the upstream')
  quitter.socket.destroy()
  await upstream.accepted[1].received.close(2000)
  t.pass('the gateway dropped the abandoned upstream handshake')

  const last = await rawClient(t, port)
  last.socket.write(upgradeHead('/last'))
  await waitFor(() => upstream.accepted.length === 3 && upstream.accepted[2].head !== '', 2000, 'the last handshake to reach the upstream')
  upstream.accepted[2].socket.write(switching())
  await last.contains('\r\n\r\n')
  t.match(last.text, /^HTTP\/1\.1 101 /)
  t.same(app.wsProxy.metrics().routes[0].tunnels.rejected, { global: 2, route: 0, client: 0 })
})

/** An upstream that answers every request with what it received, and records each request as it went. */
async function bodyEchoUpstream (t: Test) {
  const requests: Array<{ url: string, bytes: number, complete: boolean, closed: boolean, te: string | undefined }> = []
  const server = await httpUpstream(t, (req, res) => {
    const seen = { url: req.url as string, bytes: 0, complete: false, closed: false, te: req.headers['transfer-encoding'] }
    requests.push(seen)
    const chunks: Buffer[] = []
    req.on('error', () => {})
    req.socket.on('close', () => { seen.closed = true })
    req.on('data', (chunk: Buffer) => {
      seen.bytes += chunk.length
      chunks.push(chunk)
    })
    req.on('end', () => {
      seen.complete = true
      res.end(Buffer.concat(chunks))
    })
  })
  return { server, requests }
}

t.test('limits.body by Content-Length: 413 before anything goes upstream, connection closed', async (t) => {
  const upstream = await bodyEchoUpstream(t)
  let connections = 0
  upstream.server.on('connection', () => { connections++ })
  const { app, url } = await gateway(t, { upstream: origin(upstream.server), limits: { body: 1024 } })
  for (const size of [1025, 64 * 1024]) {
    const res = await request(`${url}/upload`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: pattern(size) })
    t.equal(res.status, 413, `${size} bytes`)
    t.equal(res.headers.connection, 'close')
    t.equal(res.headers['content-type'], 'application/json; charset=utf-8')
    t.same(errorBody(res.body), tooLarge(1024))
  }
  t.equal(connections, 0, 'the upstream was never contacted')
  t.equal(upstream.requests.length, 0)
  t.equal(app.wsProxy.upstreamConnections, 0)
  const ok = await request(`${url}/upload`, { method: 'POST', body: pattern(1024) })
  t.equal(ok.status, 200, 'the gateway still serves')
  t.same(ok.body, pattern(1024))
})

t.test('limits.body on a chunked body: counted as it streams; 413 read whole while the client still sends', async (t) => {
  const upstream = await bodyEchoUpstream(t)
  const { app, url } = await gateway(t, { upstream: origin(upstream.server), limits: { body: 1000 } })
  const { req, response } = openRequest(t, `${url}/stream`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' } })
  // The gateway closes the connection once the 413 is out: a write after that may fail (EPIPE), which is fine.
  req.on('error', () => {})
  req.write(pattern(400))
  await waitFor(() => upstream.requests.length === 1 && upstream.requests[0].bytes === 400, 2000, 'the first 400 bytes upstream')
  t.equal(upstream.requests[0].te, 'chunked', 'relayed as it streams')
  req.write(pattern(400, 1))
  await waitFor(() => upstream.requests[0].bytes === 800, 2000, '800 bytes upstream')
  req.write(pattern(400, 2))

  const res = await within(response, 3000, 'the 413')
  t.notOk(req.writableEnded, 'the answer came while the client had not finished its body')
  t.equal(res.statusCode, 413)
  t.equal(res.headers.connection, 'close')
  // The client keeps sending while it reads the answer.
  const outcome = readBody(res)
  for (let i = 0; i < 4; i++) req.write(pattern(400, 3 + i))
  const { body, complete, error } = await outcome
  t.ok(complete, 'the 413 arrived complete')
  t.equal(error, null, 'no reset cut the answer')
  t.same(errorBody(body), tooLarge(1000))
  req.end()

  await waitFor(() => upstream.requests[0].closed, 2000, 'the upstream request to be aborted')
  t.notOk(upstream.requests[0].complete, 'the upstream never got a complete body')
  // 800 bytes were seen before the limit was crossed; the chunk that crossed it is not relayed (should it arrive
  // split, only the part within the limit can be).
  const relayed = upstream.requests[0].bytes
  t.ok(relayed >= 800 && relayed <= 1000, `nothing past the limit went upstream (${relayed} bytes)`)
  t.equal(upstream.requests.length, 1)
  t.equal(app.wsProxy.metrics().routes[0].requests['4xx'], 1)
})

t.test('limits.body on a large chunked upload sent at full speed: the client still reads the whole 413', async (t) => {
  const upstream = await bodyEchoUpstream(t)
  const { url } = await gateway(t, { upstream: origin(upstream.server), limits: { body: 1000 } })
  const { req, response } = openRequest(t, `${url}/flood`, { method: 'POST' })
  req.on('error', () => {})
  const state = { answered: false }
  // What the writer waits for when the socket is full: 'drain', or the answer, or the close that follows it.
  let wake: (() => void) | null = null
  const poke = (): void => { wake?.() }
  req.on('drain', poke)
  req.on('close', poke)
  response.then(() => { state.answered = true; poke() }, () => { state.answered = true; poke() })
  // Up to 4 MiB in 16 KiB chunks, honouring backpressure, until the answer arrives.
  const chunk = pattern(16 * 1024)
  let sent = 0
  while (!state.answered && sent < 4 * 1024 * 1024 && !req.destroyed) {
    sent += chunk.length
    if (!req.write(chunk)) await within(new Promise<void>((resolve) => { wake = resolve }), 3000, 'drain')
  }
  const res = await within(response, 3000, 'the 413')
  t.equal(res.statusCode, 413)
  const { body, complete, error } = await readBody(res)
  t.ok(complete, `the 413 arrived complete (${sent} bytes written)`)
  t.equal(error, null)
  t.same(errorBody(body), tooLarge(1000))
  req.end()
  await waitFor(() => upstream.requests.length === 0 || upstream.requests[0].closed, 2000, 'the upstream request to be aborted')
  t.ok(upstream.requests.every((r) => !r.complete && r.bytes <= 1000), 'the upstream never got more than the limit')
})

t.test('bodies up to limits.body pass byte for byte; a route\'s limits.body overrides the plugin\'s', async (t) => {
  const upstream = await bodyEchoUpstream(t)
  const { url } = await gateway(t, {
    routes: [
      { prefix: '/big/', upstream: origin(upstream.server), limits: { body: 4096 } },
      { prefix: '/tiny/', upstream: origin(upstream.server), limits: { body: 10 } },
      { prefix: '/', upstream: origin(upstream.server) }
    ],
    limits: { body: 1024 }
  })

  /** Sends `body` chunked in three writes. */
  async function chunked (path: string, body: Buffer) {
    const { req, response } = openRequest(t, `${url}${path}`, { method: 'PUT' })
    req.write(body.subarray(0, 100))
    req.write(body.subarray(100, 700))
    req.end(body.subarray(700))
    const res = await within(response, 3000, `the answer to ${path}`)
    const outcome = await readBody(res)
    return { status: res.statusCode as number, body: outcome.body }
  }

  for (const size of [1, 1023, 1024]) {
    const body = pattern(size, size)
    const res = await request(`${url}/exact`, { method: 'POST', body })
    t.equal(res.status, 200, `${size} bytes with Content-Length pass`)
    t.ok(res.body.equals(body), `${size} bytes arrive byte for byte`)
  }
  const exact = pattern(1024, 7)
  const viaChunks = await chunked('/exact-chunked', exact)
  t.equal(viaChunks.status, 200, 'exactly the limit, chunked, passes')
  t.ok(viaChunks.body.equals(exact))

  const large = pattern(3000, 3)
  t.equal((await request(`${url}/plain`, { method: 'POST', body: large })).status, 413, 'the plugin limit applies elsewhere')
  const big = await request(`${url}/big/upload`, { method: 'POST', body: large })
  t.equal(big.status, 200, 'the route\'s own limit is larger')
  t.ok(big.body.equals(large))
  const bigChunked = await chunked('/big/chunked', large)
  t.equal(bigChunked.status, 200)
  t.ok(bigChunked.body.equals(large))
  const bigRefused = await request(`${url}/big/over`, { method: 'POST', body: pattern(4097) })
  t.equal(bigRefused.status, 413)
  t.same(errorBody(bigRefused.body), tooLarge(4096))
  const bigChunkedRefused = await chunked('/big/chunked-over', pattern(4097))
  t.equal(bigChunkedRefused.status, 413)
  t.same(errorBody(bigChunkedRefused.body), tooLarge(4096))

  const tiny = await request(`${url}/tiny/x`, { method: 'POST', body: 'eleven byte' })
  t.equal(tiny.status, 413, 'a route may lower the limit too')
  t.same(errorBody(tiny.body), tooLarge(10))
  t.equal((await request(`${url}/tiny/x`, { method: 'POST', body: 'ten bytes!' })).status, 200)

  t.notOk(upstream.requests.some((r) => r.url === '/plain' || r.url === '/big/over'), 'refused by Content-Length: never upstream')
  t.same(upstream.requests.filter((r) => r.url === '/tiny/x').map((r) => r.bytes), [10], 'only the body within the route\'s limit went up')
})

t.test('limits.responseHead: a longer upstream head is a 502 FST_WS_PROXY_BAD_RESPONSE; a shorter one passes', async (t) => {
  const bigHeader = 'a'.repeat(4096)
  const upstream = await scriptedUpstream(t, ({ socket, head }) => {
    const header = head.startsWith('GET /small') || head.includes(' /roomy/small') ? 'a'.repeat(512) : bigHeader
    socket.write(`HTTP/1.1 200 OK\r\nX-Header: ${header}\r\nContent-Length: 2\r\n\r\nok`)
  })
  const { app, url } = await gateway(t, {
    routes: [
      { prefix: '/roomy/', upstream: origin(upstream), limits: { responseHead: 8192 } },
      { prefix: '/', upstream: origin(upstream) }
    ],
    limits: { responseHead: 1024 }
  })
  const big = await request(`${url}/big`)
  t.equal(big.status, 502)
  t.equal(big.headers['x-header'], undefined, 'nothing of the head leaks')
  t.same(errorBody(big.body), {
    statusCode: 502, code: 'FST_WS_PROXY_BAD_RESPONSE', error: 'Bad Gateway', message: `Upstream ${origin(upstream)} sent an invalid response: Headers Overflow Error`
  })
  const small = await request(`${url}/small`)
  t.equal(small.status, 200)
  t.equal(small.headers['x-header'], 'a'.repeat(512))
  t.equal(small.body.toString(), 'ok')

  const roomy = await request(`${url}/roomy/big`)
  t.equal(roomy.status, 200, 'the route\'s own limit is larger')
  t.equal(roomy.headers['x-header'], bigHeader)
  t.equal(roomy.body.toString(), 'ok')

  const [roomyStats, limited] = app.wsProxy.metrics().routes
  t.equal(limited.upstreamErrors['bad-response'], 1)
  t.same(limited.requests, { '1xx': 0, '2xx': 1, '3xx': 0, '4xx': 0, '5xx': 1 })
  t.equal(roomyStats.requests['2xx'], 1)
})

t.test('limits.responseHead applies to a 101 too, and the failed handshake gives its tunnel slot back', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => {
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: Upgrade\r\nX-Header: ${'a'.repeat(4096)}\r\n\r\n`)
  })
  const { app, port } = await gateway(t, { upstream: origin(upstream), limits: { responseHead: 1024, tunnels: 1 } })
  for (let i = 0; i < 3; i++) {
    const client = await rawClient(t, port)
    client.socket.write(upgradeHead(`/upgrade/${i}`))
    await client.close()
    const head = parseHead(client.text)
    t.equal(head.status, 502, `handshake ${i + 1}: 502, not 503`)
    t.equal(JSON.parse(client.text.slice(client.text.indexOf('\r\n\r\n') + 4)).code, 'FST_WS_PROXY_BAD_RESPONSE')
  }
  t.equal(upstream.accepted.length, 3)
  t.equal(app.wsProxy.tunnels, 0)
})

t.test('metrics() counts each refusal by the cap that made it, and refusals by status class', async (t) => {
  const upstream = await countedWsUpstream(t)
  const { app, url, port } = await gateway(t, {
    routes: [
      { prefix: '/a/', upstream: origin(upstream.server), limits: { tunnels: 1 } },
      { prefix: '/b/', upstream: origin(upstream.server) }
    ],
    limits: { tunnels: 3, tunnelsPerClient: 2, body: 10 }
  }, { trustProxy: true })
  const from = (ip: string) => ({ headers: { 'X-Forwarded-For': ip } })
  const refusedFrom = async (path: string, ip: string) => (await rawUpgrade(t, port, path, [`X-Forwarded-For: ${ip}`])).head.status

  await openWs(t, wsUrl(url, '/a/1'), undefined, from('10.0.0.1'))
  t.equal(await refusedFrom('/a/2', '10.0.0.2'), 503, 'route a is full')
  await openWs(t, wsUrl(url, '/b/1'), undefined, from('10.0.0.1'))
  t.equal(await refusedFrom('/b/2', '10.0.0.1'), 503, '10.0.0.1 has its two')
  await openWs(t, wsUrl(url, '/b/3'), undefined, from('10.0.0.3'))
  t.equal(await refusedFrom('/b/4', '10.0.0.4'), 503, 'three in all')
  t.equal(await refusedFrom('/a/5', '10.0.0.5'), 503, 'the global cap is checked first')
  t.equal(upstream.connections(), 3)

  t.equal((await request(`${url}/b/post`, { method: 'POST', body: 'more than ten bytes' })).status, 413)
  const { req, response } = openRequest(t, `${url}/a/post`, { method: 'POST' })
  req.on('error', () => {})
  req.write('twelve bytes')
  const res = await within(response, 3000, 'the chunked 413')
  t.equal(res.statusCode, 413)
  await readBody(res)
  req.end()

  const [a, b] = app.wsProxy.metrics().routes
  t.equal(a.route, '/a/')
  t.same(a.tunnels.rejected, { global: 1, route: 1, client: 0 })
  t.same(a.requests, { '1xx': 1, '2xx': 0, '3xx': 0, '4xx': 1, '5xx': 2 })
  t.equal(a.tunnels.opened, 1)
  t.equal(a.tunnels.live, 1)
  t.equal(b.route, '/b/')
  t.same(b.tunnels.rejected, { global: 1, route: 0, client: 1 })
  t.same(b.requests, { '1xx': 2, '2xx': 0, '3xx': 0, '4xx': 1, '5xx': 2 })
  t.equal(b.tunnels.opened, 2)
  t.equal(b.tunnels.live, 2)
  for (const route of [a, b]) {
    t.same(Object.values(route.upstreamErrors).reduce((sum, n) => sum + n, 0), 0, `${route.route}: refusals are not upstream errors`)
  }
})
