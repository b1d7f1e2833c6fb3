import t, { type Test } from 'tap'
import http, { type IncomingHttpHeaders, type Server } from 'node:http'
import { once } from 'node:events'
import Fastify from 'fastify'
import wsProxyPlugin, { type Readiness, type ServerState, type WsProxyOptions } from '../src/index.js'
import { readiness, type ReadinessSource } from '../src/telemetry/health-routes.js'
import type { UpstreamGroup } from '../src/upstream/group.js'
import { closedPort, gateway, httpUpstream, logCapture, origin, portOf, waitFor, within, type Teardown } from './helpers/servers.js'
import { request } from './helpers/clients.js'
import { headUpstream, rawClient, switching, upgradeHead } from './helpers/ws.js'

// The plugin's own health endpoints (`health` option): liveness (`/healthz`) and readiness (`/readyz`), served by
// Fastify itself and never proxied. Readiness is 503 while draining (app.close() has begun) or while some upstream
// group (named or a URL route's own one-server group) has no server `up`. Everything runs over real sockets: real
// upstreams on 127.0.0.1, a listening gateway, node:http clients.

/** A counting upstream: `/health` answers `health` (for active checks); anything else is recorded in `seen`. */
interface Upstream {
  readonly server: Server
  /** `http://127.0.0.1:port`. */
  readonly url: string
  /** `METHOD /path` of every request but the health probes, in order. */
  readonly seen: string[]
  probes: number
  health: number
  /** Closes the server and every connection it has: it refuses connections from then on. */
  stop (): Promise<void>
  /** Listens again on the same port. */
  restart (): Promise<void>
}

async function upstream (t: Teardown): Promise<Upstream> {
  const u = {
    seen: [] as string[],
    probes: 0,
    health: 200
  } as Upstream
  const server = await httpUpstream(t, (req, res) => {
    if (req.url === '/health') {
      u.probes++
      res.statusCode = u.health
      res.end()
      return
    }
    u.seen.push(`${req.method as string} ${req.url as string}`)
    res.setHeader('x-upstream', 'yes')
    res.end('proxied')
  })
  const port = portOf(server)
  Object.assign(u, {
    server,
    url: origin(server),
    async stop () {
      const closed = new Promise((resolve) => server.close(resolve))
      server.closeAllConnections()
      await within(closed, 3000, 'the upstream to close')
    },
    async restart () {
      server.listen(port, '127.0.0.1')
      await within(once(server, 'listening'), 3000, 'the upstream to listen again')
    }
  })
  return u
}

/** One answer of a health route: status, headers and the JSON body (null when there is none, as for HEAD). */
interface Probe {
  status: number
  headers: IncomingHttpHeaders
  json: unknown
}

async function probe (url: string, path: string, method = 'GET'): Promise<Probe> {
  const res = await within(request(`${url}${path}`, { method }), 5000, `${method} ${path}`)
  return { status: res.status, headers: res.headers, json: res.body.length === 0 ? null : JSON.parse(res.body.toString()) }
}

/** Asserts the readiness route answers `expected` (200 for ready, else 503), never cached. */
async function expectReadiness (t: Test, url: string, expected: Readiness, what: string, path = '/readyz'): Promise<void> {
  const res = await probe(url, path)
  t.same({ status: res.status, json: res.json }, { status: expected.status === 'ready' ? 200 : 503, json: expected }, what)
  t.equal(res.headers['cache-control'], 'no-store', `${what}: cache-control no-store`)
}

async function expectLive (t: Test, url: string, what: string, path = '/healthz'): Promise<void> {
  const res = await probe(url, path)
  t.same({ status: res.status, json: res.json }, { status: 200, json: { status: 'live' } }, what)
  t.equal(res.headers['cache-control'], 'no-store', `${what}: cache-control no-store`)
}

/** Fastify's own 404 for a route that does not exist. */
async function expectNoRoute (t: Test, url: string, path: string): Promise<void> {
  const res = await probe(url, path)
  t.same({ status: res.status, json: res.json }, {
    status: 404,
    json: { message: `Route GET:${path} not found`, error: 'Not Found', statusCode: 404 }
  }, `no route at ${path}`)
}

const READY: Readiness = { status: 'ready' }
const noLive = (...groups: string[]): Readiness => ({ status: 'no-live-upstream', groups })

t.test('readiness() decides from the drain flag and every group\'s server states', async (t) => {
  const group = (name: string, ...states: ServerState[]) => ({ name, members: states.map((state) => ({ state })) }) as unknown as UpstreamGroup
  const source = (draining: boolean, ...groups: UpstreamGroup[]): ReadinessSource => ({ draining, allGroups: () => groups })

  t.same(readiness(source(false)), READY, 'no group at all: ready')
  t.same(readiness(source(false, group('a', 'up'), group('b', 'up', 'up'))), READY, 'every group has a server up')
  t.same(readiness(source(false, group('a', 'down', 'failed', 'unhealthy', 'draining', 'up'))), READY, 'one server up is enough')
  for (const state of ['down', 'failed', 'unhealthy', 'draining'] as const) {
    t.same(readiness(source(false, group('a', 'up'), group('b', state))), noLive('b'), `a group whose only server is ${state} is listed`)
  }
  t.same(readiness(source(false, group('a', 'down', 'failed', 'unhealthy', 'draining'))), noLive('a'), 'no state but up counts')
  t.same(readiness(source(false, group('empty'))), noLive('empty'), 'a group with no member at all is listed')
  t.same(readiness(source(false, group('x', 'down'), group('y', 'up'), group('z', 'unhealthy'))), noLive('x', 'z'),
    'every group without a server up, in order, and only those')
  const draining = readiness(source(true, group('x', 'down')))
  t.same(draining, { status: 'draining' }, 'draining wins over groups with no server up')
  t.notOk('groups' in draining, 'a draining answer lists no groups')
  t.notOk('groups' in readiness(source(false, group('a', 'up'))), 'a ready answer lists no groups')
})

t.test('routes and paths', async (t) => {
  t.test('health: {} serves GET /healthz and /readyz itself, JSON and never cached, without asking the upstream', async (t) => {
    const up = await upstream(t)
    const { url } = await gateway(t, { routes: [{ prefix: '/api/', upstream: up.url }], health: {} })
    const live = await probe(url, '/healthz')
    t.equal(live.status, 200)
    t.same(live.json, { status: 'live' })
    t.equal(live.headers['cache-control'], 'no-store')
    t.match(live.headers['content-type'], /^application\/json\b/)
    const ready = await probe(url, '/readyz')
    t.equal(ready.status, 200)
    t.same(ready.json, { status: 'ready' })
    t.equal(ready.headers['cache-control'], 'no-store')
    t.match(ready.headers['content-type'], /^application\/json\b/)
    await expectReadiness(t, url, READY, 'a query string does not change the route', '/readyz?probe=kubelet')
    const head = await probe(url, '/healthz', 'HEAD')
    t.same({ status: head.status, json: head.json, cache: head.headers['cache-control'] }, { status: 200, json: null, cache: 'no-store' },
      'HEAD /healthz: the same answer without a body')
    t.same(up.seen, [], 'the upstream saw no request')
    const proxied = await within(request(`${url}/api/x`), 5000, 'a proxied request')
    t.equal(proxied.body.toString(), 'proxied')
    t.same(up.seen, ['GET /api/x'], 'the proxied route still works next to them')
  })

  t.test('without `health` there is no health route', async (t) => {
    const up = await upstream(t)
    const { url } = await gateway(t, { routes: [{ prefix: '/api/', upstream: up.url }] })
    await expectNoRoute(t, url, '/healthz')
    await expectNoRoute(t, url, '/readyz')
    t.same(up.seen, [])
  })

  t.test('live and ready at other paths; the default paths are then free', async (t) => {
    const up = await upstream(t)
    const { url } = await gateway(t, { routes: [{ prefix: '/api/', upstream: up.url }], health: { live: '/-/live', ready: '/-/ready' } })
    await expectLive(t, url, 'liveness at /-/live', '/-/live')
    await expectReadiness(t, url, READY, 'readiness at /-/ready', '/-/ready')
    await expectNoRoute(t, url, '/healthz')
    await expectNoRoute(t, url, '/readyz')
    t.same(up.seen, [])
  })

  t.test('live: false and ready: false turn one route off (or both)', async (t) => {
    const up = await upstream(t)
    const routes = [{ prefix: '/api/', upstream: up.url }]
    const onlyReady = await gateway(t, { routes, health: { live: false } })
    await expectNoRoute(t, onlyReady.url, '/healthz')
    await expectReadiness(t, onlyReady.url, READY, 'live: false keeps /readyz')
    const onlyLive = await gateway(t, { routes, health: { ready: false, live: '/alive' } })
    await expectLive(t, onlyLive.url, 'ready: false keeps liveness (here at /alive)', '/alive')
    await expectNoRoute(t, onlyLive.url, '/readyz')
    await expectNoRoute(t, onlyLive.url, '/healthz')
    const none = await gateway(t, { routes, health: { live: false, ready: false } })
    await expectNoRoute(t, none.url, '/healthz')
    await expectNoRoute(t, none.url, '/readyz')
    t.same(up.seen, [], 'nothing reached the upstream')
  })

  // A proxied catch-all at `/` matches /healthz too, but Fastify prefers the static route: only other paths go upstream.
  t.test('the health routes win over a catch-all proxied route at /', async (t) => {
    const up = await upstream(t)
    const { url } = await gateway(t, { routes: [{ prefix: '/', upstream: up.url }], health: {} })
    await expectLive(t, url, '/healthz is the liveness route')
    await expectReadiness(t, url, READY, '/readyz is the readiness route')
    const head = await probe(url, '/readyz', 'HEAD')
    t.same({ status: head.status, proxied: head.headers['x-upstream'] }, { status: 200, proxied: undefined }, 'HEAD /readyz is not proxied either')
    t.same(up.seen, [], 'the upstream saw no health request')
    const other = await within(request(`${url}/other`), 5000, 'GET /other')
    t.same({ status: other.status, body: other.body.toString(), proxied: other.headers['x-upstream'] }, { status: 200, body: 'proxied', proxied: 'yes' })
    const below = await within(request(`${url}/healthz/deeper`), 5000, 'GET /healthz/deeper')
    t.equal(below.body.toString(), 'proxied', 'only the exact path is the health route: /healthz/deeper is proxied')
    t.same(up.seen, ['GET /other', 'GET /healthz/deeper'], 'exactly the two non-health requests were proxied')
  })
})

t.test('readiness follows the upstream groups', async (t) => {
  // `down: true` in the options: not ready from the start; liveness does not care; update() brings it back.
  t.test('a group whose only server is configured down; update({ down: false }) makes it ready', async (t) => {
    const up = await upstream(t)
    const { url, app } = await gateway(t, {
      upstreams: { api: { servers: [{ url: up.url, down: true }] } },
      routes: [{ prefix: '/api/', upstream: 'http://api' }],
      health: {}
    })
    await expectReadiness(t, url, noLive('api'), 'no server up in api')
    await expectLive(t, url, 'liveness stays 200 while no upstream is usable')
    t.equal(app.wsProxy.group('api').update(up.url, { down: false }), true)
    await expectReadiness(t, url, READY, 'ready once the server is up again')
    t.same(up.seen, [], 'no health request reached the upstream')
  })

  // drain(), update({ draining }), update({ down }): every state change shows in the next answer, with the group named.
  t.test('drain and update take a group\'s last server out and back; every group without a server up is named', async (t) => {
    const a = await upstream(t)
    const b = await upstream(t)
    const c = await upstream(t)
    const { url, app } = await gateway(t, {
      upstreams: {
        api: { servers: [{ url: a.url }, { url: b.url }] },
        web: { servers: [{ url: c.url }] }
      },
      routes: [{ prefix: '/api/', upstream: 'http://api' }, { prefix: '/web/', upstream: 'http://web' }],
      health: {}
    })
    const api = app.wsProxy.group('api')
    const web = app.wsProxy.group('web')
    await expectReadiness(t, url, READY, 'all up')
    t.equal(api.drain(a.url), true)
    await expectReadiness(t, url, READY, 'one of two api servers draining: still ready')
    t.equal(api.update(b.url, { down: true }), true)
    t.same(api.servers().map((s) => s.state), ['draining', 'down'])
    await expectReadiness(t, url, noLive('api'), 'api: one server draining, the other down')
    t.equal(web.drain(c.url), true)
    await expectReadiness(t, url, noLive('api', 'web'), 'both groups named, in order')
    t.equal(web.update(c.url, { draining: false }), true)
    await expectReadiness(t, url, noLive('api'), 'web is back')
    t.equal(api.update(a.url, { draining: false }), true)
    await expectReadiness(t, url, READY, 'api has a server up again')
    const proxied = await within(request(`${url}/api/x`), 5000, 'a proxied request')
    t.equal(proxied.status, 200, 'and it is used')
    t.same([a.seen, b.seen, c.seen], [['GET /api/x'], [], []], 'only the proxied request reached an upstream')
  })

  t.test('a backup server up keeps a group ready; removing the last server makes it not ready, adding one ready again', async (t) => {
    const a = await upstream(t)
    const b = await upstream(t)
    const { url, app } = await gateway(t, {
      upstreams: { api: { servers: [{ url: a.url }, { url: b.url, backup: true }] } },
      routes: [{ prefix: '/', upstream: 'http://api' }],
      health: {}
    })
    const api = app.wsProxy.group('api')
    t.equal(api.update(a.url, { down: true }), true)
    await expectReadiness(t, url, READY, 'the primary is down, the backup is up')
    const served = await within(request(`${url}/x`), 5000, 'a request served by the backup')
    t.equal(served.status, 200, 'requests are indeed still served (by the backup)')
    t.equal(api.remove(b.url), true)
    await expectReadiness(t, url, noLive('api'), 'the backup removed, the primary down')
    t.equal(api.remove(a.url), true)
    t.same(api.servers(), [])
    await expectReadiness(t, url, noLive('api'), 'a group with no member')
    api.add({ url: b.url })
    await expectReadiness(t, url, READY, 'a server added: ready')
    t.same([a.seen, b.seen], [[], ['GET /x']], 'the catch-all route proxied no health request')
  })

  // A URL route has a one-server group of its own (named by the URL's origin). It has no public API and never fails
  // (maxFails 0), so its server is set down through the plugin's internals to show the group is counted.
  t.test('the one-server group of a URL route counts too, named by its origin', async (t) => {
    const up = await upstream(t)
    const other = await upstream(t)
    const { url, app } = await gateway(t, {
      upstreams: { api: { servers: [{ url: other.url }] } },
      routes: [{ prefix: '/direct/', upstream: up.url }, { prefix: '/api/', upstream: 'http://api' }],
      health: {}
    })
    const source = app.wsProxy as unknown as ReadinessSource
    const groups = [...source.allGroups()] as UpstreamGroup[]
    t.same(groups.map((g) => g.name), ['api', up.url], 'the named group, then the URL route\'s group')
    await expectReadiness(t, url, READY, 'both up')
    groups[1].members[0].down = true
    await expectReadiness(t, url, noLive(up.url), 'the URL route\'s server down')
    t.same(readiness(source), noLive(up.url), 'readiness() of the plugin\'s state says the same')
    groups[1].members[0].down = false
    await expectReadiness(t, url, READY, 'back up')
    t.same([up.seen, other.seen], [[], []])
  })

  // Readiness looks at every registration sharing the `wsProxy` decoration, not only the one serving the routes.
  t.test('the groups of another registration of the plugin count', async (t) => {
    const a = await upstream(t)
    const b = await upstream(t)
    const { url, app } = await gateway(t, {
      upstreams: { one: { servers: [{ url: a.url }] } },
      routes: [{ prefix: '/one/', upstream: 'http://one' }],
      health: {}
    }, {}, async (app) => {
      await app.register(wsProxyPlugin, { upstreams: { two: { servers: [{ url: b.url }] } }, routes: [{ prefix: '/two/', upstream: 'http://two' }] })
    })
    await expectReadiness(t, url, READY, 'both registrations up')
    t.equal(app.wsProxy.group('two').update(b.url, { down: true }), true)
    await expectReadiness(t, url, noLive('two'), 'the other registration\'s group has no server up')
    t.equal(app.wsProxy.group('two').update(b.url, { down: false }), true)
    await expectReadiness(t, url, READY, 'back')
  })

  // Active checks: a server that stops answering turns unhealthy and the group not ready; once the server listens
  // again and passes its checks, ready again.
  t.test('active health checks: a closed server makes its group not ready until it passes its checks again', async (t) => {
    const up = await upstream(t)
    const { url, app } = await gateway(t, {
      upstreams: { api: { servers: [{ url: up.url }], healthCheck: { path: '/health', interval: 50, timeout: 1000 } } },
      routes: [{ prefix: '/', upstream: 'http://api' }],
      health: {}
    })
    const api = app.wsProxy.group('api')
    await waitFor(() => up.probes > 0, 5000, 'the first probe')
    await expectReadiness(t, url, READY, 'the server passes its checks')
    await up.stop()
    await waitFor(() => api.servers()[0].state === 'unhealthy', 5000, 'the closed server to turn unhealthy')
    await expectReadiness(t, url, noLive('api'), 'unhealthy')
    await expectLive(t, url, 'liveness does not depend on upstreams')
    await up.restart()
    await waitFor(() => api.servers()[0].state === 'up', 5000, 'the server to pass its checks again')
    await expectReadiness(t, url, READY, 'ready again')
    t.same(up.seen, [], 'only probes reached the upstream, no health-route request')
  })

  t.test('active health checks: a group whose only server never answers stays not ready; another group does not matter', async (t) => {
    const up = await upstream(t)
    const { url, app } = await gateway(t, {
      upstreams: {
        api: { servers: [{ url: up.url }], healthCheck: { path: '/health', interval: 50, timeout: 1000 } },
        solo: { servers: [{ url: `http://127.0.0.1:${await closedPort()}` }], healthCheck: { path: '/health', interval: 50, timeout: 1000 } }
      },
      routes: [{ prefix: '/solo/', upstream: 'http://solo' }, { prefix: '/', upstream: 'http://api' }],
      health: {}
    })
    await waitFor(() => app.wsProxy.group('solo').servers()[0].state === 'unhealthy', 5000, 'the closed server to turn unhealthy')
    t.equal(app.wsProxy.group('api').servers()[0].state, 'up')
    await expectReadiness(t, url, noLive('solo'), 'only solo is named')
  })

  // Passive health: in a group of two, failed attempts take servers out (`failed`) until failTimeout has passed.
  t.test('passive failures: both servers failed → not ready; after failTimeout → ready; one server left up → ready', async (t) => {
    const live = await upstream(t)
    const p1 = await closedPort()
    let p2 = await closedPort()
    // Two distinct ports (a port just released may come back at once).
    for (let i = 0; i < 5 && p2 === p1; i++) p2 = await closedPort()
    const { url, app } = await gateway(t, {
      upstreams: {
        dead: { servers: [{ url: `http://127.0.0.1:${p1}`, failTimeout: 600 }, { url: `http://127.0.0.1:${p2}`, failTimeout: 600 }] },
        half: { servers: [{ url: live.url }, { url: `http://127.0.0.1:${p1}` }] }
      },
      routes: [{ prefix: '/dead/', upstream: 'http://dead' }, { prefix: '/half/', upstream: 'http://half' }],
      health: {}
    })
    const dead = app.wsProxy.group('dead')
    const half = app.wsProxy.group('half')
    // Each request fails on a closed server (and is retried on the other): a few are enough to take both out.
    for (let i = 0; i < 4 && !dead.servers().every((s) => s.state === 'failed'); i++) {
      t.equal((await within(request(`${url}/dead/x${i}`), 5000, 'a request to the dead group')).status, 502)
    }
    t.same(dead.servers().map((s) => s.state), ['failed', 'failed'])
    for (let i = 0; i < 4 && !half.servers().some((s) => s.state === 'failed'); i++) {
      t.equal((await within(request(`${url}/half/x${i}`), 5000, 'a request to the half group')).status, 200)
    }
    t.same(half.servers().map((s) => s.state), ['up', 'failed'])
    await expectReadiness(t, url, noLive('dead'), 'dead is named, half (one server up) is not')
    await waitFor(() => dead.servers().every((s) => s.state === 'up'), 3000, 'failTimeout to run out')
    await expectReadiness(t, url, READY, 'failed servers count as up again once failTimeout is over')
  })
})

t.test('draining', async (t) => {
  // Fastify answers 503 to every request during close unless `return503OnClosing: false`; with it, the route itself
  // answers. close() is kept busy by a raw tunnel whose two ends do not end their side (allowHalfOpen) after the
  // proxy's half-close, for up to closeGracePeriod. The probes go on keep-alive connections opened before close().
  t.test('/readyz answers 503 draining once app.close() has begun; /healthz stays live', async (t) => {
    const tunnelUpstream = await headUpstream(t, ({ socket }) => { socket.write(switching()) }, true)
    const { app, url, port } = await gateway(t, {
      routes: [{ prefix: '/', upstream: origin(tunnelUpstream) }],
      closeGracePeriod: 4000,
      health: {}
    }, { return503OnClosing: false })
    const readyAgent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    const liveAgent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    t.teardown(() => {
      readyAgent.destroy()
      liveAgent.destroy()
    })
    const before = await viaAgent(readyAgent, `${url}/readyz`)
    t.same({ status: before.status, json: before.json }, { status: 200, json: { status: 'ready' } }, 'ready before close')
    t.equal((await viaAgent(liveAgent, `${url}/healthz`)).status, 200)

    const tunnel = await rawClient(t, port, true)
    tunnel.socket.write(upgradeHead('/tunnel'))
    await tunnel.contains('\r\n\r\n')
    t.equal(app.wsProxy.tunnels, 1, 'a live tunnel')

    const closing = app.close()
    closing.catch(() => {})
    // The proxy half-closes the tunnel in its preClose hook: the client's FIN says the drain has begun.
    await tunnel.end()
    t.equal(app.wsProxy.tunnels, 1, 'the tunnel still holds close() (its ends have not ended theirs)')

    const during = await viaAgent(readyAgent, `${url}/readyz`)
    t.ok(during.reused, 'asked on the connection opened before close()')
    t.same({ status: during.status, json: during.json }, { status: 503, json: { status: 'draining' } }, 'readiness: 503 draining')
    t.equal(during.headers['cache-control'], 'no-store')
    const live = await viaAgent(liveAgent, `${url}/healthz`)
    t.ok(live.reused, 'asked on the other connection opened before close()')
    t.same({ status: live.status, json: live.json }, { status: 200, json: { status: 'live' } }, 'liveness: still 200 while draining')

    // Let the tunnel go: both ends end their side, and close() completes well before the grace period.
    tunnel.socket.end()
    tunnelUpstream.accepted[0].socket.end()
    await within(closing, 3000, 'app.close()')
    t.equal(tunnelUpstream.accepted.length, 1, 'the upstream only ever saw the tunnel\'s connection')
    t.equal(tunnelUpstream.accepted[0].head.split('\r\n')[0], 'GET /tunnel HTTP/1.1')
  })

  // A server that sheds load before closing (the CLI gateway's drain) marks itself draining first.
  t.test('wsProxy.markDraining() turns readiness 503 before close(); proxied requests still pass', async (t) => {
    const u = await upstream(t)
    const { app, url } = await gateway(t, { upstream: u.url, health: {} })
    t.equal(app.wsProxy.draining, false, 'not draining at first')
    const before = await request(`${url}/readyz`)
    t.equal(before.status, 200)
    app.wsProxy.markDraining()
    t.equal(app.wsProxy.draining, true, 'draining once marked')
    const after = await request(`${url}/readyz`)
    t.same({ status: after.status, json: JSON.parse(after.body.toString()) }, { status: 503, json: { status: 'draining' } }, 'readiness: 503 draining')
    t.equal((await request(`${url}/healthz`)).status, 200, 'liveness: still 200')
    const proxied = await request(`${url}/x`)
    t.same({ status: proxied.status, body: proxied.body.toString() }, { status: 200, body: 'proxied' }, 'the proxy still serves until close()')
    t.same(u.seen, ['GET /x'], 'only the proxied request reached the upstream')
  })

  // With Fastify's default (return503OnClosing), a balancer gets a 503 during close too, though Fastify's own.
  t.test('with Fastify\'s defaults a probe during close still gets a 503', async (t) => {
    const tunnelUpstream = await headUpstream(t, ({ socket }) => { socket.write(switching()) }, true)
    const { app, url, port } = await gateway(t, { routes: [{ prefix: '/', upstream: origin(tunnelUpstream) }], closeGracePeriod: 4000, health: {} })
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    t.teardown(() => agent.destroy())
    t.equal((await viaAgent(agent, `${url}/readyz`)).status, 200)
    const tunnel = await rawClient(t, port, true)
    tunnel.socket.write(upgradeHead('/tunnel'))
    await tunnel.contains('\r\n\r\n')
    const closing = app.close()
    closing.catch(() => {})
    await tunnel.end()
    const during = await viaAgent(agent, `${url}/readyz`)
    t.ok(during.reused)
    t.equal(during.status, 503, '503 during close')
    tunnel.socket.end()
    tunnelUpstream.accepted[0].socket.end()
    await within(closing, 3000, 'app.close()')
  })
})

/** A GET through `agent` (keep-alive), bounded; `reused` tells whether it went on an already open connection. */
async function viaAgent (agent: http.Agent, url: string): Promise<{ status: number, headers: IncomingHttpHeaders, json: unknown, reused: boolean }> {
  const req = http.get(url, { agent })
  const [res] = await within(once(req, 'response'), 5000, `GET ${url}`) as [http.IncomingMessage]
  const chunks: Buffer[] = []
  await within((async () => { for await (const chunk of res) chunks.push(chunk as Buffer) })(), 5000, `the body of ${url}`)
  return { status: res.statusCode as number, headers: res.headers, json: JSON.parse(Buffer.concat(chunks).toString()), reused: req.reusedSocket }
}

// The routes are registered with logLevel 'warn': a probe every few seconds must not write two info lines each.
t.test('health probes write no request log lines; proxied requests still do', async (t) => {
  const up = await upstream(t)
  const logs = logCapture()
  const { url, app } = await gateway(t, {
    upstreams: { api: { servers: [{ url: up.url }] } },
    routes: [{ prefix: '/api/', upstream: 'http://api' }],
    health: {}
  }, { logger: { level: 'info', stream: logs.stream } })
  await expectReadiness(t, url, READY, 'ready')
  await expectLive(t, url, 'live')
  t.equal(app.wsProxy.group('api').update(up.url, { down: true }), true)
  await expectReadiness(t, url, noLive('api'), 'a 503 answer is not logged either')
  t.equal(app.wsProxy.group('api').update(up.url, { down: false }), true)
  const proxied = await within(request(`${url}/api/x`), 5000, 'a proxied request')
  t.equal(proxied.status, 200)
  // Each request's lines share its reqId.
  const incoming = logs.records.filter((r) => r.msg === 'incoming request')
  t.same(incoming.map((r) => r.req?.url), ['/api/x'], 'one incoming request line: the proxied request\'s')
  const healthIds = new Set(logs.records.filter((r) => /^\/(healthz|readyz)/.test(r.req?.url ?? '')).map((r) => r.reqId))
  t.equal(healthIds.size, 0, 'no line names a health route')
  const completed = logs.records.filter((r) => r.msg === 'request completed')
  t.same(completed.map((r) => r.reqId), [incoming[0].reqId], 'one request completed line: the proxied request\'s')
  t.same(logs.records.filter((r) => r.level >= 40), [], 'nothing at warn or above')
})

t.test('invalid health options fail register with FST_WS_PROXY_INVALID_OPTION naming the path', async (t) => {
  const cases: Array<{ name: string, health: unknown, path: string, reason: RegExp }> = [
    { name: 'a live path without its leading slash', health: { live: 'healthz' }, path: 'health/live', reason: /got "healthz"$/ },
    { name: 'a ready path without its leading slash', health: { ready: 'readyz' }, path: 'health/ready', reason: /got "readyz"$/ },
    { name: 'an empty path', health: { live: '' }, path: 'health/live', reason: /got ""$/ },
    { name: 'ready: true (only false turns a route off)', health: { ready: true }, path: 'health/ready', reason: /got true$/ },
    { name: 'a number', health: { live: 8080 }, path: 'health/live', reason: /got 8080$/ },
    { name: 'an unknown key', health: { x: 1 }, path: 'health/x', reason: /^unexpected property, got 1$/ },
    { name: 'health: true', health: true, path: 'health', reason: /^expected object, got true$/ },
    { name: 'health: null', health: null, path: 'health', reason: /^expected object, got null$/ }
  ]
  for (const c of cases) {
    const app = Fastify()
    t.teardown(() => app.close())
    app.register(wsProxyPlugin, { upstream: 'http://127.0.0.1:1', health: c.health } as WsProxyOptions)
    const err = await within(Promise.resolve(app.ready()).then(() => null, (e: unknown) => e as Error & { code?: string }), 3000, `ready() (${c.name})`)
    if (err === null) {
      t.fail(`${c.name}: register succeeded`)
      continue
    }
    t.equal(err.code, 'FST_WS_PROXY_INVALID_OPTION', `${c.name}: code`)
    t.ok(err instanceof TypeError, `${c.name}: a TypeError`)
    const head = `Invalid fastify-ws-proxy option ${c.path}: `
    t.equal(err.message.slice(0, head.length), head, `${c.name}: names ${c.path}`)
    t.match(err.message.slice(head.length), c.reason, `${c.name}: says what was given`)
  }
})

interface Conflict {
  name: string
  registrations: WsProxyOptions[]
  /** A GET route the application declares before registering the plugin. */
  userRoute?: string
  /** The path both routes claim. */
  path: string
}

t.test('route conflicts fail ready() with Fastify\'s duplicate-route error', async (t) => {
  const variants: Conflict[] = [
    {
      name: 'the plugin registered twice, both with health: {}',
      registrations: [
        { routes: [{ prefix: '/a/', upstream: 'http://127.0.0.1:1' }], health: {} },
        { routes: [{ prefix: '/b/', upstream: 'http://127.0.0.1:2' }], health: {} }
      ],
      path: '/healthz'
    },
    {
      name: 'live and ready at the same path',
      registrations: [{ routes: [{ prefix: '/a/', upstream: 'http://127.0.0.1:1' }], health: { live: '/health', ready: '/health' } }],
      path: '/health'
    },
    {
      name: 'the application\'s own GET /readyz',
      registrations: [{ routes: [{ prefix: '/a/', upstream: 'http://127.0.0.1:1' }], health: {} }],
      userRoute: '/readyz',
      path: '/readyz'
    }
  ]
  for (const v of variants) {
    const app = Fastify()
    t.teardown(async () => { await app.close() })
    if (v.userRoute !== undefined) app.get(v.userRoute, async () => 'mine')
    for (const options of v.registrations) app.register(wsProxyPlugin, options)
    await t.rejects(within(Promise.resolve(app.ready()), 5000, `ready() of ${v.name}`), {
      code: 'FST_ERR_DUPLICATED_ROUTE', message: `Method 'GET' already declared for route '${v.path}'`
    }, `${v.name}: ready() rejects with Fastify's duplicate-route error for GET ${v.path}`)
  }

  // Health turned off in one of the two registrations: no clash, both work.
  const up = await upstream(t)
  const { url } = await gateway(t, { routes: [{ prefix: '/a/', upstream: up.url }], health: {} }, {}, async (app) => {
    await app.register(wsProxyPlugin, { routes: [{ prefix: '/b/', upstream: up.url }] })
  })
  await expectLive(t, url, 'one registration with health, the other without: no clash')
  await expectReadiness(t, url, READY, 'readiness of both registrations')
})
