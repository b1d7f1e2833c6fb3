// routes[].config: handed to the Fastify route's `config` as given, so `request.routeOptions.config` in the app's hooks
// sees it on plain requests and on upgrades, functions inside included (never cloned), and per-route plugin settings
// apply: @fastify/rate-limit's `config.rateLimit` limits that route only, a WebSocket handshake included (429 and its
// headers, nothing upstream), while another route stays unlimited. A config that is not an object fails register.
import t from 'tap'
import type { IncomingMessage, Server } from 'node:http'
import Fastify, { type FastifyRequest } from 'fastify'
import rateLimit from '@fastify/rate-limit'
import wsProxyPlugin, { resolveOptions, type WsProxyOptions } from '../src/index.js'
import { gateway, origin, wsUpstream, type Teardown } from './helpers/servers.js'
import { request } from './helpers/clients.js'
import { messages, openWs, parseHead, rawClient, unexpectedResponse, wsHandshakeHead, wsUrl } from './helpers/ws.js'
import { problemsOf } from './helpers/options.js'

/** A `ws` echo upstream that counts plain requests and upgrade requests, by URL. */
async function countedUpstream (t: Teardown): Promise<{ server: Server, requests: string[], upgrades: string[] }> {
  const { server } = await wsUpstream(t)
  const requests: string[] = []
  const upgrades: string[] = []
  server.on('request', (req: IncomingMessage) => { requests.push(req.url as string) })
  server.on('upgrade', (req: IncomingMessage) => { upgrades.push(req.url as string) })
  return { server, requests, upgrades }
}

t.test('hooks see the route config on plain requests and upgrades; functions inside are the caller\'s own', async (t) => {
  const { server } = await countedUpstream(t)
  const tenantOf = (request: FastifyRequest): string => String(request.headers['x-tenant'])
  const nested = { limits: [1, 2], when: new Date(0) }
  const options: WsProxyOptions = {
    routes: [
      { prefix: '/a/', upstream: origin(server), config: { tag: 'a', tenantOf, nested } },
      { prefix: '/b/', upstream: origin(server), host: 'b.test', config: { tag: 'b' } },
      { prefix: '/c/', upstream: origin(server), config: undefined },
      { prefix: '/d/', upstream: origin(server) }
    ]
  }
  const seen: unknown[] = []
  const { url } = await gateway(t, options, {}, (app) => {
    app.addHook('onRequest', async (request) => {
      const config = request.routeOptions.config as unknown as Record<string, unknown>
      seen.push({
        url: request.url,
        upgrade: request.headers.upgrade !== undefined,
        tag: config.tag,
        fn: config.tenantOf === tenantOf ? (config.tenantOf as typeof tenantOf)(request) : 'cloned',
        nested: config.nested === nested
      })
    })
  })
  t.equal((await request(`${url}/a/x`, { headers: { 'x-tenant': 'acme' } })).status, 200)
  const ws = await openWs(t, wsUrl(url, '/a/ws'), undefined, { headers: { 'x-tenant': 'globex' } })
  ws.send('through')
  t.equal((await messages(ws, 1))[0].data.toString(), 'through')
  t.equal((await request(`${url}/b/x`, { headers: { host: 'b.test' } })).status, 200)
  const wsB = await openWs(t, wsUrl(url, '/b/ws'), undefined, { headers: { host: 'B.test:1' } })
  wsB.send('b')
  t.equal((await messages(wsB, 1))[0].data.toString(), 'b')
  t.equal((await request(`${url}/c/x`)).status, 200)
  t.equal((await request(`${url}/d/x`)).status, 200)
  t.same(seen, [
    { url: '/a/x', upgrade: false, tag: 'a', fn: 'acme', nested: true },
    { url: '/a/ws', upgrade: true, tag: 'a', fn: 'globex', nested: true },
    { url: '/b/x', upgrade: false, tag: 'b', fn: 'cloned', nested: false },
    { url: '/b/ws', upgrade: true, tag: 'b', fn: 'cloned', nested: false },
    { url: '/c/x', upgrade: false, tag: undefined, fn: 'cloned', nested: false },
    { url: '/d/x', upgrade: false, tag: undefined, fn: 'cloned', nested: false }
  ])
  const routes = options.routes as NonNullable<WsProxyOptions['routes']>
  t.same(routes[0].config, { tag: 'a', tenantOf, nested }, 'the caller\'s options are left as they were')
  t.ok('config' in routes[2], 'an undefined config stays on the caller\'s route')
})

t.test('a config that is not an object fails register naming routes/N/config', async (t) => {
  for (const config of ['x', 5, null, [], true]) {
    const err = problemsOf({ routes: [{ prefix: '/a/', upstream: 'http://x' }, { prefix: '/b/', upstream: 'http://x', config }] })
    t.equal(err.code, 'FST_WS_PROXY_INVALID_OPTION', JSON.stringify(config))
    t.equal(err.message, 'Invalid fastify-ws-proxy option routes/1/config: expected an object (the Fastify route config)', JSON.stringify(config))
  }
  const register = async (options: WsProxyOptions): Promise<void> => { await Fastify().register(wsProxyPlugin, options).ready() }
  await t.rejects(register({ routes: [{ prefix: '/', upstream: 'http://x', config: 'x' as unknown as Record<string, unknown> }] }),
    { code: 'FST_WS_PROXY_INVALID_OPTION', message: /option routes\/0\/config: expected an object/ })
  // Routes that are not objects are the schema's to report, config or not.
  t.match(problemsOf({ routes: [null, 'x', { prefix: '/', upstream: 'http://x', config: {} }] }).problems, [{ path: 'routes/0' }, { path: 'routes/1' }])
  t.match(problemsOf({ routes: 'x' }).problems, [{ path: 'routes' }])
  // Reported with every other problem of the options, in one error.
  t.match(problemsOf({ routes: [{ prefix: '/', upstream: 'http://x', config: 5, timeouts: { read: 0 } }] }).problems,
    [{ path: 'routes/0/config' }, { path: 'routes/0/timeouts/read' }])
  // A function or class instance inside is fine: the config is never checked or copied.
  const resolved = resolveOptions({ routes: [{ prefix: '/', upstream: 'http://x', config: { fn: () => 1, big: 1n } }] })
  t.equal(typeof resolved.routes[0].config.fn, 'function')
  t.equal(resolved.routes[0].config.big, 1n)
})

t.test('@fastify/rate-limit per route on HTTP: the limited route gets 429 after max, another route stays unlimited', async (t) => {
  const { server, requests } = await countedUpstream(t)
  const { url } = await gateway(t, {
    routes: [
      { prefix: '/limited/', upstream: origin(server), config: { rateLimit: { max: 2, timeWindow: 60_000 } } },
      {
        prefix: '/tenant/',
        upstream: origin(server),
        config: { rateLimit: { max: 1, timeWindow: 60_000, keyGenerator: (request: FastifyRequest) => String(request.headers['x-tenant']) } }
      },
      { prefix: '/', upstream: origin(server) }
    ]
  }, {}, async (app) => {
    await app.register(rateLimit, { global: false })
  })
  const first = await request(`${url}/limited/1`)
  t.equal(first.status, 200)
  t.equal(first.headers['x-ratelimit-limit'], '2')
  t.equal(first.headers['x-ratelimit-remaining'], '1')
  t.equal((await request(`${url}/limited/2`)).status, 200)
  const over = await request(`${url}/limited/3`)
  t.equal(over.status, 429)
  t.equal(over.headers['x-ratelimit-remaining'], '0')
  t.match(over.headers['retry-after'], /^\d+$/)
  t.match(JSON.parse(over.body.toString()), { statusCode: 429, error: 'Too Many Requests' })
  for (let i = 0; i < 5; i++) {
    const free = await request(`${url}/free/${i}`)
    t.equal(free.status, 200, `unlimited route, request ${i}`)
    t.notOk('x-ratelimit-limit' in free.headers, 'no rate-limit headers on the unlimited route')
  }
  // The keyGenerator function reached the plugin: one slot per tenant.
  t.equal((await request(`${url}/tenant/x`, { headers: { 'x-tenant': 'acme' } })).status, 200)
  t.equal((await request(`${url}/tenant/x`, { headers: { 'x-tenant': 'acme' } })).status, 429)
  t.equal((await request(`${url}/tenant/x`, { headers: { 'x-tenant': 'globex' } })).status, 200)
  t.same(requests, ['/limited/1', '/limited/2', '/free/0', '/free/1', '/free/2', '/free/3', '/free/4', '/tenant/x', '/tenant/x'], 'nothing over a limit went upstream')
})

t.test('@fastify/rate-limit per route on a WebSocket handshake: 429 with its headers, nothing upstream; another route unlimited', async (t) => {
  const { server, upgrades } = await countedUpstream(t)
  const { url, port } = await gateway(t, {
    routes: [
      { prefix: '/ws/', upstream: origin(server), config: { rateLimit: { max: 2, timeWindow: 60_000 } } },
      { prefix: '/free/', upstream: origin(server) }
    ]
  }, {}, async (app) => {
    await app.register(rateLimit, { global: false })
  })
  for (let i = 0; i < 2; i++) {
    const ws = await openWs(t, wsUrl(url, `/ws/${i}`))
    ws.send(`limited ${i}`)
    t.equal((await messages(ws, 1))[0].data.toString(), `limited ${i}`)
  }
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead('/ws/2'))
  await client.close()
  const head = parseHead(client.text)
  t.equal(head.statusLine, 'HTTP/1.1 429 Too Many Requests')
  t.equal(head.headers['x-ratelimit-limit'], '2')
  t.equal(head.headers['x-ratelimit-remaining'], '0')
  t.match(head.headers['x-ratelimit-reset'], /^\d+$/)
  t.match(head.headers['retry-after'], /^\d+$/)
  t.notOk('upgrade' in head.headers, 'no Upgrade on the refusal')
  const refused = await unexpectedResponse(t, wsUrl(url, '/ws/3'))
  t.equal(refused.status, 429, 'a `ws` client sees the 429 as its handshake\'s answer')
  t.match(JSON.parse(refused.body.toString()), { statusCode: 429 })
  for (let i = 0; i < 4; i++) {
    const ws = await openWs(t, wsUrl(url, `/free/${i}`))
    ws.send(`free ${i}`)
    t.equal((await messages(ws, 1))[0].data.toString(), `free ${i}`)
  }
  t.same(upgrades, ['/ws/0', '/ws/1', '/free/0', '/free/1', '/free/2', '/free/3'], 'no refused handshake reached the upstream')
})
