// `tunnelDrain` at `app.close()`: how live tunnels end within `closeGracePeriod`. `immediate` (the default, pinned
// by tunnel-shutdown.test.ts) sends Close 1001 at once; `deadline` leaves tunnels untouched until the close window
// (the last tenth of the grace period, at most 1 s), then sends Close 1001 (non-WebSocket tunnels are half-closed)
// and destroys what is left at the deadline; `spread` gives each tunnel its own moment, evenly spaced with jitter
// before the close window. Every Close the proxy writes carries the drain's reason (`shutdown`, or `reload` after
// `markDraining('reload')`), toward the client and the upstream, and the same reason is in the `tunnelClose` event,
// the log line and the metrics. Timers never fire early, so lower bounds are tight; upper bounds leave room for a
// loaded CI machine.
import t from 'tap'
import net, { type Socket } from 'node:net'
import type { WebSocketServer } from 'ws'
import type { FastifyInstance } from 'fastify'
import type { TunnelCloseEvent } from '../src/telemetry/events.js'
import { closeWindow } from '../src/upgrade/tunnel-registry.js'
import { gateway, logCapture, origin, waitFor, wsUpstream, type Teardown } from './helpers/servers.js'
import {
  WS_KEY, acceptFor, headEnd, headUpstream, messages, openWs, parseFrames, pattern, rawClient, switching, upgradeHead,
  within, wsClosed, wsHandshakeHead, wsUrl, type ScriptedServer
} from './helpers/ws.js'
import { problemsOf } from './helpers/options.js'
import { Registry } from 'prom-client'

const CLOSE = 0x8
/** Timers fire no earlier than asked, but `Date.now()` is read on either side of them: a few ms of slack. */
const SLACK = 30

/** The 101 a WebSocket upstream answers `wsHandshakeHead` with. */
const WS_101 = `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${acceptFor(WS_KEY)}\r\n\r\n`

/** The Close 1001 the proxy sends a client, reason `reason`. */
function goingAway (reason: string): Buffer {
  return Buffer.from([0x88, 2 + reason.length, 0x03, 0xe9, ...Buffer.from(reason)])
}

/** An unmasked binary frame (as an upstream sends it), payload under 64 KiB. */
function binaryFrame (payload: Buffer): Buffer {
  const head = Buffer.from([0x82, 126, 0, 0])
  head.writeUInt16BE(payload.length, 2)
  return Buffer.concat([head, payload])
}

/** A masked Close 1001 without reason (a client's answer). */
const CLIENT_CLOSE = Buffer.from([0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe9 ^ 2])
/** An unmasked Close 1001 without reason (an upstream's answer). */
const UPSTREAM_CLOSE = Buffer.from([0x88, 0x02, 0x03, 0xe9])

function closeEvents (app: FastifyInstance): TunnelCloseEvent[] {
  const events: TunnelCloseEvent[] = []
  app.wsProxy.on('tunnelClose', (event) => events.push(event))
  return events
}

/** Each upstream `ws` connection's close code and reason, in order of connection. */
function serverSides (wss: WebSocketServer): Array<{ code: number | null, reason: string }> {
  const sides: Array<{ code: number | null, reason: string }> = []
  wss.on('connection', (ws) => {
    const side = { code: null as number | null, reason: '' }
    sides.push(side)
    ws.on('close', (code: number, reason: Buffer) => {
      side.code = code
      side.reason = reason.toString()
    })
  })
  return sides
}

async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

t.test('the close window is a tenth of the grace period, at most 1 s', async (t) => {
  t.same([0, 9, 300, 2000, 10_000, 60_000].map(closeWindow), [0, 0, 30, 200, 1000, 1000])
})

t.test('tunnelDrain is one of immediate, deadline, spread, at the plugin and per route', async (t) => {
  t.match(problemsOf({ upstream: 'http://127.0.0.1:1', tunnelDrain: 'later' }).problems, [{ path: 'tunnelDrain' }])
  t.match(problemsOf({ routes: [{ prefix: '/', upstream: 'http://127.0.0.1:1', tunnelDrain: 'never' }] }).problems, [{ path: 'routes/0/tunnelDrain' }])
})

t.test('deadline: tunnels keep relaying through the grace period, then get Close 1001 "shutdown" in the close window; a route may say immediate', async (t) => {
  const { server, wss } = await wsUpstream(t)
  const sides = serverSides(wss)
  const logs = logCapture()
  const grace = 2000
  const { app, url } = await gateway(t, {
    tunnelDrain: 'deadline',
    closeGracePeriod: grace,
    routes: [
      { prefix: '/keep/', upstream: origin(server) },
      { prefix: '/now/', upstream: origin(server), tunnelDrain: 'immediate' }
    ]
  }, { logger: { level: 'info', stream: logs.stream } })
  const events = closeEvents(app)
  const kept = await openWs(t, wsUrl(url, '/keep/x'))
  const now = await openWs(t, wsUrl(url, '/now/x'))
  await waitFor(() => app.wsProxy.tunnels === 2, 2000, 'both tunnels')
  const keptClosed = wsClosed(kept, grace + 3000)
  const nowClosed = wsClosed(now, 3000)

  const started = Date.now()
  const closing = app.close()
  t.same(await nowClosed, { code: 1001, reason: 'shutdown' }, 'the immediate route\'s tunnel got Close 1001 "shutdown"')
  t.ok(Date.now() - started < 1000, `at once (${Date.now() - started} ms)`)
  // Messages keep going both ways until the close window opens (at grace - 200 ms).
  let echoed = 0
  while (Date.now() - started < grace - closeWindow(grace) - 400) {
    kept.send(`during the drain ${echoed}`)
    const [message] = await messages(kept, 1, 2000)
    t.equal(message.data.toString(), `during the drain ${echoed}`)
    echoed++
    await sleep(100)
  }
  t.ok(echoed >= 3, `${echoed} messages echoed through the draining tunnel`)
  t.equal(kept.readyState, kept.OPEN, 'still open before the close window')
  const kept1001 = await keptClosed
  const closedAfter = Date.now() - started
  t.same(kept1001, { code: 1001, reason: 'shutdown' }, 'then Close 1001 "shutdown"')
  t.ok(closedAfter >= grace - closeWindow(grace) - SLACK, `in the close window (${closedAfter} ms; it opens at ${grace - closeWindow(grace)})`)
  await within(closing, grace + 3000, 'app.close()')
  const took = Date.now() - started
  t.ok(took >= grace - closeWindow(grace) - SLACK && took < grace + 2000, `app.close() resolved after ${took} ms`)
  await waitFor(() => sides.length === 2 && sides.every((s) => s.code !== null), 2000, 'the upstream sides to close')
  t.same(sides, [{ code: 1001, reason: 'shutdown' }, { code: 1001, reason: 'shutdown' }], 'each upstream got Close 1001 "shutdown" too')
  t.same(events.map((e) => [e.route, e.reason]), [['/now/', 'shutdown'], ['/keep/', 'shutdown']])
  t.same(logs.records.filter((r) => r.msg === 'tunnel closed').map((r) => r.reason), ['shutdown', 'shutdown'], 'the log lines say shutdown')
})

t.test('deadline: the Close waits for the end of a frame, and a client that never answers it is destroyed at the deadline', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => { socket.write(WS_101) })
  const grace = 3000
  const { app, port } = await gateway(t, { upstream: origin(upstream), tunnelDrain: 'deadline', closeGracePeriod: grace })
  const events = closeEvents(app)
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead('/ws'))
  await client.contains('\r\n\r\n')
  await waitFor(() => upstream.accepted.length === 1 && upstream.accepted[0].head !== '', 2000, 'the upstream connection')
  const connection = upstream.accepted[0]
  const headLength = headEnd(client.bytes)
  const frame = binaryFrame(pattern(60_000, 5))
  const half = 30_000
  connection.socket.write(frame.subarray(0, half))
  await client.atLeast(headLength + half)

  const started = Date.now()
  const closing = app.close()
  // Nothing is in flight toward the upstream: its Close goes out as soon as the window opens.
  await connection.received.until(() => parseFrames(connection.afterHead()).length === 1, grace + 2000, 'the Close toward the upstream')
  const windowAt = Date.now() - started
  t.ok(windowAt >= grace - closeWindow(grace) - SLACK, `the upstream got its Close when the window opened (${windowAt} ms)`)
  const [toUpstream] = parseFrames(connection.afterHead())
  t.same([toUpstream.opcode, toUpstream.masked, toUpstream.payload.readUInt16BE(0), toUpstream.payload.subarray(2).toString()],
    [CLOSE, true, 1001, 'shutdown'], 'masked Close 1001 "shutdown"')
  t.equal(client.length, headLength + half, 'the client has no Close inside the frame')
  // The rest of the frame, then a frame the client never gets (it follows the Close).
  connection.socket.write(Buffer.concat([frame.subarray(half), binaryFrame(Buffer.from('after the close'))]))
  const expected = Buffer.concat([frame, goingAway('shutdown')])
  await client.atLeast(headLength + expected.length)
  // The client never answers: it is destroyed at the deadline.
  await client.close(grace + 2000)
  const cut = Date.now() - started
  t.ok(cut >= grace - SLACK && cut < grace + 2000, `the client was cut at the deadline (${cut} ms)`)
  t.ok(client.bytes.subarray(headLength).equals(expected), 'the whole frame, then Close 1001 "shutdown", nothing more')
  await within(closing, 3000, 'app.close()')
  t.same(events.map((e) => e.reason), ['shutdown'])
  t.equal(app.wsProxy.metrics().routes[0].tunnels.closed.shutdown, 1)
})

t.test('deadline: a non-WebSocket tunnel carries bytes until the close window, is half-closed then, and destroyed at the deadline', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => { socket.write(switching('foo')) }, true)
  const grace = 2000
  const { app, port } = await gateway(t, { upstream: origin(upstream), tunnelDrain: 'deadline', closeGracePeriod: grace })
  const client = await rawClient(t, port, true)
  client.socket.write(upgradeHead('/raw', 'foo'))
  await client.contains('\r\n\r\n')
  await waitFor(() => upstream.accepted.length === 1 && upstream.accepted[0].head !== '', 2000, 'the upstream connection')
  const connection = upstream.accepted[0]

  const started = Date.now()
  const closing = app.close()
  await sleep(500)
  t.equal(app.wsProxy.tunnels, 1)
  client.socket.write('still talking')
  connection.socket.write('still answering')
  await connection.received.until(() => connection.afterHead().toString() === 'still talking', 2000, 'the client\'s bytes')
  await client.contains('still answering', 2000)
  t.notOk(client.ended || connection.received.ended, 'no FIN before the close window')
  await client.end(grace + 2000)
  await connection.received.end(2000)
  const finAt = Date.now() - started
  t.ok(finAt >= grace - closeWindow(grace) - SLACK, `both sides got a FIN when the window opened (${finAt} ms)`)
  t.notOk(client.closed, 'the client, half open, is still connected')
  // The proxy's side is gone without a word (its FIN went already): a write tells.
  const probe = setInterval(() => { if (!client.socket.destroyed) client.socket.write('anyone there?') }, 20)
  t.teardown(() => clearInterval(probe))
  await client.close(grace + 2000)
  clearInterval(probe)
  const cut = Date.now() - started
  t.ok(cut >= grace - SLACK && cut < grace + 2000, `destroyed at the deadline (${cut} ms)`)
  await within(closing, 3000, 'app.close()')
  t.equal(app.wsProxy.tunnels, 0)
})

t.test('deadline: a handshake accepted during the drain opens a tunnel that waits for the close window too', async (t) => {
  let release: () => void = () => {}
  const held = new Promise<void>((resolve) => { release = resolve })
  const upstream = await headUpstream(t, ({ socket, head }) => {
    const answer = (): void => { socket.write(switching('websocket')) }
    if (head.startsWith('GET /first')) answer()
    else held.then(answer, () => {})
  })
  const grace = 2000
  const { app, port } = await gateway(t, { upstream: origin(upstream), tunnelDrain: 'deadline', closeGracePeriod: grace })
  const first = await rawClient(t, port)
  first.socket.write(upgradeHead('/first', 'websocket'))
  await first.contains('\r\n\r\n')
  const second = await rawClient(t, port)
  second.socket.write(upgradeHead('/second', 'websocket'))
  await waitFor(() => upstream.accepted.length === 2, 2000, 'the second handshake to reach the upstream')
  await upstream.accepted[1].received.contains('GET /second')

  const started = Date.now()
  const closing = app.close()
  await sleep(300)
  release()
  await second.contains('\r\n\r\n', 2000)
  await sleep(300)
  t.equal(second.text.indexOf('\x88'), -1, 'the late tunnel is left alone before the window')
  await second.contains(goingAway('shutdown').toString('latin1'), grace + 2000)
  await first.contains(goingAway('shutdown').toString('latin1'), 2000)
  const at = Date.now() - started
  t.ok(at >= grace - closeWindow(grace) - SLACK, `both got Close 1001 "shutdown" in the window (${at} ms)`)
  await within(closing, grace + 2000, 'app.close()')
  t.equal(app.wsProxy.tunnels, 0)
})

t.test('deadline with closeGracePeriod 0 closes at once', async (t) => {
  const { server } = await wsUpstream(t)
  const { app, url } = await gateway(t, { upstream: origin(server), tunnelDrain: 'deadline', closeGracePeriod: 0 })
  const ws = await openWs(t, wsUrl(url, '/x'))
  const closed = wsClosed(ws, 3000)
  const started = Date.now()
  await within(app.close(), 3000, 'app.close()')
  t.ok(Date.now() - started < 1000, `app.close() resolved in ${Date.now() - started} ms`)
  t.ok([1001, 1006].includes((await closed).code), 'the tunnel is gone')
  t.equal(app.wsProxy.tunnels, 0)
})

t.test('spread with one tunnel, drained for a reload: Close 1001 "reload" both ways before the close window, and in the event, log and metrics', async (t) => {
  const { server, wss } = await wsUpstream(t)
  const sides = serverSides(wss)
  const logs = logCapture()
  const grace = 2000
  const registry = new Registry()
  const { app, url } = await gateway(t, { upstream: origin(server), tunnelDrain: 'spread', closeGracePeriod: grace, metrics: { registry } },
    { logger: { level: 'info', stream: logs.stream } })
  const events = closeEvents(app)
  const ws = await openWs(t, wsUrl(url, '/x'))
  const closed = wsClosed(ws, grace + 3000)
  app.wsProxy.markDraining('reload')
  t.equal(app.wsProxy.draining, true)
  const started = Date.now()
  const closing = app.close()
  t.same(await closed, { code: 1001, reason: 'reload' }, 'Close 1001 "reload" at the client')
  const at = Date.now() - started
  t.ok(at < grace - closeWindow(grace) + 1000, `at its moment, before the close window (${at} ms)`)
  await within(closing, grace + 2000, 'app.close()')
  await waitFor(() => sides[0]?.code !== null, 2000, 'the upstream side to close')
  t.same(sides, [{ code: 1001, reason: 'reload' }], 'Close 1001 "reload" at the upstream')
  t.same(events.map((e) => e.reason), ['reload'])
  t.match(logs.records.filter((r) => r.msg === 'tunnel closed'), [{ reason: 'reload' }])
  t.match(app.wsProxy.metrics().routes[0].tunnels.closed, { reload: 1, shutdown: 0 })
  const text = await registry.metrics()
  t.match(text, /fastify_ws_proxy_tunnels_closed_total\{route="\/",[^}]*reason="reload"\} 1/, 'the metrics label says reload')
  t.match(text, /fastify_ws_proxy_tunnels_closed_total\{route="\/",[^}]*reason="shutdown"\} 0/)
})

/** A raw WebSocket client that answers the proxy's Close with its own and records when it came and what it said. */
interface DrainClient { socket: Socket, closeAt: number, reason: string | null }

async function drainClient (t: Teardown, port: number): Promise<DrainClient> {
  const socket = net.connect({ port, host: '127.0.0.1' })
  t.teardown(() => { socket.destroy() })
  const client: DrainClient = { socket, closeAt: 0, reason: null }
  let bytes = Buffer.alloc(0)
  let opened: () => void = () => {}
  const open = new Promise<void>((resolve) => { opened = resolve })
  socket.on('error', () => {})
  socket.on('data', (chunk: Buffer) => {
    bytes = Buffer.concat([bytes, chunk])
    const end = headEnd(bytes)
    if (end === -1) return
    opened()
    const [frame] = parseFrames(bytes.subarray(end))
    if (frame === undefined || client.reason !== null) return
    client.closeAt = Date.now()
    client.reason = frame.opcode === CLOSE ? frame.payload.subarray(2).toString() : `opcode ${frame.opcode}`
    socket.write(CLIENT_CLOSE)
  })
  socket.write(wsHandshakeHead('/spread'))
  await within(open, 5000, 'the 101')
  return client
}

/** A raw WebSocket upstream that answers the proxy's Close with its own. */
async function answeringUpstream (t: Teardown): Promise<ScriptedServer> {
  return headUpstream(t, ({ socket }) => {
    socket.write(WS_101)
    socket.once('data', () => { socket.write(UPSTREAM_CLOSE) })
  })
}

t.test('spread with 1,000 tunnels: the Closes come at a steady rate over the grace period, not at once', async (t) => {
  const upstream = await answeringUpstream(t)
  const grace = 3000
  const span = grace - closeWindow(grace)
  const { app, port } = await gateway(t, { upstream: origin(upstream), tunnelDrain: 'spread', closeGracePeriod: grace }, { logger: false })
  const events = closeEvents(app)
  const clients: DrainClient[] = []
  for (let batch = 0; batch < 10; batch++) {
    clients.push(...await Promise.all(Array.from({ length: 100 }, async () => await drainClient(t, port))))
  }
  await waitFor(() => app.wsProxy.tunnels === 1000, 10_000, '1,000 tunnels')
  t.equal(upstream.accepted.length, 1000)

  const started = Date.now()
  const closing = app.close()
  // Ten clients leave by themselves as the drain begins: their moments pass with nothing to do.
  const leaving = clients.slice(-10)
  for (const client of leaving) client.socket.destroy()
  await within(closing, grace + 5000, 'app.close()')
  const took = Date.now() - started
  t.ok(took < grace + 3000, `app.close() resolved after ${took} ms`)
  t.equal(app.wsProxy.tunnels, 0)

  const staying = clients.slice(0, -10)
  t.equal(staying.filter((c) => c.reason === 'shutdown').length, 990, 'every client got Close 1001 "shutdown"')
  const times = staying.map((c) => c.closeAt - started).sort((a, b) => a - b)
  t.ok(times[times.length - 1] < span + 2000, `the last Close came after ${times[times.length - 1]} ms (spread over ${span})`)
  // Evenly spaced over [0, span): a quarter of them in each quarter of it; allow a loaded machine to bunch them.
  const quarters = [0, 0, 0, 0]
  for (const at of times) quarters[Math.min(3, Math.floor(at / (span / 4)))]++
  t.ok(quarters.every((n) => n >= 990 * 0.12), `Closes per quarter of the span: ${quarters.join(', ')}`)
  let busiest = 0
  for (let i = 0, j = 0; i < times.length; i++) {
    while (times[i] - times[j] >= 100) j++
    busiest = Math.max(busiest, i - j + 1)
  }
  t.ok(busiest < 990 * 0.25, `at most ${busiest} Closes in any 100 ms (immediate sends all ${990} at once)`)
  t.equal(events.length, 1000)
  t.equal(events.filter((e) => e.reason === 'shutdown').length, 990)
  t.equal(events.filter((e) => e.reason.startsWith('client-')).length, 10, 'the clients that left are counted as such')
})
