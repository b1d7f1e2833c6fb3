// Proxy keep-alive on WebSocket tunnels (`ping: { interval, timeout }`, off by default): the proxy pings the client
// (opcode 9, 8 random bytes, unmasked) every `interval` ms and consumes the matching pong, which never reaches the
// upstream; a client that does not answer within `timeout` is cut off (reason 'ping-timeout', Close 1001 to the
// upstream). Only the proxy's own pong is taken: unsolicited pongs, pings from the upstream and the client's
// answers to them pass through untouched. A raw client speaking WebSocket by hand shows the exact frames.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import type { WebSocket, WebSocketServer } from 'ws'
import type { FastifyInstance } from 'fastify'
import type { TunnelCloseEvent } from '../src/index.js'
import { gateway, origin, waitFor, wsUpstream, type Teardown } from './helpers/servers.js'
import {
  acceptFor, headEnd, logCapture, messages, openWs, parseFrames, parseHead, rawClient, wsClosed, wsHandshakeHead, wsUrl, WS_KEY,
  type Frame
} from './helpers/ws.js'

const PING = 0x9
const PONG = 0xa
const CLOSE = 0x8

/** Every `tunnelClose` event of `app`, in order. */
function closeEvents (app: FastifyInstance): TunnelCloseEvent[] {
  const events: TunnelCloseEvent[] = []
  app.wsProxy.on('tunnelClose', (event) => events.push(event))
  return events
}

/** The upstream's server-side WebSockets: the pongs each one got, and its close code (null while open). */
interface ServerSide { ws: WebSocket, pongs: Buffer[], code: number | null }
function serverSides (wss: WebSocketServer): ServerSide[] {
  const sides: ServerSide[] = []
  wss.on('connection', (ws) => {
    const side: ServerSide = { ws, pongs: [], code: null }
    sides.push(side)
    ws.on('pong', (data: Buffer) => side.pongs.push(data))
    ws.on('close', (code: number) => { side.code = code })
  })
  return sides
}

/** A client frame as RFC 6455 §5.3 wants it: masked (payloads under 126 bytes only). */
function maskedFrame (opcode: number, payload: Buffer): Buffer {
  const key = randomBytes(4)
  const frame = Buffer.alloc(6 + payload.length)
  frame[0] = 0x80 | opcode
  frame[1] = 0x80 | payload.length
  key.copy(frame, 2)
  for (let i = 0; i < payload.length; i++) frame[6 + i] = payload[i] ^ key[i & 3]
  return frame
}

/** A raw client that has done the WebSocket handshake through the gateway and never answers anything by itself. */
async function rawWebSocket (t: Teardown, port: number, path: string) {
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead(path))
  await client.contains('\r\n\r\n')
  const head = parseHead(client.text)
  /** The frames received after the 101. */
  const frames = (): Frame[] => parseFrames(client.bytes.subarray(headEnd(client.bytes)))
  return { client, head, frames }
}

async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

t.test('a ws client answers the proxy\'s pings by itself: the tunnel stays open and no pong reaches the upstream', async (t) => {
  const { server, wss } = await wsUpstream(t)
  const sides = serverSides(wss)
  const logs = logCapture()
  const { app, url } = await gateway(t, { upstream: origin(server), ping: { interval: 100, timeout: 300 } },
    { logger: { level: 'info', stream: logs.stream } })
  const events = closeEvents(app)
  const ws = await openWs(t, wsUrl(url, '/keepalive'))
  const pings: Buffer[] = []
  ws.on('ping', (data: Buffer) => pings.push(data))
  // Over three ping timeouts' worth, with messages both ways meanwhile.
  for (let i = 0; i < 6; i++) {
    await sleep(200)
    ws.send(`message ${i}`)
  }
  const echoes = await messages(ws, 6, 2000)
  t.same(echoes.map((m) => m.data.toString()), [0, 1, 2, 3, 4, 5].map((i) => `message ${i}`), 'messages still flow both ways, intact')
  t.equal(ws.readyState, ws.OPEN, 'still open')
  t.equal(app.wsProxy.tunnels, 1)
  t.same(events, [], 'not closed')
  t.ok(pings.length >= 5, `the client got ${pings.length} pings`)
  t.ok(pings.every((p) => p.length === 8), 'each with 8 bytes of payload')
  t.equal(new Set(pings.map((p) => p.toString('hex'))).size, pings.length, 'each one different')
  t.equal(sides[0].pongs.length, 0, 'the upstream never got a pong')
  t.equal(logs.records.filter((r) => r.msg === 'tunnel ping timeout').length, 0)
})

t.test('a client that never answers is closed after about interval + timeout; the upstream gets Close 1001', async (t) => {
  const { server, wss } = await wsUpstream(t)
  const sides = serverSides(wss)
  const logs = logCapture()
  const { app, port } = await gateway(t, { upstream: origin(server), ping: { interval: 100, timeout: 300 } },
    { logger: { level: 'info', stream: logs.stream } })
  const events = closeEvents(app)
  const { client, head, frames } = await rawWebSocket(t, port, '/mute')
  t.equal(head.status, 101)
  t.equal(head.headers['sec-websocket-accept'], acceptFor(WS_KEY))
  await client.end(3000)
  const endedAt = Date.now()
  await waitFor(() => events.length === 1, 2000, 'the tunnelClose event')
  const event = events[0]
  const lived = endedAt - event.openedAt
  t.ok(lived >= 400 && lived < 1900, `cut off ${lived} ms after the 101 (interval 100 + timeout 300)`)
  t.match(event, { reason: 'ping-timeout', protocol: 'websocket', bytesFromClient: 0 })
  const received = frames()
  t.equal(received.length, 2, 'one ping, then the Close')
  t.match(received[0], { fin: true, opcode: PING, masked: false })
  t.equal(received[0].payload.length, 8, 'the ping carries 8 bytes')
  t.match(received[1], { fin: true, opcode: CLOSE, masked: false })
  t.equal(received[1].payload.readUInt16BE(0), 1001, 'Close 1001 to the client')
  t.equal(received[1].payload.subarray(2).toString(), 'ping-timeout', 'with the reason ping-timeout')
  await waitFor(() => sides[0]?.code !== null, 2000, 'the upstream side to close')
  t.equal(sides[0].code, 1001, 'Close 1001 to the upstream')
  t.equal(sides[0].pongs.length, 0)
  t.match(logs.records.filter((r) => r.msg === 'tunnel ping timeout'), [{
    level: 30,
    reason: 'ping-timeout',
    code: 'FST_WS_PROXY_TUNNEL_TIMEOUT',
    upstream: origin(server),
    after: 300
  }])
  t.match(logs.records.filter((r) => r.msg === 'tunnel closed'), [{ level: 30, reason: 'ping-timeout' }])
})

t.test('a client that talks but never answers pings is still cut off (its traffic is no pong)', async (t) => {
  const { server, wss } = await wsUpstream(t)
  const sides = serverSides(wss)
  const { app, port } = await gateway(t, { upstream: origin(server), ping: { interval: 100, timeout: 300 } })
  const events = closeEvents(app)
  const { client, frames } = await rawWebSocket(t, port, '/talker')
  let sent = 0
  const chatter = setInterval(() => {
    if (!client.socket.destroyed) client.socket.write(maskedFrame(0x1, Buffer.from(`tick ${sent++}`)))
  }, 50)
  t.teardown(() => clearInterval(chatter))
  await client.end(3000)
  clearInterval(chatter)
  await waitFor(() => events.length === 1, 2000, 'the tunnelClose event')
  t.equal(events[0].reason, 'ping-timeout')
  t.ok(events[0].durationMs >= 400 && events[0].durationMs < 1900, `after ${events[0].durationMs} ms`)
  const received = frames()
  t.equal(received.filter((f) => f.opcode === PING).length, 1, 'one ping, never answered')
  t.ok(received.filter((f) => f.opcode === 0x1).length >= 3, 'the upstream echoed the client\'s messages meanwhile')
  t.match(received[received.length - 1], { opcode: CLOSE, payload: Buffer.from([0x03, 0xe9, ...Buffer.from('ping-timeout')]) }, 'then Close 1001, reason ping-timeout')
  await waitFor(() => sides[0]?.code !== null, 2000, 'the upstream side to close')
  t.equal(sides[0].code, 1001)
})

t.test('a ping waits for a frame boundary: injected between the messages of a backed-up flood, never inside one', async (t) => {
  const SIZE = 1024 * 1024
  const COUNT = 16
  const { server, wss } = await wsUpstream(t)
  const sides = serverSides(wss)
  // On the client's 'go', the upstream sends COUNT binary messages of SIZE bytes, each filled with its index.
  wss.on('connection', (ws) => {
    ws.removeAllListeners('message')
    ws.on('message', () => {
      for (let i = 0; i < COUNT; i++) ws.send(Buffer.alloc(SIZE, i), { binary: true })
    })
  })
  const { url } = await gateway(t, { upstream: origin(server), ping: { interval: 100, timeout: 5000 } })
  const ws = await openWs(t, wsUrl(url, '/flood'))
  const order: string[] = []
  const intact: boolean[] = []
  ws.on('ping', () => order.push('ping'))
  ws.on('message', (data: Buffer) => {
    order.push('message')
    const i = intact.length
    intact.push(data.equals(Buffer.alloc(SIZE, i)))
  })
  const errors: Error[] = []
  ws.on('error', (err) => errors.push(err))
  // The client stops reading: the flood backs up into the gateway while its first ping comes due.
  ws.pause()
  ws.send('go')
  await sleep(400)
  ws.resume()
  await waitFor(() => intact.length === COUNT, 5000, 'the whole flood')
  t.same(intact, Array(COUNT).fill(true), 'every message intact')
  t.same(errors, [], 'no protocol error at the client')
  t.equal(ws.readyState, ws.OPEN)
  // On a loaded machine the first ping may go out before the flood starts (on a boundary too): what matters is that
  // pings land between messages of the backed-up flood.
  const between = order.findIndex((e, i) => e === 'ping' && i > order.indexOf('message') && i < order.lastIndexOf('message'))
  t.ok(between > 0, `a ping came between two messages: ${order.join(' ')}`)
  t.equal(sides[0].pongs.length, 0, 'the client\'s pongs went no further than the gateway')
})

t.test('unsolicited pongs from the client reach the upstream untouched, even while a proxy ping is outstanding', async (t) => {
  const { server, wss } = await wsUpstream(t)
  const sides = serverSides(wss)
  const { app, port } = await gateway(t, { upstream: origin(server), ping: { interval: 100, timeout: 1000 } })
  const events = closeEvents(app)
  const { client, frames } = await rawWebSocket(t, port, '/pongs')
  await client.until(() => frames().some((f) => f.opcode === PING), 2000, 'the proxy\'s first ping')
  const ping = frames()[0]
  t.match(ping, { opcode: PING, masked: false })
  // Two pongs the proxy did not ask for: one of another size, one of the same size (8 bytes) but another payload.
  client.socket.write(maskedFrame(PONG, Buffer.from('unsolicited')))
  client.socket.write(maskedFrame(PONG, Buffer.from('abcdefgh')))
  await waitFor(() => sides[0]?.pongs.length === 2, 2000, 'both pongs at the upstream')
  t.same(sides[0].pongs.map((p) => p.toString()), ['unsolicited', 'abcdefgh'], 'delivered as sent, in order')
  // Now the matching pong: consumed, and the next ping follows.
  client.socket.write(maskedFrame(PONG, ping.payload))
  await client.until(() => frames().filter((f) => f.opcode === PING).length >= 2, 2000, 'a second ping')
  const second = frames()[1]
  t.match(second, { opcode: PING, masked: false })
  t.not(second.payload.toString('hex'), ping.payload.toString('hex'), 'a new payload')
  await sleep(50)
  t.equal(sides[0].pongs.length, 2, 'the answer to the proxy\'s ping did not reach the upstream')
  t.same(events, [], 'the tunnel is open')
})

t.test('pings from the upstream reach the client, and its pongs reach the upstream, with proxy pings going on', async (t) => {
  const { server, wss } = await wsUpstream(t)
  const sides = serverSides(wss)
  const { url } = await gateway(t, { upstream: origin(server), ping: { interval: 100, timeout: 1000 } })
  const ws = await openWs(t, wsUrl(url, '/both'))
  const pings: Buffer[] = []
  ws.on('ping', (data: Buffer) => pings.push(data))
  await waitFor(() => sides.length === 1, 2000, 'the upstream side')
  for (const payload of ['x', 'upstream ping', '12345678']) {
    sides[0].ws.ping(payload)
    await waitFor(() => sides[0].pongs.some((p) => p.toString() === payload), 2000, `the pong to ${payload}`)
    await sleep(120)
  }
  t.same(sides[0].pongs.map((p) => p.toString()), ['x', 'upstream ping', '12345678'], 'each pong reached the upstream once, untouched')
  const fromUpstream = pings.filter((p) => p.toString() === 'x' || p.toString() === 'upstream ping' || p.toString() === '12345678')
  t.equal(fromUpstream.length, 3, 'the client got the upstream\'s pings')
  t.ok(pings.length - fromUpstream.length >= 2, `and ${pings.length - fromUpstream.length} of the proxy's own`)
  t.equal(ws.readyState, ws.OPEN)
})

t.test('without ping options no ping reaches the client', async (t) => {
  const { server, wss } = await wsUpstream(t)
  const sides = serverSides(wss)
  const { port } = await gateway(t, { upstream: origin(server) })
  const { client, frames } = await rawWebSocket(t, port, '/plain')
  await sleep(500)
  t.equal(client.length - headEnd(client.bytes), 0, 'not a byte after the 101')
  t.same(frames(), [])
  t.notOk(client.ended || client.closed, 'the tunnel is open')
  t.equal(sides.length, 1)
  // And the tunnel works: a masked text frame is echoed back unmasked.
  client.socket.write(maskedFrame(0x1, Buffer.from('hello')))
  await client.until(() => frames().length === 1, 2000, 'the echo')
  t.match(frames()[0], { opcode: 0x1, masked: false })
  t.equal(frames()[0].payload.toString(), 'hello')
  t.equal(client.length - headEnd(client.bytes), 7, 'only the echo')
})

t.test('a ws client sees no ping in 500 ms with ping off', async (t) => {
  const { server } = await wsUpstream(t)
  const { url } = await gateway(t, { upstream: origin(server) })
  const ws = await openWs(t, wsUrl(url, '/quiet'))
  let pings = 0
  ws.on('ping', () => { pings++ })
  await sleep(500)
  t.equal(pings, 0)
  ws.close(1000)
  t.equal((await wsClosed(ws)).code, 1000)
})

// Found by this test: a consumed pong used to count as client traffic, so pings shorter than `idle` disabled it.
t.test('the proxy\'s own pings and the pongs it consumes are no traffic for timeouts.idle', async (t) => {
  const { server } = await wsUpstream(t)
  const { app, url } = await gateway(t, { upstream: origin(server), timeouts: { idle: 400 }, ping: { interval: 100, timeout: 1000 } })
  const events = closeEvents(app)
  const ws = await openWs(t, wsUrl(url, '/idle'))
  let pings = 0
  ws.on('ping', () => { pings++ })
  // Neither the client nor the upstream sends anything: only the proxy's pings and the client's automatic pongs move.
  const closed = await wsClosed(ws, 2500).catch(() => null)
  t.ok(pings >= 1, `the client answered ${pings} pings`)
  t.equal(closed?.code, 1001, 'closed with Close 1001 after timeouts.idle')
  await waitFor(() => events.length === 1, 1000, 'the tunnelClose event').catch(() => {})
  t.equal(events[0]?.reason, 'idle-timeout')
  t.ok(events[0] !== undefined && events[0].durationMs >= 400 && events[0].durationMs < 1900, `after ${events[0]?.durationMs} ms (idle 400)`)
})
