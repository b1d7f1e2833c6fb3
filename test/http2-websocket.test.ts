import t from 'tap'
import type { IncomingMessage } from 'node:http'
import { constants as h2 } from 'node:http2'
import type { WebSocket } from 'ws'
import type { TunnelCloseEvent, TunnelOpenEvent } from '../src/telemetry/events.js'
import { h2Gateway, h2Session } from './helpers/h2.js'
import { bodyOf, closePayload, maskedFrame, openH2WebSocket } from './helpers/h2-ws.js'
import { httpUpstream, logCapture, origin, waitFor, wsUpstream } from './helpers/servers.js'
import { acceptFor, headUpstream, parseHead, pattern, within } from './helpers/ws.js'

// WebSockets over HTTP/2 (RFC 8441): an extended CONNECT with `:protocol: websocket` on a Fastify `http2: true`
// server goes through routing and hooks as an HTTP/1.1 handshake does, becomes an HTTP/1.1 handshake upstream with
// the proxy's own key, and once the upstream answers 101 the client's stream (200) and the upstream socket are
// tunnelled with the HTTP/1.1 tunnel's frame tracking, limits, events and shutdown.

const TEXT = 0x1
const BINARY = 0x2
const CONTINUATION = 0x0
const CLOSE = 0x8
const PING = 0x9
const PONG = 0xa

const textOf = (payload: Buffer): string => payload.toString()
const codeOf = (payload: Buffer): number => payload.readUInt16BE(0)

/** A `ws` echo upstream that chooses `chat` when offered and remembers each handshake's head. */
async function echoUpstream (t: Parameters<typeof wsUpstream>[0], options: Parameters<typeof wsUpstream>[1] = {}) {
  const handshakes: IncomingMessage[] = []
  const sockets: WebSocket[] = []
  const up = await wsUpstream(t, { handleProtocols: (offered: Set<string>) => offered.has('chat') ? 'chat' : false, ...options })
  up.wss.on('connection', (ws, req) => {
    handshakes.push(req)
    sockets.push(ws)
  })
  return { ...up, handshakes, sockets }
}

t.test('the server advertises ENABLE_CONNECT_PROTOCOL; text, binary, fragmented and 16 MiB messages echo', async (t) => {
  const up = await echoUpstream(t)
  const logs = logCapture()
  const gw = await h2Gateway(t, { routes: [{ prefix: '/ws/', upstream: origin(up.server) }] }, { fastify: { logger: { level: 'info', stream: logs.stream } } })
  const opened: TunnelOpenEvent[] = []
  const closed: TunnelCloseEvent[] = []
  gw.app.wsProxy.on('tunnelOpen', (event) => opened.push(event))
  gw.app.wsProxy.on('tunnelClose', (event) => closed.push(event))
  const session = await h2Session(t, gw)
  t.equal(session.remoteSettings.enableConnectProtocol, true, 'SETTINGS_ENABLE_CONNECT_PROTOCOL = 1')
  // A key from the client (RFC 8441 clients send none) is not the one the upstream gets.
  const ws = await openH2WebSocket(t, session, '/ws/echo?room=1', { 'sec-websocket-protocol': 'other, chat', origin: 'https://app.example', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' })
  t.equal(ws.status, 200)
  t.equal(ws.headers['sec-websocket-protocol'], 'chat', 'the subprotocol the upstream chose')
  t.equal(ws.headers['sec-websocket-accept'], undefined, 'no accept key on HTTP/2 (RFC 8441 §5)')
  t.equal(ws.headers.upgrade, undefined)
  t.equal(ws.headers.connection, undefined)

  const [handshake] = up.handshakes
  t.equal(handshake.url, '/ws/echo?room=1')
  t.equal(handshake.method, 'GET')
  t.equal(handshake.httpVersion, '1.1')
  t.equal(handshake.headers.upgrade, 'websocket')
  t.match(handshake.headers['sec-websocket-key'], /^[A-Za-z0-9+/]{22}==$/, 'a fresh key from the proxy')
  t.not(handshake.headers['sec-websocket-key'], 'dGhlIHNhbXBsZSBub25jZQ==')
  t.equal(handshake.headers['sec-websocket-version'], '13')
  t.equal(handshake.headers['sec-websocket-protocol'], 'other, chat')
  t.equal(handshake.headers.origin, 'https://app.example')
  t.equal(handshake.headers['x-forwarded-host'], `127.0.0.1:${gw.port}`)
  t.notOk(handshake.rawHeaders.some((name, i) => i % 2 === 0 && name.startsWith(':')), 'no pseudo-header field upstream')

  const reader = ws.reader
  ws.stream.write(maskedFrame(TEXT, Buffer.from('hello h2')))
  ws.stream.write(maskedFrame(BINARY, pattern(256)))
  // A fragmented text message: three frames, one message.
  ws.stream.write(Buffer.concat([maskedFrame(TEXT, Buffer.from('frag-'), false), maskedFrame(CONTINUATION, Buffer.from('ment-'), false),
    maskedFrame(CONTINUATION, Buffer.from('ed'), true)]))
  const big = pattern(16 * 1024 * 1024, 7)
  ws.stream.write(maskedFrame(BINARY, big))
  const frames = await reader.next(4, 20_000)
  t.same(frames.slice(0, 3).map((f) => [f.opcode, f.fin, f.masked]), [[TEXT, true, false], [BINARY, true, false], [TEXT, true, false]])
  t.equal(textOf(frames[0].payload), 'hello h2')
  t.ok(frames[1].payload.equals(pattern(256)), 'binary bytes intact')
  t.equal(textOf(frames[2].payload), 'frag-ment-ed', 'the fragments as one message')
  t.equal(frames[3].opcode, BINARY)
  t.equal(frames[3].payload.length, big.length)
  t.ok(frames[3].payload.equals(big), '16 MiB echoed exactly')

  t.equal(gw.app.wsProxy.tunnels, 1)
  t.match(opened, [{ route: '/ws/', upstream: origin(up.server), protocol: 'websocket', httpVersion: '2' }])
  ws.stream.write(maskedFrame(CLOSE, closePayload(1000, 'done')))
  const [, , , , close] = await reader.next(5)
  t.equal(close.opcode, CLOSE)
  t.equal(codeOf(close.payload), 1000)
  ws.stream.end()
  await waitFor(() => closed.length === 1 && reader.closed, 3000, 'the tunnel to close')
  t.match(closed[0], { route: '/ws/', httpVersion: '2', protocol: 'websocket' })
  t.ok(closed[0].bytesFromClient > big.length && closed[0].bytesFromUpstream > big.length)
  t.ok(reader.ended, 'END_STREAM after the closing handshake')
  t.match(logs.records.find((r) => r.msg === 'tunnel closed'), { httpVersion: '2', route: '/ws/' }, 'the close line says HTTP/2')
  const metrics = gw.app.wsProxy.metrics().routes[0]
  t.match(metrics, { route: '/ws/' })
  t.equal(gw.app.wsProxy.tunnels, 0)
})

t.test('close codes both ways: the client\'s Close reaches the upstream, the upstream\'s ends the stream', async (t) => {
  const up = await echoUpstream(t)
  const gw = await h2Gateway(t, { upstream: origin(up.server) })
  const session = await h2Session(t, gw)
  const first = await openH2WebSocket(t, session, '/a')
  await waitFor(() => up.sockets.length === 1, 2000, 'the handshake')
  const upstreamClose = new Promise<[number, string]>((resolve) => up.sockets[0].on('close', (code, reason) => resolve([code, reason.toString()])))
  first.stream.write(maskedFrame(CLOSE, closePayload(4000, 'bye from client')))
  const [echoed] = await first.reader.next(1)
  t.equal(codeOf(echoed.payload), 4000, 'the upstream\'s answering Close')
  await waitFor(() => first.reader.ended, 3000, 'the upstream\'s FIN as END_STREAM')
  first.stream.end()
  t.same(await within(upstreamClose, 3000, 'the upstream to see the Close'), [4000, 'bye from client'])
  await waitFor(() => first.reader.closed, 3000, 'the first stream to close')

  const second = await openH2WebSocket(t, session, '/b')
  await waitFor(() => up.sockets.length === 2, 2000, 'the second handshake')
  up.sockets[1].close(4321, 'upstream says bye')
  const [close] = await second.reader.next(1)
  t.equal(close.opcode, CLOSE)
  t.equal(codeOf(close.payload), 4321)
  t.equal(close.payload.subarray(2).toString(), 'upstream says bye')
  second.stream.write(maskedFrame(CLOSE, closePayload(4321)))
  second.stream.end()
  await waitFor(() => second.reader.closed, 3000, 'the second stream to close')
  t.ok(second.reader.ended, 'the upstream\'s FIN became END_STREAM')
  t.equal(session.destroyed, false, 'the session carries on')
})

t.test('answers other than 101 are relayed as the h2 response; a hook\'s 401 is a real :status 401', async (t) => {
  const refusing = await httpUpstream(t, (req, res) => {
    res.writeHead(403, { 'content-type': 'text/plain', 'x-why': 'not you' })
    res.end('forbidden by upstream')
  })
  let upstreamHit = 0
  const counted = await echoUpstream(t)
  counted.wss.on('connection', () => { upstreamHit++ })
  const gw = await h2Gateway(t, {
    routes: [{ prefix: '/refused/', upstream: origin(refusing) }, { prefix: '/guarded/', upstream: origin(counted.server) }]
  }, {
    setup: (app) => {
      app.addHook('onRequest', async (request, reply) => {
        if (request.url.startsWith('/guarded/') && request.headers.authorization !== 'Bearer ok') {
          // What a hook sees of an RFC 8441 handshake: the GET an HTTP/1.1 WebSocket would be.
          reply.header('x-seen', `${request.method} ${String(request.headers.upgrade)}`)
          await reply.code(401).send({ error: 'login first' })
        }
      })
    }
  })
  const session = await h2Session(t, gw)
  const refused = await openH2WebSocket(t, session, '/refused/x')
  t.equal(refused.status, 403)
  t.equal(refused.headers['x-why'], 'not you')
  t.equal(await bodyOf(refused), 'forbidden by upstream')
  t.ok(refused.reader.ended, 'a complete answer')

  const denied = await openH2WebSocket(t, session, '/guarded/x')
  t.equal(denied.status, 401)
  t.equal(denied.headers['x-seen'], 'GET websocket')
  t.same(JSON.parse(await bodyOf(denied)), { error: 'login first' })
  t.equal(upstreamHit, 0, 'nothing reached the upstream')

  const allowed = await openH2WebSocket(t, session, '/guarded/x', { authorization: 'Bearer ok' })
  t.equal(allowed.status, 200)
  allowed.stream.write(maskedFrame(TEXT, Buffer.from('in')))
  t.equal(textOf((await allowed.reader.next(1))[0].payload), 'in')
})

t.test('refusals: another :protocol, an unclaimed path, allowedOrigins, tunnel limits, a bad accept key', async (t) => {
  const up = await echoUpstream(t)
  const badAccept = await headUpstream(t, ({ socket }) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${acceptFor('not the key the proxy sent')}\r\n\r\n`)
  })
  const gw = await h2Gateway(t, {
    limits: { tunnels: 1 },
    routes: [
      { prefix: '/ws/', upstream: origin(up.server), allowedOrigins: ['https://app.example'] },
      { prefix: '/bad/', upstream: origin(badAccept) },
      { prefix: '/plain/', upstream: origin(up.server), upgrade: false }
    ]
  })
  const session = await h2Session(t, gw)
  const expect = async (path: string, extra: Record<string, string>, status: number, code: string): Promise<void> => {
    const ws = await openH2WebSocket(t, session, path, extra)
    t.equal(ws.status, status, `${path} ${JSON.stringify(extra)}: ${status}`)
    t.equal(JSON.parse(await bodyOf(ws)).code, code)
  }
  await expect('/ws/x', { ':protocol': 'webtransport' }, 501, 'FST_WS_PROXY_EXTENDED_CONNECT_REFUSED')
  await expect('/plain/x', {}, 501, 'FST_WS_PROXY_EXTENDED_CONNECT_REFUSED')
  await expect('/elsewhere', {}, 501, 'FST_WS_PROXY_EXTENDED_CONNECT_REFUSED')
  await expect('/ws/a/../b', {}, 400, 'FST_WS_PROXY_BAD_PATH')
  await expect('/ws/x', { origin: 'https://evil.example' }, 403, 'FST_WS_PROXY_ORIGIN_FORBIDDEN')
  await expect('/bad/x', {}, 502, 'FST_WS_PROXY_BAD_RESPONSE')
  const held = await openH2WebSocket(t, session, '/ws/one', { origin: 'https://app.example' })
  t.equal(held.status, 200)
  const over = await openH2WebSocket(t, session, '/ws/two')
  t.equal(over.status, 503)
  t.equal(over.headers['retry-after'], '5')
  t.equal(JSON.parse(await bodyOf(over)).code, 'FST_WS_PROXY_TOO_MANY_TUNNELS')
  t.equal(up.handshakes.length, 1, 'only the accepted one reached the upstream')
})

t.test('a 101 without an accept key and a response template refused are coded answers; a hook\'s Keep-Alive is left out', async (t) => {
  const noAccept = await headUpstream(t, ({ socket }) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n')
  })
  const up = await echoUpstream(t)
  const gw = await h2Gateway(t, {
    routes: [
      { prefix: '/none/', upstream: origin(noAccept) },
      { prefix: '/tmpl/', upstream: origin(up.server), responseHeaders: { set: { 'x-path': '$uri' } } },
      { prefix: '/hook/', upstream: origin(up.server) }
    ]
  }, {
    setup: (app) => {
      app.addHook('onRequest', async (request, reply) => {
        if (request.url.startsWith('/hook/')) reply.header('keep-alive', 'timeout=5')
      })
    }
  })
  const session = await h2Session(t, gw)
  const none = await openH2WebSocket(t, session, '/none/x')
  t.equal(none.status, 502)
  t.match(JSON.parse(await bodyOf(none)), { code: 'FST_WS_PROXY_BAD_RESPONSE', message: /Sec-WebSocket-Accept does not match/ })
  // $uri is percent-decoded: %0D would split the head.
  const tmpl = await openH2WebSocket(t, session, '/tmpl/a%0Db')
  t.equal(tmpl.status, 400)
  t.equal(JSON.parse(await bodyOf(tmpl)).code, 'FST_WS_PROXY_BAD_HEADER_VALUE')
  t.equal(gw.app.wsProxy.metrics().routes.reduce((n, r) => n + r.tunnels.opened, 0), 0, 'no tunnel was opened')
  // Keep-Alive is connection-specific (RFC 9113 §8.2.2): Node would refuse the whole answer, so it is left out.
  const hook = await openH2WebSocket(t, session, '/hook/x')
  t.equal(hook.status, 200)
  t.equal(hook.headers['keep-alive'], undefined)
  hook.stream.write(maskedFrame(TEXT, Buffer.from('through')))
  t.equal(textOf((await hook.reader.next(1))[0].payload), 'through')
})

t.test('http2ExtendedConnect: false leaves ENABLE_CONNECT_PROTOCOL off', async (t) => {
  const up = await echoUpstream(t)
  const gw = await h2Gateway(t, { upstream: origin(up.server), http2ExtendedConnect: false })
  const session = await h2Session(t, gw)
  t.equal(session.remoteSettings.enableConnectProtocol, false)
})

t.test('many WebSockets multiplexed on one h2 connection', async (t) => {
  const up = await echoUpstream(t)
  const gw = await h2Gateway(t, { upstream: origin(up.server) })
  const session = await h2Session(t, gw)
  const sockets = await Promise.all(Array.from({ length: 24 }, async (_, i) => await openH2WebSocket(t, session, `/m/${i}`)))
  t.same(sockets.map((ws) => ws.status), sockets.map(() => 200))
  t.equal(gw.app.wsProxy.tunnels, 24)
  for (const [i, ws] of sockets.entries()) {
    for (let n = 0; n < 5; n++) ws.stream.write(maskedFrame(TEXT, Buffer.from(`socket ${i} message ${n}`)))
  }
  for (const [i, ws] of sockets.entries()) {
    const frames = await ws.reader.next(5)
    t.same(frames.map((f) => textOf(f.payload)), [0, 1, 2, 3, 4].map((n) => `socket ${i} message ${n}`), `socket ${i} got its own messages in order`)
  }
  for (const ws of sockets) ws.stream.close(h2.NGHTTP2_CANCEL)
  await waitFor(() => gw.app.wsProxy.tunnels === 0, 3000, 'every tunnel to close')
  t.equal(session.destroyed, false)
})

t.test('a stream reset mid-tunnel closes the upstream side; the session and its other WebSockets go on', async (t) => {
  const up = await echoUpstream(t)
  const gw = await h2Gateway(t, { upstream: origin(up.server) })
  const closed: TunnelCloseEvent[] = []
  gw.app.wsProxy.on('tunnelClose', (event) => closed.push(event))
  const session = await h2Session(t, gw)
  const doomed = await openH2WebSocket(t, session, '/doomed')
  const survivor = await openH2WebSocket(t, session, '/survivor')
  await waitFor(() => up.sockets.length === 2, 2000, 'both handshakes')
  const upstreamClosed = new Promise<number>((resolve) => up.sockets[0].on('close', (code) => resolve(code)))
  doomed.stream.close(h2.NGHTTP2_CANCEL)
  t.equal(await within(upstreamClosed, 3000, 'the upstream to see the connection go'), 1006, 'the upstream connection was closed')
  await waitFor(() => closed.length === 1, 2000, 'the close event')
  t.match(closed[0].reason, /^client-(closed|error)$/)
  survivor.stream.write(maskedFrame(TEXT, Buffer.from('still here')))
  t.equal(textOf((await survivor.reader.next(1))[0].payload), 'still here')
})

t.test('app.close(): Close 1001 on the h2 stream and to the upstream', async (t) => {
  const up = await echoUpstream(t)
  const gw = await h2Gateway(t, { upstream: origin(up.server), closeGracePeriod: 2000 })
  const session = await h2Session(t, gw)
  const ws = await openH2WebSocket(t, session, '/live')
  await waitFor(() => up.sockets.length === 1, 2000, 'the handshake')
  const upstreamClose = new Promise<[number, string]>((resolve) => up.sockets[0].on('close', (code, reason) => resolve([code, reason.toString()])))
  // The client answers the proxy's Close as a client does, then ends its side.
  ws.stream.on('data', () => {
    if (ws.reader.frames.some((f) => f.opcode === CLOSE) && ws.stream.writable) {
      ws.stream.end(maskedFrame(CLOSE, closePayload(1001)))
    }
  })
  const started = Date.now()
  const closing = gw.app.close()
  const [goingAway] = await ws.reader.next(1, 3000)
  t.equal(goingAway.opcode, CLOSE)
  t.equal(codeOf(goingAway.payload), 1001)
  t.equal(goingAway.payload.subarray(2).toString(), 'shutdown', 'the Close says why')
  t.same(await within(upstreamClose, 3000, 'the upstream\'s close'), [1001, 'shutdown'], 'the upstream got 1001 shutdown too')
  await within(closing, 5000, 'app.close()')
  t.ok(Date.now() - started < 2000, `closed cleanly before the grace period ran out (${Date.now() - started} ms)`)
  await waitFor(() => ws.reader.closed, 2000, 'the stream to close')
  t.ok(ws.reader.ended, 'END_STREAM after the closing handshake')
})

t.test('half-close: END_STREAM from the client is the upstream\'s FIN, and the upstream\'s FIN ends the stream', async (t) => {
  let finSeen = false
  const upstream = await headUpstream(t, ({ socket, head }) => {
    const key = parseHead(head).headers['sec-websocket-key']
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(key)}\r\n\r\n`)
    socket.on('end', () => {
      finSeen = true
      // Half-open: still sends, then ends its side.
      socket.end(Buffer.from([0x81, 0x05, ...Buffer.from('after')]))
    })
  }, true)
  const gw = await h2Gateway(t, { upstream: origin(upstream) })
  const session = await h2Session(t, gw)
  const ws = await openH2WebSocket(t, session, '/half')
  t.equal(ws.status, 200)
  ws.stream.end()
  await waitFor(() => finSeen, 3000, 'the upstream to see a FIN')
  const [after] = await ws.reader.next(1)
  t.equal(textOf(after.payload), 'after', 'what the upstream sent after the client\'s END_STREAM arrived')
  await waitFor(() => ws.reader.closed, 3000, 'the stream to close')
  t.ok(ws.reader.ended)
})

t.test('pings reach the h2 client at frame boundaries and its pong is consumed', async (t) => {
  const up = await echoUpstream(t)
  const gw = await h2Gateway(t, { upstream: origin(up.server), ping: { interval: 300, timeout: 2000 } })
  const pongs: Buffer[] = []
  const session = await h2Session(t, gw)
  const ws = await openH2WebSocket(t, session, '/ping')
  await waitFor(() => up.sockets.length === 1, 2000, 'the handshake')
  up.sockets[0].on('pong', (data) => pongs.push(data))
  const [ping] = await ws.reader.next(1, 3000)
  t.equal(ping.opcode, PING)
  ws.stream.write(maskedFrame(PONG, ping.payload))
  ws.stream.write(maskedFrame(TEXT, Buffer.from('after pong')))
  const [, echo] = await ws.reader.next(2)
  t.equal(textOf(echo.payload), 'after pong')
  t.equal(pongs.length, 0, 'the pong answered the proxy, not the upstream')
})

t.test('flow control: a stalled upstream stops the client\'s window, a stalled client stops reading the upstream', async (t) => {
  let upstreamSocket: import('node:net').Socket | null = null
  const upstream = await headUpstream(t, ({ socket, head }) => {
    const key = parseHead(head).headers['sec-websocket-key']
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(key)}\r\n\r\n`)
    // Reads nothing from here on; what it still has to write is lost when the proxy resets it at the end.
    socket.on('error', () => {})
    socket.pause()
    upstreamSocket = socket
  })
  const gw = await h2Gateway(t, { upstream: origin(upstream) })
  const session = await h2Session(t, gw)
  const ws = await openH2WebSocket(t, session, '/flow')
  // Client → upstream: 32 MiB offered; the proxy stops granting window once the upstream socket is full.
  const chunk = maskedFrame(BINARY, pattern(1024 * 1024))
  for (let i = 0; i < 32; i++) ws.stream.write(chunk)
  let buffered = -1
  await waitFor(() => {
    const pending = ws.stream.writableLength
    const stable = pending === buffered
    buffered = pending
    return stable && pending > 16 * 1024 * 1024
  }, 8000, 'the client\'s writes to stall')
  t.ok(buffered > 16 * 1024 * 1024, `more than half of 32 MiB still waits at the client (${buffered} bytes)`)
  // Upstream → client: the client reads nothing; the upstream's socket fills and stays full.
  ws.stream.pause()
  const socket = upstreamSocket as unknown as import('node:net').Socket
  const big = Buffer.alloc(1024 * 1024)
  for (let i = 0; i < 32; i++) socket.write(big)
  let pending = -1
  await waitFor(() => {
    const now = socket.writableLength
    const stable = now === pending
    pending = now
    return stable && now > 16 * 1024 * 1024
  }, 8000, 'the upstream\'s writes to stall')
  t.ok(pending > 16 * 1024 * 1024, `more than half of 32 MiB still waits at the upstream (${pending} bytes)`)
  ws.stream.close(h2.NGHTTP2_CANCEL)
  // The upstream's unsent megabytes make its side see a reset.
  await waitFor(() => socket.destroyed, 3000, 'the upstream socket to close')
})
