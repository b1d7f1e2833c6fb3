// node-http-proxy #54 / #74: X-Forwarded-* headers were set on plain requests but not on WebSocket upgrades.
// Both paths must carry the same forwarded headers.
import t from 'tap'
import type { IncomingMessage } from 'node:http'
import { gateway, origin, wsUpstream, type Seen } from '../helpers/servers.js'
import { request } from '../helpers/clients.js'
import { openWs, wsUrl } from '../helpers/ws.js'

t.test('an upgrade gets X-Forwarded-For/Proto/Host exactly like a plain request', async (t) => {
  const { server, wss } = await wsUpstream(t)
  let upgraded: IncomingMessage['headers'] = {}
  wss.on('connection', (_ws, req: IncomingMessage) => { upgraded = req.headers })
  const { url } = await gateway(t, { upstream: origin(server) })
  await openWs(t, wsUrl(url, '/ws'), undefined, { headers: { 'x-forwarded-for': '198.51.100.4' } })
  const plain = (JSON.parse((await request(`${url}/http`, { headers: { 'x-forwarded-for': '198.51.100.4' } })).body.toString()) as Seen).headers
  t.equal(upgraded['x-forwarded-for'], '198.51.100.4, 127.0.0.1')
  for (const name of ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host']) t.equal(upgraded[name], plain[name], name)
})
