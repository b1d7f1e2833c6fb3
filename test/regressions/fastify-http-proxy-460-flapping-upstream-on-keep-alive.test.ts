// fastify-http-proxy #460 (2026): rapid requests while the upstream refused connections crashed the process with
// ERR_HTTP_HEADERS_SENT (two error paths answering one request). Here rapid requests share keep-alive client
// connections while the upstream is down, comes up, and dies again with requests in flight: each request gets
// exactly one well-formed answer, nothing is logged as answered twice, and the process lives on.
import t from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import { closedPort, gateway, logCapture, recordUnhandled, within } from '../helpers/servers.js'
import { readBody } from '../helpers/http-faults.js'

const unhandled = recordUnhandled(t)

t.test('down, up, killed mid-flight: 502 / 200 / 502 on reused client connections, one answer each', async (t) => {
  const upstreamPort = await closedPort()
  const logs = logCapture()
  const { url } = await gateway(t, { upstream: `http://127.0.0.1:${upstreamPort}`, pool: { keepAliveTimeout: 200 } }, { logger: { level: 'warn', stream: logs.stream } })
  // Four client connections, reused for every request (the browsers and load balancers of the issue).
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 })
  t.teardown(() => agent.destroy())
  const sockets = new Set<unknown>()
  async function get (path: string): Promise<{ status: number, body: string, complete: boolean }> {
    const req = http.get(`${url}${path}`, { agent })
    req.on('socket', (socket) => sockets.add(socket))
    const [res] = await within(once(req, 'response'), 5000, `the answer to ${path}`) as [http.IncomingMessage]
    const outcome = await readBody(res)
    return { status: res.statusCode as number, body: outcome.body.toString(), complete: outcome.complete }
  }

  const down = await Promise.all(Array.from({ length: 100 }, async (_v, i) => get(`/down/${i}`)))
  t.same(new Set(down.map((r) => r.status)), new Set([502]), 'refused: 100 × 502')
  t.ok(down.every((r) => r.complete && (JSON.parse(r.body) as { code: string }).code === 'FST_WS_PROXY_CONNECT_FAILED'), 'each a complete, coded error body')
  t.ok(sockets.size <= 4, `over ${sockets.size} reused client connections`)

  // The upstream comes up on that port; some requests hang until it is killed with them in flight.
  const held = new Set<http.ServerResponse>()
  const upstream = http.createServer((req, res) => {
    if (req.url?.startsWith('/hold') === true) held.add(res)
    else res.end('up')
  })
  const connections = new Set<import('node:net').Socket>()
  upstream.on('connection', (socket) => { connections.add(socket) })
  upstream.listen(upstreamPort, '127.0.0.1')
  await within(once(upstream, 'listening'), 2000, 'the upstream to listen')
  t.teardown(() => { for (const s of connections) s.destroy(); upstream.close() })
  const up = await Promise.all(Array.from({ length: 50 }, async (_v, i) => get(`/up/${i}`)))
  t.same(new Set(up.map((r) => `${r.status} ${r.body}`)), new Set(['200 up']), 'up: 50 × 200')

  const inFlight = Promise.all(Array.from({ length: 20 }, async (_v, i) => get(`/hold/${i}`)))
  const deadline = Date.now() + 2000
  while (held.size < 4 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
  // Killed: listener closed, every connection reset, with requests queued behind the held ones.
  upstream.close()
  for (const s of connections) s.resetAndDestroy()
  const killed = await within(inFlight, 5000, 'the in-flight requests to be answered')
  t.same(new Set(killed.map((r) => r.status)), new Set([502]), 'killed mid-flight: 20 × 502')
  t.ok(killed.every((r) => r.complete), 'each a complete answer on a still usable connection')

  const after = await get('/after')
  t.equal(after.status, 502, 'and down again: the gateway still answers')
  t.same(logs.records.filter((r) => /already sent|ERR_HTTP_HEADERS_SENT/i.test(JSON.stringify(r))), [], 'no request was answered twice')
  t.same(unhandled, [], 'nothing unhandled')
})
