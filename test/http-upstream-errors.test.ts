import t, { type Test } from 'tap'
import net from 'node:net'
import { once } from 'node:events'
import { gateway, httpUpstream, listen, origin, portOf, waitFor } from './helpers/servers.js'
import { request } from './helpers/clients.js'
import { closedPort, errorBody, fixedResponseUpstream, openRequest, readBody, scriptedUpstream, within, type ErrorBody } from './helpers/http-faults.js'

// undici runs its connect, headers and body timers on a 500 ms tick, so a 200 ms timeout fires after 500-1000 ms
// (slightly more for connect); 1500 ms is the upper bound asserted.
const TIMER_SLACK = 1500

// Failures before the response head: the client gets a coded 502/504 from Fastify's default error handler,
// nginx's mapping (502 refused/reset/garbage, 504 timeouts). Afterwards no upstream socket is left behind
// and the gateway keeps serving.

const badGateway = (code: string, message: string): ErrorBody => ({ statusCode: 502, code, error: 'Bad Gateway', message })
const timedOut = (code: string, message: string): ErrorBody => ({ statusCode: 504, code, error: 'Gateway Timeout', message })

/** The gateway still proxies after a failure: a healthy route on the same app answers. */
async function stillServes (t: Test, url: string): Promise<void> {
  const res = await request(`${url}/healthy/ping`)
  t.equal(res.body.toString(), 'pong', 'the gateway still serves')
}

/** A gateway with the route under test at `/` and a healthy upstream at `/healthy/`. */
async function gatewayWith (t: Test, upstream: string, extra: { timeouts?: { connect?: number, read?: number } } = {}) {
  const healthy = await httpUpstream(t, (_req, res) => res.end('pong'))
  return gateway(t, {
    routes: [
      { prefix: '/healthy/', upstream: origin(healthy) + '/' },
      { prefix: '/', upstream, ...extra }
    ]
  })
}

t.test('upstream refuses the connection: 502 FST_WS_PROXY_CONNECT_FAILED', async (t) => {
  const port = await closedPort()
  const { url, app } = await gatewayWith(t, `http://127.0.0.1:${port}`)
  const res = await request(`${url}/x`)
  t.equal(res.status, 502)
  t.equal(res.headers['content-type'], 'application/json; charset=utf-8')
  t.same(errorBody(res.body), badGateway('FST_WS_PROXY_CONNECT_FAILED', `Could not connect to upstream http://127.0.0.1:${port}: ECONNREFUSED`))
  t.equal(app.wsProxy.upstreamConnections, 0)
  await stillServes(t, url)
})

t.test('many requests to a refusing upstream at once: every one gets its 502, nothing crashes', async (t) => {
  const port = await closedPort()
  const { url, app } = await gatewayWith(t, `http://127.0.0.1:${port}`)
  const answers = await Promise.all(Array.from({ length: 20 }, (_v, i) => request(`${url}/burst/${i}`, { method: i % 2 === 0 ? 'GET' : 'POST', body: i % 2 === 0 ? undefined : 'x'.repeat(1000) })))
  t.same(answers.map((a) => a.status), Array(20).fill(502))
  t.same(new Set(answers.map((a) => errorBody(a.body).code)), new Set(['FST_WS_PROXY_CONNECT_FAILED']))
  t.equal(app.wsProxy.upstreamConnections, 0)
  await stillServes(t, url)
})

const resets: Array<[string, (c: { socket: net.Socket }) => void, string]> = [
  ['closes (FIN) after reading the request', ({ socket }) => { socket.end() }, 'UND_ERR_SOCKET'],
  ['resets (RST) after reading the request', ({ socket }) => { socket.resetAndDestroy() }, 'ECONNRESET'],
  ['closes in the middle of the head', ({ socket }) => { socket.end('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Half: ') }, 'UND_ERR_SOCKET']
]
for (const [what, script, reason] of resets) {
  t.test(`upstream ${what}: 502 FST_WS_PROXY_UPSTREAM_RESET`, async (t) => {
    const upstream = await scriptedUpstream(t, script)
    const { url, app } = await gatewayWith(t, origin(upstream))
    const res = await request(`${url}/x`)
    t.equal(res.status, 502)
    t.same(errorBody(res.body), badGateway('FST_WS_PROXY_UPSTREAM_RESET', `Upstream ${origin(upstream)} closed the connection before responding: ${reason}`))
    await waitFor(() => app.wsProxy.upstreamConnections === 0, 2000, 'the dead upstream socket to be released')
    t.pass('no upstream connection left')
    await stillServes(t, url)
  })
}

t.test('upstream accepts and closes before reading anything: 502 FST_WS_PROXY_UPSTREAM_RESET', async (t) => {
  const upstream = await listen(t, net.createServer((socket) => { socket.destroy() }))
  const { url, app } = await gatewayWith(t, origin(upstream))
  const res = await request(`${url}/x`, { method: 'PUT', body: 'payload' })
  t.equal(res.status, 502)
  t.equal(errorBody(res.body).code, 'FST_WS_PROXY_UPSTREAM_RESET')
  t.equal(errorBody(res.body).statusCode, 502)
  await waitFor(() => app.wsProxy.upstreamConnections === 0, 2000, 'the upstream socket to be released')
  await stillServes(t, url)
})

// Heads that are not valid HTTP/1.1 responses. The reasons are undici's and Node's own words.
const garbage: Array<[string, string, string]> = [
  ['a status that is not a number', 'HTTP/1.1 abc\r\n\r\n', 'Response does not match the HTTP/1.1 protocol (Invalid status code)'],
  ['no HTTP version', 'hello\r\n\r\n', 'Response does not match the HTTP/1.1 protocol (Expected HTTP/, RTSP/ or ICE/)'],
  ['status 888', 'HTTP/1.1 888 Odd\r\nContent-Length: 0\r\n\r\n', 'Invalid status code: 888'],
  ['status 600', 'HTTP/1.1 600 Odd\r\nContent-Length: 2\r\n\r\nok', 'Invalid status code: 600'],
  ['status 1000', 'HTTP/1.1 1000 Odd\r\nContent-Length: 0\r\n\r\n', 'Response does not match the HTTP/1.1 protocol (Invalid response status)'],
  ['status 099', 'HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n', 'malformed response head'],
  ['a control character in the reason phrase', 'HTTP/1.1 200 O\x7fK\r\nContent-Length: 0\r\n\r\n', 'Invalid character in statusMessage'],
  ['a control character in a header value', 'HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 0\r\n\r\n', 'Response does not match the HTTP/1.1 protocol (Invalid header value char)'],
  ['a space in a header name', 'HTTP/1.1 200 OK\r\nX A: b\r\nContent-Length: 0\r\n\r\n', 'Response does not match the HTTP/1.1 protocol (Invalid header token)'],
  ['a head over 16 KiB', `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(20_000)}\r\nContent-Length: 0\r\n\r\n`, 'Headers Overflow Error'],
  ['101 with Upgrade to a plain request', 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n', 'bad upgrade'],
  ['a bare 101 to a plain request', 'HTTP/1.1 101 Switching Protocols\r\n\r\n', 'malformed response head'],
  // undici cannot take a 100 it did not ask for (it never sends Expect): documented as a 502.
  ['an unasked 100 Continue', 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', 'bad response']
]
for (const [what, bytes, reason] of garbage) {
  t.test(`upstream answers ${what}: 502 FST_WS_PROXY_BAD_RESPONSE`, async (t) => {
    const upstream = await fixedResponseUpstream(t, bytes)
    const { url, app } = await gatewayWith(t, origin(upstream))
    const res = await request(`${url}/x`)
    t.equal(res.status, 502)
    t.equal(res.headers['content-type'], 'application/json; charset=utf-8', 'nothing of the upstream\'s answer leaks')
    t.same(errorBody(res.body), badGateway('FST_WS_PROXY_BAD_RESPONSE', `Upstream ${origin(upstream)} sent an invalid response: ${reason}`))
    await waitFor(() => app.wsProxy.upstreamConnections === 0, 2000, 'the upstream socket to be dropped')
    t.pass('the connection that carried garbage is not reused')
    await stillServes(t, url)
  })
}

t.test('a head Node refuses: none of the upstream\'s headers leak into the 502, the gateway\'s own stay out too', async (t) => {
  // writeHead copies the upstream's headers into the response before it rejects the reason phrase.
  const upstream = await fixedResponseUpstream(t, 'HTTP/1.1 200 O\x7fK\r\nX-Upstream: leaked?\r\nSet-Cookie: s=1\r\nContent-Length: 0\r\n\r\n')
  const { url } = await gateway(t, { upstream: origin(upstream) }, {}, (app) => {
    app.addHook('onRequest', async (_request, reply) => { reply.raw.setHeader('x-gateway-raw', 'set on the raw response') })
  })
  const res = await request(`${url}/x`)
  t.equal(res.status, 502)
  t.equal(res.headers['x-upstream'], undefined)
  t.equal(res.headers['set-cookie'], undefined)
  t.equal(res.headers['x-gateway-raw'], undefined, 'the half-written head is discarded whole')
  t.same(errorBody(res.body), badGateway('FST_WS_PROXY_BAD_RESPONSE', `Upstream ${origin(upstream)} sent an invalid response: Invalid character in statusMessage`))
})

t.test('upstream accepts and never answers: 504 FST_WS_PROXY_READ_TIMEOUT after `timeouts.read`', async (t) => {
  let closed = false
  const upstream = await scriptedUpstream(t, ({ socket }) => { socket.on('close', () => { closed = true }) })
  const { url, app } = await gatewayWith(t, origin(upstream), { timeouts: { read: 200 } })
  const started = Date.now()
  const res = await request(`${url}/slow`)
  const elapsed = Date.now() - started
  t.equal(res.status, 504)
  t.same(errorBody(res.body), timedOut('FST_WS_PROXY_READ_TIMEOUT', `Upstream ${origin(upstream)} sent no response within 200 ms`))
  t.ok(elapsed >= 190 && elapsed < TIMER_SLACK, `answered after ${elapsed} ms (200 ms timeout)`)
  await waitFor(() => closed && app.wsProxy.upstreamConnections === 0, 2000, 'the silent upstream connection to be closed')
  t.pass('the gateway closed the silent upstream connection')
  await stillServes(t, url)
})

t.test('an interim 103 is not relayed; silence after it still ends in 504 FST_WS_PROXY_READ_TIMEOUT', async (t) => {
  const upstream = await scriptedUpstream(t, ({ socket }) => {
    socket.write('HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n')
  })
  const { url } = await gatewayWith(t, origin(upstream), { timeouts: { read: 200 } })
  const started = Date.now()
  const { req, response } = openRequest(t, `${url}/hints`)
  let interim = 0
  req.on('information', () => { interim++ })
  req.end()
  const res = await within(response, 3000, 'the response')
  const body = await readBody(res)
  const elapsed = Date.now() - started
  t.equal(res.statusCode, 504)
  t.same(errorBody(body.body), timedOut('FST_WS_PROXY_READ_TIMEOUT', `Upstream ${origin(upstream)} sent no response within 200 ms`))
  t.equal(interim, 0, 'the client saw no 1xx')
  t.ok(elapsed >= 190 && elapsed < TIMER_SLACK, `answered after ${elapsed} ms (200 ms timeout)`)
})

t.test('connecting takes longer than `timeouts.connect`: 504 FST_WS_PROXY_CONNECT_TIMEOUT', async (t) => {
  // A TCP server that accepts and never speaks, used as an https:// upstream: the TLS handshake never completes,
  // and undici's connect timeout covers the handshake.
  let accepted = 0
  let closed = 0
  const silent = await listen(t, net.createServer((socket) => {
    accepted++
    socket.resume()
    socket.on('close', () => { closed++ })
  }))
  const upstream = `https://127.0.0.1:${portOf(silent)}`
  const { url, app } = await gatewayWith(t, upstream, { timeouts: { connect: 200 } })
  const started = Date.now()
  const res = await request(`${url}/x`)
  const elapsed = Date.now() - started
  t.equal(res.status, 504)
  t.same(errorBody(res.body), timedOut('FST_WS_PROXY_CONNECT_TIMEOUT', `Connecting to upstream ${upstream} timed out after 200 ms`))
  t.ok(elapsed >= 190 && elapsed < TIMER_SLACK, `answered after ${elapsed} ms (200 ms timeout)`)
  t.equal(accepted, 1)
  await waitFor(() => closed === 1, 2000, 'the half-open connection to be closed')
  t.equal(app.wsProxy.upstreamConnections, 0)
  await stillServes(t, url)
})

t.test('a request abandoned while queued for a pooled connection is never sent upstream', async (t) => {
  const urls: string[] = []
  let releaseFirst!: () => void
  const firstHeld = new Promise<void>((resolve) => { releaseFirst = resolve })
  const upstream = await httpUpstream(t, (req, res) => {
    urls.push(req.url as string)
    if (req.url === '/first') firstHeld.then(() => res.end('first'), () => {})
    else res.end('later')
  })
  let handled = 0
  let queuedClosed = false
  const { url } = await gateway(t, { upstream: origin(upstream), pool: { connections: 1 } }, {}, (app) => {
    app.addHook('preHandler', async () => { handled++ })
    app.addHook('onRequest', async (request, reply) => {
      if (request.url === '/queued') reply.raw.on('close', () => { queuedClosed = true })
    })
  })
  const first = openRequest(t, `${url}/first`)
  first.req.end()
  await waitFor(() => urls.length === 1, 2000, 'the first request to hold the only connection')
  // The second request waits in the pool's queue behind the first; then its client gives up.
  const queued = openRequest(t, `${url}/queued`)
  queued.req.end()
  await waitFor(() => handled === 2, 2000, 'the gateway to dispatch the second request')
  await new Promise((resolve) => setImmediate(resolve))
  queued.req.destroy()
  await waitFor(() => queuedClosed, 2000, 'the gateway to see the queued client leave')
  releaseFirst()
  const res = await within(first.response, 2000, 'the first response')
  res.resume()
  await within(once(res, 'end'), 2000, 'the first body')
  const third = await request(`${url}/third`)
  t.equal(third.body.toString(), 'later')
  t.same(urls, ['/first', '/third'], 'the abandoned request never reached the upstream')
})
