// fastify-http-proxy PR #389: `rewritePrefix` was applied to HTTP requests but ignored for WebSocket upgrades,
// which reached the upstream under the gateway's prefix. HTTP and upgrades must map the URI the same way.
import t from 'tap'
import type { IncomingMessage } from 'node:http'
import { gateway, origin, wsUpstream, type Seen } from '../helpers/servers.js'
import { request } from '../helpers/clients.js'
import { openWs, wsUrl } from '../helpers/ws.js'

t.test('rewritePrefix and an upstream path map HTTP and upgrade URIs alike, query included', async (t) => {
  const { server, wss } = await wsUpstream(t)
  const upgraded: string[] = []
  wss.on('connection', (_ws, req: IncomingMessage) => upgraded.push(req.url as string))
  const { url } = await gateway(t, {
    routes: [
      { prefix: '/ws/', upstream: origin(server), rewritePrefix: '/socket/' },
      { prefix: '/rt/', upstream: `${origin(server)}/realtime/v2/` }
    ]
  })
  await openWs(t, wsUrl(url, '/ws/room?token=1'))
  await openWs(t, wsUrl(url, '/rt/feed?x=y'))
  t.same(upgraded, ['/socket/room?token=1', '/realtime/v2/feed?x=y'])
  const seen = JSON.parse((await request(`${url}/ws/room?token=1`)).body.toString()) as Seen
  t.equal(seen.url, '/socket/room?token=1', 'the same mapping as a plain request')
})
