import t, { type Test } from 'tap'
import { once } from 'node:events'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { gateway, httpUpstream, origin, waitFor } from './helpers/servers.js'
import { request } from './helpers/clients.js'
import { logCapture, openRequest, readBody, scriptedUpstream, within, type LogRecord } from './helpers/http-faults.js'

// Failures once the response head has gone to the client cannot become a 502 any more: the client connection is
// aborted, so no truncated body passes for a complete one, and the gateway logs why. When the client leaves, the
// upstream request is released. Either way no upstream socket is left behind and the process keeps serving.
//
// When a request is aborted, undici 7 destroys its socket and then dials a fresh, idle one for the pool (the aborted
// request lingers in its queue until the new connection is up). That idle connection closes after the pool's
// keepAliveTimeout, so the client-abort tests use a short one and wait for the count to settle at 0.

const aborted = (records: LogRecord[]): LogRecord[] => records.filter((r) => r.err?.code === 'FST_WS_PROXY_RESPONSE_ABORTED')

const HEAD_AND_HALF = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n' + 'x'.repeat(40)

// The RST is seen as a reset or, when the FIN-less close wins the race, as a close.
const afterHead: Array<[string, (socket: Socket) => void, RegExp]> = [
  ['closes (FIN) after 40 of 100 Content-Length bytes', (socket) => { socket.end(HEAD_AND_HALF) }, /^other side closed/],
  ['resets (RST) after 40 of 100 Content-Length bytes', (socket) => {
    socket.write(HEAD_AND_HALF, () => setImmediate(() => socket.resetAndDestroy()))
  }, /^(read ECONNRESET|other side closed)/],
  ['closes in the middle of a chunked body', (socket) => {
    socket.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n28\r\n' + 'x'.repeat(40) + '\r\n')
  }, /^other side closed/]
]
for (const [what, script, reason] of afterHead) {
  t.test(`upstream ${what}: the client sees an aborted response, the gateway logs it`, async (t) => {
    const upstream = await scriptedUpstream(t, ({ socket }) => script(socket))
    const logs = logCapture()
    const { url, app } = await gateway(t, { upstream: origin(upstream) }, { logger: { level: 'info', stream: logs.stream } })
    const { req, response } = openRequest(t, `${url}/partial`)
    req.end()
    const res = await within(response, 2000, 'the response head')
    t.equal(res.statusCode, 200, 'the head had been relayed')
    const outcome = await readBody(res)
    t.equal(outcome.complete, false, 'never a complete-looking response')
    t.ok(outcome.error !== null || !res.complete, 'the client sees the abort')
    t.ok(outcome.body.length <= 40, `only what the upstream sent arrived (${outcome.body.length} bytes)`)
    await waitFor(() => aborted(logs.records).length === 1, 2000, 'the abort to be logged')
    const [record] = aborted(logs.records)
    t.equal(record.level, 40, 'logged as a warning')
    t.equal(record.msg, 'upstream response aborted')
    // pino appends the cause's message to the error's own.
    const prefix = `Response from upstream ${origin(upstream)} aborted after its head was sent: `
    const message = record.err?.message ?? ''
    t.ok(message.startsWith(prefix) && reason.test(message.slice(prefix.length)), `logged: ${message}`)
    await waitFor(() => app.wsProxy.upstreamConnections === 0, 2000, 'the upstream socket to be released')
  })
}

t.test('upstream silent longer than `timeouts.read` in the middle of the body: the client connection is aborted', async (t) => {
  let upstreamClosed = false
  const upstream = await scriptedUpstream(t, ({ socket }) => {
    socket.on('close', () => { upstreamClosed = true })
    socket.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello')
    // ...and the other 5 bytes never come.
  })
  const logs = logCapture()
  const { url, app } = await gateway(t, { upstream: origin(upstream), timeouts: { read: 200 } }, { logger: { level: 'info', stream: logs.stream } })
  const started = Date.now()
  const { req, response } = openRequest(t, `${url}/stall`)
  req.end()
  const res = await within(response, 2000, 'the response head')
  const outcome = await readBody(res, 3000)
  const elapsed = Date.now() - started
  t.equal(res.statusCode, 200)
  t.equal(outcome.body.toString(), 'hello')
  t.equal(outcome.complete, false, 'the stalled response is not passed off as complete')
  t.ok(elapsed >= 190 && elapsed < 1500, `aborted after ${elapsed} ms (200 ms read timeout, undici's 500 ms timer tick)`)
  await waitFor(() => aborted(logs.records).length === 1 && upstreamClosed, 2000, 'the log and the upstream socket close')
  t.match(aborted(logs.records)[0].err?.message, /aborted after its head was sent: Body Timeout Error/)
  t.equal(app.wsProxy.upstreamConnections, 0)
})

t.test('a slow but steady upstream is not cut off: the read timeout is between two reads, not for the whole body', async (t) => {
  const DRIPS = 14
  const upstream = await httpUpstream(t, (_req, res) => {
    res.writeHead(200, { 'content-length': String(2 * DRIPS) })
    let sent = 0
    const timer = setInterval(() => {
      res.write('ab')
      if (++sent === DRIPS) { clearInterval(timer); res.end() }
    }, 100)
    res.on('close', () => clearInterval(timer))
  })
  const { url } = await gateway(t, { upstream: origin(upstream), timeouts: { read: 200 } })
  // 1.4 s in all: longer than a 200 ms timeout can last even on undici's 500 ms tick, yet never 200 ms without a byte.
  const started = Date.now()
  const res = await within(request(`${url}/drip`), 5000, 'the slow response')
  t.equal(res.status, 200)
  t.equal(res.body.toString(), 'ab'.repeat(DRIPS))
  t.ok(Date.now() - started >= 1300, 'the body took longer than the read timeout')
})

/** An upstream that streams 16 KiB every few ms until its client leaves (but answers `/again` at once); reports how its response ended. */
async function endlessUpstream (t: Test): Promise<{ server: import('node:http').Server, state: { bytes: number, closed: boolean, finished: boolean } }> {
  const state = { bytes: 0, closed: false, finished: false }
  const chunk = Buffer.alloc(16 * 1024, 0x62)
  const server = await httpUpstream(t, (req: IncomingMessage, res: ServerResponse) => {
    if (req.url === '/again') {
      res.end('again')
      return
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    const timer = setInterval(() => { state.bytes += chunk.length; res.write(chunk) }, 2)
    res.on('finish', () => { state.finished = true })
    res.on('close', () => { state.closed = true; clearInterval(timer) })
  })
  // No `Keep-Alive: timeout=5` on its answers: undici would keep its idle connections for 3 s instead of the pool's setting.
  server.keepAliveTimeout = 0
  return { server, state }
}

t.test('the client aborts mid-download: the upstream request is released and the gateway keeps serving', async (t) => {
  const { server: upstream, state } = await endlessUpstream(t)
  const { url, app } = await gateway(t, { upstream: origin(upstream), pool: { keepAliveTimeout: 200 } })
  const { req, response } = openRequest(t, `${url}/forever`)
  req.end()
  const res = await within(response, 2000, 'the response head')
  res.on('error', () => {})
  await within(once(res, 'data'), 2000, 'the first bytes')
  t.equal(app.wsProxy.upstreamConnections, 1)
  req.destroy()
  await waitFor(() => state.closed, 2000, 'the upstream to see its response closed')
  t.equal(state.finished, false, 'the upstream response was cut, not completed')
  await waitFor(() => app.wsProxy.upstreamConnections === 0, 2500, 'the upstream connections to settle')
  t.pass('no upstream connection left')
  const next = await within(request(`${url}/again`), 2000, 'the next response')
  t.equal(next.body.toString(), 'again', 'the gateway still serves')
})

t.test('the client aborts mid-upload: the upstream request is aborted and released, nothing crashes', async (t) => {
  let received = 0
  let upstreamAborted = false
  let upstreamEnded = false
  const upstream = await httpUpstream(t, (req, res) => {
    req.on('data', (chunk: Buffer) => { received += chunk.length })
    req.on('end', () => { upstreamEnded = true; res.end('complete') })
    req.on('close', () => { if (!req.complete) upstreamAborted = true })
  })
  const logs = logCapture()
  const { url, app } = await gateway(t, { upstream: origin(upstream), pool: { keepAliveTimeout: 200 } }, { logger: { level: 'info', stream: logs.stream } })
  const { req } = openRequest(t, `${url}/upload`, { method: 'PUT', headers: { 'content-length': String(1024 * 1024) } })
  req.on('error', () => {})
  req.write(Buffer.alloc(64 * 1024, 0x63))
  await waitFor(() => received > 0, 2000, 'the upstream to see the first upload bytes')
  req.destroy()
  await waitFor(() => upstreamAborted, 2000, 'the upstream request to be aborted')
  t.equal(upstreamEnded, false, 'the upstream never saw a complete body')
  t.ok(received <= 64 * 1024, `the upstream got ${received} of the 65536 bytes sent`)
  await waitFor(() => app.wsProxy.upstreamConnections === 0, 2500, 'the upstream connections to settle')
  const next = await within(request(`${url}/after`, { method: 'POST', body: 'ok' }), 2000, 'the next response')
  t.equal(next.body.toString(), 'complete', 'the gateway still serves')
  t.notOk(logs.records.some((r) => r.level >= 60), 'nothing fatal logged')
})

t.test('the upstream answers before the upload is complete: the client gets that answer', async (t) => {
  const upstream = await httpUpstream(t, (req, res) => {
    // An early refusal, as an upstream checking auth or size would: it never reads the body.
    res.writeHead(413, { 'content-type': 'text/plain', connection: 'close' })
    res.end('too large')
    req.socket.on('error', () => {})
  })
  const { url, app } = await gateway(t, { upstream: origin(upstream) })
  const { req, response } = openRequest(t, `${url}/upload`, { method: 'POST', headers: { 'content-length': String(8 * 1024 * 1024) } })
  req.on('error', () => {})
  req.write(Buffer.alloc(64 * 1024, 0x64))
  const res = await within(response, 3000, 'the early answer')
  const outcome = await readBody(res)
  t.equal(res.statusCode, 413)
  t.equal(outcome.body.toString(), 'too large')
  req.destroy()
  await waitFor(() => app.wsProxy.upstreamConnections === 0, 2000, 'the upstream socket to be released')
})

t.test('a client gone before its request is dispatched: the request never reaches the upstream, nothing crashes', async (t) => {
  const urls: string[] = []
  const upstream = await httpUpstream(t, (req, res) => { urls.push(req.url as string); res.end('served') })
  const { url, app } = await gateway(t, { upstream: origin(upstream), pool: { keepAliveTimeout: 200 } }, {}, (app) => {
    // The client's connection dies between routing and the proxy handler (a hook awaiting something slow, say).
    app.addHook('preHandler', async (request) => {
      if (request.url === '/gone') request.raw.socket.destroy()
    })
  })
  await t.rejects(within(request(`${url}/gone`), 2000, 'the client to see the hang-up'), { code: 'ECONNRESET' })
  await waitFor(() => app.wsProxy.upstreamConnections === 0, 2500, 'the upstream connections to settle')
  const next = await within(request(`${url}/next`), 2000, 'the next response')
  t.equal(next.body.toString(), 'served')
  t.same(urls, ['/next'], 'the abandoned request was never sent')
})

t.test('the client leaves while the upstream has not answered yet: the upstream request is aborted', async (t) => {
  let upstreamClosed = false
  let answered = false
  const upstream = await httpUpstream(t, (req, res) => {
    if (req.url === '/next') {
      res.end('next')
      return
    }
    res.on('close', () => { upstreamClosed = true })
    // Thinks for longer than the test lasts; answers only if still asked.
    const timer = setTimeout(() => { answered = true; res.end('late') }, 10_000)
    res.on('close', () => clearTimeout(timer))
  })
  upstream.keepAliveTimeout = 0
  const { url, app } = await gateway(t, { upstream: origin(upstream), pool: { keepAliveTimeout: 200 } })
  const { req } = openRequest(t, `${url}/thinking`)
  req.on('error', () => {})
  req.end()
  await waitFor(() => app.wsProxy.upstreamConnections === 1, 2000, 'the request to reach the upstream')
  req.destroy()
  await waitFor(() => upstreamClosed, 2000, 'the upstream to see its request dropped')
  t.equal(answered, false)
  await waitFor(() => app.wsProxy.upstreamConnections === 0, 2500, 'the upstream connections to settle')
  const next = await within(request(`${url}/next`), 2000, 'the next response')
  t.equal(next.body.toString(), 'next')
})
