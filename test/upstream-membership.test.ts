import t from 'tap'
import http, { type IncomingHttpHeaders, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { WebSocketServer, type WebSocket } from 'ws'
import type { HostResolver, ServerOptions, ServerUpdate } from '../src/index.js'
import { closedPort, gateway, logCapture, portOf, waitFor, type LogRecord, type Teardown } from './helpers/servers.js'
import { request } from './helpers/clients.js'
import { messages, openWs, wsClosed, wsUrl } from './helpers/ws.js'

// The runtime side of upstream groups: introspection (upstreams(), group()), the membership API (add, remove,
// drain, update), active health checks and DNS re-resolution. Every upstream is a real node:http + ws server.

/** A named upstream: answers its name, counts requests and probes, and echoes WebSocket messages as `name:message`. */
interface Backend {
  readonly name: string
  readonly server: http.Server
  /** `http://host:port`. */
  readonly url: string
  /** Paths of the proxied requests (health probes excluded), in order. */
  readonly hits: string[]
  /** Statuses answered to health probes, in order, and the last probe's headers. */
  readonly probes: number[]
  probeHeaders: IncomingHttpHeaders | null
  /** What `/health` answers; 0: no answer at all (the probe times out). */
  health: number
  /** `/slow` requests held until `release()`. */
  readonly held: ServerResponse[]
  release (): void
  /** Open connections (keep-alive, tunnels, probes). */
  readonly sockets: Set<Socket>
  /** Closes the server and every connection now (it refuses connections from then on). */
  stop (): Promise<void>
}

async function backend (t: Teardown, name: string, host = '127.0.0.1', port = 0): Promise<Backend> {
  const sockets = new Set<Socket>()
  const b: Backend = {
    name,
    server: http.createServer((req, res) => {
      if (req.url === '/health') {
        b.probes.push(b.health)
        b.probeHeaders = req.headers
        if (b.health === 0) return
        res.statusCode = b.health
        res.end()
        return
      }
      b.hits.push(req.url as string)
      res.setHeader('x-backend', name)
      if (req.url === '/slow') {
        b.held.push(res)
        return
      }
      res.end(name)
    }),
    url: '',
    hits: [],
    probes: [],
    probeHeaders: null,
    health: 200,
    held: [],
    release () {
      for (const res of b.held.splice(0)) res.end(name)
    },
    sockets,
    async stop () {
      const closed = new Promise((resolve) => b.server.close(resolve))
      for (const socket of sockets) socket.destroy()
      await closed
    }
  }
  b.server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  const wss = new WebSocketServer({ server: b.server })
  wss.on('connection', (ws) => {
    ws.on('message', (data) => ws.send(`${name}:${String(data)}`))
  })
  await new Promise<void>((resolve, reject) => {
    b.server.once('error', reject)
    b.server.listen(port, host, () => {
      b.server.off('error', reject)
      resolve()
    })
  })
  ;(b as { url: string }).url = `http://${host}:${portOf(b.server)}`
  t.teardown(async () => {
    b.release()
    await new Promise<void>((resolve) => wss.close(() => resolve()))
    if (b.server.listening) await b.stop()
  })
  return b
}

/**
 * Two backends on the same port, one on 127.0.0.1 and one on 127.0.0.2 (loopback on Linux): the addresses one host
 * name may resolve to. A port taken on 127.0.0.2 is tried again with another (bounded).
 */
async function samePortPair (t: Teardown): Promise<[Backend, Backend]> {
  for (let attempt = 1; ; attempt++) {
    const one = await backend(t, 'one')
    try {
      return [one, await backend(t, 'two', '127.0.0.2', portOf(one.server))]
    } catch (err) {
      await one.stop()
      if (attempt === 5) throw err
    }
  }
}

interface ErrorBody { statusCode: number, code: string, message: string }

/** Sends `n` GETs one after the other and returns which backend answered each (by its x-backend header). */
async function spread (url: string, n: number, path = '/r'): Promise<string[]> {
  const answered: string[] = []
  for (let i = 0; i < n; i++) {
    const res = await request(`${url}${path}${i}`)
    answered.push(res.status === 200 ? res.headers['x-backend'] as string : `status ${res.status}`)
  }
  return answered
}

function count (answered: string[], name: string): number {
  return answered.filter((a) => a === name).length
}

/** The first message a tunnel echoes for `text`, as `name:text`. */
async function echo (ws: WebSocket, text: string): Promise<string> {
  ws.send(text)
  const [message] = await messages(ws, 1)
  return message.data.toString()
}

function recordsWith (records: LogRecord[], msg: string): LogRecord[] {
  return records.filter((r) => r.msg === msg)
}

t.test('introspection', async (t) => {
  // upstreams() lists the named groups (not single-URL routes) with every server's full state; group() finds one.
  t.test('upstreams() reports named groups and their servers; group() returns the group', async (t) => {
    const a = await backend(t, 'a')
    const b = await backend(t, 'b')
    const { app } = await gateway(t, {
      upstreams: {
        api: { servers: [{ url: a.url }, { url: b.url, weight: 2, backup: true }] },
        other: { servers: [{ url: b.url }], balance: 'least-conn' }
      },
      routes: [
        { prefix: '/api/', upstream: 'http://api' },
        { prefix: '/other/', upstream: 'http://other' },
        { prefix: '/direct/', upstream: a.url }
      ]
    })
    const groups = app.wsProxy.upstreams()
    t.same(groups.map((g) => [g.name, g.balance, g.servers.length]), [['api', 'round-robin', 2], ['other', 'least-conn', 1]],
      'named groups only, in order')
    t.same(groups[0].servers[0], {
      url: a.url,
      address: a.url.slice('http://'.length),
      state: 'up',
      weight: 1,
      backup: false,
      maxFails: 1,
      failTimeout: 10_000,
      activeRequests: 0,
      liveTunnels: 0,
      requests: 0,
      failures: 0,
      fails: 0,
      retryAt: null,
      lastError: null,
      resolvedFrom: null
    })
    t.match(groups[0].servers[1], { url: b.url, weight: 2, backup: true, state: 'up' })
    const api = app.wsProxy.group('api')
    t.equal(api.name, 'api')
    t.equal(api.balance, 'round-robin')
    t.same(api.servers(), groups[0].servers)
  })

  // An unknown name throws FST_WS_PROXY_UNKNOWN_GROUP, a TypeError naming the groups there are.
  t.test('group() of an unknown name throws FST_WS_PROXY_UNKNOWN_GROUP', async (t) => {
    const a = await backend(t, 'a')
    const { app } = await gateway(t, {
      upstreams: { api: { servers: [{ url: a.url }] }, web: { servers: [{ url: a.url }] } },
      routes: [{ prefix: '/', upstream: 'http://api' }]
    })
    const err = t.throws(() => app.wsProxy.group('nope'), { code: 'FST_WS_PROXY_UNKNOWN_GROUP' }) as Error
    t.type(err, TypeError)
    t.match(err.message, /"nope"/)
    t.match(err.message, /api, web/)
    t.throws(() => app.wsProxy.group('wbe'), { message: 'No upstream group named "wbe" (groups: api, web; did you mean "web"?)' }, 'with the closest name')
    t.throws(() => app.wsProxy.group(a.url), { code: 'FST_WS_PROXY_UNKNOWN_GROUP' }, 'a single-URL route is no named group')

    const plain = await gateway(t, { routes: [{ prefix: '/', upstream: a.url }] })
    t.same(plain.app.wsProxy.upstreams(), [])
    t.throws(() => plain.app.wsProxy.group('api'), { code: 'FST_WS_PROXY_UNKNOWN_GROUP', message: /none/ })
  })
})

t.test('membership API', async (t) => {
  // add(): a server added at run time joins the rotation at once and reports its own counters.
  t.test('a server added at run time starts getting requests', async (t) => {
    const a = await backend(t, 'a')
    const b = await backend(t, 'b')
    const { url, app } = await gateway(t, {
      upstreams: { api: { servers: [{ url: a.url }] } },
      routes: [{ prefix: '/', upstream: 'http://api' }]
    })
    const api = app.wsProxy.group('api')
    t.same(await spread(url, 4), ['a', 'a', 'a', 'a'])
    const info = api.add({ url: b.url })
    t.match(info, { url: b.url, state: 'up', weight: 1, backup: false, requests: 0, resolvedFrom: null })
    t.same(api.servers().map((s) => s.url), [a.url, b.url])
    const answered = await spread(url, 6)
    t.equal(count(answered, 'a'), 3)
    t.equal(count(answered, 'b'), 3)
    t.same(api.servers().map((s) => s.requests), [7, 3])
    // A WebSocket goes to the new server too.
    const ws1 = await openWs(t, wsUrl(url, '/ws'))
    const ws2 = await openWs(t, wsUrl(url, '/ws'))
    t.same([(await echo(ws1, 'x'))[0], (await echo(ws2, 'y'))[0]].sort(), ['a', 'b'])
    ws1.close(1000)
    ws2.close(1000)
    await Promise.all([wsClosed(ws1), wsClosed(ws2)])
  })

  // update({ weight }): smooth weighted round-robin follows the new weights exactly (3:1 over 40 → 30/10).
  t.test('update weight changes the distribution', async (t) => {
    const a = await backend(t, 'a')
    const b = await backend(t, 'b')
    const { url, app } = await gateway(t, {
      upstreams: { api: { servers: [{ url: a.url }, { url: b.url }] } },
      routes: [{ prefix: '/', upstream: 'http://api' }]
    })
    const api = app.wsProxy.group('api')
    const even = await spread(url, 4)
    t.same([count(even, 'a'), count(even, 'b')], [2, 2], 'equal weights alternate')
    t.equal(api.update(a.url, { weight: 3 }), true)
    t.same(api.servers().map((s) => s.weight), [3, 1])
    const weighted = await spread(url, 40)
    t.same([count(weighted, 'a'), count(weighted, 'b')], [30, 10])
    // Smooth: never more than three a's in a row.
    t.notOk(weighted.join('').includes('aaaa'), 'b is interleaved, not batched')
    // A URL that differs only by a trailing slash names the same server.
    t.equal(api.update(`${b.url}/`, { weight: 3 }), true)
    const back = await spread(url, 8)
    t.same([count(back, 'a'), count(back, 'b')], [4, 4])
  })

  // update({ down }) and update({ backup }): a down server gets nothing; a backup only while no primary is usable.
  t.test('update down: true takes a server out; backup serves only when no primary can', async (t) => {
    const a = await backend(t, 'a')
    const b = await backend(t, 'b')
    const { url, app } = await gateway(t, {
      upstreams: { api: { servers: [{ url: a.url }, { url: b.url }] } },
      routes: [{ prefix: '/', upstream: 'http://api' }]
    })
    const api = app.wsProxy.group('api')
    t.equal(api.update(b.url, { down: true }), true)
    t.equal(api.servers()[1].state, 'down')
    t.same(await spread(url, 6), ['a', 'a', 'a', 'a', 'a', 'a'])
    t.equal(b.hits.length, 0, 'the down server got nothing')
    t.equal(api.update(b.url, { down: false, backup: true }), true)
    t.match(api.servers()[1], { state: 'up', backup: true })
    t.same(await spread(url, 4), ['a', 'a', 'a', 'a'], 'a backup is idle while the primary is up')
    t.equal(api.update(a.url, { down: true }), true)
    t.same(await spread(url, 3), ['b', 'b', 'b'], 'the backup takes over when no primary is usable')
    t.equal(api.update(b.url, { down: true }), true)
    const none = await request(`${url}/x`)
    t.equal(none.status, 502)
    t.equal((JSON.parse(none.body.toString()) as ErrorBody).code, 'FST_WS_PROXY_NO_LIVE_UPSTREAM')
    t.equal(api.update(a.url, { down: false }), true)
    t.same(await spread(url, 2), ['a', 'a'])
  })

  // drain(): no new requests or tunnels; the live tunnel and the request in flight on it carry on to the end.
  t.test('drain a server holding a live tunnel and a request in flight', async (t) => {
    const a = await backend(t, 'a')
    const b = await backend(t, 'b')
    const { url, app } = await gateway(t, {
      upstreams: { api: { servers: [{ url: a.url }, { url: b.url }] } },
      routes: [{ prefix: '/', upstream: 'http://api' }]
    })
    const api = app.wsProxy.group('api')
    const ws1 = await openWs(t, wsUrl(url, '/chat'))
    const first = await echo(ws1, 'hello')
    const [held, other] = first.startsWith('a:') ? [a, b] : [b, a]
    // Round-robin alternates: the next request goes to the other server, the one after to `held` (kept in flight).
    t.equal((await request(`${url}/between`)).headers['x-backend'], other.name)
    const slow = request(`${url}/slow`)
    await waitFor(() => held.held.length === 1, 3000, 'the slow request to reach the held server')

    t.equal(api.drain(held.url), true)
    const drained = () => api.servers().find((s) => s.url === held.url)
    t.match(drained(), { state: 'draining', liveTunnels: 1, activeRequests: 1 })

    const answered = await spread(url, 5)
    t.same(answered, Array(5).fill(other.name), 'new requests go to the other server')
    const ws2 = await openWs(t, wsUrl(url, '/chat'))
    t.equal(await echo(ws2, 'new'), `${other.name}:new`, 'a new tunnel goes to the other server')
    for (let i = 0; i < 3; i++) t.equal(await echo(ws1, `m${i}`), `${held.name}:m${i}`, `the drained tunnel still echoes (${i})`)

    held.release()
    const done = await slow
    t.equal(done.status, 200, 'the request in flight completes')
    t.equal(done.body.toString(), held.name)
    await waitFor(() => drained()?.activeRequests === 0, 3000, 'the request to leave the load')
    t.equal(drained()?.liveTunnels, 1, 'the tunnel still counts until it closes')

    ws1.close(1000, 'done')
    t.same(await wsClosed(ws1), { code: 1000, reason: 'done' })
    await waitFor(() => drained()?.liveTunnels === 0, 3000, 'the tunnel to leave the drained server')
    t.equal(drained()?.state, 'draining', 'still draining once idle')
    t.same(await spread(url, 2), [other.name, other.name])

    // Undrained, it takes requests again.
    t.equal(api.update(held.url, { draining: false }), true)
    t.equal(drained()?.state, 'up')
    const again = await spread(url, 4)
    t.same([count(again, held.name), count(again, other.name)], [2, 2])
    ws2.close(1000)
    await wsClosed(ws2)
  })

  // remove(): the server leaves servers(); its tunnel and its request in flight carry on; its pool closes once idle.
  t.test('remove a server holding a live tunnel and a request in flight', async (t) => {
    const a = await backend(t, 'a')
    const b = await backend(t, 'b')
    const { url, app } = await gateway(t, {
      upstreams: { api: { servers: [{ url: a.url }, { url: b.url }] } },
      routes: [{ prefix: '/', upstream: 'http://api' }]
    })
    const api = app.wsProxy.group('api')
    const ws1 = await openWs(t, wsUrl(url, '/chat'))
    const [held, other] = (await echo(ws1, 'hello')).startsWith('a:') ? [a, b] : [b, a]
    t.equal((await request(`${url}/between`)).headers['x-backend'], other.name)
    const slow = request(`${url}/slow`)
    await waitFor(() => held.held.length === 1, 3000, 'the slow request to reach the held server')

    t.equal(api.remove(held.url), true)
    t.same(api.servers().map((s) => s.url), [other.url], 'gone from servers()')
    t.same(app.wsProxy.upstreams()[0].servers.map((s) => s.url), [other.url])
    t.same(await spread(url, 4), Array(4).fill(other.name), 'new requests go to the remaining server')
    for (let i = 0; i < 3; i++) t.equal(await echo(ws1, `m${i}`), `${held.name}:m${i}`, `the tunnel on the removed server still echoes (${i})`)

    held.release()
    const done = await slow
    t.equal(done.status, 200, 'the request in flight completes')
    t.equal(done.body.toString(), held.name)
    // Its keep-alive connections close once idle: only the tunnel's connection is left.
    await waitFor(() => held.sockets.size === 1, 3000, 'the removed server\'s pool to close its idle connections')
    t.equal(await echo(ws1, 'still'), `${held.name}:still`)

    t.equal(api.remove(held.url), false, 'removing it again: unknown')
    t.equal(api.drain(held.url), false)
    t.equal(api.update(held.url, { weight: 2 }), false)
    ws1.close(1000, 'done')
    t.same(await wsClosed(ws1), { code: 1000, reason: 'done' })
    await waitFor(() => held.sockets.size === 0, 3000, 'the tunnel\'s upstream connection to close')

    // The same URL can be added again, and is used.
    api.add({ url: held.url })
    const again = await spread(url, 4)
    t.same([count(again, held.name), count(again, other.name)], [2, 2])
  })

  // A group whose last server was removed has no live upstream (502) until a server is added again.
  t.test('removing every server answers 502 FST_WS_PROXY_NO_LIVE_UPSTREAM until one is added', async (t) => {
    const a = await backend(t, 'a')
    const b = await backend(t, 'b')
    const { url, app } = await gateway(t, {
      upstreams: { api: { servers: [{ url: a.url }] } },
      routes: [{ prefix: '/', upstream: 'http://api' }]
    })
    const api = app.wsProxy.group('api')
    t.same(await spread(url, 1), ['a'])
    t.equal(api.remove(a.url), true)
    t.same(api.servers(), [])
    t.same(app.wsProxy.upstreams(), [{ name: 'api', balance: 'round-robin', servers: [] }])
    const res = await request(`${url}/x`)
    t.equal(res.status, 502)
    t.equal((JSON.parse(res.body.toString()) as ErrorBody).code, 'FST_WS_PROXY_NO_LIVE_UPSTREAM')
    api.add({ url: b.url })
    t.same(await spread(url, 2), ['b', 'b'])
    const ws = await openWs(t, wsUrl(url, '/'))
    t.equal(await echo(ws, 'back'), 'b:back')
    ws.close(1000)
    await wsClosed(ws)
  })

  // Every invalid call throws FST_WS_PROXY_INVALID_OPTION (a TypeError) naming the option; the group is unchanged.
  t.test('add and update validate their arguments', async (t) => {
    const a = await backend(t, 'a')
    const { url, app } = await gateway(t, {
      upstreams: { api: { servers: [{ url: a.url }] } },
      routes: [{ prefix: '/', upstream: 'http://api' }]
    })
    const api = app.wsProxy.group('api')
    const before = api.servers()
    const adds: Array<[string, unknown, RegExp]> = [
      ['not an http(s) URL', { url: 'ftp://127.0.0.1:1' }, /upstreams\/api\/servers\/\+\/url/],
      ['no url', { weight: 1 }, /upstreams\/api\/servers\/\+\//],
      ['weight 0', { url: 'http://127.0.0.1:1', weight: 0 }, /upstreams\/api\/servers\/\+\/weight/],
      ['fractional weight', { url: 'http://127.0.0.1:1', weight: 1.5 }, /upstreams\/api\/servers\/\+\/weight/],
      ['negative maxFails', { url: 'http://127.0.0.1:1', maxFails: -1 }, /upstreams\/api\/servers\/\+\/maxFails/],
      ['failTimeout 0', { url: 'http://127.0.0.1:1', failTimeout: 0 }, /upstreams\/api\/servers\/\+\/failTimeout/],
      ['backup not a boolean', { url: 'http://127.0.0.1:1', backup: 'yes' }, /upstreams\/api\/servers\/\+\/backup/],
      ['an unknown property', { url: 'http://127.0.0.1:1', colour: 'red' }, /upstreams\/api\/servers\/\+\//],
      ['a URL with a path', { url: 'http://127.0.0.1:1/base/' }, /upstreams\/api\/servers\/\+\/url.*no path/],
      ['a malformed unix URL', { url: 'http://unix:relative.sock:' }, /upstreams\/api\/servers\/\+\/url/],
      ['credentials', { url: 'http://user:pw@127.0.0.1:1' }, /upstreams\/api\/servers\/\+\/url.*credentials/],
      ['another scheme than the group\'s', { url: 'https://127.0.0.1:1' }, /upstreams\/api\/servers\/\+\/url.*same scheme/],
      ['a duplicate', { url: a.url }, /upstreams\/api\/servers\/\+\/url.*already in the group/],
      ['a duplicate written differently', { url: `http://127.0.0.1:0${portOf(a.server)}` }, /already in the group/]
    ]
    for (const [what, options, message] of adds) {
      const err = t.throws(() => api.add(options as ServerOptions), { code: 'FST_WS_PROXY_INVALID_OPTION', message }, `add: ${what}`) as Error
      t.type(err, TypeError, `add: ${what} is a TypeError`)
    }
    const updates: Array<[string, unknown]> = [
      ['weight 0', { weight: 0 }],
      ['weight over the maximum', { weight: 1_000_001 }],
      ['a string weight', { weight: '2' }],
      ['draining not a boolean', { draining: 1 }],
      ['down not a boolean', { down: 'true' }],
      ['an unknown property', { url: 'http://127.0.0.1:2' }]
    ]
    for (const [what, changes] of updates) {
      const err = t.throws(() => api.update(a.url, changes as ServerUpdate), { code: 'FST_WS_PROXY_INVALID_OPTION', message: /upstreams\/api\/servers\// },
        `update: ${what}`) as Error
      t.type(err, TypeError, `update: ${what} is a TypeError`)
    }
    t.equal(api.update('http://127.0.0.1:1', { weight: 2 }), false, 'update of an unknown server')
    t.equal(api.drain('http://127.0.0.1:1'), false, 'drain of an unknown server')
    t.equal(api.remove('http://127.0.0.1:1'), false, 'remove of an unknown server')
    t.equal(api.remove('not a url'), false)
    t.same(api.servers(), before, 'nothing changed')
    t.same(await spread(url, 2), ['a', 'a'])
  })
})

t.test('active health checks', async (t) => {
  // A server whose /health answers 500 turns unhealthy and gets nothing; back to 200, it is up and used again.
  t.test('a failing /health takes a server out, a passing one brings it back', async (t) => {
    const a = await backend(t, 'a')
    const b = await backend(t, 'b')
    a.health = 500
    const logs = logCapture()
    const { url, app } = await gateway(t, {
      upstreams: { api: { servers: [{ url: a.url }, { url: b.url }], healthCheck: { path: '/health', interval: 100, timeout: 1000 } } },
      routes: [{ prefix: '/', upstream: 'http://api' }]
    }, { logger: { level: 'info', stream: logs.stream } })
    const api = app.wsProxy.group('api')
    const stateOf = (u: string) => api.servers().find((s) => s.url === u)?.state
    await waitFor(() => stateOf(a.url) === 'unhealthy', 5000, 'a to turn unhealthy')
    t.equal(stateOf(b.url), 'up')
    t.same(await spread(url, 6), Array(6).fill('b'), 'an unhealthy server gets no requests')
    t.equal(a.hits.length, 0)
    const ws = await openWs(t, wsUrl(url, '/'))
    t.equal(await echo(ws, 'x'), 'b:x', 'nor tunnels')
    const failed = recordsWith(logs.records, 'upstream server failed its health checks')
    t.equal(failed.length, 1, 'one warning when it turned unhealthy')
    t.match(failed[0], { level: 40, group: 'api', upstream: a.url.slice('http://'.length), detail: 'status 500' })

    a.health = 200
    await waitFor(() => stateOf(a.url) === 'up', 5000, 'a to come back')
    const answered = await spread(url, 6)
    t.same([count(answered, 'a'), count(answered, 'b')], [3, 3], 'back in the rotation')
    t.match(recordsWith(logs.records, 'upstream server passed its health checks'), [{ level: 30, group: 'api' }])
    ws.close(1000)
    await wsClosed(ws)
  })

  // `fails`/`passes` need that many probes in a row; `status` is the healthy range; `headers` go with each probe.
  t.test('fails, passes, status range and probe headers', async (t) => {
    const a = await backend(t, 'a')
    const b = await backend(t, 'b')
    a.health = 204
    const { app } = await gateway(t, {
      upstreams: {
        api: {
          servers: [{ url: a.url }, { url: b.url }],
          healthCheck: { path: '/health', interval: 50, timeout: 1000, status: [200, 200], fails: 3, passes: 2, headers: { 'x-probe': 'yes' } }
        }
      },
      routes: [{ prefix: '/', upstream: 'http://api' }]
    })
    const api = app.wsProxy.group('api')
    const stateOf = (u: string) => api.servers().find((s) => s.url === u)?.state
    await waitFor(() => stateOf(a.url) === 'unhealthy', 5000, 'a to turn unhealthy')
    t.ok(a.probes.filter((s) => s === 204).length >= 3, '204 is outside [200, 200]; three bad probes in a row were needed')
    t.match(b.probeHeaders, { 'x-probe': 'yes' }, 'the probe headers are sent')
    t.equal(stateOf(b.url), 'up')
    const switched = a.probes.length
    a.health = 200
    await waitFor(() => stateOf(a.url) === 'up', 5000, 'a to come back')
    t.ok(a.probes.slice(switched).filter((s) => s === 200).length >= 2, 'two good probes in a row were needed')
  })

  // A probe that gets no answer within `timeout` counts as failed; once answers come back the server is up again.
  t.test('a probe that times out takes the server out', async (t) => {
    const a = await backend(t, 'a')
    const b = await backend(t, 'b')
    a.health = 0
    const logs = logCapture()
    const { url, app } = await gateway(t, {
      upstreams: { api: { servers: [{ url: a.url }, { url: b.url }], healthCheck: { path: '/health', interval: 100, timeout: 200 } } },
      routes: [{ prefix: '/', upstream: 'http://api' }]
    }, { logger: { level: 'warn', stream: logs.stream } })
    const api = app.wsProxy.group('api')
    await waitFor(() => api.servers()[0].state === 'unhealthy', 5000, 'the silent server to turn unhealthy')
    t.match(recordsWith(logs.records, 'upstream server failed its health checks'), [{ upstream: a.url.slice('http://'.length), detail: /TIMEOUT/ }])
    t.same(await spread(url, 3), ['b', 'b', 'b'])
    a.health = 200
    await waitFor(() => api.servers()[0].state === 'up', 5000, 'the server to answer its probes again')
  })

  // A server that refuses connections turns unhealthy; requests go to the other one without a single error.
  t.test('a closed server becomes unhealthy; a group with no healthy server answers 502', async (t) => {
    const a = await backend(t, 'a')
    const b = await backend(t, 'b')
    const { url, app } = await gateway(t, {
      upstreams: {
        api: { servers: [{ url: a.url }, { url: b.url }], healthCheck: { path: '/health', interval: 100, timeout: 1000 } },
        solo: { servers: [{ url: `http://127.0.0.1:${await closedPort()}` }], healthCheck: { path: '/health', interval: 100, timeout: 1000 } }
      },
      routes: [{ prefix: '/solo/', upstream: 'http://solo' }, { prefix: '/', upstream: 'http://api' }]
    })
    const api = app.wsProxy.group('api')
    await waitFor(() => a.probes.length > 0 && b.probes.length > 0, 5000, 'both servers to be probed')
    t.same(api.servers().map((s) => s.state), ['up', 'up'])
    await b.stop()
    await waitFor(() => api.servers()[1].state === 'unhealthy', 5000, 'the closed server to turn unhealthy')
    t.same(await spread(url, 5), Array(5).fill('a'))
    t.same(api.servers().map((s) => s.failures), [0, 0], 'no request was even tried on the closed server')

    const solo = app.wsProxy.group('solo')
    await waitFor(() => solo.servers()[0].state === 'unhealthy', 5000, 'the lone closed server to turn unhealthy')
    const res = await request(`${url}/solo/x`)
    t.equal(res.status, 502)
    t.equal((JSON.parse(res.body.toString()) as ErrorBody).code, 'FST_WS_PROXY_NO_LIVE_UPSTREAM')
  })

  // Servers added at run time are probed too; removed ones are not any more.
  t.test('added servers are probed, removed ones no longer', async (t) => {
    const a = await backend(t, 'a')
    const b = await backend(t, 'b')
    b.health = 503
    const { url, app } = await gateway(t, {
      upstreams: { api: { servers: [{ url: a.url }], healthCheck: { path: '/health', interval: 50, timeout: 1000 } } },
      routes: [{ prefix: '/', upstream: 'http://api' }]
    })
    const api = app.wsProxy.group('api')
    api.add({ url: b.url })
    await waitFor(() => api.servers()[1].state === 'unhealthy', 5000, 'the added server to be probed and turn unhealthy')
    t.same(await spread(url, 3), ['a', 'a', 'a'])
    t.equal(api.remove(b.url), true)
    await sleep(100)
    const probed = b.probes.length
    await sleep(300)
    t.equal(b.probes.length, probed, 'no probe after removal')
    t.ok(a.probes.length > 3, 'the remaining server still is')
  })

  // app.close() stops the checks: no probe arrives after it (3+ intervals later).
  t.test('no probes after app.close()', async (t) => {
    const a = await backend(t, 'a')
    const { app } = await gateway(t, {
      upstreams: { api: { servers: [{ url: a.url }], healthCheck: { path: '/health', interval: 50, timeout: 1000 } } },
      routes: [{ prefix: '/', upstream: 'http://api' }]
    })
    await waitFor(() => a.probes.length >= 3, 5000, 'three probes')
    await app.close()
    // A probe sent just before the close may still be read by the upstream: let it land first.
    await sleep(50)
    const probed = a.probes.length
    await sleep(250)
    t.equal(a.probes.length, probed, 'no probe after close')
  })
})

t.test('DNS re-resolution', async (t) => {
  // A server named `localhost` (real DNS lookup, IPv4) becomes its address, marked with the name it came from.
  t.test('resolve() replaces a host name with its addresses (real lookup of localhost)', async (t) => {
    const a = await backend(t, 'a')
    const port = portOf(a.server)
    const { url, app } = await gateway(t, {
      upstreams: { api: { servers: [{ url: `http://localhost:${port}`, weight: 2 }], resolve: { interval: 60_000, family: 4 } } },
      routes: [{ prefix: '/', upstream: 'http://api' }]
    })
    const api = app.wsProxy.group('api')
    await api.resolve()
    const servers = api.servers()
    t.same(servers.map((s) => s.url), [`http://127.0.0.1:${port}`])
    t.match(servers[0], { address: `127.0.0.1:${port}`, resolvedFrom: 'localhost', weight: 2, state: 'up' })
    t.same(await spread(url, 2), ['a', 'a'], 'requests still work')
    await api.resolve()
    t.same(api.servers().map((s) => [s.url, s.requests]), [[`http://127.0.0.1:${port}`, 2]], 'the same answer changes nothing (same member, counters kept)')
  })

  // Two servers under one host name on different ports are two members each (nginx: `server host:8001; server host:8002;`),
  // and a resolution that changes nothing keeps both members as they are.
  t.test('two servers with the same host name and different ports both stay members', async (t) => {
    const a = await backend(t, 'a')
    const b = await backend(t, 'b')
    const [pa, pb] = [portOf(a.server), portOf(b.server)]
    const { url, app } = await gateway(t, {
      upstreams: {
        api: { servers: [{ url: `http://localhost:${pa}` }, { url: `http://localhost:${pb}`, weight: 3 }], resolve: { interval: 60_000, family: 4 } }
      },
      routes: [{ prefix: '/', upstream: 'http://api' }]
    })
    const api = app.wsProxy.group('api')
    await api.resolve()
    const members = () => api.servers().map((s) => [s.url, s.weight, s.requests]).sort()
    // Sorted both sides: the URLs order by their (random) ports.
    t.same(members(), [[`http://127.0.0.1:${pa}`, 1, 0], [`http://127.0.0.1:${pb}`, 3, 0]].sort())
    const answered = await spread(url, 4)
    t.same([count(answered, 'a'), count(answered, 'b')], [1, 3])
    await api.resolve()
    t.same(members(), [[`http://127.0.0.1:${pa}`, 1, 1], [`http://127.0.0.1:${pb}`, 3, 3]].sort(), 'the same answer keeps both members')
  })

  // A custom resolver drives membership: new addresses join (with the server's settings), gone ones leave, and a
  // tunnel on a removed address carries on.
  t.test('membership follows a custom resolver (127.0.0.1 ↔ 127.0.0.2)', async (t) => {
    const [one, two] = await samePortPair(t)
    const port = portOf(one.server)
    let answer = ['127.0.0.1']
    const calls: Array<[string, number]> = []
    const resolver: HostResolver = async (hostname, family) => {
      calls.push([hostname, family])
      return answer
    }
    const { url, app } = await gateway(t, {
      upstreams: { svc: { servers: [{ url: `http://svc.test:${port}`, weight: 2, maxFails: 3 }], resolve: { interval: 60_000, family: 4, resolver } } },
      routes: [{ prefix: '/', upstream: 'http://svc' }]
    })
    const api = app.wsProxy.group('svc')
    await api.resolve()
    t.same(calls[0], ['svc.test', 4], 'the resolver gets the host name and family')
    t.same(api.servers().map((s) => [s.url, s.resolvedFrom, s.weight]), [[`http://127.0.0.1:${port}`, 'svc.test', 2]])
    t.same(await spread(url, 2), ['one', 'one'])
    const ws = await openWs(t, wsUrl(url, '/'))
    t.equal(await echo(ws, 'hi'), 'one:hi')

    answer = ['127.0.0.2']
    await api.resolve()
    t.same(api.servers().map((s) => [s.url, s.resolvedFrom, s.weight]), [[`http://127.0.0.2:${port}`, 'svc.test', 2]], 'old address removed, new one added')
    t.same(await spread(url, 3), ['two', 'two', 'two'])
    t.equal(await echo(ws, 'still'), 'one:still', 'the tunnel on the removed address carries on')

    answer = ['127.0.0.1', '127.0.0.2']
    await api.resolve()
    t.same(api.servers().map((s) => s.url).sort(), [`http://127.0.0.1:${port}`, `http://127.0.0.2:${port}`])
    const both = await spread(url, 4)
    t.same([count(both, 'one'), count(both, 'two')], [2, 2])
    t.same([one.hits.length, two.hits.length], [4, 5], 'every request reached the address it was sent to')
    ws.close(1000)
    await wsClosed(ws)
  })

  // A resolver that throws, answers nothing or answers garbage leaves the members as they are, with a warning.
  t.test('a failed or empty resolution keeps the members and logs a warning', async (t) => {
    const a = await backend(t, 'a')
    const port = portOf(a.server)
    let answer: () => Promise<string[]> = async () => ['127.0.0.1']
    const logs = logCapture()
    const { url, app } = await gateway(t, {
      upstreams: { api: { servers: [{ url: `http://svc.test:${port}` }], resolve: { interval: 60_000, resolver: async () => await answer() } } },
      routes: [{ prefix: '/', upstream: 'http://api' }]
    }, { logger: { level: 'warn', stream: logs.stream } })
    const api = app.wsProxy.group('api')
    await api.resolve()
    const members = api.servers().map((s) => s.url)
    t.same(members, [`http://127.0.0.1:${port}`])

    const cases: Array<[string, () => Promise<string[]>, string]> = [
      ['throws', async () => { throw new Error('registry down') }, 'upstream host name did not resolve: members kept'],
      ['returns []', async () => [], 'upstream host name resolved to no usable address: members kept'],
      ['returns a non-address', async () => ['not-an-address'], 'upstream host name resolved to no usable address: members kept'],
      ['returns a non-array', async () => 'nope' as unknown as string[], 'upstream host name resolved to no usable address: members kept']
    ]
    for (const [what, next, msg] of cases) {
      answer = next
      const warned = recordsWith(logs.records, msg).length
      await api.resolve()
      t.same(api.servers().map((s) => s.url), members, `${what}: members kept`)
      const records = recordsWith(logs.records, msg)
      t.equal(records.length, warned + 1, `${what}: one warning`)
      t.match(records.at(-1), { level: 40, group: 'api', hostname: 'svc.test' })
      t.same(await spread(url, 1), ['a'], `${what}: requests still work`)
    }
    t.match(recordsWith(logs.records, 'upstream host name did not resolve: members kept')[0], { err: { message: 'registry down' } })
  })

  // The interval re-resolves on its own (new members are health-checked), and stops with the app.
  t.test('re-resolution runs every interval and stops at close', async (t) => {
    const [one, two] = await samePortPair(t)
    const port = portOf(one.server)
    let answer = ['127.0.0.1']
    let calls = 0
    const { app } = await gateway(t, {
      upstreams: {
        svc: {
          servers: [{ url: `http://svc.test:${port}` }],
          resolve: { interval: 50, family: 4, resolver: async () => { calls++; return answer } },
          healthCheck: { path: '/health', interval: 50, timeout: 1000 }
        }
      },
      routes: [{ prefix: '/', upstream: 'http://svc' }]
    })
    const api = app.wsProxy.group('svc')
    const urls = () => api.servers().map((s) => s.url).join(' ')
    await waitFor(() => urls() === `http://127.0.0.1:${port}`, 5000, 'the first resolution')
    answer = ['127.0.0.2']
    await waitFor(() => urls() === `http://127.0.0.2:${port}`, 5000, 'the interval to pick the new address up')
    await waitFor(() => two.probes.length > 0, 5000, 'the new member to be health-checked')
    await app.close()
    await sleep(50)
    const seen = calls
    await sleep(250)
    t.equal(calls, seen, 'no resolution after close')
  })
})
