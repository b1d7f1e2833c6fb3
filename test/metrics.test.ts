// What an operator reads: `fastify.wsProxy.metrics()` after a scripted scenario, the same counters through
// prom-client (the user's registry or the global one, optionally served at a path), and the tunnel events and
// log lines. Every figure asserted is one the scenario produced on the wire.
import t from 'tap'
import Fastify from 'fastify'
import { Registry, register as globalRegistry } from 'prom-client'
import wsProxyPlugin, { type TunnelCloseEvent, type TunnelOpenEvent } from '../src/index.js'
import { closedPort, gateway, httpUpstream, origin, waitFor, wsUpstream } from './helpers/servers.js'
import { request } from './helpers/clients.js'
import { requestPath } from './helpers/http-faults.js'
import { logCapture, messages, openWs, wsClosed, wsUrl } from './helpers/ws.js'

async function scenario (t: Parameters<typeof gateway>[0], extra: Record<string, unknown> = {}, fastifyOptions = {}) {
  const http = await httpUpstream(t, (req, res) => {
    res.writeHead(req.url === '/api/missing' ? 404 : 200, { 'content-type': 'text/plain' })
    res.end('answer')
  })
  const { server: ws } = await wsUpstream(t)
  const down = await closedPort()
  const routes = [
    { prefix: '/api/', upstream: origin(http) },
    { prefix: '/ws/', upstream: origin(ws) },
    { prefix: '/down/', upstream: `http://127.0.0.1:${down}` }
  ]
  const gw = await gateway(t, { routes, ...extra } as never, fastifyOptions)
  return { ...gw, http, ws, down }
}

t.test('metrics() counts answers by class, upstream errors, head latency, tunnels and their bytes', async (t) => {
  const { app, url, http, ws, down } = await scenario(t)
  for (let i = 0; i < 3; i++) t.equal((await request(`${url}/api/ok`)).status, 200)
  t.equal((await request(`${url}/api/missing`)).status, 404)
  t.equal((await request(`${url}/down/x`)).status, 502)
  t.equal((await requestPath(url, '/api/../etc')).status, 400, 'the proxy\'s own refusal')

  const client = await openWs(t, wsUrl(url, '/ws/echo'))
  for (let i = 0; i < 3; i++) client.send(Buffer.alloc(10, i))
  await messages(client, 3)
  const live = app.wsProxy.metrics().routes.find((r) => r.route === '/ws/')
  t.equal(live?.tunnels.live, 1)
  t.ok((live?.tunnels.bytesFromClient ?? 0) >= 3 * 16, `live tunnel bytes are counted (${live?.tunnels.bytesFromClient})`)
  client.close(1000)
  await wsClosed(client)
  await waitFor(() => app.wsProxy.tunnels === 0, 2000, 'the tunnel to close')

  const routes = app.wsProxy.metrics().routes
  t.same(routes.map((r) => [r.route, r.upstream]), [['/api/', origin(http)], ['/ws/', origin(ws)], ['/down/', `http://127.0.0.1:${down}`]])
  const [api, tunnels, failing] = routes
  t.same(api.requests, { '1xx': 0, '2xx': 3, '3xx': 0, '4xx': 2, '5xx': 0 }, 'three 200s, the upstream\'s 404 and the proxy\'s 400')
  t.equal(api.responseHead.count, 4, 'one head latency per upstream answer')
  t.ok(api.responseHead.sum > 0 && api.responseHead.sum < 5)
  t.equal(api.responseHead.counts.at(-1), 4, 'cumulative: every answer is under the last bucket (10 s)')
  t.ok(api.responseHead.counts.every((n, i) => i === 0 || n >= api.responseHead.counts[i - 1]), 'buckets are cumulative')
  t.same(failing.upstreamErrors, { 'connect-failed': 1, 'connect-timeout': 0, 'read-timeout': 0, 'send-timeout': 0, reset: 0, 'bad-response': 0, aborted: 0, 'no-live-upstream': 0 })
  t.same(failing.requests['5xx'], 1)
  t.equal(tunnels.requests['1xx'], 1, 'the 101')
  t.equal(tunnels.tunnels.opened, 1)
  t.equal(tunnels.tunnels.live, 0)
  const closes = Object.entries(tunnels.tunnels.closed).filter(([, n]) => n > 0)
  t.equal(closes.length, 1)
  t.match(closes[0], [/^(client|upstream)-closed$/, 1], 'a clean close by one of the peers')
  // Three 10-byte masked frames (16 bytes each) and the client's Close (2 + 4 + 2 bytes) at least.
  t.ok(tunnels.tunnels.bytesFromClient >= 3 * 16 + 8, `bytes from the client: ${tunnels.tunnels.bytesFromClient}`)
  t.ok(tunnels.tunnels.bytesFromUpstream >= 3 * 12 + 4, `bytes from the upstream: ${tunnels.tunnels.bytesFromUpstream}`)
})

t.test('metrics are exported to the given prom-client registry and served at metrics.path', async (t) => {
  const registry = new Registry()
  const { url, http } = await scenario(t, { metrics: { registry, path: '/metrics' } })
  t.equal((await request(`${url}/api/ok`)).status, 200)
  t.equal((await request(`${url}/down/x`)).status, 502)
  const scrape = await request(`${url}/metrics`)
  t.equal(scrape.status, 200)
  t.match(scrape.headers['content-type'], /^text\/plain/)
  const text = scrape.body.toString()
  const api = `route="/api/",upstream="${origin(http)}"`
  t.match(text, `fastify_ws_proxy_requests_total{${api},status_class="2xx"} 1`)
  t.match(text, /fastify_ws_proxy_upstream_errors_total\{route="\/down\/",[^}]*kind="connect-failed"\} 1/)
  t.match(text, `fastify_ws_proxy_response_head_seconds_count{${api}} 1`)
  t.match(text, 'fastify_ws_proxy_tunnels{route="/ws/"')
  t.match(text, /fastify_ws_proxy_tunnels_closed_total\{route="\/ws\/",[^}]*reason="shutdown"\} 0/)
  t.notMatch(text, /process_cpu/, 'nothing but the proxy\'s metrics in a fresh registry')
  t.equal(globalRegistry.getSingleMetric('fastify_ws_proxy_tunnels'), undefined, 'the global registry is left alone')
})

t.test('without a registry the global one is used; a prefix renames every metric', async (t) => {
  t.teardown(() => globalRegistry.clear())
  const { url } = await scenario(t, { metrics: { prefix: 'edge_' } })
  await request(`${url}/api/ok`)
  const text = await globalRegistry.metrics()
  t.match(text, /edge_requests_total\{route="\/api\/",[^}]*status_class="2xx"\} 1/)
  t.notMatch(text, /fastify_ws_proxy_/)
})

t.test('two registrations exporting to one registry share the counters instead of failing', async (t) => {
  const registry = new Registry()
  const http = await httpUpstream(t)
  const app = Fastify()
  t.teardown(async () => await app.close())
  await app.register(wsProxyPlugin, { routes: [{ prefix: '/a/', upstream: origin(http) }], metrics: { registry } })
  await app.register(wsProxyPlugin, { routes: [{ prefix: '/b/', upstream: origin(http) }], metrics: { registry } })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  await request(`${base}/a/x`)
  await request(`${base}/b/x`)
  await request(`${base}/b/y`)
  const text = await registry.metrics()
  t.match(text, /requests_total\{route="\/a\/",[^}]*status_class="2xx"\} 1/)
  t.match(text, /requests_total\{route="\/b\/",[^}]*status_class="2xx"\} 2/)
  t.match(text, /response_head_seconds_count\{route="\/b\/",[^}]*\} 2/, 'the second registration\'s latencies are observed too')
})

t.test('a registry that is not a prom-client Registry is an option error', async (t) => {
  const app = Fastify()
  t.teardown(async () => await app.close())
  app.register(wsProxyPlugin, { upstream: 'http://127.0.0.1:1', metrics: { registry: { metrics: 'no' } as never } })
  const err = await app.ready().then(() => null, (e: unknown) => e as Error & { code: string })
  t.equal(err?.code, 'FST_WS_PROXY_INVALID_OPTION')
  t.equal(err?.message, 'Invalid fastify-ws-proxy option metrics/registry: expected a prom-client Registry')
})

t.test('tunnelOpen and tunnelClose carry route, upstream, client, protocol, reason, duration and bytes', async (t) => {
  const logs = logCapture()
  const { app, url, ws } = await scenario(t, {}, { logger: { level: 'info', stream: logs.stream } })
  const opened: TunnelOpenEvent[] = []
  const closed: TunnelCloseEvent[] = []
  app.wsProxy.on('tunnelOpen', (event) => opened.push(event))
  app.wsProxy.on('tunnelClose', (event) => closed.push(event))
  const started = Date.now()
  const client = await openWs(t, wsUrl(url, '/ws/chat'))
  client.send('hello')
  await messages(client, 1)
  await waitFor(() => opened.length === 1, 1000, 'the open event')
  t.match(opened[0], { route: '/ws/', upstream: origin(ws), client: '127.0.0.1', protocol: 'websocket' })
  t.ok(opened[0].openedAt >= started - 5 && opened[0].openedAt <= Date.now())
  client.close(1000)
  await waitFor(() => closed.length === 1, 2000, 'the close event')
  const event = closed[0]
  t.match(event, { route: '/ws/', upstream: origin(ws), client: '127.0.0.1', protocol: 'websocket', openedAt: opened[0].openedAt })
  t.match(event.reason, /^(client|upstream)-closed$/)
  t.ok(event.durationMs >= 0 && event.durationMs < 3000)
  t.ok(event.bytesFromClient >= 11 && event.bytesFromUpstream >= 7, `bytes ${event.bytesFromClient}/${event.bytesFromUpstream}`)
  const line = logs.records.find((r) => r.msg === 'tunnel closed')
  t.match(line, { level: 30, route: '/ws/', reason: event.reason, bytesFromClient: event.bytesFromClient }, 'one info line per closed tunnel')
})

t.test('tunnelLogLevel sets the close line\'s level, and silent drops it', async (t) => {
  for (const [level, expected] of [['warn', 40], ['silent', null]] as const) {
    const logs = logCapture()
    const { app, url } = await scenario(t, { tunnelLogLevel: level }, { logger: { level: 'info', stream: logs.stream } })
    const client = await openWs(t, wsUrl(url, '/ws/x'))
    client.close(1000)
    await wsClosed(client)
    await waitFor(() => app.wsProxy.tunnels === 0, 2000, 'the tunnel to close')
    const line = logs.records.find((r) => r.msg === 'tunnel closed')
    if (expected === null) t.equal(line, undefined, 'silent: no line')
    else t.equal(line?.level, expected, `${level}: level ${expected}`)
  }
})
