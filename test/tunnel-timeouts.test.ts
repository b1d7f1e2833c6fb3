// The tunnel timers other than `read` (see tunnel-read-timeout.test.ts), and the send timeout on plain requests.
// `idle` closes a tunnel where nothing moves either way (a chatty client keeps it open, unlike `read`),
// `maxTunnelLifetime` closes it whatever the traffic, `send` closes it when the upstream takes none of the bytes
// waiting for it, each route keeps its own values. All are enforced by one coarse sweep: a timer fires at most one
// tick late and never early, so the lower bounds below are exact and the upper ones generous (a loaded 2-core box).
// A timer that closes a WebSocket tunnel sends a Close 1001 both ways; every firing is logged with its reason,
// and so is every closed tunnel (the same object as the `tunnelClose` event). On a request body, `send` answers
// 504 FST_WS_PROXY_SEND_TIMEOUT while the client is still sending, and that answer must reach it whole.
import t from 'tap'
import type { IncomingMessage } from 'node:http'
import type { WebSocket, WebSocketServer } from 'ws'
import type { FastifyInstance } from 'fastify'
import type { TunnelCloseEvent } from '../src/index.js'
import { gateway, origin, waitFor, wsUpstream, type LogRecord, type Teardown } from './helpers/servers.js'
import { errorBody, openRequest, readBody } from './helpers/http-faults.js'
import { headUpstream, logCapture, messages, openWs, rawClient, switching, upgradeHead, within, wsClosed, wsUrl } from './helpers/ws.js'

const MB = 1024 * 1024

/** Every `tunnelClose` event of `app`, in order. */
function closeEvents (app: FastifyInstance): TunnelCloseEvent[] {
  const events: TunnelCloseEvent[] = []
  app.wsProxy.on('tunnelClose', (event) => events.push(event))
  return events
}

/** The upstream's server-side WebSockets, with the close code each one saw (null while open). */
function serverSides (wss: WebSocketServer): Array<{ ws: WebSocket, code: number | null, reason: string, received: number }> {
  const sides: Array<{ ws: WebSocket, code: number | null, reason: string, received: number }> = []
  wss.on('connection', (ws) => {
    const side = { ws, code: null as number | null, reason: '', received: 0 }
    sides.push(side)
    ws.on('message', () => { side.received++ })
    ws.on('close', (code: number, reason: Buffer) => {
      side.code = code
      side.reason = reason.toString()
    })
  })
  return sides
}

/** Makes a `wsUpstream` silent: its echo is removed (the helper's 'connection' listener ran first). */
function silence (wss: WebSocketServer): void {
  wss.on('connection', (ws) => { ws.removeAllListeners('message') })
}

/** Sends a text message every `ms` while `ws` is open; stopped at teardown at the latest. */
function chatter (t: Teardown, ws: WebSocket, ms = 50): { sent: number, stop: () => void } {
  const state = { sent: 0, stop: () => clearInterval(timer) }
  const timer = setInterval(() => {
    if (ws.readyState === ws.OPEN) ws.send(`tick ${state.sent++}`)
  }, ms)
  t.teardown(state.stop)
  return state
}

/**
 * Writes up to `limit` bytes as fast as `sink` takes them, honouring backpressure, until stopped or destroyed.
 * Enough to fill every kernel buffer between the writer and a peer that does not read.
 */
function flood (sink: { write (chunk: Buffer): boolean, destroyed: boolean, once (event: 'drain', fn: () => void): unknown }, limit: number) {
  const chunk = Buffer.alloc(MB, 0x61)
  const state = { sent: 0, stopped: false, stop () { state.stopped = true } }
  const pump = (): void => {
    while (!state.stopped && !sink.destroyed && state.sent < limit) {
      state.sent += chunk.length
      if (!sink.write(chunk)) {
        sink.once('drain', pump)
        return
      }
    }
  }
  pump()
  return state
}

async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

function logged (records: LogRecord[], msg: string): LogRecord[] {
  return records.filter((r) => r.msg === msg)
}

t.test('timeouts.idle closes a WebSocket tunnel where neither side talks (Close 1001 both ways), logged with its reason', async (t) => {
  const { server, wss } = await wsUpstream(t)
  const sides = serverSides(wss)
  const logs = logCapture()
  const { app, url } = await gateway(t, { upstream: origin(server), timeouts: { idle: 300 } }, { logger: { level: 'info', stream: logs.stream } })
  const events = closeEvents(app)
  const ws = await openWs(t, wsUrl(url, '/quiet'))
  const { code, reason } = await wsClosed(ws, 3000)
  const closedAt = Date.now()
  t.equal(code, 1001, 'the client got Close 1001')
  t.equal(reason, 'idle-timeout', 'with the reason idle-timeout')
  await waitFor(() => events.length === 1, 2000, 'the tunnelClose event')
  const event = events[0]
  const lived = closedAt - event.openedAt
  t.ok(lived >= 300 && lived < 1800, `closed ${lived} ms after the 101 (timeouts.idle 300)`)
  t.match(event, { route: '/', upstream: origin(server), client: '127.0.0.1', protocol: 'websocket', reason: 'idle-timeout' })
  // Nothing but each side's answer to the proxy's Close (ws echoes code and reason): 20 bytes masked from the client, 16 from the upstream.
  t.ok(event.bytesFromClient <= 20 && event.bytesFromUpstream <= 16, `bytes ${event.bytesFromClient}/${event.bytesFromUpstream}`)
  t.ok(event.durationMs >= 300 && event.durationMs < 1800, `durationMs ${event.durationMs}`)
  await waitFor(() => sides[0]?.code !== null, 2000, 'the upstream side to close')
  t.same([sides[0].code, sides[0].reason], [1001, 'idle-timeout'], 'the upstream got Close 1001, reason idle-timeout')
  const fired = logged(logs.records, 'tunnel idle timeout')
  t.match(fired, [{ level: 30, reason: 'idle-timeout', code: 'FST_WS_PROXY_TUNNEL_TIMEOUT', upstream: origin(server), after: 300 }])
  t.notOk('err' in fired[0], 'a timeout is logged without an error and its stack')
  const lines = logged(logs.records, 'tunnel closed')
  t.equal(lines.length, 1, 'one close line')
  t.match(lines[0], { level: 30, ...event }, 'the close line carries what the event does')
})

t.test('timeouts.idle: a chatty client keeps a tunnel with a silent upstream open (read is what closes it)', async (t) => {
  const { server, wss } = await wsUpstream(t)
  silence(wss)
  const sides = serverSides(wss)
  const logs = logCapture()
  const { app, url } = await gateway(t, { upstream: origin(server), timeouts: { read: 60000, idle: 300 } }, { logger: { level: 'info', stream: logs.stream } })
  const events = closeEvents(app)
  const ws = await openWs(t, wsUrl(url, '/chatty'))
  const openedAt = Date.now()
  const talk = chatter(t, ws)
  // More than three idle timeouts' worth.
  await sleep(1100)
  talk.stop()
  t.equal(ws.readyState, ws.OPEN, `still open after ${Date.now() - openedAt} ms`)
  t.equal(app.wsProxy.tunnels, 1)
  t.ok(talk.sent >= 10, `the client sent ${talk.sent} messages`)
  await waitFor(() => sides[0].received === talk.sent, 2000, 'the messages to reach the upstream')
  t.equal(sides[0].received, talk.sent, 'every one reached the (silent) upstream')
  t.same(events, [], 'no tunnel closed')
  t.equal(logs.records.filter((r) => /^tunnel .*(timeout|lifetime)$/.test(r.msg ?? '')).length, 0, 'no timer fired')
  ws.close(1000)
  await wsClosed(ws)
  await waitFor(() => events.length === 1, 2000, 'the tunnelClose event')
  t.match(events[0].reason, /^(client|upstream)-closed$/)
})

t.test('timeouts.read closes the same chatty tunnel with a silent upstream (no idle timeout)', async (t) => {
  const { server, wss } = await wsUpstream(t)
  silence(wss)
  const logs = logCapture()
  const { app, url } = await gateway(t, { upstream: origin(server), timeouts: { read: 300 } }, { logger: { level: 'info', stream: logs.stream } })
  const events = closeEvents(app)
  const ws = await openWs(t, wsUrl(url, '/chatty'))
  const talk = chatter(t, ws)
  const { code } = await wsClosed(ws, 3000)
  const closedAt = Date.now()
  talk.stop()
  t.equal(code, 1001)
  await waitFor(() => events.length === 1, 2000, 'the tunnelClose event')
  const lived = closedAt - events[0].openedAt
  t.ok(lived >= 300 && lived < 1800, `closed ${lived} ms after the 101 despite the client's traffic`)
  t.ok(talk.sent >= 3, `the client sent ${talk.sent} messages meanwhile`)
  t.equal(events[0].reason, 'read-timeout')
  // The upstream sent nothing but its answer to the proxy's Close (16 bytes: code and reason echoed).
  t.ok(events[0].bytesFromClient > 0 && events[0].bytesFromUpstream <= 16, `bytes ${events[0].bytesFromClient}/${events[0].bytesFromUpstream}`)
  t.match(logged(logs.records, 'tunnel read timeout'), [{ level: 30, reason: 'read-timeout', code: 'FST_WS_PROXY_TUNNEL_READ_TIMEOUT', after: 300 }])
  t.match(logged(logs.records, 'tunnel closed'), [{ level: 30, reason: 'read-timeout' }])
})

t.test('timeouts.maxTunnelLifetime closes a tunnel with steady traffic both ways (Close 1001 to the client and the upstream)', async (t) => {
  const { server, wss } = await wsUpstream(t)
  const sides = serverSides(wss)
  const logs = logCapture()
  const { app, url } = await gateway(t, { upstream: origin(server), timeouts: { maxTunnelLifetime: 400 } }, { logger: { level: 'info', stream: logs.stream } })
  const events = closeEvents(app)
  const ws = await openWs(t, wsUrl(url, '/steady'))
  const talk = chatter(t, ws)
  const { code } = await wsClosed(ws, 3000)
  const closedAt = Date.now()
  talk.stop()
  t.equal(code, 1001, 'the client got Close 1001')
  await waitFor(() => events.length === 1, 2000, 'the tunnelClose event')
  const event = events[0]
  const lived = closedAt - event.openedAt
  t.ok(lived >= 400 && lived < 1900, `closed ${lived} ms after the 101 (maxTunnelLifetime 400)`)
  t.equal(event.reason, 'lifetime')
  t.ok(talk.sent >= 4, `the client sent ${talk.sent} messages`)
  t.ok(event.bytesFromUpstream > 0 && event.bytesFromClient > 0, `the upstream echoed (bytes ${event.bytesFromClient}/${event.bytesFromUpstream})`)
  await waitFor(() => sides[0]?.code !== null, 2000, 'the upstream side to close')
  t.equal(sides[0].code, 1001, 'the upstream got Close 1001')
  t.match(logged(logs.records, 'tunnel lifetime'), [{
    level: 30,
    reason: 'lifetime',
    code: 'FST_WS_PROXY_TUNNEL_TIMEOUT',
    after: 400
  }])
  t.match(logged(logs.records, 'tunnel closed'), [{ level: 30, reason: 'lifetime', durationMs: event.durationMs }])
})

t.test('timeouts.send closes a tunnel whose upstream takes none of the client\'s bytes', async (t) => {
  // The upstream answers 101, then never reads: the kernel buffers fill, then the gateway's writes to it stay queued.
  const upstream = await headUpstream(t, ({ socket }) => {
    socket.write(switching())
    socket.pause()
  })
  const logs = logCapture()
  const { app, port } = await gateway(t, { upstream: origin(upstream), timeouts: { send: 300 } }, { logger: { level: 'info', stream: logs.stream } })
  const events = closeEvents(app)
  const client = await rawClient(t, port)
  client.socket.write(upgradeHead('/upload'))
  await client.contains('\r\n\r\n')
  const flow = flood(client.socket, 512 * MB)
  await client.end(5000)
  const endedAt = Date.now()
  flow.stop()
  await waitFor(() => events.length === 1, 3000, 'the tunnelClose event')
  const event = events[0]
  const lived = endedAt - event.openedAt
  t.ok(lived >= 300 && lived < 4000, `the client got its FIN ${lived} ms after the 101 (timeouts.send 300)`)
  t.match(event, { reason: 'send-timeout', protocol: 'foo' })
  t.ok(flow.sent < 512 * MB, `the client had written ${flow.sent / MB} MB, and was stalled`)
  t.ok(event.bytesFromClient > 64 * 1024, `${event.bytesFromClient} bytes went into the tunnel before it stuck`)
  t.match(logged(logs.records, 'tunnel send timeout'), [{
    level: 30,
    reason: 'send-timeout',
    code: 'FST_WS_PROXY_TUNNEL_TIMEOUT',
    upstream: origin(upstream),
    after: 300
  }])
  t.match(logged(logs.records, 'tunnel closed'), [{ level: 30, reason: 'send-timeout' }])
  t.equal(app.wsProxy.metrics().routes[0].tunnels.closed['send-timeout'], 1)
})

t.test('each route keeps its own idle timeout; a route without one inherits the plugin\'s', async (t) => {
  const { server, wss } = await wsUpstream(t)
  const { app, url } = await gateway(t, {
    timeouts: { idle: 1200 },
    routes: [
      { prefix: '/fast/', upstream: origin(server), timeouts: { idle: 200 } },
      { prefix: '/slow/', upstream: origin(server) }
    ]
  })
  const sides = serverSides(wss)
  const events = closeEvents(app)
  const fast = await openWs(t, wsUrl(url, '/fast/x'))
  const slow = await openWs(t, wsUrl(url, '/slow/x'))
  const fastClosed = wsClosed(fast, 3000)
  const slowClosed = wsClosed(slow, 4000)
  t.equal((await fastClosed).code, 1001)
  t.equal(slow.readyState, slow.OPEN, 'the /slow/ tunnel is still open when the /fast/ one closes')
  t.equal((await slowClosed).code, 1001)
  await waitFor(() => events.length === 2, 2000, 'both tunnelClose events')
  const byRoute = Object.fromEntries(events.map((e) => [e.route, e]))
  t.match(byRoute['/fast/'], { reason: 'idle-timeout' })
  t.match(byRoute['/slow/'], { reason: 'idle-timeout' })
  const fastLived = byRoute['/fast/'].durationMs
  const slowLived = byRoute['/slow/'].durationMs
  t.ok(fastLived >= 200 && fastLived < 1100, `/fast/ lived ${fastLived} ms (idle 200)`)
  t.ok(slowLived >= 1200 && slowLived < 2700, `/slow/ lived ${slowLived} ms (idle 1200, inherited)`)
  await waitFor(() => sides.length === 2 && sides.every((s) => s.code !== null), 2000, 'both upstream sides to close')
  t.same(sides.map((s) => s.code), [1001, 1001])
})

t.test('timeouts.send on a request body: 504 FST_WS_PROXY_SEND_TIMEOUT with connection: close, delivered whole while the client still sends', async (t) => {
  // The upstream reads the request head, then never reads again nor answers.
  const upstream = await headUpstream(t, ({ socket }) => { socket.pause() })
  const logs = logCapture()
  const { app, url } = await gateway(t, { upstream: origin(upstream), timeouts: { send: 300, read: 10000 } },
    { logger: { level: 'info', stream: logs.stream } })
  const { req, response } = openRequest(t, `${url}/upload`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' } })
  const startedAt = Date.now()
  const flow = flood(req, 512 * MB)
  let res: IncomingMessage
  try {
    res = await within(response, 6000, () => `the answer (${flow.sent / MB} MB sent)`)
  } finally {
    flow.stop()
  }
  const answeredAt = Date.now() - startedAt
  const outcome = await readBody(res)
  t.equal(res.statusCode, 504)
  t.equal(res.headers.connection, 'close', 'the connection is closed after the answer')
  t.equal(outcome.error, null, 'no reset')
  t.ok(outcome.complete, 'the answer arrived whole')
  t.match(errorBody(outcome.body), {
    statusCode: 504,
    code: 'FST_WS_PROXY_SEND_TIMEOUT',
    message: `Upstream ${origin(upstream)} took no request bytes for 300 ms`
  })
  t.ok(answeredAt >= 300 && answeredAt < 5000, `answered after ${answeredAt} ms (timeouts.send 300)`)
  t.ok(flow.sent < 512 * MB, `the client had sent ${flow.sent / MB} MB and was still sending`)
  t.equal(upstream.accepted.length, 1)
  t.match(upstream.accepted[0].head, /^POST \/upload HTTP\/1\.1\r\n/)
  const sendTimeouts = (): number => app.wsProxy.metrics().routes[0].upstreamErrors['send-timeout']
  t.equal(sendTimeouts(), 1, 'counted as one send-timeout upstream error')
  // The body the upstream stalled on is no longer watched: more send timeouts pass, nothing fires again.
  await sleep(1000)
  t.equal(sendTimeouts(), 1, 'still one, a second later')
  t.equal(app.wsProxy.metrics().routes[0].requests['5xx'], 1, 'one answer')
  t.equal(logs.records.filter((r) => r.err?.code === 'FST_WS_PROXY_SEND_TIMEOUT').length, 1, 'logged once')
})

t.test('a tunnel that keeps talking within its timers is not closed', async (t) => {
  const { server } = await wsUpstream(t)
  const logs = logCapture()
  const { app, url } = await gateway(t, { upstream: origin(server), timeouts: { read: 300, send: 300, idle: 300, maxTunnelLifetime: 30000 } },
    { logger: { level: 'info', stream: logs.stream } })
  const events = closeEvents(app)
  const ws = await openWs(t, wsUrl(url, '/talk'))
  const talk = chatter(t, ws, 100)
  // More than three of each short timer.
  await sleep(1100)
  talk.stop()
  t.equal(ws.readyState, ws.OPEN, 'still open')
  t.equal(app.wsProxy.tunnels, 1)
  const echoes = await messages(ws, talk.sent, 2000)
  t.same(echoes.map((m) => m.data.toString()), Array.from({ length: talk.sent }, (_, i) => `tick ${i}`), `all ${talk.sent} messages echoed`)
  t.ok(talk.sent >= 5, `${talk.sent} round trips`)
  t.same(events, [])
  t.equal(logs.records.filter((r) => /^tunnel .*(timeout|lifetime)$/.test(r.msg ?? '')).length, 0, 'no timer fired')
  ws.close(1000)
  t.equal((await wsClosed(ws)).code, 1000)
  await waitFor(() => events.length === 1, 2000, 'the tunnelClose event')
  t.match(events[0].reason, /^(client|upstream)-closed$/)
})
