// fastify-http-proxy PR #258: registering a second WebSocket proxy on the same server crashed with
// "server.handleUpgrade() was called more than once". Any number of proxied prefixes must share one server.
import t from 'tap'
import wsProxyPlugin from '../../src/index.js'
import { gateway, origin, wsUpstream } from '../helpers/servers.js'
import { messages, openWs, wsUrl } from '../helpers/ws.js'

t.test('three registrations and a two-route registration on one server: five WebSocket prefixes at once', async (t) => {
  const upstreams = await Promise.all([1, 2, 3, 4, 5].map(async (n) => {
    const { server, wss } = await wsUpstream(t)
    wss.on('connection', (ws) => ws.send(`upstream ${n}`))
    return server
  }))
  const { url } = await gateway(t, { prefix: '/one', upstream: origin(upstreams[0]) }, {}, async (app) => {
    await app.register(wsProxyPlugin, { prefix: '/two', upstream: origin(upstreams[1]) })
    await app.register(wsProxyPlugin, { prefix: '/three', upstream: origin(upstreams[2]) })
    await app.register(wsProxyPlugin, { routes: [{ prefix: '/four/', upstream: origin(upstreams[3]) }, { prefix: '/five/', upstream: origin(upstreams[4]) }] })
  })
  const sockets = await Promise.all(['/one/x', '/two/x', '/three/x', '/four/x', '/five/x'].map(async (path) => openWs(t, wsUrl(url, path))))
  for (const [i, ws] of sockets.entries()) t.equal(String((await messages(ws, 1))[0].data), `upstream ${i + 1}`)
})
