// node-http-proxy #624/#627 (fixed by PR #708) and #783/#877: when the upstream refused an upgrade with a
// status other than 101, the client hung, and the upstream socket was kept open afterwards. The refusal must be
// relayed as sent, the client connection closed, and the upstream socket released.
import t from 'tap'
import { gateway, origin, waitFor } from '../helpers/servers.js'
import { headUpstream, parseHead, rawClient, wsHandshakeHead } from '../helpers/ws.js'

t.test('a 403 and a 404 to an upgrade reach the client, then both connections close', async (t) => {
  const upstream = await headUpstream(t, ({ socket, head }) => {
    const status = head.includes('/admin') ? '403 Forbidden' : '404 Not Found'
    socket.write(`HTTP/1.1 ${status}\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\r\nrefused`)
  })
  const { app, port } = await gateway(t, { upstream: origin(upstream) })
  for (const [path, status] of [['/admin', 403], ['/missing', 404]] as const) {
    const client = await rawClient(t, port)
    client.socket.write(wsHandshakeHead(path))
    await client.close()
    const head = parseHead(client.text)
    t.equal(head.status, status)
    t.ok(client.text.endsWith('\r\n\r\nrefused'), 'the body as sent')
  }
  await waitFor(() => upstream.accepted.length === 2 && upstream.accepted.every((c) => c.received.closed), 2000, 'the upstream sockets to close')
  t.equal(app.wsProxy.tunnels, 0)
  t.equal(app.wsProxy.upstreamConnections, 0, 'not returned to the pool either')
})
