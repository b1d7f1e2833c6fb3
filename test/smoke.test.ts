import t from 'tap'
import { WebSocket } from 'ws'
import { once } from 'node:events'
import { gateway, httpUpstream, origin, wsUpstream, type Seen } from './helpers/servers.js'
import { request } from './helpers/clients.js'

t.test('GET through the gateway reaches the upstream with the prefix replaced', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, { routes: [{ prefix: '/api/', upstream: origin(upstream) + '/' }] })
  const res = await request(`${url}/api/items?b=2&a=1`)
  t.equal(res.status, 200)
  const seen = JSON.parse(res.body.toString()) as Seen
  t.equal(seen.url, '/items?b=2&a=1')
})

t.test('a WebSocket message round-trips through the tunnel', async (t) => {
  const { server } = await wsUpstream(t)
  const { url, app } = await gateway(t, { upstream: origin(server) })
  const ws = new WebSocket(url.replace('http', 'ws') + '/echo')
  t.teardown(() => ws.terminate())
  await once(ws, 'open')
  ws.send('hi')
  const [data] = await once(ws, 'message')
  t.equal(String(data), 'hi')
  t.equal(app.wsProxy.tunnels, 1)
  ws.close(1000)
  await once(ws, 'close')
})
