// node-http-proxy #1510 (descriptors leaked by proxied WebSockets) from the other side, with #783/#877 (after an
// upstream refused an upgrade, its socket was kept open): 900 handshakes whose upstream refuses, resets right after
// its 101, or ends the tunnel, leave the process's open file descriptors where they started.
import t from 'tap'
import { readdirSync } from 'node:fs'
import type { Server } from 'node:net'
import { gateway, origin, waitFor } from '../helpers/servers.js'
import { headUpstream, parseHead, rawClient, switching, wsHandshakeHead } from '../helpers/ws.js'

const openFds = (): number => readdirSync('/proc/self/fd').length

async function openConnections (server: Server): Promise<number> {
  return new Promise((resolve, reject) => server.getConnections((err, n) => { if (err !== null) reject(err); else resolve(n) }))
}

t.test('300 refused, 300 reset and 300 ended tunnels: no socket, tunnel or descriptor left behind', { skip: process.platform !== 'linux' && 'counts /proc/self/fd' }, async (t) => {
  const upstream = await headUpstream(t, ({ socket, head }) => {
    socket.on('error', () => {})
    if (head.startsWith('GET /refuse')) {
      // A refusal on a connection the upstream would keep: only the gateway can decide to drop it.
      socket.write('HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nno socket')
    } else if (head.startsWith('GET /reset')) {
      socket.write(switching('websocket'), () => setTimeout(() => socket.resetAndDestroy(), 5))
    } else {
      socket.write(switching('websocket'), () => setTimeout(() => socket.end(), 5))
    }
  })
  const { app, port } = await gateway(t, { upstream: origin(upstream), pool: { keepAliveTimeout: 200 } })
  const warm = await rawClient(t, port)
  warm.socket.write(wsHandshakeHead('/end/warm'))
  await warm.close()
  await waitFor(() => app.wsProxy.tunnels === 0 && app.wsProxy.upstreamConnections === 0, 3000, 'the warm-up to close')
  const before = openFds()

  const answers = new Map<string, number>()
  for (let batch = 0; batch < 18; batch++) {
    await Promise.all(Array.from({ length: 50 }, async (_v, i) => {
      const kind = ['refuse', 'reset', 'end'][(batch * 50 + i) % 3]
      const client = await rawClient(t, port)
      client.socket.write(wsHandshakeHead(`/${kind}/${batch}-${i}`))
      await client.close(5000)
      const key = `${kind} ${parseHead(client.text).status}`
      answers.set(key, (answers.get(key) ?? 0) + 1)
    }))
  }
  t.same(Object.fromEntries(answers), { 'refuse 404': 300, 'reset 101': 300, 'end 101': 300 }, 'every client got its answer and was closed')
  await waitFor(() => app.wsProxy.tunnels === 0, 3000, 'every tunnel to be gone')
  await waitFor(() => upstream.accepted.every((c) => c.received.closed), 3000, 'every upstream socket to be closed')
  t.equal(upstream.accepted.filter((c) => c.head.startsWith('GET /refuse')).length, 300, 'no refused handshake was retried')
  await waitFor(() => app.wsProxy.upstreamConnections === 0, 3000, 'the pool to be empty')
  let open = -1
  const deadline = Date.now() + 3000
  while ((open = await openConnections(app.server)) > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
  t.equal(open, 0, 'the gateway holds no client connection')
  await waitFor(() => openFds() <= before, 5000, 'the descriptors to be back to the baseline')
  t.ok(openFds() <= before, `open descriptors ${openFds()} <= ${before}`)
})
