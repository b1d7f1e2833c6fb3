// fastify-http-proxy #414: the WebSocket proxy's global 'upgrade' listener took upgrades for every path,
// including those outside its prefix that belonged to another WebSocket server on the same HTTP server.
import t from 'tap'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { WebSocketServer } from 'ws'
import { gateway, origin, wsUpstream } from '../helpers/servers.js'
import { messages, openWs, wsUrl } from '../helpers/ws.js'

t.test('a ws server for /live next to a proxied /api/: each gets only its own upgrades', async (t) => {
  const { server, wss: upstreamWss } = await wsUpstream(t)
  let upstreamConnections = 0
  upstreamWss.on('connection', () => { upstreamConnections++ })
  const local = new WebSocketServer({ noServer: true })
  t.teardown(() => new Promise((resolve) => local.close(resolve)))
  local.on('connection', (ws) => ws.send('from the local ws server'))
  const { url } = await gateway(t, { prefix: '/api', upstream: origin(server) }, {}, (app) => {
    app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (req.url === '/live') local.handleUpgrade(req, socket, head, (ws) => local.emit('connection', ws, req))
    })
  })
  const live = await openWs(t, wsUrl(url, '/live'))
  t.equal(String((await messages(live, 1))[0].data), 'from the local ws server')
  t.equal(upstreamConnections, 0, 'the proxy did not touch /live')
  const proxied = await openWs(t, wsUrl(url, '/api/chat'))
  proxied.send('to the upstream')
  t.equal(String((await messages(proxied, 1))[0].data), 'to the upstream')
  t.equal(upstreamConnections, 1)
})
