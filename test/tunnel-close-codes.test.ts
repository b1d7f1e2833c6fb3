// Closing a proxied WebSocket: close frames are bytes in the tunnel, so codes and reasons arrive unchanged both ways;
// a side that vanishes without a close frame (terminate) ends the other side too (1006) and frees the tunnel.
import t from 'tap'
import type { WebSocket } from 'ws'
import { gateway, origin, waitFor, wsUpstream, type Teardown } from './helpers/servers.js'
import { openWs, within, wsClosed, wsUrl, type CloseEvent } from './helpers/ws.js'

async function tunnelled (t: Teardown) {
  const { server, wss } = await wsUpstream(t)
  const upstreamSide = within(new Promise<WebSocket>((resolve) => wss.once('connection', resolve)), 3000, 'the upstream WebSocket')
  const { app, url } = await gateway(t, { upstream: origin(server) })
  const client = await openWs(t, wsUrl(url, '/close'))
  const upstream = await upstreamSide
  await waitFor(() => app.wsProxy.tunnels === 1, 2000, 'the tunnel')
  return { app, client, upstream }
}

t.test('the client\'s close code and reason reach the upstream, and the upstream\'s echo comes back', async (t) => {
  const { app, client, upstream } = await tunnelled(t)
  const atUpstream = wsClosed(upstream)
  const atClient = wsClosed(client)
  client.close(4001, 'bye')
  t.same(await atUpstream, { code: 4001, reason: 'bye' })
  t.same(await atClient, { code: 4001, reason: 'bye' }, 'the upstream echoed the close frame')
  await waitFor(() => app.wsProxy.tunnels === 0, 2000, 'the tunnel to close')
  t.equal(app.wsProxy.upstreamConnections, 0, 'the upgraded upstream socket never went back to the pool')
})

t.test('the upstream\'s close code and reason reach the client', async (t) => {
  const { app, client, upstream } = await tunnelled(t)
  const atClient = wsClosed(client)
  const atUpstream = wsClosed(upstream)
  upstream.close(4002, 'srv')
  t.same(await atClient, { code: 4002, reason: 'srv' })
  t.same(await atUpstream, { code: 4002, reason: 'srv' })
  await waitFor(() => app.wsProxy.tunnels === 0, 2000, 'the tunnel to close')
})

t.test('a long UTF-8 reason (123 bytes, the most a close frame holds) arrives intact', async (t) => {
  const { client, upstream } = await tunnelled(t)
  const reason = 'é'.repeat(61) + 'x'
  t.equal(Buffer.byteLength(reason), 123)
  const atUpstream = wsClosed(upstream)
  client.close(4999, reason)
  t.same(await atUpstream, { code: 4999, reason })
})

t.test('a client that vanishes (terminate) ends the upstream side with 1006 and frees the tunnel', async (t) => {
  const { app, client, upstream } = await tunnelled(t)
  const atUpstream = wsClosed(upstream)
  client.terminate()
  const seen: CloseEvent = await atUpstream
  t.equal(seen.code, 1006, 'no close frame: abnormal closure')
  t.equal(seen.reason, '')
  await waitFor(() => app.wsProxy.tunnels === 0, 2000, 'the tunnel to close')
  t.equal(app.wsProxy.upstreamConnections, 0)
})

t.test('an upstream that vanishes (terminate) ends the client side with 1006 and frees the tunnel', async (t) => {
  const { app, client, upstream } = await tunnelled(t)
  const atClient = wsClosed(client)
  upstream.terminate()
  t.same(await atClient, { code: 1006, reason: '' })
  await waitFor(() => app.wsProxy.tunnels === 0, 2000, 'the tunnel to close')
  t.equal(app.wsProxy.upstreamConnections, 0)
})
