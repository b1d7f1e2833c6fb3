// Graceful shutdown of live tunnels (preClose): `app.close()` gives every tunnel `closeGracePeriod` ms to go away
// cleanly, destroys what is left after it, and resolves once every tunnel is closed. A WebSocket tunnel gets a Close
// 1001 "going away" toward each side at the next frame boundary of that direction (the proxy reads frame headers
// only): unmasked to the client, masked to the upstream, never inside a frame, and possibly between the fragments
// of a message (RFC 6455 §5.4). After that Close, what the peer sends on that way is dropped; a side answering
// with its own Close gets a FIN. Any other tunnel is half-closed both ways. While the app drains, new requests and
// new upgrades get Fastify's 503, and an HTTP exchange already under way still completes.
// The frame-boundary tests script both ends byte by byte, so the exact place of the Close on the wire is asserted.
import t from 'tap'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { WebSocket } from 'ws'
import type { FastifyInstance } from 'fastify'
import type { TunnelCloseEvent } from '../src/telemetry/events.js'
import { gateway, httpUpstream, origin, waitFor, wsUpstream, type Teardown } from './helpers/servers.js'
import { rawExchange, request } from './helpers/clients.js'
import {
  WS_KEY, acceptFor, headEnd, headUpstream, openWs, parseFrames, parseHead, pattern, rawClient, switching,
  upgradeHead, within, wsClosed, wsHandshakeHead, wsUrl, type Received, type ScriptedServer, type UpstreamConnection
} from './helpers/ws.js'

const BINARY = 0x2
const CONTINUATION = 0x0
const TEXT = 0x1
const CLOSE = 0x8

/** The Close 1001 the proxy sends the client: unmasked, FIN, opcode 8, payload 0x03e9 and the reason `shutdown`. */
const GOING_AWAY = Buffer.from([0x88, 0x0a, 0x03, 0xe9, ...Buffer.from('shutdown')])
/** The same Close toward the upstream: masked, so 4 bytes longer. */
const MASKED_GOING_AWAY_LENGTH = GOING_AWAY.length + 4

/** An unmasked frame (as an upstream sends it). */
function frame (opcode: number, payload: Buffer, fin = true): Buffer {
  const b0 = (fin ? 0x80 : 0) | opcode
  let head: Buffer
  if (payload.length < 126) {
    head = Buffer.from([b0, payload.length])
  } else if (payload.length < 0x10000) {
    head = Buffer.from([b0, 126, 0, 0])
    head.writeUInt16BE(payload.length, 2)
  } else {
    head = Buffer.from([b0, 127, 0, 0, 0, 0, 0, 0, 0, 0])
    head.writeUInt32BE(payload.length, 6)
  }
  return Buffer.concat([head, payload])
}

/** A masked frame (as a client sends it), with a fixed mask key. */
function maskedFrame (opcode: number, payload: Buffer, fin = true): Buffer {
  const plain = frame(opcode, payload, fin)
  const headLength = plain.length - payload.length
  const key = Buffer.from([0x37, 0xfa, 0x21, 0x3d])
  const masked = Buffer.from(payload)
  for (let i = 0; i < masked.length; i++) masked[i] ^= key[i & 3]
  const head = Buffer.from(plain.subarray(0, headLength))
  head[1] |= 0x80
  return Buffer.concat([head, key, masked])
}

function closePayload (code: number): Buffer {
  const payload = Buffer.alloc(2)
  payload.writeUInt16BE(code)
  return payload
}

/** The 101 a WebSocket upstream answers `wsHandshakeHead` with. */
const WS_101 = `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(WS_KEY)}\r\n\r\n`

/** A raw upstream that accepts every WebSocket handshake, then does only what the test scripts. */
async function wsRawUpstream (t: Teardown): Promise<ScriptedServer> {
  return headUpstream(t, ({ socket }) => { socket.write(WS_101) })
}

/** Bytes a raw client received after the 101 head. */
function afterHead (client: Received): Buffer {
  const bytes = client.bytes
  const end = headEnd(bytes)
  return end === -1 ? Buffer.alloc(0) : bytes.subarray(end)
}

/** A raw WebSocket tunnel: a raw client's handshake through the gateway to a raw upstream, once the 101 is in. */
async function wsTunnel (t: Teardown, port: number, upstream: ScriptedServer, path = '/ws') {
  const before = upstream.accepted.length
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead(path))
  await client.contains('\r\n\r\n')
  await waitFor(() => upstream.accepted.length > before && upstream.accepted[before].head !== '', 2000, 'the upstream connection')
  const connection: UpstreamConnection = upstream.accepted[before]
  return { client, connection }
}

/** Every `tunnelClose` event of `app`, in order. */
function closeEvents (app: FastifyInstance): TunnelCloseEvent[] {
  const events: TunnelCloseEvent[] = []
  app.wsProxy.on('tunnelClose', (event) => events.push(event))
  return events
}

/** Resolves once the upstream has received the proxy's masked Close 1001 (the drain has begun). */
async function closeReached (connection: UpstreamConnection): Promise<void> {
  await connection.received.until(() => parseFrames(connection.afterHead()).some((f) => f.opcode === CLOSE), 3000, 'the Close toward the upstream')
}

/**
 * Resolves once a half-open socket whose peer may have gone quietly has closed: it writes every 20 ms, and the
 * second write after the peer's reset fails (bounded).
 */
async function probedClosed (r: Received, ms = 2000): Promise<void> {
  const probe = setInterval(() => { if (!r.socket.destroyed) r.socket.write('anyone there?') }, 20)
  try {
    await r.close(ms)
  } finally {
    clearInterval(probe)
  }
}

t.test('a ws client and a ws upstream both see Close 1001, and app.close() resolves long before the grace period', async (t) => {
  const { server, wss } = await wsUpstream(t)
  const upstreamSide = within(new Promise<WebSocket>((resolve) => wss.once('connection', resolve)), 3000, 'the upstream WebSocket')
  const { app, url } = await gateway(t, { upstream: origin(server), closeGracePeriod: 3000 })
  const client = await openWs(t, wsUrl(url, '/chat'))
  const upstream = await upstreamSide
  await waitFor(() => app.wsProxy.tunnels === 1, 2000, 'the tunnel')
  const atClient = wsClosed(client)
  const atUpstream = wsClosed(upstream)

  const started = Date.now()
  await within(app.close(), 5000, 'app.close()')
  const took = Date.now() - started
  t.ok(took < 2000, `app.close() resolved in ${took} ms (closeGracePeriod 3000)`)
  t.equal(app.wsProxy.tunnels, 0, 'no tunnel left once app.close() has resolved')
  t.same(await atClient, { code: 1001, reason: 'shutdown' }, 'the client got a Close 1001 "going away", reason shutdown')
  t.same(await atUpstream, { code: 1001, reason: 'shutdown' }, 'the upstream got a Close 1001 "going away" too, reason shutdown')
})

// The upstream → client direction: what the upstream sends before the drain (`before`), then after it has begun
// (`after`, followed by the upstream's own Close answer); the client must get `delivered`, then the Close, then nothing.
const midFrame = pattern(200 * 1024)
const bigFrame = frame(BINARY, midFrame)
const fragment1 = frame(BINARY, pattern(1000, 1), false)
const fragment2 = frame(CONTINUATION, pattern(100 * 1024, 2), false)
const fragment3 = frame(CONTINUATION, pattern(500, 3), true)
const trailing = frame(TEXT, Buffer.from('sent after the close: never delivered'))
const cases: Array<{ name: string, before: Buffer, after: Buffer, delivered: Buffer[] }> = [
  {
    name: 'half of a 200 KiB frame is out at close: the Close follows the whole frame',
    before: bigFrame.subarray(0, 10 + 100 * 1024),
    after: Buffer.concat([bigFrame.subarray(10 + 100 * 1024), trailing]),
    delivered: [bigFrame]
  },
  {
    name: 'only part of a frame header is out at close: the frame goes on whole, then the Close',
    before: bigFrame.subarray(0, 5),
    after: Buffer.concat([bigFrame.subarray(5), trailing]),
    delivered: [bigFrame]
  },
  {
    name: 'a continuation fragment is half out at close: the Close follows it, between two fragments',
    before: Buffer.concat([fragment1, fragment2.subarray(0, 50 * 1024)]),
    after: Buffer.concat([fragment2.subarray(50 * 1024), fragment3]),
    delivered: [fragment1, fragment2]
  },
  {
    name: 'the first fragment is complete at close: the Close goes right after it, mid-message',
    before: fragment1,
    after: Buffer.concat([fragment2, fragment3]),
    delivered: [fragment1]
  }
]

for (const { name, before, after, delivered } of cases) {
  t.test(name, async (t) => {
    const upstream = await wsRawUpstream(t)
    const { app, port } = await gateway(t, { upstream: origin(upstream), closeGracePeriod: 3000 })
    const { client, connection } = await wsTunnel(t, port, upstream)
    connection.socket.write(before)
    // The proxy has relayed (and tracked) all of `before` before the drain starts.
    await client.until((c) => afterHead(c).length >= before.length, 3000, 'the bytes sent before the close')

    const started = Date.now()
    const closing = app.close()
    // Nothing is in flight toward the upstream: its Close goes out at once, so the drain has begun.
    await closeReached(connection)
    connection.socket.write(after)
    // The upstream answers the proxy's Close with its own: dropped by the proxy, which then ends the upstream side.
    connection.socket.write(frame(CLOSE, closePayload(1001)))
    const expected = Buffer.concat([...delivered, GOING_AWAY])
    await client.until((c) => afterHead(c).length >= expected.length, 3000, 'the frames and the Close')
    // The client answers too (masked); the proxy drops it and ends the client's side.
    client.socket.write(maskedFrame(CLOSE, closePayload(1001)))
    await within(closing, 3000, 'app.close()')
    const took = Date.now() - started
    t.ok(took < 2000, `app.close() resolved in ${took} ms once both sides answered (closeGracePeriod 3000)`)
    await client.close()
    await connection.received.close()

    t.equal(parseHead(client.text).status, 101)
    const got = afterHead(client)
    t.equal(got.length, expected.length, 'nothing after the Close: what the upstream sent later was dropped')
    t.ok(got.equals(expected), 'the frames arrived whole and byte for byte, then the Close 1001')
    const frames = parseFrames(got)
    t.same(frames.map((f) => f.opcode), [...delivered.map((d) => d[0] & 0x0f), CLOSE])
    const close = frames[frames.length - 1]
    t.same({ fin: close.fin, masked: close.masked, payload: [...close.payload] }, { fin: true, masked: false, payload: [...GOING_AWAY.subarray(2)] })

    const toUpstream = connection.afterHead()
    const upFrames = parseFrames(toUpstream)
    t.equal(upFrames.length, 1, 'the upstream got one frame: the client\'s own Close answer was dropped')
    t.equal(toUpstream.length, MASKED_GOING_AWAY_LENGTH, 'a masked close frame with its code and reason, nothing else')
    t.same({ fin: upFrames[0].fin, opcode: upFrames[0].opcode, masked: upFrames[0].masked, code: upFrames[0].payload.readUInt16BE(0), reason: upFrames[0].payload.subarray(2).toString() },
      { fin: true, opcode: CLOSE, masked: true, code: 1001, reason: 'shutdown' }, 'the upstream got a masked Close 1001, reason shutdown')
  })
}

t.test('a client frame half sent at close: the upstream\'s Close follows that frame, the client\'s Close goes at once', async (t) => {
  const upstream = await wsRawUpstream(t)
  const { app, port } = await gateway(t, { upstream: origin(upstream), closeGracePeriod: 3000 })
  const { client, connection } = await wsTunnel(t, port, upstream)
  const message = maskedFrame(BINARY, pattern(64 * 1024, 7))
  const split = 30 * 1024
  client.socket.write(message.subarray(0, split))
  await connection.received.until(() => connection.afterHead().length >= split, 3000, 'half the client frame')

  const closing = app.close()
  // Nothing is in flight toward the client: its Close comes at once, while the upstream's waits for the frame's end.
  await client.until((c) => afterHead(c).length >= GOING_AWAY.length, 3000, 'the Close toward the client')
  t.ok(afterHead(client).equals(GOING_AWAY), 'the client got the Close 1001 and nothing else')
  t.equal(connection.afterHead().length, split, 'the upstream got no Close inside the client\'s frame')
  client.socket.write(Buffer.concat([message.subarray(split), maskedFrame(TEXT, Buffer.from('late: dropped')), maskedFrame(CLOSE, closePayload(1001))]))
  await connection.received.until(() => connection.afterHead().length >= message.length + MASKED_GOING_AWAY_LENGTH, 3000, 'the frame and the Close')
  connection.socket.write(frame(CLOSE, closePayload(1001)))
  await within(closing, 3000, 'app.close()')
  await connection.received.close()

  const toUpstream = connection.afterHead()
  t.equal(toUpstream.length, message.length + MASKED_GOING_AWAY_LENGTH, 'the frame, the Close and nothing more')
  t.ok(toUpstream.subarray(0, message.length).equals(message), 'the client frame went on whole, byte for byte')
  const frames = parseFrames(toUpstream)
  t.same(frames.map((f) => [f.opcode, f.masked]), [[BINARY, true], [CLOSE, true]])
  t.equal(frames[1].payload.readUInt16BE(0), 1001)
  t.equal(afterHead(client).length, GOING_AWAY.length, 'the upstream\'s Close answer was dropped, not relayed')
})

t.test('a client that has already sent its Close gets the Close 1001, the upstream no second Close', async (t) => {
  const upstream = await wsRawUpstream(t)
  const { app, port } = await gateway(t, { upstream: origin(upstream), closeGracePeriod: 3000 })
  const { client, connection } = await wsTunnel(t, port, upstream)
  const clientClose = maskedFrame(CLOSE, closePayload(1000))
  client.socket.write(clientClose)
  await connection.received.until(() => connection.afterHead().length >= clientClose.length, 3000, 'the client\'s Close')

  const started = Date.now()
  const closing = app.close()
  await client.until((c) => afterHead(c).length >= GOING_AWAY.length, 3000, 'the Close toward the client')
  // The upstream answers the client's Close; the proxy has closed that way already, so it is dropped.
  connection.socket.write(frame(CLOSE, closePayload(1000)))
  await within(closing, 3000, 'app.close()')
  const took = Date.now() - started
  t.ok(took < 2000, `app.close() resolved in ${took} ms (closeGracePeriod 3000)`)
  await client.close()
  await connection.received.close()
  t.ok(connection.afterHead().equals(clientClose), 'the upstream got the client\'s own Close 1000 and no Close 1001')
  t.ok(afterHead(client).equals(GOING_AWAY), 'the client got the Close 1001 and nothing else')
})

t.test('an upstream that has already sent its Close gets the Close 1001, the client no second Close', async (t) => {
  const upstream = await wsRawUpstream(t)
  const { app, port } = await gateway(t, { upstream: origin(upstream), closeGracePeriod: 3000 })
  const { client, connection } = await wsTunnel(t, port, upstream)
  const upstreamClose = frame(CLOSE, closePayload(1000))
  connection.socket.write(upstreamClose)
  await client.until((c) => afterHead(c).length >= upstreamClose.length, 3000, 'the upstream\'s Close')

  const started = Date.now()
  const closing = app.close()
  await closeReached(connection)
  // The client answers the upstream's Close; the proxy has closed that way already, so it is dropped.
  client.socket.write(maskedFrame(CLOSE, closePayload(1000)))
  await within(closing, 3000, 'app.close()')
  const took = Date.now() - started
  t.ok(took < 2000, `app.close() resolved in ${took} ms (closeGracePeriod 3000)`)
  await client.close()
  await connection.received.close()
  t.ok(afterHead(client).equals(upstreamClose), 'the client got the upstream\'s own Close 1000 and no Close 1001')
  const toUpstream = connection.afterHead()
  const frames = parseFrames(toUpstream)
  t.equal(toUpstream.length, MASKED_GOING_AWAY_LENGTH, 'the upstream got one masked close frame, nothing else')
  t.same(frames.map((f) => [f.opcode, f.masked, f.payload.readUInt16BE(0)]), [[CLOSE, true, 1001]])
})

t.test('peers that never answer the Close are destroyed at closeGracePeriod, and app.close() resolves then', async (t) => {
  const upstream = await wsRawUpstream(t)
  const { app, port } = await gateway(t, { upstream: origin(upstream), closeGracePeriod: 300 })
  const events = closeEvents(app)
  const { client, connection } = await wsTunnel(t, port, upstream)

  const started = Date.now()
  const closing = app.close()
  await client.until((c) => afterHead(c).length >= GOING_AWAY.length, 3000, 'the Close toward the client')
  await closeReached(connection)
  t.notOk(client.closed, 'the client is still connected while it does not answer')
  await within(closing, 3000, 'app.close()')
  const took = Date.now() - started
  t.ok(took >= 250 && took < 1500, `app.close() resolved after ${took} ms (closeGracePeriod 300)`)
  await client.close(1000)
  await connection.received.close(1000)
  t.pass('both the client and the upstream connections were closed')
  t.ok(afterHead(client).equals(GOING_AWAY), 'the client had got the Close 1001')
  t.equal(app.wsProxy.tunnels, 0)
  t.same(events.map((e) => e.reason), ['shutdown'])
})

t.test('a non-WebSocket tunnel is half-closed both ways, and destroyed at the deadline when neither side closes', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => { socket.write(switching('foo')) }, true)
  const { app, port } = await gateway(t, { upstream: origin(upstream), closeGracePeriod: 1000 })
  const client = await rawClient(t, port, true)
  client.socket.write(upgradeHead('/raw', 'foo'))
  await client.contains('\r\n\r\n')
  await waitFor(() => upstream.accepted.length === 1, 2000, 'the upstream connection')
  const connection = upstream.accepted[0]

  const started = Date.now()
  const closing = app.close()
  await client.until((c) => c.ended, 2000, 'a FIN at the client')
  await connection.received.until((r) => r.ended, 2000, 'a FIN at the upstream')
  const finAfter = Date.now() - started
  t.ok(finAfter < 800, `both sides got a FIN after ${finAfter} ms, before the deadline`)
  t.notOk(client.closed, 'the client, half open, is still connected')
  t.notOk(connection.received.closed, 'the upstream, half open, is still connected')
  t.equal(parseHead(client.text).status, 101)
  t.equal(client.length, Buffer.byteLength(client.text.slice(0, headEnd(client.bytes))), 'no bytes besides the 101')

  await within(closing, 4000, 'app.close()')
  const took = Date.now() - started
  t.ok(took >= 950 && took < 2500, `app.close() resolved after ${took} ms (closeGracePeriod 1000)`)
  t.equal(app.wsProxy.tunnels, 0, 'the tunnel was destroyed')
  // Both gateway sockets had already sent their FIN, so destroying them sends nothing more (TCP closes quietly):
  // a half-open peer learns of it by writing, which the kernel answers with a reset (a live tunnel would relay it).
  await probedClosed(client)
  await probedClosed(connection.received)
  t.pass('both connections were gone: writing after the deadline gets a reset')
})

t.test('a non-WebSocket tunnel whose sides end in turn closes long before the deadline', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => { socket.write(switching('foo')) })
  const { app, port } = await gateway(t, { upstream: origin(upstream), closeGracePeriod: 3000 })
  const client = await rawClient(t, port)
  client.socket.write(upgradeHead('/raw', 'foo'))
  await client.contains('\r\n\r\n')
  const started = Date.now()
  await within(app.close(), 5000, 'app.close()')
  const took = Date.now() - started
  t.ok(took < 2000, `app.close() resolved in ${took} ms (closeGracePeriod 3000)`)
  await client.close(1000)
  await upstream.accepted[0].received.close(1000)
  t.equal(app.wsProxy.tunnels, 0)
})

t.test('while tunnels drain, new requests and new upgrades get 503', async (t) => {
  const http = await httpUpstream(t)
  const raw = await wsRawUpstream(t)
  const { app, url, port } = await gateway(t, {
    routes: [
      { prefix: '/api/', upstream: origin(http) },
      { prefix: '/ws/', upstream: origin(raw) }
    ],
    closeGracePeriod: 2000
  })
  t.equal((await request(`${url}/api/before`)).status, 200, 'the HTTP route works before the close')
  const { client, connection } = await wsTunnel(t, port, raw, '/ws/live')

  const started = Date.now()
  const closing = app.close()
  await closeReached(connection)

  const answer = await within(request(`${url}/api/during`), 3000, 'the request during the drain')
  t.equal(answer.status, 503, 'a new HTTP request is refused with 503')
  const upgrade = await within(rawExchange(t, port, wsHandshakeHead('/ws/new'), 3000), 4000, 'the upgrade during the drain')
  t.match(upgrade, /^HTTP\/1\.1 503 /, 'a new upgrade gets an HTTP 503, not a 101')
  t.equal(raw.accepted.length, 1, 'the new upgrade never reached the upstream')
  t.ok(Date.now() - started < 2000, 'both were answered while the tunnel was still draining')
  t.notOk(client.closed, 'the live tunnel was still draining meanwhile')

  await within(closing, 4000, 'app.close()')
  const took = Date.now() - started
  t.ok(took >= 1900 && took < 3500, `app.close() resolved at the deadline, after ${took} ms (closeGracePeriod 2000)`)
  await client.close(1000)
})

t.test('an HTTP exchange under way at app.close() completes with its status and whole body', async (t) => {
  const body = pattern(256 * 1024, 9)
  const arrived: IncomingMessage[] = []
  const http = await httpUpstream(t, (req: IncomingMessage, res: ServerResponse) => {
    arrived.push(req)
    req.resume()
    setTimeout(() => {
      res.setHeader('content-type', 'application/octet-stream')
      res.end(body)
    }, 200)
  })
  const { app, url } = await gateway(t, { upstream: origin(http) })
  const pending = request(`${url}/slow`)
  await waitFor(() => arrived.length === 1, 2000, 'the request at the upstream')

  const closing = app.close()
  const answer = await within(pending, 3000, 'the response')
  t.equal(answer.status, 200)
  t.equal(answer.body.length, body.length)
  t.ok(answer.body.equals(body), 'the whole body, byte for byte')
  await within(closing, 3000, 'app.close()')
})

t.test('tunnelClose reports reason "shutdown" for tunnels closed by app.close()', async (t) => {
  const { server } = await wsUpstream(t)
  const raw = await headUpstream(t, ({ socket }) => { socket.write(switching('foo')) })
  const { app, url, port } = await gateway(t, {
    routes: [
      { prefix: '/ws/', upstream: origin(server) },
      { prefix: '/raw/', upstream: origin(raw) }
    ],
    closeGracePeriod: 3000
  })
  const events = closeEvents(app)
  const ws = await openWs(t, wsUrl(url, '/ws/a'))
  const atClient = wsClosed(ws)
  const client = await rawClient(t, port)
  client.socket.write(upgradeHead('/raw/b', 'foo'))
  await client.contains('\r\n\r\n')
  await waitFor(() => app.wsProxy.tunnels === 2, 2000, 'both tunnels')

  await within(app.close(), 5000, 'app.close()')
  t.equal(events.length, 2, 'both tunnels reported closed by the time app.close() resolved')
  const seen = events.map((e) => ({ route: e.route, protocol: e.protocol, reason: e.reason })).sort((a, b) => a.route.localeCompare(b.route))
  t.same(seen, [
    { route: '/raw/', protocol: 'foo', reason: 'shutdown' },
    { route: '/ws/', protocol: 'websocket', reason: 'shutdown' }
  ])
  t.equal((await atClient).code, 1001)
})
