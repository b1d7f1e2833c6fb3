// node-http-proxy #559: when the client vanished (or the upstream errored), the other socket of a proxied
// WebSocket was left open. Either side going away must close the other.
import t from 'tap'
import { gateway, origin, waitFor, wsUpstream } from '../helpers/servers.js'
import { openWs, wsClosed, wsUrl } from '../helpers/ws.js'

t.test('client gone: the upstream WebSocket closes; upstream gone: the client closes', async (t) => {
  const { server, wss } = await wsUpstream(t)
  const { app, url } = await gateway(t, { upstream: origin(server) })
  const vanishing = await openWs(t, wsUrl(url, '/a'))
  await waitFor(() => wss.clients.size === 1, 2000, 'the upstream side')
  vanishing.terminate()
  await waitFor(() => wss.clients.size === 0, 2000, 'the upstream WebSocket to close')
  const staying = await openWs(t, wsUrl(url, '/b'))
  await waitFor(() => wss.clients.size === 1, 2000, 'the upstream side')
  for (const ws of wss.clients) ws.terminate()
  const { code } = await wsClosed(staying)
  t.equal(code, 1006, 'the client sees the abnormal closure')
  await waitFor(() => app.wsProxy.tunnels === 0, 2000, 'the tunnel to be gone')
})
