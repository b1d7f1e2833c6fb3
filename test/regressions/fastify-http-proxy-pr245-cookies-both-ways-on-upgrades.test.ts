// fastify-http-proxy PR #245 "forward cookies to websocket proxy": cookies had to be forwarded by hand because the
// proxy built its own upstream handshake. Cookies travel both ways on a WebSocket handshake: the client's (several
// Cookie lines included) reach the upstream, and the upstream's Set-Cookie lines on its 101 reach the client,
// rewritten by the route's cookiePath/cookieDomain like any response.
import t from 'tap'
import type { IncomingMessage } from 'node:http'
import { WebSocket } from 'ws'
import { gateway, origin, within, wsUpstream } from '../helpers/servers.js'
import { messages, parseHead, rawClient, wsHandshakeHead, wsUrl } from '../helpers/ws.js'

t.test('Cookie lines reach the upstream; two Set-Cookie on its 101 reach the client, rewritten', async (t) => {
  const { server, wss } = await wsUpstream(t)
  const cookies: Array<string | undefined> = []
  wss.on('headers', (headers: string[]) => {
    headers.push('Set-Cookie: session=renewed; Path=/internal/ws; Domain=backend.internal; HttpOnly')
    headers.push('Set-Cookie: seen=1; Path=/internal/ws/chat')
  })
  wss.on('connection', (ws, req: IncomingMessage) => {
    cookies.push(req.headers.cookie)
    ws.send(`hello ${req.url as string}`)
  })
  const { url, port } = await gateway(t, {
    routes: [{
      prefix: '/ws/',
      upstream: `${origin(server)}/internal/ws/`,
      cookiePath: [{ from: '/internal/ws', to: '/ws' }],
      cookieDomain: [{ from: 'backend.internal', to: 'app.example' }]
    }]
  })

  // A browser-like ws client with one Cookie header.
  const ws = new WebSocket(wsUrl(url, '/ws/chat'), { headers: { cookie: 'session=s1; theme=dark' } })
  ws.on('error', () => {})
  t.teardown(() => ws.terminate())
  const greeting = messages(ws, 1)
  greeting.catch(() => {}) // awaited below; a timeout before then must not be an unhandled rejection
  const upgrade = await within(new Promise<IncomingMessage>((resolve) => ws.once('upgrade', resolve)), 3000, 'the 101')
  t.same(upgrade.headers['set-cookie'], [
    'session=renewed; Path=/ws; Domain=app.example; HttpOnly',
    'seen=1; Path=/ws/chat'
  ], 'both Set-Cookie lines, with the gateway\'s path and domain')
  t.equal(String((await greeting)[0].data), 'hello /internal/ws/chat', 'and the handshake validated')

  // A client sending two Cookie lines (HTTP/1.1 allows it; RFC 6265 clients send one): both reach the upstream.
  const raw = await rawClient(t, port)
  raw.socket.write(wsHandshakeHead('/ws/raw', ['Cookie: a=1', 'Cookie: b=2']))
  await raw.contains('\r\n\r\n')
  t.equal(parseHead(raw.text).status, 101)
  t.equal(cookies[0], 'session=s1; theme=dark')
  t.match(cookies[1], /^a=1(; |, )b=2$/, 'both cookie lines, joined')
})
