// node-http-proxy #1510 (and #559): proxied WebSocket sockets were `end()`ed instead of destroyed when a client
// vanished, and file descriptors piled up. After 1,000 abrupt client disconnects (mid-tunnel and mid-handshake)
// the process's open file descriptors must be back where they started.
import t from 'tap'
import { readdirSync } from 'node:fs'
import { gateway, origin, waitFor, wsUpstream } from '../helpers/servers.js'
import { rawClient, wsHandshakeHead } from '../helpers/ws.js'

const openFds = (): number => readdirSync('/proc/self/fd').length

t.test('1,000 clients reset abruptly leave no socket, tunnel or descriptor behind', { skip: process.platform !== 'linux' && 'counts /proc/self/fd' }, async (t) => {
  const { server, wss } = await wsUpstream(t)
  const { app, port } = await gateway(t, { upstream: origin(server), pool: { keepAliveTimeout: 200 } })
  // Warm up once so lazily created handles (pool, timers) are in the baseline.
  const warm = await rawClient(t, port)
  warm.socket.write(wsHandshakeHead('/warm'))
  await warm.contains('\r\n\r\n')
  warm.socket.destroy()
  await waitFor(() => app.wsProxy.tunnels === 0 && wss.clients.size === 0 && app.wsProxy.upstreamConnections === 0, 3000, 'the warm-up to close')
  const before = openFds()
  const started = Date.now()
  for (let batch = 0; batch < 20; batch++) {
    await Promise.all(Array.from({ length: 50 }, async (_v, i) => {
      const client = await rawClient(t, port)
      client.socket.write(wsHandshakeHead(`/c${batch}-${i}`))
      // Half vanish mid-tunnel, half while the handshake is still on its way.
      if (i % 2 === 0) await client.contains('\r\n\r\n')
      client.socket.resetAndDestroy()
    }))
  }
  t.ok(Date.now() - started < 30_000, 'bounded in time')
  await waitFor(() => app.wsProxy.tunnels === 0 && wss.clients.size === 0, 5000, 'every tunnel and upstream WebSocket to close')
  await waitFor(() => app.wsProxy.upstreamConnections === 0, 5000, 'idle pooled connections to expire')
  await waitFor(() => openFds() <= before, 5000, 'the descriptors to be back to the baseline')
  t.ok(openFds() <= before, `open descriptors ${openFds()} <= ${before}`)
})
