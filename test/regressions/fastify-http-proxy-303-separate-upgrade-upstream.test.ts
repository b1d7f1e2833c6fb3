// fastify-http-proxy #303 / PR #304 (`wsUpstream`): the WebSocket service of an endpoint often runs apart from
// its HTTP service (GraphQL queries vs subscriptions). A route sends its upgrades to `upgradeUpstream` and its
// plain requests to `upstream`, each with nginx's path rules.
import t from 'tap'
import type { IncomingMessage } from 'node:http'
import { gateway, httpUpstream, origin, portOf, wsUpstream, type Seen } from '../helpers/servers.js'
import { request } from '../helpers/clients.js'
import { messages, openWs, wsUrl } from '../helpers/ws.js'

t.test('/graphql: queries to the HTTP service, subscriptions to the WebSocket service', async (t) => {
  const http = await httpUpstream(t)
  const { server: ws, wss } = await wsUpstream(t)
  const upgraded: Array<{ url: string, host: string | undefined }> = []
  wss.on('connection', (socket, req: IncomingMessage) => {
    upgraded.push({ url: req.url as string, host: req.headers.host })
    socket.send('subscribed')
  })
  const { app, url } = await gateway(t, {
    routes: [
      { prefix: '/graphql/', upstream: `${origin(http)}/api/graphql/`, upgradeUpstream: `${origin(ws)}/subscriptions/` },
      { prefix: '/live/', upstream: origin(http), upgradeUpstream: origin(ws), rewritePrefix: '/rt/' }
    ]
  })
  const query = JSON.parse((await request(`${url}/graphql/v1?q=1`, { method: 'POST', body: '{"query":"{a}"}' })).body.toString()) as Seen
  t.equal(query.url, '/api/graphql/v1?q=1', 'plain requests go to upstream')
  const sub = await openWs(t, wsUrl(url, '/graphql/v1?q=1'))
  t.equal(String((await messages(sub, 1))[0].data), 'subscribed')
  const live = await openWs(t, wsUrl(url, '/live/feed'))
  await messages(live, 1)
  t.same(upgraded, [
    { url: '/subscriptions/v1?q=1', host: `127.0.0.1:${portOf(ws)}` },
    { url: '/rt/feed', host: `127.0.0.1:${portOf(ws)}` }
  ], 'upgrades go to upgradeUpstream, with its own Host and path mapping')
  t.equal(((JSON.parse((await request(`${url}/live/x`)).body.toString())) as Seen).url, '/rt/x', 'rewritePrefix applies to both')
  t.equal(app.wsProxy.tunnels, 2)
})
