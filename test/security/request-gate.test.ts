// The request gate itself (src/security/request-gate.ts): it takes Fastify's place among the server's 'request'
// listeners and gives it back at close; one gate per server, shared by every registration (each with its own field
// cap); where it cannot install (a serverFactory wrapping Fastify's handler) the routes still refuse, after hooks;
// a claimed upgrade is judged by it even beside another 'upgrade' listener; claimedPath's best effort.
import t from 'tap'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import net, { type Socket } from 'node:net'
import { once } from 'node:events'
import Fastify from 'fastify'
import wsProxyPlugin from '../../src/index.js'
import { claimedPath, releaseRequestGate, RequestGate, requestGateFor, requestGateOf } from '../../src/security/request-gate.js'
import { listen, portOf, within } from '../helpers/servers.js'
import { errorOf, exchange, fillers, guardedGateway, head, recordingUpstream, upgrade } from './support.js'

type Listener = (req: IncomingMessage, res: ServerResponse) => void

t.test('the gate takes Fastify\'s place among the request listeners, in order, and gives it back at close', async (t) => {
  const upstream = await recordingUpstream(t)
  const seen: string[] = []
  const first: Listener = (req) => { seen.push(`first ${req.url as string}`) }
  const last: Listener = (req) => { seen.push(`last ${req.url as string}`) }
  const gw = await guardedGateway(t, { routes: [{ prefix: '/api/', upstream: upstream.origin + '/' }] }, {
    setup: (app) => {
      app.server.prependListener('request', first)
      app.server.on('request', last)
    }
  })
  const server = gw.app.server
  const fastifyListener = gw.app.routing as unknown as Listener
  let listeners = server.listeners('request')
  t.equal(listeners.length, 3)
  t.equal(listeners[0], first)
  t.equal(listeners[2], last)
  t.not(listeners[1], fastifyListener, 'the gate wraps Fastify\'s listener')
  t.ok(requestGateOf(server) instanceof RequestGate)
  t.equal((await exchange(t, gw.port, head('/api/x', ['Connection: close']))).status, 200)
  t.equal((await exchange(t, gw.port, head('/api/%2fx'), { waitClose: true })).status, 400)
  t.same(seen, ['first /api/x', 'last /api/x', 'first /api/%2fx', 'last /api/%2fx'], 'the other listeners still see every request')
  t.equal(gw.hookSeen.length, 1)
  await gw.app.close()
  listeners = server.listeners('request')
  t.same(listeners, [first, fastifyListener, last], 'Fastify\'s own listener is back, in its place')
  t.equal(requestGateOf(server), undefined)
  releaseRequestGate(server)
  t.pass('releasing a server without a gate is a no-op')
})

t.test('two registrations share one gate, each path with its own limits.headers', async (t) => {
  const upstream = await recordingUpstream(t)
  const gw = await guardedGateway(t, { routes: [{ prefix: '/two/', upstream: upstream.origin + '/' }] }, {
    setup: async (app) => {
      await app.register(wsProxyPlugin, { routes: [{ prefix: '/one/', upstream: upstream.origin + '/' }], limits: { headers: 10 } })
    }
  })
  t.equal(gw.app.server.listeners('request').length, 1, 'one listener: one gate')
  // With Host and Connection: 11 fields.
  const eleven = fillers(9)
  const one = await exchange(t, gw.port, head('/one/x', ['Connection: close', ...eleven]), { waitClose: true })
  t.equal(one.status, 431)
  t.equal(errorOf(one).message, 'Request has more than 10 header fields')
  t.equal((await exchange(t, gw.port, head('/one/x', ['Connection: close', ...fillers(8)]))).status, 200)
  t.equal((await exchange(t, gw.port, head('/two/x', ['Connection: close', ...eleven]))).status, 200, 'the other registration\'s default cap (100)')
  const two = await exchange(t, gw.port, head('/two/x', ['Connection: close', ...fillers(99)]), { waitClose: true })
  t.equal(errorOf(two).message, 'Request has more than 100 header fields')
  t.equal(gw.hookSeen.length, 2)
})

t.test('requestGateFor installs once per server; a server whose listeners do not include routing is left alone', async (t) => {
  const server = http.createServer()
  const app = Fastify({ logger: false })
  const routing: Listener = () => {}
  const other: Listener = () => {}
  server.on('request', other)
  const gate = requestGateFor(server, routing, app.log)
  t.equal(requestGateFor(server, () => {}, app.log), gate, 'the same gate for the same server')
  t.same(server.listeners('request'), [other], 'not Fastify\'s listener: nothing swapped')
  t.equal(server.listenerCount('connect'), 1)
  releaseRequestGate(server)
  t.same(server.listeners('request'), [other], 'and nothing to give back')
  t.equal(server.listenerCount('connect'), 0)
  await app.close()
})

t.test('a serverFactory wrapping Fastify\'s handler: no gate before routing, routes refuse the same after hooks; upgrades and CONNECT still gated', async (t) => {
  const upstream = await recordingUpstream(t)
  let hooks = 0
  const app = Fastify({
    logger: false,
    serverFactory: (handler) => http.createServer((req, res) => { handler(req, res) })
  })
  t.teardown(() => app.close())
  app.addHook('onRequest', async () => { hooks++ })
  await app.register(wsProxyPlugin, { routes: [{ prefix: '/api/', upstream: upstream.origin + '/' }, { prefix: '/ws/', upstream: upstream.origin }] })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = portOf(app.server)
  const cases: Array<[string, number, string]> = [
    [head('/api/..%2fadmin'), 400, 'Request target refused: encoded slash or backslash'],
    [head('/api//x'), 400, 'Request target refused: not in canonical form (see wsProxyRewriteUrl)'],
    [head('/api/x', fillers(100)), 431, 'Request has more than 100 header fields'],
    [head('/api/x', ['Host: b'], { host: 'a' }), 400, 'Invalid Host header: more than one'],
    [head('/api/x', ['User-Agent: a', 'User-Agent: b']), 400, 'Request has more than one user-agent header'],
    [upgrade('/ws/x', ['Host: b']), 400, 'Invalid Host header: more than one']
  ]
  for (const [bytes, status, message] of cases) {
    const answer = await exchange(t, port, bytes)
    t.equal(answer.status, status, message)
    t.equal(errorOf(answer).message, message)
  }
  // The upgrade router still asks the gate (installed for CONNECT): only the plain requests met the hooks first.
  t.equal(hooks, cases.length - 1, 'each plain request went through the hooks first (no gate before routing)')
  t.equal(upstream.arrivals.length, 0)
  t.equal((await exchange(t, port, head('/api/ok', ['Connection: close']))).status, 200)
  const connect = await exchange(t, port, 'CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n', { waitClose: true })
  t.equal(connect.status, 405, 'the connect listener does not need Fastify\'s')
  await app.close()
  t.equal(app.server.listenerCount('connect'), 0)
})

t.test('a claimed upgrade is judged by the gate while another \'upgrade\' listener exists; unclaimed ones are left to it', async (t) => {
  const upstream = await recordingUpstream(t)
  const others: string[] = []
  const gw = await guardedGateway(t, { routes: [{ prefix: '/ws/', upstream: upstream.origin }] }, {
    setup: (app) => {
      app.server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
        others.push(req.url as string)
        if (!(req.url as string).startsWith('/other')) return
        socket.end('HTTP/1.1 418 I\'m a teapot\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
      })
    }
  })
  const refused = await exchange(t, gw.port, upgrade('/ws/x', ['Host: b']), { waitClose: true })
  t.equal(refused.status, 400)
  t.equal(errorOf(refused).code, 'FST_WS_PROXY_BAD_HOST')
  t.ok(refused.closed)
  const encoded = await exchange(t, gw.port, upgrade('//ws/%2e%2e/x'), { waitClose: true })
  t.equal(errorOf(encoded).message, 'Request target refused: encoded dot segment', 'claimed by its path with slashes merged')
  t.equal((await exchange(t, gw.port, upgrade('/ws/x'))).status, 101)
  t.equal((await exchange(t, gw.port, upgrade('/other/x', ['Host: b']))).status, 418, 'an unclaimed path is the other listener\'s, whatever its head')
  t.same(others, ['/ws/x', '//ws/%2e%2e/x', '/ws/x', '/other/x'], 'the other listener saw each')
  t.equal(gw.hookSeen.length, 1, 'only the accepted upgrade reached the hooks')
  t.equal(upstream.arrivals.length, 1)
})

t.test('a refused upgrade whose client resets: the socket error is absorbed', async (t) => {
  const app = Fastify({ logger: false })
  t.teardown(() => app.close())
  const server = net.createServer()
  await listen(t, server)
  const client = net.connect(portOf(server), '127.0.0.1')
  t.teardown(() => { client.destroy() })
  client.on('error', () => {})
  const [socket] = await within(once(server, 'connection'), 2000, 'the connection') as [Socket]
  const gate = new RequestGate(http.createServer(), () => {}, app.log)
  gate.claim([{ path: '/ws/', exact: false, headerCap: 100 }])
  const req = { url: '/ws/x', method: 'GET', rawHeaders: ['Host', 'a', 'Host', 'b'], headers: { host: 'a' }, httpVersionMajor: 1, httpVersionMinor: 1 } as unknown as IncomingMessage
  t.equal(gate.refuseUpgrade(req, socket), true)
  socket.emit('error', new Error('ECONNRESET'))
  t.ok(socket.destroyed, 'destroyed on error, no crash')
  t.equal(gate.refuseUpgrade({ ...req, url: '/elsewhere', rawHeaders: ['Host', 'a'] } as unknown as IncomingMessage, socket), false, 'an unclaimed path is not the gate\'s')
  gate.close()
})

t.test('claimFor: prefixes and exact paths', async (t) => {
  const app = Fastify({ logger: false })
  t.teardown(() => app.close())
  const gate = new RequestGate(http.createServer(), () => {}, app.log)
  gate.claim([{ path: '/api/', exact: false, headerCap: 10 }, { path: '/api', exact: true, headerCap: 20 }])
  t.equal(gate.claimFor('/api/x')?.headerCap, 10)
  t.equal(gate.claimFor('/api?x')?.headerCap, 20)
  t.equal(gate.claimFor('http://h/api')?.headerCap, 20)
  t.equal(gate.claimFor('/apix'), null)
  t.equal(gate.claimFor('/api#x')?.headerCap, 20, 'exact, once canonical')
  t.equal(gate.claimFor('/api/../x'), null, 'by the canonical path')
  gate.close()
})

t.test('claimedPath: the target itself when canonical, the canonical path, or a best effort for a refused target', async (t) => {
  const cases: Array<[string, string]> = [
    // The common case allocates nothing: prefixes never contain `?`, so the query can stay.
    ['/api/x?q=1', '/api/x?q=1'],
    ['/api/x', '/api/x'],
    ['//api//x?y', '/api/x'],
    ['/a/../api/x#f', '/api/x'],
    ['http://h/api/x?y', '/api/x'],
    ['HTTP://h', '/'],
    ['/api/%2fx?q', '/api/%2fx'],
    ['//api//..%2f#x', '/api/..%2f'],
    ['http://u@h//api/x?y', '/api/x'],
    ['http://h:1/../api/x', '/../api/x'],
    ['*', '/*'],
    ['api/x', '/api/x']
  ]
  for (const [url, path] of cases) t.equal(claimedPath(url), path, url)
})
