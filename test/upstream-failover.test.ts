import t, { type Test } from 'tap'
import http, { type IncomingMessage, type Server } from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { WebSocket } from 'ws'
import type { FastifyInstance } from 'fastify'
import type { ServerInfo, ServerOptions, UpstreamGroupOptions } from '../src/index.js'
import { gateway, httpUpstream, listen, logCapture, portOf, waitFor, within, wsUpstream, type LogRecord } from './helpers/servers.js'
import { request, type Answer } from './helpers/clients.js'
import { errorBody, fixedResponseUpstream, readBody, scriptedUpstream, type ErrorBody } from './helpers/http-faults.js'
import { messages, unexpectedResponse, wsUrl } from './helpers/ws.js'

// Upstream groups failing under load, seen from the client through Fastify over real sockets: nginx's
// `proxy_next_upstream` (which failed attempts go to another server, bounded by tries, time and the method),
// `max_fails`/`fail_timeout` passive health (a server out, tried again, back), `backup` and `down` servers, and
// "no live upstreams". Every test ends with no attempt left in flight on any server and no upstream connection
// left once the app is closed.

// undici fires its read (headers) timer on a 500 ms tick: `read: 300` fires 0.5 to 1 s after the request left.
const READ = 300
const RETRY_LOG = 'upstream attempt failed: trying the next server'
const STATUS_RETRY_LOG = 'upstream answered a status that is tried again: trying the next server'
const OUT_LOG = 'upstream server failed: out of the group for failTimeout'
const BACK_LOG = 'upstream server back in the group'

/** Where a test upstream listens, as the group and `$upstream_addr` name it. */
interface Endpoint { port: number, addr: string, url: string }

function endpoint (port: number): Endpoint {
  return { port, addr: `127.0.0.1:${port}`, url: `http://127.0.0.1:${port}` }
}

/**
 * The lowest port Linux hands out for port 0. Test servers (of this file and of the test files tap runs beside it)
 * all listen on port 0, so a closed port below that range cannot be taken by one of them in the middle of a test.
 */
function ephemeralLow (): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 0
  } catch {
    return 0
  }
}

/** Whether connecting to 127.0.0.1:`port` is refused at once. */
async function refuses (port: number): Promise<boolean> {
  const socket = net.connect(port, '127.0.0.1')
  try {
    await within(once(socket, 'connect'), 1000, `a probe of port ${port}`)
    return false
  } catch (err) {
    return (err as { code?: string }).code === 'ECONNREFUSED'
  } finally {
    socket.destroy()
  }
}

/**
 * `n` distinct ports on 127.0.0.1 where connecting is refused at once. Like closedPort(), but taken below the
 * ephemeral range (each probed) when there is one, so that no server listening on port 0 elsewhere takes it.
 */
async function refusing (n: number): Promise<Endpoint[]> {
  const low = ephemeralLow()
  const ports = new Set<number>()
  if (low > 12_000) {
    for (let attempt = 0; attempt < 50 && ports.size < n; attempt++) {
      const port = 10_000 + Math.floor(Math.random() * (low - 10_000))
      if (!ports.has(port) && await refuses(port)) ports.add(port)
    }
  }
  // Elsewhere: ports bound at the same time, then closed, are at least distinct.
  if (ports.size < n) {
    const held = await Promise.all(Array.from({ length: n - ports.size }, async () => {
      const server = net.createServer()
      server.listen(0, '127.0.0.1')
      await within(once(server, 'listening'), 2000, 'a port to close')
      return server
    }))
    for (const server of held) ports.add(portOf(server))
    await Promise.all(held.map(async (server) => await new Promise((resolve) => server.close(resolve))))
  }
  return [...ports].map(endpoint)
}

/** A healthy upstream answering `status` with its name as the body (and the request body's length in a header). */
interface Live extends Endpoint {
  server: Server
  /** Stops it the way a crashed process would: the listener closes and every connection drops. */
  kill (): void
}

async function live (t: Test, name: string, status = 200): Promise<Live> {
  const server = await httpUpstream(t, (req, res) => {
    let length = 0
    req.on('data', (chunk: Buffer) => { length += chunk.length })
    req.on('end', () => {
      res.writeHead(status, { 'content-type': 'text/plain', 'x-body-length': String(length) })
      res.end(name)
    })
  })
  return {
    server,
    ...endpoint(portOf(server)),
    kill () {
      server.close()
      server.closeAllConnections()
    }
  }
}

/** An upstream that accepts and reads the request, then never answers: each attempt is one connection. */
async function hanging (t: Test): Promise<Endpoint & { connections: () => net.Socket[] }> {
  const server = await scriptedUpstream(t, () => {})
  return { ...endpoint(portOf(server)), connections: () => server.accepted }
}

/** An upstream that resets (RST) every connection once it has read a request head. */
async function resetting (t: Test): Promise<Endpoint> {
  const server = await scriptedUpstream(t, ({ socket }) => { socket.resetAndDestroy() })
  return endpoint(portOf(server))
}

type GroupSettings = Omit<UpstreamGroupOptions, 'servers'>

interface Proxy {
  app: FastifyInstance
  url: string
  logs: LogRecord[]
}

/**
 * A gateway with group `api` of `servers` behind `/`, `timeouts.read` of READ, `$upstream_addr` in an
 * `x-upstream` response header and every log record kept.
 */
async function proxyTo (t: Test, servers: ServerOptions[], settings: GroupSettings = {}, read = READ): Promise<Proxy> {
  const logs = logCapture()
  const { app, url } = await gateway(t, {
    upstreams: { api: { servers, ...settings } },
    routes: [{
      prefix: '/',
      upstream: 'http://api',
      timeouts: { read },
      responseHeaders: { set: { 'x-upstream': '$upstream_addr' } }
    }]
  }, { logger: { level: 'info', stream: logs.stream } })
  return { app, url, logs: logs.records }
}

/** One request on a fresh connection, bounded. */
async function send (url: string, path = '/', options: { method?: string, body?: string, headers?: Record<string, string> } = {}): Promise<Answer> {
  return await within(request(url + path, options), 5000, `${options.method ?? 'GET'} ${path}`)
}

function serversOf (app: FastifyInstance): ServerInfo[] {
  return app.wsProxy.group('api').servers()
}

function serverAt (app: FastifyInstance, server: Endpoint): ServerInfo {
  const info = serversOf(app).find((s) => s.address === server.addr)
  if (info === undefined) throw new Error(`no server ${server.addr} in the group`)
  return info
}

function logged (logs: LogRecord[], msg: string): LogRecord[] {
  return logs.filter((r) => r.msg === msg)
}

function route (app: FastifyInstance) {
  return app.wsProxy.metrics().routes[0]
}

const badGateway = (code: string, message: string): ErrorBody => ({ statusCode: 502, code, error: 'Bad Gateway', message })
const timedOut = (code: string, message: string): ErrorBody => ({ statusCode: 504, code, error: 'Gateway Timeout', message })
const refused = (server: Endpoint): ErrorBody => badGateway('FST_WS_PROXY_CONNECT_FAILED', `Could not connect to upstream ${server.url}: ECONNREFUSED`)
const silent = (server: Endpoint): ErrorBody => timedOut('FST_WS_PROXY_READ_TIMEOUT', `Upstream ${server.url} sent no response within ${READ} ms`)

/**
 * The end of every test: no attempt is left counted in any server's load, and once the app is closed no
 * upstream connection is left open.
 */
async function released (t: Test, app: FastifyInstance): Promise<void> {
  await waitFor(() => serversOf(app).every((s) => s.activeRequests === 0), 3000, 'every attempt to leave its server\'s load')
  t.same(serversOf(app).map((s) => s.activeRequests), serversOf(app).map(() => 0), 'no request left in flight on any server')
  await within(app.close(), 5000, 'the app to close')
  t.equal(app.wsProxy.upstreamConnections, 0, 'no upstream connection left after close')
}

// proxy_next_upstream error/timeout (the default): failures before the response head go to another server, never
// one already tried; when every server failed the client gets the last failure's coded error.
t.test('proxy_next_upstream error: a refused connection is tried on the next server, which answers', async (t) => {
  const [a] = await refusing(1)
  const b = await live(t, 'B')
  const { app, url, logs } = await proxyTo(t, [{ url: a.url }, { url: b.url }])

  const res = await send(url, '/first')
  t.equal(res.status, 200)
  t.equal(res.body.toString(), 'B')
  t.equal(res.headers['x-upstream'], `${a.addr}, ${b.addr}`, '$upstream_addr lists every server tried')

  const retries = logged(logs, RETRY_LOG)
  t.equal(retries.length, 1, 'one retry logged')
  t.equal(retries[0].level, 40, 'at warn')
  t.match(retries[0], { upstream: a.addr, next: b.addr, group: 'api', err: { code: 'ECONNREFUSED' } })
  t.type(retries[0].attempt, 'number')

  // max_fails=1 (the default): the refusing server is out for fail_timeout (10 s by default).
  const out = serverAt(app, a)
  t.equal(out.state, 'failed')
  t.ok(out.retryAt !== null && out.retryAt > Date.now() + 5000, 'out for about failTimeout')
  t.equal(out.lastError?.code, 'ECONNREFUSED')
  t.match(out, { requests: 1, failures: 1 })
  t.match(logged(logs, OUT_LOG), [{ level: 40, group: 'api', upstream: a.addr, retryIn: 10_000 }])
  t.match(serverAt(app, b), { state: 'up', requests: 1, failures: 0 })

  for (let i = 0; i < 3; i++) {
    const next = await send(url, `/then/${i}`)
    t.equal(next.body.toString(), 'B')
    t.equal(next.headers['x-upstream'], b.addr, 'the failed server is skipped: one server tried')
  }
  t.equal(serverAt(app, a).requests, 1, 'nothing more went to the failed server')
  t.equal(logged(logs, RETRY_LOG).length, 1, 'no further retry')
  const metrics = route(app)
  t.equal(metrics.retries, 1)
  t.equal(metrics.requests['2xx'], 4)
  t.same(Object.values(metrics.upstreamErrors), Array(8).fill(0), 'an attempt that was retried is no upstream error')
  await released(t, app)
})

t.test('proxy_next_upstream error: many requests at once while a server refuses all get the healthy one', async (t) => {
  const [a] = await refusing(1)
  const b = await live(t, 'B')
  const { app, url } = await proxyTo(t, [{ url: a.url }, { url: b.url }])
  const answers = await Promise.all(Array.from({ length: 20 }, async (_v, i) => await send(url, `/burst/${i}`)))
  t.same(answers.map((r) => r.status), Array(20).fill(200), 'no client saw a failure')
  t.same(new Set(answers.map((r) => r.body.toString())), new Set(['B']))
  const failures = serverAt(app, a).failures
  t.ok(failures >= 1 && failures <= 10, `the requests picked for the refusing server before it was out were retried (${failures})`)
  t.equal(route(app).retries, failures)
  await released(t, app)
})

t.test('every server refuses: the client gets the last failure, then "no live upstreams"', async (t) => {
  const [a, b] = await refusing(2)
  const { app, url, logs } = await proxyTo(t, [{ url: a.url }, { url: b.url }])
  const res = await send(url, '/x')
  t.equal(res.status, 502)
  t.same(errorBody(res.body), refused(b), 'the last attempt\'s error, naming the last server')
  t.equal(logged(logs, RETRY_LOG).length, 1)
  t.same(serversOf(app).map((s) => s.state), ['failed', 'failed'])

  // nginx "no live upstreams": every server is out, nothing is attempted.
  const none = await send(url, '/y')
  t.equal(none.status, 502)
  t.same(errorBody(none.body), badGateway('FST_WS_PROXY_NO_LIVE_UPSTREAM', 'No live upstream server in api'))
  t.same(serversOf(app).map((s) => s.requests), [1, 1], 'no attempt was made')
  const metrics = route(app)
  t.equal(metrics.upstreamErrors['connect-failed'], 1)
  t.equal(metrics.upstreamErrors['no-live-upstream'], 1)
  t.equal(metrics.retries, 1)
  t.equal(metrics.requests['5xx'], 2)
  await released(t, app)
})

t.test('down servers are never picked; a group with every server down answers "no live upstreams" at once', async (t) => {
  const a = await live(t, 'A')
  const b = await live(t, 'B')
  const one = await proxyTo(t, [{ url: a.url, down: true }, { url: b.url }])
  for (let i = 0; i < 4; i++) t.equal((await send(one.url, `/${i}`)).body.toString(), 'B')
  t.match(serverAt(one.app, a), { state: 'down', requests: 0 })
  await released(t, one.app)

  const all = await proxyTo(t, [{ url: a.url, down: true }, { url: b.url, down: true }])
  const res = await send(all.url, '/x')
  t.equal(res.status, 502)
  t.same(errorBody(res.body), badGateway('FST_WS_PROXY_NO_LIVE_UPSTREAM', 'No live upstream server in api'))
  t.equal(route(all.app).upstreamErrors['no-live-upstream'], 1)
  t.same(serversOf(all.app).map((s) => s.requests), [0, 0])
  await released(t, all.app)
})

t.test('proxy_next_upstream timeout: a server that accepts and never answers is left after timeouts.read', async (t) => {
  const a = await hanging(t)
  const b = await live(t, 'B')
  const { app, url, logs } = await proxyTo(t, [{ url: a.url }, { url: b.url }])
  const started = Date.now()
  const res = await send(url, '/slow')
  const elapsed = Date.now() - started
  t.equal(res.status, 200)
  t.equal(res.body.toString(), 'B')
  t.equal(res.headers['x-upstream'], `${a.addr}, ${b.addr}`)
  t.ok(elapsed < 3000, `answered within the read timeout plus one attempt (${elapsed} ms)`)
  t.match(logged(logs, RETRY_LOG), [{ upstream: a.addr, next: b.addr, err: { code: 'UND_ERR_HEADERS_TIMEOUT' } }])
  t.match(serverAt(app, a), { state: 'failed', failures: 1, lastError: { code: 'UND_ERR_HEADERS_TIMEOUT' } })
  await waitFor(() => a.connections().every((s) => s.destroyed), 2000, 'the silent connection to be closed')
  t.pass('the silent upstream connection was closed')
  await released(t, app)
})

t.test('every server is silent: 504 FST_WS_PROXY_READ_TIMEOUT naming the last one', async (t) => {
  const a = await hanging(t)
  const b = await hanging(t)
  const { app, url } = await proxyTo(t, [{ url: a.url }, { url: b.url }])
  const res = await send(url, '/slow')
  t.equal(res.status, 504)
  t.same(errorBody(res.body), silent(b))
  t.same([a.connections().length, b.connections().length], [1, 1], 'each server was tried once')
  t.equal(route(app).upstreamErrors['read-timeout'], 1)
  await released(t, app)
})

t.test('proxy_next_upstream error: a reset before the response head is tried on the next server', async (t) => {
  const a = await resetting(t)
  const b = await live(t, 'B')
  const { app, url, logs } = await proxyTo(t, [{ url: a.url }, { url: b.url }])
  const res = await send(url, '/x')
  t.equal(res.status, 200)
  t.equal(res.body.toString(), 'B')
  t.equal(logged(logs, RETRY_LOG).length, 1)
  t.match(serverAt(app, a), { state: 'failed', failures: 1 })
  t.ok(serverAt(app, a).lastError !== null, 'the reset is kept as the server\'s last error')
  await released(t, app)
})

// proxy_next_upstream invalid_header and http_xxx: garbage heads and listed statuses are retried only when listed;
// failOn is what counts toward max_fails, independently.
t.test('proxy_next_upstream invalid_header: a garbage head is retried only when listed', async (t) => {
  const garbage = await fixedResponseUpstream(t, 'hello\r\n\r\n', true)
  const a = endpoint(portOf(garbage))
  const b = await live(t, 'B')

  t.test('not listed (the default): 502 FST_WS_PROXY_BAD_RESPONSE from the first server', async (t) => {
    const { app, url, logs } = await proxyTo(t, [{ url: a.url }, { url: b.url }])
    const res = await send(url, '/x')
    t.equal(res.status, 502)
    t.equal(errorBody(res.body).code, 'FST_WS_PROXY_BAD_RESPONSE')
    t.match(errorBody(res.body).message, `Upstream ${a.url} sent an invalid response`)
    t.equal(logged(logs, RETRY_LOG).length, 0)
    t.equal(serverAt(app, b).requests, 0)
    // invalid_header is not in failOn by default: a failure on record, but not one that takes the server out.
    t.match(serverAt(app, a), { state: 'up', failures: 1, fails: 0 })
    await released(t, app)
  })

  t.test('listed: the client gets the next server\'s answer', async (t) => {
    const { app, url, logs } = await proxyTo(t, [{ url: a.url }, { url: b.url }], { nextUpstream: { on: ['error', 'timeout', 'invalid_header'] } })
    const res = await send(url, '/x')
    t.equal(res.status, 200)
    t.equal(res.body.toString(), 'B')
    t.equal(res.headers['x-upstream'], `${a.addr}, ${b.addr}`)
    t.equal(logged(logs, RETRY_LOG).length, 1)
    t.match(serverAt(app, a), { state: 'up', failures: 1 })
    await released(t, app)
  })
})

t.test('proxy_next_upstream http_502: an upstream 502 is dropped unseen only when listed', async (t) => {
  const a = await live(t, 'A says 502', 502)
  const b = await live(t, 'B')

  t.test('not listed: the 502 is relayed as the upstream sent it', async (t) => {
    const { app, url, logs } = await proxyTo(t, [{ url: a.url }, { url: b.url }])
    const res = await send(url, '/x')
    t.equal(res.status, 502)
    t.equal(res.headers['content-type'], 'text/plain')
    t.equal(res.body.toString(), 'A says 502')
    t.equal(serverAt(app, b).requests, 0)
    t.equal(logged(logs, STATUS_RETRY_LOG).length, 0)
    t.match(serverAt(app, a), { state: 'up', failures: 0 })
    await released(t, app)
  })

  t.test('listed: the client sees the next server\'s 200', async (t) => {
    const { app, url, logs } = await proxyTo(t, [{ url: a.url }, { url: b.url }], { nextUpstream: { on: ['http_502'] } })
    const res = await send(url, '/x')
    t.equal(res.status, 200)
    t.equal(res.body.toString(), 'B')
    t.equal(res.headers['x-upstream'], `${a.addr}, ${b.addr}`)
    t.match(logged(logs, STATUS_RETRY_LOG), [{ level: 40, upstream: a.addr, next: b.addr, statusCode: 502, group: 'api' }])
    t.equal(route(app).retries, 1)
    t.same(route(app).requests, { '1xx': 0, '2xx': 1, '3xx': 0, '4xx': 0, '5xx': 0 }, 'the dropped 502 is not counted as an answer')
    // http_502 is not in failOn: the server stays in.
    t.match(serverAt(app, a), { state: 'up', failures: 1, requests: 1 })
    await released(t, app)
  })

  t.test('listed, and every server answers 502: the last 502 is relayed', async (t) => {
    const b502 = await live(t, 'B says 502', 502)
    const { app, url } = await proxyTo(t, [{ url: a.url }, { url: b502.url }], { nextUpstream: { on: ['http_502'] } })
    const res = await send(url, '/x')
    t.equal(res.status, 502)
    t.equal(res.body.toString(), 'B says 502')
    t.equal(res.headers['x-upstream'], `${a.addr}, ${b502.addr}`)
    await released(t, app)
  })
})

t.test('proxy_next_upstream http_xxx: each listed status is dropped for the next server\'s answer', async (t) => {
  for (const status of [403, 404, 429, 500, 502, 503, 504] as const) {
    t.test(`http_${status}`, async (t) => {
      const a = await live(t, `A says ${status}`, status)
      const b = await live(t, 'B')
      const { app, url, logs } = await proxyTo(t, [{ url: a.url }, { url: b.url }], { nextUpstream: { on: [`http_${status}`] } })
      const res = await send(url, '/x')
      t.equal(res.status, 200)
      t.equal(res.body.toString(), 'B')
      t.match(logged(logs, STATUS_RETRY_LOG), [{ statusCode: status, upstream: a.addr, next: b.addr }])
      await released(t, app)
    })
  }
})

t.test('failOn http_500 (max_fails counting 500s): the 500 is relayed and its server taken out', async (t) => {
  const a = await live(t, 'A says 500', 500)
  const b = await live(t, 'B')

  t.test('counted only', async (t) => {
    const { app, url, logs } = await proxyTo(t, [{ url: a.url }, { url: b.url }], { failOn: ['error', 'timeout', 'http_500'] })
    const res = await send(url, '/x')
    t.equal(res.status, 500)
    t.equal(res.body.toString(), 'A says 500', 'relayed: http_500 is not in nextUpstream.on')
    t.match(serverAt(app, a), { state: 'failed', lastError: { message: 'status 500' } })
    t.match(logged(logs, OUT_LOG), [{ upstream: a.addr }])
    for (let i = 0; i < 3; i++) t.equal((await send(url, `/${i}`)).body.toString(), 'B')
    t.equal(serverAt(app, a).requests, 1)
    await released(t, app)
  })

  t.test('counted and retried', async (t) => {
    const { app, url } = await proxyTo(t, [{ url: a.url }, { url: b.url }], { failOn: ['http_500'], nextUpstream: { on: ['http_500'] } })
    const res = await send(url, '/x')
    t.equal(res.status, 200)
    t.equal(res.body.toString(), 'B')
    t.equal(serverAt(app, a).state, 'failed')
    await released(t, app)
  })
})

// The bounds of retrying: proxy_next_upstream off, proxy_next_upstream_tries, proxy_next_upstream_timeout.
t.test('proxy_next_upstream off (`on: []`): the first failure is the answer', async (t) => {
  const [a] = await refusing(1)
  const b = await live(t, 'B')
  const { app, url } = await proxyTo(t, [{ url: a.url }, { url: b.url }], { nextUpstream: { on: [] } })
  const res = await send(url, '/x')
  t.same(errorBody(res.body), refused(a))
  t.equal(serverAt(app, b).requests, 0)
  t.equal(serverAt(app, a).state, 'failed', 'still counted toward max_fails')
  t.equal((await send(url, '/y')).body.toString(), 'B', 'and the next request goes elsewhere')
  await released(t, app)
})

t.test('proxy_next_upstream_tries bounds the attempts', async (t) => {
  t.test('tries 2 of three refusing servers: two attempts, the second one\'s error', async (t) => {
    const [a, b, c] = await refusing(3)
    const { app, url, logs } = await proxyTo(t, [{ url: a.url }, { url: b.url }, { url: c.url }], { nextUpstream: { tries: 2 } })
    const res = await send(url, '/x')
    t.same(errorBody(res.body), refused(b))
    t.same(serversOf(app).map((s) => s.requests), [1, 1, 0], 'the third server was not tried')
    t.match(logged(logs, RETRY_LOG), [{ upstream: a.addr, next: b.addr }])
    t.equal(logged(logs, RETRY_LOG).length, 1)
    t.equal(route(app).retries, 1)
    await released(t, app)
  })

  t.test('tries 0 (the default): every server once, never one twice', async (t) => {
    const [a, b, c] = await refusing(3)
    const { app, url, logs } = await proxyTo(t, [{ url: a.url }, { url: b.url }, { url: c.url }])
    const res = await send(url, '/x')
    t.same(errorBody(res.body), refused(c))
    t.same(serversOf(app).map((s) => s.requests), [1, 1, 1])
    const retries = logged(logs, RETRY_LOG)
    t.same(retries.map((r) => [r.upstream, r.next]), [[a.addr, b.addr], [b.addr, c.addr]])
    const attempts = retries.map((r) => r.attempt as number)
    t.ok(attempts[0] < attempts[1], `attempt numbers go up (${attempts.join(', ')})`)
    t.equal(route(app).retries, 2)
    await released(t, app)
  })

  t.test('tries 1: no retry at all', async (t) => {
    const [a] = await refusing(1)
    const b = await live(t, 'B')
    const { app, url } = await proxyTo(t, [{ url: a.url }, { url: b.url }], { nextUpstream: { tries: 1 } })
    t.same(errorBody((await send(url, '/x')).body), refused(a))
    t.equal(serverAt(app, b).requests, 0)
    await released(t, app)
  })
})

t.test('proxy_next_upstream_timeout bounds the time retries may start in', async (t) => {
  t.test('silent servers, read 300 and a 400 ms budget: at most two attempts', async (t) => {
    const servers = [await hanging(t), await hanging(t), await hanging(t)]
    const { app, url } = await proxyTo(t, servers.map((s) => ({ url: s.url })), { nextUpstream: { timeout: 400 } })
    const started = Date.now()
    const res = await send(url, '/x')
    const elapsed = Date.now() - started
    t.equal(res.status, 504)
    t.equal(errorBody(res.body).code, 'FST_WS_PROXY_READ_TIMEOUT')
    const attempts = serversOf(app).reduce((n, s) => n + s.requests, 0)
    t.ok(attempts >= 1 && attempts <= 2, `${attempts} attempt(s)`)
    t.equal(servers[2].connections().length, 0, 'the third server was never tried')
    t.ok(elapsed < 4000, `answered in ${elapsed} ms`)
    await released(t, app)
  })

  t.test('a fast failure is retried within the budget, a slow one after it is not', async (t) => {
    // The refusal takes a millisecond, well inside the budget; the silent server's read timeout fires no earlier
    // than 300 ms after its attempt began, past the 250 ms budget.
    const [a] = await refusing(1)
    const b = await hanging(t)
    const c = await live(t, 'C')
    const { app, url } = await proxyTo(t, [{ url: a.url }, { url: b.url }, { url: c.url }], { nextUpstream: { timeout: 250 } })
    const res = await send(url, '/x')
    t.equal(res.status, 504)
    t.same(errorBody(res.body), silent(b))
    t.same(serversOf(app).map((s) => s.requests), [1, 1, 0], 'the healthy server is past the budget')
    await released(t, app)
  })

  t.test('the same group without a budget reaches the healthy server', async (t) => {
    const [a] = await refusing(1)
    const b = await hanging(t)
    const c = await live(t, 'C')
    const { app, url } = await proxyTo(t, [{ url: a.url }, { url: b.url }, { url: c.url }])
    const res = await send(url, '/x')
    t.equal(res.body.toString(), 'C')
    t.equal(res.headers['x-upstream'], `${a.addr}, ${b.addr}, ${c.addr}`)
    await released(t, app)
  })
})

// What may be sent again: POST, LOCK and PATCH only before they reached a server (or with non_idempotent), and no
// request whose streamed body has already left.
t.test('non-idempotent methods (nginx proxy_next_upstream without non_idempotent)', async (t) => {
  t.test('POST is not retried after a read timeout', async (t) => {
    const a = await hanging(t)
    const b = await live(t, 'B')
    const { app, url, logs } = await proxyTo(t, [{ url: a.url }, { url: b.url }])
    const res = await send(url, '/x', { method: 'POST', headers: { 'content-length': '0' } })
    t.equal(res.status, 504)
    t.same(errorBody(res.body), silent(a))
    t.equal(serverAt(app, b).requests, 0)
    t.equal(logged(logs, RETRY_LOG).length, 0)
    t.equal(serverAt(app, a).state, 'failed', 'the timeout still counts toward max_fails')
    await released(t, app)
  })

  for (const method of ['POST', 'PATCH', 'LOCK']) {
    t.test(`${method} is not retried after a reset (the request reached the server)`, async (t) => {
      const a = await resetting(t)
      const b = await live(t, 'B')
      const { app, url } = await proxyTo(t, [{ url: a.url }, { url: b.url }])
      const res = await send(url, '/x', { method, headers: { 'content-length': '0' } })
      t.equal(res.status, 502)
      t.equal(errorBody(res.body).code, 'FST_WS_PROXY_UPSTREAM_RESET')
      t.equal(serverAt(app, b).requests, 0)
      await released(t, app)
    })
  }

  for (const method of ['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS']) {
    t.test(`${method} is retried after a reset`, async (t) => {
      const a = await resetting(t)
      const b = await live(t, 'B')
      const { app, url } = await proxyTo(t, [{ url: a.url }, { url: b.url }])
      const res = await send(url, '/x', { method, headers: method === 'GET' || method === 'HEAD' ? {} : { 'content-length': '0' } })
      t.equal(res.status, 200)
      t.equal(res.headers['x-upstream'], `${a.addr}, ${b.addr}`)
      await released(t, app)
    })
  }

  t.test('POST with a body is retried after a refused connection: nothing was sent, the body arrives whole', async (t) => {
    const [a] = await refusing(1)
    const b = await live(t, 'B')
    const { app, url } = await proxyTo(t, [{ url: a.url }, { url: b.url }])
    const res = await send(url, '/x', { method: 'POST', body: 'payload' })
    t.equal(res.status, 200)
    t.equal(res.body.toString(), 'B')
    t.equal(res.headers['x-body-length'], '7', 'B received the whole body')
    await released(t, app)
  })

  t.test('nonIdempotent: POST is retried after a read timeout and after a reset', async (t) => {
    const a = await hanging(t)
    const r = await resetting(t)
    const b = await live(t, 'B')
    const { app, url } = await proxyTo(t, [{ url: a.url }, { url: r.url }, { url: b.url }], { nextUpstream: { nonIdempotent: true } })
    const res = await send(url, '/x', { method: 'POST', headers: { 'content-length': '0' } })
    t.equal(res.status, 200)
    t.equal(res.body.toString(), 'B')
    t.equal(res.headers['x-upstream'], `${a.addr}, ${r.addr}, ${b.addr}`)
    await released(t, app)
  })

  t.test('nonIdempotent: a 502 answer to PATCH is retried when http_502 is listed, relayed without it', async (t) => {
    const a = await live(t, 'A says 502', 502)
    const b = await live(t, 'B')
    const strict = await proxyTo(t, [{ url: a.url }, { url: b.url }], { nextUpstream: { on: ['http_502'] } })
    const kept = await send(strict.url, '/x', { method: 'PATCH', body: 'x' })
    t.equal(kept.status, 502)
    t.equal(kept.body.toString(), 'A says 502')
    await released(t, strict.app)

    const lenient = await proxyTo(t, [{ url: a.url }, { url: b.url }], { nextUpstream: { on: ['http_502'], nonIdempotent: true } })
    const res = await send(lenient.url, '/x', { method: 'PATCH', headers: { 'content-length': '0' } })
    t.equal(res.status, 200)
    t.equal(res.body.toString(), 'B')
    await released(t, lenient.app)
  })
})

t.test('a request body already read by undici is never sent again, even for an idempotent PUT', async (t) => {
  // The server reads the whole request (head and body), then resets: the streamed body is gone.
  const payload = 'payload'
  const server = await listen(t, net.createServer((socket) => {
    let received = ''
    socket.on('error', () => {})
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1')
      const end = received.indexOf('\r\n\r\n')
      if (end !== -1 && received.length >= end + 4 + payload.length) socket.resetAndDestroy()
    })
  }))
  const a = endpoint(portOf(server))
  const b = await live(t, 'B')
  const { app, url, logs } = await proxyTo(t, [{ url: a.url }, { url: b.url }])
  const res = await send(url, '/x', { method: 'PUT', body: payload })
  t.equal(res.status, 502)
  t.equal(errorBody(res.body).code, 'FST_WS_PROXY_UPSTREAM_RESET')
  t.equal(serverAt(app, b).requests, 0, 'not retried')
  t.equal(logged(logs, RETRY_LOG).length, 0)
  t.equal(serverAt(app, a).state, 'failed', 'the reset still counts toward max_fails')
  await released(t, app)
})

t.test('a status retry is not made once the request body has been sent: the 502 is relayed', async (t) => {
  const a = await live(t, 'A says 502', 502)
  const b = await live(t, 'B')
  const { app, url } = await proxyTo(t, [{ url: a.url }, { url: b.url }], { nextUpstream: { on: ['http_502'] } })
  const res = await send(url, '/x', { method: 'PUT', body: 'payload' })
  t.equal(res.status, 502)
  t.equal(res.body.toString(), 'A says 502')
  t.equal(res.headers['x-body-length'], '7')
  t.equal(serverAt(app, b).requests, 0)
  await released(t, app)
})

// Servers going away while traffic flows.
t.test('one kept-alive client connection, every request retried past a silent server: nothing is left behind', async (t) => {
  // The silent server's connection is closed on its timeout; the healthy server's stays pooled until close.
  const a = await hanging(t)
  const b = await live(t, 'B')
  const { app, url } = await proxyTo(t, [{ url: a.url }, { url: b.url }])
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const get = async (path: string): Promise<string> => {
    const req = http.get(url + path, { agent })
    const [res] = await within(once(req, 'response'), 5000, path) as [IncomingMessage]
    const chunks: Buffer[] = []
    for await (const chunk of res) chunks.push(chunk as Buffer)
    return Buffer.concat(chunks).toString()
  }
  t.same([await get('/1'), await get('/2'), await get('/3')], ['B', 'B', 'B'], 'one client connection, every answer from the live server')
  await waitFor(() => a.connections().every((s) => s.destroyed), 2000, 'the silent connection to be closed')
  t.ok(app.wsProxy.upstreamConnections <= 1, `only the live server's pooled connection is left (${app.wsProxy.upstreamConnections})`)
  await released(t, app)
})

t.test('an upstream dying in the middle of a run of GETs: no client sees a failure', async (t) => {
  const a = await live(t, 'A')
  const b = await live(t, 'B')
  const { app, url } = await proxyTo(t, [{ url: a.url }, { url: b.url }])
  const bodies: string[] = []
  const deadline = Date.now() + 20_000
  for (let i = 0; i < 40 && Date.now() < deadline; i++) {
    if (i === 10) a.kill()
    const res = await send(url, `/run/${i}`)
    t.equal(res.status, 200, `request ${i}`)
    bodies.push(res.body.toString())
  }
  t.equal(bodies.length, 40, 'every request of the run was made')
  t.same(new Set(bodies.slice(0, 10)), new Set(['A', 'B']), 'both servers took turns before')
  t.same(new Set(bodies.slice(10)), new Set(['B']), 'only the survivor answered after')
  t.match(serverAt(app, a), { state: 'failed', failures: 1 })
  t.equal(route(app).retries, 1, 'one attempt on the dead server, retried')
  t.equal(route(app).requests['2xx'], 40)
  await released(t, app)
})

// Passive health (max_fails / fail_timeout), backup servers.
t.test('max_fails/fail_timeout: a failed server is tried again after failTimeout and comes back on success', async (t) => {
  let broken = true
  const server = await httpUpstream(t, (req, res) => {
    if (broken) {
      req.socket.resetAndDestroy()
      return
    }
    res.end('A')
  })
  const a = endpoint(portOf(server))
  const b = await live(t, 'B')
  const { app, url, logs } = await proxyTo(t, [{ url: a.url, failTimeout: 500 }, { url: b.url }])

  t.equal((await send(url, '/1')).body.toString(), 'B')
  const out = serverAt(app, a)
  t.equal(out.state, 'failed')
  t.ok(out.lastError !== null)
  const retryAt = out.retryAt as number
  t.ok(retryAt > Date.now() && retryAt <= Date.now() + 500, 'out for failTimeout')
  t.match(logged(logs, OUT_LOG), [{ upstream: a.addr, retryIn: 500 }])

  const during = await send(url, '/2')
  t.equal(during.body.toString(), 'B')
  // Only meaningful when the machine answered before the server's time out ended (it always does unless very loaded).
  if (Date.now() < retryAt) t.equal(serverAt(app, a).requests, 1, 'skipped while out')

  broken = false
  await waitFor(() => Date.now() > retryAt, 2000, 'failTimeout to pass')
  t.equal(serverAt(app, a).state, 'up', 'on trial once failTimeout has passed')
  t.equal(serverAt(app, a).retryAt, null)
  const seen: string[] = []
  for (let i = 0; i < 4 && !seen.includes('A'); i++) seen.push((await send(url, `/after/${i}`)).body.toString())
  t.ok(seen.includes('A'), `the server is tried again (${seen.join(', ')})`)
  t.match(logged(logs, BACK_LOG), [{ level: 30, group: 'api', upstream: a.addr }])
  t.match(serverAt(app, a), { state: 'up', fails: 0, retryAt: null })
  await released(t, app)
})

t.test('max_fails/fail_timeout: a server failing again while on trial is out again at once', async (t) => {
  const a = await resetting(t)
  const b = await live(t, 'B')
  const { app, url, logs } = await proxyTo(t, [{ url: a.url, maxFails: 2, failTimeout: 400 }, { url: b.url }])

  for (let i = 0; i < 10 && serverAt(app, a).state !== 'failed'; i++) t.equal((await send(url, `/${i}`)).body.toString(), 'B')
  t.equal(serverAt(app, a).state, 'failed', 'out after maxFails failures')
  t.ok(serverAt(app, a).failures >= 2)
  t.equal(logged(logs, OUT_LOG).length, 1)

  const retryAt = serverAt(app, a).retryAt as number
  await waitFor(() => Date.now() > retryAt, 2000, 'failTimeout to pass')
  const failures = serverAt(app, a).failures
  for (let i = 0; i < 4 && serverAt(app, a).failures === failures; i++) t.equal((await send(url, `/trial/${i}`)).body.toString(), 'B')
  t.equal(serverAt(app, a).failures, failures + 1, 'tried once')
  t.equal(serverAt(app, a).state, 'failed', 'one failure on trial is enough, maxFails 2 notwithstanding')
  t.equal(logged(logs, OUT_LOG).length, 2)
  t.equal(logged(logs, BACK_LOG).length, 0)
  await released(t, app)
})

t.test('max_fails counts failures within fail_timeout: older ones are forgotten', async (t) => {
  const a = await resetting(t)
  const b = await live(t, 'B')
  const { app, url } = await proxyTo(t, [{ url: a.url, maxFails: 2, failTimeout: 300 }, { url: b.url }])
  t.equal((await send(url, '/1')).body.toString(), 'B')
  t.match(serverAt(app, a), { state: 'up', fails: 1, failures: 1 })
  const firstFailure = (serverAt(app, a).lastError as { at: number }).at
  await waitFor(() => Date.now() > firstFailure + 450, 2000, 'the failure window to pass')
  for (let i = 0; i < 4 && serverAt(app, a).failures === 1; i++) t.equal((await send(url, `/2/${i}`)).body.toString(), 'B')
  t.match(serverAt(app, a), { state: 'up', fails: 1, failures: 2 }, 'the second failure starts a new count')
  await released(t, app)
})

t.test('a group of one server is never marked failed (nginx: nothing else to try)', async (t) => {
  const [a] = await refusing(1)
  const { app, url, logs } = await proxyTo(t, [{ url: a.url, maxFails: 1 }])
  for (let i = 0; i < 3; i++) {
    const res = await send(url, `/${i}`)
    t.same(errorBody(res.body), refused(a), 'each request is attempted, never "no live upstreams"')
  }
  t.match(serverAt(app, a), { state: 'up', failures: 3, fails: 0, retryAt: null })
  t.equal(logged(logs, OUT_LOG).length, 0)
  t.equal(logged(logs, RETRY_LOG).length, 0)
  await released(t, app)
})

t.test('maxFails 0: failures never take a server out, each request is still retried', async (t) => {
  const [a] = await refusing(1)
  const b = await live(t, 'B')
  const { app, url } = await proxyTo(t, [{ url: a.url, maxFails: 0 }, { url: b.url }])
  for (let i = 0; i < 4; i++) t.equal((await send(url, `/${i}`)).body.toString(), 'B')
  t.match(serverAt(app, a), { state: 'up', retryAt: null, fails: 0 })
  t.equal(serverAt(app, a).failures, serverAt(app, a).requests, 'every attempt on it failed')
  t.ok(serverAt(app, a).requests >= 2, 'and it kept being tried')
  t.equal(route(app).retries, serverAt(app, a).failures)
  await released(t, app)
})

t.test('backup servers take requests only while no primary can', async (t) => {
  const a = await live(t, 'A')
  const spare = await live(t, 'spare')
  const healthy = await proxyTo(t, [{ url: a.url }, { url: spare.url, backup: true }])
  for (let i = 0; i < 4; i++) t.equal((await send(healthy.url, `/${i}`)).body.toString(), 'A')
  t.match(serverAt(healthy.app, spare), { backup: true, requests: 0 })
  await released(t, healthy.app)

  const [p1, p2] = await refusing(2)
  const failing = await proxyTo(t, [{ url: p1.url }, { url: p2.url }, { url: spare.url, backup: true }])
  const res = await send(failing.url, '/x')
  t.equal(res.body.toString(), 'spare')
  t.equal(res.headers['x-upstream'], `${p1.addr}, ${p2.addr}, ${spare.addr}`, 'both primaries first, then the backup')
  const next = await send(failing.url, '/y')
  t.equal(next.body.toString(), 'spare')
  t.equal(next.headers['x-upstream'], spare.addr, 'with every primary out, straight to the backup')
  t.same(serversOf(failing.app).map((s) => s.state), ['failed', 'failed', 'up'])
  await released(t, failing.app)
})

// Upgrade handshakes are GETs: retried like any idempotent request, before the 101.
t.test('WebSocket handshakes are retried like idempotent requests', async (t) => {
  t.test('a refusing server, then a live one: the 101 comes from the live one and the tunnel works', async (t) => {
    const [a] = await refusing(1)
    const { server } = await wsUpstream(t)
    const b = endpoint(portOf(server))
    const { app, url, logs } = await proxyTo(t, [{ url: a.url }, { url: b.url }])
    const ws = new WebSocket(wsUrl(url, '/chat'))
    t.teardown(() => {
      ws.on('error', () => {})
      ws.terminate()
    })
    // 'open' follows 'upgrade' in the same tick: both are awaited from the start.
    const upgraded = once(ws, 'upgrade') as Promise<[IncomingMessage]>
    await within(once(ws, 'open'), 3000, 'the WebSocket to open')
    const [upgrade] = await upgraded
    t.equal(upgrade.statusCode, 101)
    t.equal(upgrade.headers['x-upstream'], `${a.addr}, ${b.addr}`)
    ws.send('hello')
    const [echo] = await messages(ws, 1)
    t.equal(echo.data.toString(), 'hello')
    t.equal(logged(logs, RETRY_LOG).length, 1)
    t.equal(route(app).retries, 1)
    t.match(serverAt(app, b), { liveTunnels: 1, activeRequests: 0, requests: 1 })
    ws.close(1000)
    await within(once(ws, 'close'), 3000, 'the WebSocket to close')
    await waitFor(() => app.wsProxy.tunnels === 0, 2000, 'the tunnel to close')
    await released(t, app)
  })

  t.test('a silent server, then a live one: the handshake moves on after timeouts.read', async (t) => {
    const a = await hanging(t)
    const { server } = await wsUpstream(t)
    const b = endpoint(portOf(server))
    const { app, url } = await proxyTo(t, [{ url: a.url }, { url: b.url }])
    const ws = new WebSocket(wsUrl(url, '/chat'))
    t.teardown(() => {
      ws.on('error', () => {})
      ws.terminate()
    })
    await within(once(ws, 'open'), 4000, 'the WebSocket to open')
    ws.send('hi')
    t.equal((await messages(ws, 1))[0].data.toString(), 'hi')
    ws.close(1000)
    await within(once(ws, 'close'), 3000, 'the WebSocket to close')
    await waitFor(() => a.connections().every((s) => s.destroyed), 2000, 'the silent handshake to be dropped')
    t.pass('the silent handshake connection was closed')
    await released(t, app)
  })

  t.test('every server refuses: the handshake gets the last failure, the next one "no live upstreams"', async (t) => {
    const [a, b] = await refusing(2)
    const { app, url } = await proxyTo(t, [{ url: a.url }, { url: b.url }])
    const res = await unexpectedResponse(t, wsUrl(url, '/chat'))
    t.equal(res.status, 502)
    t.same(errorBody(res.body), refused(b))
    const none = await unexpectedResponse(t, wsUrl(url, '/chat'))
    t.equal(none.status, 502)
    t.same(errorBody(none.body), badGateway('FST_WS_PROXY_NO_LIVE_UPSTREAM', 'No live upstream server in api'), 'then "no live upstreams"')
    t.equal(route(app).upstreamErrors['no-live-upstream'], 1)
    await released(t, app)
  })
})

// Once anything reached the client, nothing is retried, and the failure is not held against the server
// (found by this file: the retry used to be dispatched and its head refused with ERR_HTTP_HEADERS_SENT).

/** A group [an upstream that fails after relaying a head, a healthy one] and one GET, read to its end or abort. */
async function failAfterHead (t: Test, script: (socket: net.Socket) => void) {
  const upstream = await scriptedUpstream(t, ({ socket }) => script(socket))
  const a = endpoint(portOf(upstream))
  const b = await live(t, 'B')
  const proxy = await proxyTo(t, [{ url: a.url }, { url: b.url }])
  const req = http.get(`${proxy.url}/x`, { agent: false })
  t.teardown(() => { req.destroy() })
  const [res] = await within(once(req, 'response'), 5000, 'the response head') as [IncomingMessage]
  const outcome = await readBody(res)
  await waitFor(() => route(proxy.app).upstreamErrors.aborted === 1, 3000, 'the aborted response to be counted')
  return { ...proxy, a, b, status: res.statusCode, outcome }
}

t.test('nothing is retried once the response head reached the client (nginx: only before anything was sent)', async (t) => {
  const partial = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nhello'
  const cases: Array<[string, (socket: net.Socket) => void]> = [
    ['the upstream closes in the middle of the body', (socket) => { socket.end(partial) }],
    ['the upstream goes silent in the middle of the body', (socket) => { socket.write(partial) }]
  ]
  for (const [what, script] of cases) {
    t.test(`${what}: the client sees that response cut short`, async (t) => {
      const { app, status, outcome } = await failAfterHead(t, script)
      t.equal(status, 200, 'the head came from the first server')
      t.equal(outcome.body.toString(), 'hello', 'what the first server sent, and nothing else')
      t.equal(outcome.complete, false, 'the response is not passed off as complete')
      await released(t, app)
    })

    t.test(`${what}: no other server is tried and the failing one stays in`, async (t) => {
      const { app, logs, a, b } = await failAfterHead(t, script)
      const [abort] = logs.filter((r) => r.err?.code === 'FST_WS_PROXY_RESPONSE_ABORTED')
      t.match(abort?.err?.message, `Response from upstream ${a.url} aborted after its head was sent`, 'the abort names the server that sent the head')
      t.equal(serverAt(app, b).requests, 0, 'no second attempt was made')
      t.equal(logged(logs, RETRY_LOG).length, 0, 'no retry logged')
      t.equal(route(app).retries, 0)
      // 'error' and 'timeout' are failures before the head; nginx frees the peer as not failed after it.
      t.equal(serverAt(app, a).state, 'up', 'a failure after the head does not take the server out')
      await released(t, app)
    })
  }
})

t.test('a client that leaves while its attempt is in flight is not retried for', async (t) => {
  const a = await hanging(t)
  const b = await live(t, 'B')
  const { app, url } = await proxyTo(t, [{ url: a.url }, { url: b.url }], {}, 5000)
  const req = http.get(`${url}/x`, { agent: false })
  req.on('error', () => {})
  await waitFor(() => a.connections().length === 1 && serverAt(app, a).activeRequests === 1, 3000, 'the attempt to reach the silent server')
  req.destroy()
  // undici destroys the aborted request's socket (and dials a fresh idle one for the pool, left to keepAliveTimeout).
  await waitFor(() => a.connections()[0].destroyed && serverAt(app, a).activeRequests === 0, 3000, 'the abandoned attempt to be dropped')
  t.equal(serverAt(app, b).requests, 0, 'the next server was not tried')
  t.match(serverAt(app, a), { state: 'up', failures: 0 }, 'a client leaving is not the server\'s failure')
  await released(t, app)
})
