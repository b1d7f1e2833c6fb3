// fastify-http-proxy PR #245: forwarding the client's headers on WebSocket upgrades broke the handshake
// ("Invalid Sec-WebSocket-Accept"), so only cookies were forwarded. Authorization, cookies and custom headers
// must reach the upstream and the handshake must still validate.
import t from 'tap'
import type { IncomingMessage } from 'node:http'
import { gateway, origin, wsUpstream } from '../helpers/servers.js'
import { messages, openWs, wsUrl } from '../helpers/ws.js'

t.test('Authorization, Cookie and custom headers reach the upstream of a WebSocket, and the handshake validates', async (t) => {
  const { server, wss } = await wsUpstream(t)
  let seen: IncomingMessage['headers'] = {}
  wss.on('connection', (_ws, req: IncomingMessage) => { seen = req.headers })
  const { url } = await gateway(t, { upstream: origin(server) })
  const ws = await openWs(t, wsUrl(url, '/secure'), undefined, {
    headers: { authorization: 'Bearer abc.def.ghi', cookie: 'session=s1; theme=dark', 'x-tenant': 'acme', origin: 'https://app.example' }
  })
  t.equal(seen.authorization, 'Bearer abc.def.ghi')
  t.equal(seen.cookie, 'session=s1; theme=dark')
  t.equal(seen['x-tenant'], 'acme')
  t.equal(seen.origin, 'https://app.example')
  ws.send('authenticated')
  t.equal(String((await messages(ws, 1))[0].data), 'authenticated', 'ws validated Sec-WebSocket-Accept and the tunnel works')
})
