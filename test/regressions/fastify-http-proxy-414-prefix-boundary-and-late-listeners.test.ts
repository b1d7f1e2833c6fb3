// fastify-http-proxy #414 (open): the proxy's global 'upgrade' listener handled upgrades regardless of its prefix.
// Two more shapes of that report: a listener attached after the app is listening (socket.io's `new Server(app.server)`),
// and paths that merely start with the prefix's letters (/api-docs, /apiv2 next to /api): none are the proxy's.
import t from 'tap'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { WebSocketServer } from 'ws'
import { gateway, origin, wsUpstream } from '../helpers/servers.js'
import { messages, openWs, parseHead, rawClient, wsHandshakeHead, wsUrl } from '../helpers/ws.js'

t.test('a ws server attached after listen keeps /apiv2 and /api-docs; /api/ upgrades are proxied; each handled once', async (t) => {
  const { server, wss: upstreamWss } = await wsUpstream(t)
  const upstreamSaw: string[] = []
  upstreamWss.on('connection', (ws, req: IncomingMessage) => {
    upstreamSaw.push(req.url as string)
    ws.send('from the upstream')
  })
  const { app, url, port } = await gateway(t, { prefix: '/api', upstream: origin(server) })

  // Attached late, as socket.io attaches to an already listening server; it owns whatever is not /api or under /api/.
  const local = new WebSocketServer({ noServer: true })
  t.teardown(() => new Promise((resolve) => local.close(resolve)))
  local.on('connection', (ws, req: IncomingMessage) => ws.send(`local ${req.url as string}`))
  const localSaw: string[] = []
  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    localSaw.push(req.url as string)
    const path = (req.url as string).split('?')[0]
    if (path !== '/api' && !path.startsWith('/api/')) local.handleUpgrade(req, socket, head, (ws) => local.emit('connection', ws, req))
  })

  for (const path of ['/apiv2/feed', '/api-docs', '/apifoo?x=1']) {
    const ws = await openWs(t, wsUrl(url, path))
    t.equal(String((await messages(ws, 1))[0].data), `local ${path}`, `${path} belongs to the other listener`)
    ws.close()
  }
  t.same(upstreamSaw, [], 'the proxy took none of them')

  const proxied = await openWs(t, wsUrl(url, '/api/feed?room=1'))
  t.equal(String((await messages(proxied, 1))[0].data), 'from the upstream')
  proxied.send('echo me')
  t.equal(String((await messages(proxied, 1))[0].data), 'echo me', 'the tunnel carries frames both ways')
  t.same(upstreamSaw, ['/api/feed?room=1'])
  t.equal(local.clients.size, 0, 'the other listener did not also take the proxied socket')
  t.equal(app.wsProxy.tunnels, 1)

  // The bare prefix is the proxy's (nginx's 301 to the slash form), not the other listener's.
  const bare = await rawClient(t, port)
  bare.socket.write(wsHandshakeHead('/api'))
  await bare.close()
  t.equal(parseHead(bare.text).status, 301)
  t.equal(parseHead(bare.text).headers.location, '/api/')
  t.same(localSaw, ['/apiv2/feed', '/api-docs', '/apifoo?x=1', '/api/feed?room=1', '/api'], 'the other listener saw every upgrade once')
})
