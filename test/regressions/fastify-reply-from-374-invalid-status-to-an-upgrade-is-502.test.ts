// fastify-reply-from #374 (PR #386): an upstream answering an invalid status code (888) crashed Fastify. The same
// garbage can answer a WebSocket handshake: a status outside 100-599 or an unparsable status line to an upgrade is
// a 502 too, no tunnel is opened, both connections close, and the gateway keeps serving.
import t from 'tap'
import { gateway, origin, waitFor } from '../helpers/servers.js'
import { headUpstream, parseHead, rawClient, switching, wsHandshakeHead } from '../helpers/ws.js'

for (const statusLine of ['HTTP/1.1 888 Weird', 'HTTP/1.1 1010 Switching', 'HTTP/1.1 10 Switching', 'HTTP/1.1 OK', 'SSH-2.0-OpenSSH_9.6']) {
  t.test(`the upstream answers an upgrade with "${statusLine}": 502 FST_WS_PROXY_BAD_RESPONSE, no tunnel`, async (t) => {
    const upstream = await headUpstream(t, ({ socket, head }) => {
      if (head.includes('/ok')) socket.write(switching('websocket'))
      else socket.write(`${statusLine}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n`)
    })
    const { app, port } = await gateway(t, { upstream: origin(upstream), pool: { keepAliveTimeout: 200 } })
    const client = await rawClient(t, port)
    client.socket.write(wsHandshakeHead('/chat'))
    await client.close()
    const head = parseHead(client.text)
    t.equal(head.status, 502)
    t.equal(head.headers.connection, 'close')
    t.match(JSON.parse(client.text.slice(client.text.indexOf('\r\n\r\n') + 4)), { statusCode: 502, code: 'FST_WS_PROXY_BAD_RESPONSE' })
    t.equal(app.wsProxy.tunnels, 0)
    await upstream.accepted[0].received.close()
    t.pass('the upstream connection that sent garbage was closed')
    t.equal(upstream.accepted.filter((c) => c.head !== '').length, 1, 'the handshake was sent once, not retried')
    // (undici may open a spare connection after dropping the bad one; it carries nothing and expires with the pool.)
    await waitFor(() => app.wsProxy.upstreamConnections === 0, 2000, 'nothing left in the pool')

    const next = await rawClient(t, port)
    next.socket.write(wsHandshakeHead('/ok'))
    await next.contains('\r\n\r\n')
    t.equal(parseHead(next.text).status, 101, 'the gateway still upgrades')
  })
}
