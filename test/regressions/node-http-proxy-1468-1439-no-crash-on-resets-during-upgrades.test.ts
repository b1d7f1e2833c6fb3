// node-http-proxy #1468 and PR #1439, http-proxy-3 #5, fastify-http-proxy #130: an ECONNRESET on either side of
// a WebSocket upgrade (upstream refusing or restarting, client giving up, an upstream timing out) emitted an
// unhandled 'error' and crashed the process. Each case here ends cleanly; any unhandled error fails the test.
import t from 'tap'
import { gateway, origin, recordUnhandled } from '../helpers/servers.js'
import { headUpstream, parseHead, rawClient, switching, wsHandshakeHead } from '../helpers/ws.js'

const unhandled = recordUnhandled(t)

t.test('the upstream resets the handshake before answering: 502, no crash', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => { socket.resetAndDestroy() })
  const { port } = await gateway(t, { upstream: origin(upstream) })
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead('/ws'))
  await client.close()
  t.equal(parseHead(client.text).status, 502)
})

t.test('the upstream resets right after its 101: the client is closed, no crash', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => {
    socket.write(switching('websocket'), () => { setTimeout(() => socket.resetAndDestroy(), 20) })
  })
  const { app, port } = await gateway(t, { upstream: origin(upstream) })
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead('/ws'))
  await client.close()
  t.equal(parseHead(client.text).status, 101)
  t.equal(app.wsProxy.tunnels, 0)
})

t.test('the client resets while a slow upstream decides, and while the tunnel runs: no crash', async (t) => {
  const upstream = await headUpstream(t, ({ socket, head }) => {
    if (head.includes('/tunnel')) socket.write(switching('websocket'))
  })
  const { app, port } = await gateway(t, { upstream: origin(upstream), timeouts: { read: 300 } })
  const waiting = await rawClient(t, port)
  waiting.socket.write(wsHandshakeHead('/slow'))
  await new Promise((resolve) => setTimeout(resolve, 50))
  waiting.socket.resetAndDestroy()
  const tunnelled = await rawClient(t, port)
  tunnelled.socket.write(wsHandshakeHead('/tunnel'))
  await tunnelled.contains('\r\n\r\n')
  tunnelled.socket.resetAndDestroy()
  const { waitFor } = await import('../helpers/servers.js')
  // (undici may open a spare pooled connection after the abort; only the two that carried these requests matter.)
  const carried = (path: string) => upstream.accepted.find((c) => c.head.includes(path))
  await waitFor(() => carried('/slow')?.received.closed === true && carried('/tunnel')?.received.closed === true, 2000, 'both upstream sockets to close')
  t.equal(app.wsProxy.tunnels, 0)
})

t.test('nothing above raised an unhandled error', async (t) => {
  t.same(unhandled, [])
})
