// fastify-http-proxy #348: users needed to inject an auth token into the query of proxied WebSocket upgrades
// and had no way to. Upgrades go through Fastify's routing here, so Fastify's own `rewriteUrl` rewrites their
// URI (query included) exactly as for plain requests; headers can be injected with requestHeaders templates.
import t from 'tap'
import type { IncomingMessage } from 'node:http'
import { gateway, origin, wsUpstream } from '../helpers/servers.js'
import { openWs, wsUrl } from '../helpers/ws.js'

t.test('Fastify rewriteUrl adds a token to the upstream query of an upgrade; a header template carries it too', async (t) => {
  const { server, wss } = await wsUpstream(t)
  const seen: Array<{ url: string, token: string | undefined }> = []
  wss.on('connection', (_ws, req: IncomingMessage) => seen.push({ url: req.url as string, token: req.headers['x-token'] as string | undefined }))
  const { url } = await gateway(t, {
    prefix: '/ws',
    upstream: origin(server),
    requestHeaders: { set: { 'X-Token': '$arg_token' } }
  }, {
    rewriteUrl: (req) => {
      const original = req.url as string
      return original.startsWith('/ws/') ? `${original}${original.includes('?') ? '&' : '?'}token=server-side-secret` : original
    }
  })
  await openWs(t, wsUrl(url, '/ws/feed'))
  await openWs(t, wsUrl(url, '/ws/feed?room=7'))
  t.same(seen, [
    { url: '/ws/feed?token=server-side-secret', token: 'server-side-secret' },
    { url: '/ws/feed?room=7&token=server-side-secret', token: 'server-side-secret' }
  ])
})
