// fastify-http-proxy PR #258 "Allow attaching multiple WebSocket proxies": a second WebSocket proxy on the same
// server crashed ("server.handleUpgrade() was called more than once"). Users register such proxies in separate
// encapsulated plugins, each with its own auth hook: every upgrade must run only its own context's hooks, once.
import t from 'tap'
import type { IncomingMessage } from 'node:http'
import Fastify, { type FastifyInstance } from 'fastify'
import wsProxyPlugin from '../../src/index.js'
import { origin, portOf, waitFor, wsUpstream } from '../helpers/servers.js'
import { messages, openWs, parseHead, rawClient, wsHandshakeHead } from '../helpers/ws.js'

t.test('two encapsulated contexts, each with a WebSocket proxy and its own auth hook: each upgrade meets its own hook once', async (t) => {
  const upstreams = await Promise.all(['orders', 'chat'].map(async (name) => {
    const { server, wss } = await wsUpstream(t)
    wss.on('connection', (ws, req: IncomingMessage) => ws.send(`${name} ${req.url as string}`))
    return server
  }))
  const app = Fastify()
  t.teardown(() => app.close())
  const hooks: string[] = []
  const contexts: FastifyInstance[] = []
  for (const [i, name] of ['orders', 'chat'].entries()) {
    await app.register(async (scope) => {
      scope.addHook('onRequest', async (request, reply) => {
        hooks.push(`${name} ${request.url}`)
        if (request.headers['x-team'] !== name) return reply.code(403).send({ error: `${name} only` })
      })
      await scope.register(wsProxyPlugin, { prefix: `/${name}`, upstream: origin(upstreams[i]) })
      contexts.push(scope)
    })
  }
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `ws://127.0.0.1:${portOf(app.server)}`

  const orders = await openWs(t, `${base}/orders/feed`, undefined, { headers: { 'x-team': 'orders' } })
  const chat = await openWs(t, `${base}/chat/room`, undefined, { headers: { 'x-team': 'chat' } })
  t.equal(String((await messages(orders, 1))[0].data), 'orders /orders/feed')
  t.equal(String((await messages(chat, 1))[0].data), 'chat /chat/room')
  chat.send('both open at once')
  t.equal(String((await messages(chat, 1))[0].data), 'both open at once')
  t.same(hooks, ['orders /orders/feed', 'chat /chat/room'], 'each upgrade ran its own context\'s hook, once')

  // The chat team's credentials do not open an orders socket: the orders hook refuses it.
  const refused = await rawClient(t, portOf(app.server))
  refused.socket.write(wsHandshakeHead('/orders/feed', ['X-Team: chat']))
  await refused.close()
  t.equal(parseHead(refused.text).status, 403)
  t.same(hooks.at(-1), 'orders /orders/feed', 'refused by the orders hook alone')
  t.equal(hooks.length, 3)
  await waitFor(() => contexts[0].wsProxy.tunnels === 1 && contexts[1].wsProxy.tunnels === 1, 2000, 'one tunnel per context')
})
