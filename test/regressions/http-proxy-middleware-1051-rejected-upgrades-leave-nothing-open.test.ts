// http-proxy-middleware #1051 "What is proper way to terminate WebSocket proxy": upgrades bypass the Express chain,
// so users rejected unauthenticated ones by hand with `socket.end()` and suspected a leak. Here a hook rejects an
// upgrade with a real status; the gateway then closes the connection itself, even when the client keeps its side
// open, and hundreds of rejections leave no connection or descriptor behind.
import t from 'tap'
import { readdirSync } from 'node:fs'
import type { Server } from 'node:net'
import { gateway, origin, waitFor, wsUpstream } from '../helpers/servers.js'
import { parseHead, rawClient, wsHandshakeHead } from '../helpers/ws.js'

const openFds = (): number => readdirSync('/proc/self/fd').length

/** Resolves once `server` has no open connection left; rejects after `ms`. */
async function noConnectionsLeft (server: Server, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms
  for (;;) {
    const open = await new Promise<number>((resolve, reject) => server.getConnections((err, n) => { if (err !== null) reject(err); else resolve(n) }))
    if (open === 0) return
    if (Date.now() > deadline) throw new Error(`${open} client connections still open after ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

t.test('300 upgrades refused by an auth hook, clients keeping their side open: every connection closed by the gateway', { skip: process.platform !== 'linux' && 'counts /proc/self/fd' }, async (t) => {
  const { server } = await wsUpstream(t)
  let upstreamConnections = 0
  server.on('connection', () => { upstreamConnections++ })
  const { app, port } = await gateway(t, { upstream: origin(server) }, {}, (app) => {
    app.addHook('onRequest', async (request, reply) => {
      if (request.headers.authorization === undefined) return reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'token required' })
    })
    app.addHook('preHandler', async (request, reply) => {
      // An asynchronous check (a session lookup) before refusing.
      await new Promise((resolve) => setTimeout(resolve, 2))
      if (request.headers.authorization !== 'Bearer good') return reply.code(403).send({ error: 'forbidden' })
    })
  })
  // Warm up once so lazily created handles are in the baseline.
  const warm = await rawClient(t, port)
  warm.socket.write(wsHandshakeHead('/warm'))
  await warm.close()
  const before = openFds()

  const statuses = new Map<string, number>()
  for (let batch = 0; batch < 6; batch++) {
    await Promise.all(Array.from({ length: 50 }, async (_v, i) => {
      // allowHalfOpen: the client never ends its side; only the gateway can close these connections.
      const client = await rawClient(t, port, true)
      const auth = i % 2 === 0 ? [] : ['Authorization: Bearer bad']
      // Some clients send a first frame right behind the handshake, as eager clients do.
      client.socket.write(Buffer.from(wsHandshakeHead(`/feed/${batch}-${i}`, auth) + (i % 3 === 0 ? '\x81\x85abcd' + 'hello' : ''), 'latin1'))
      await client.end()
      const head = parseHead(client.text)
      const key = `${head.status} ${head.headers.connection}`
      statuses.set(key, (statuses.get(key) ?? 0) + 1)
      client.socket.destroy()
    }))
  }
  t.same(Object.fromEntries(statuses), { '401 close': 150, '403 close': 150 }, 'each refusal as the hook wrote it, with Connection: close')
  t.equal(upstreamConnections, 0, 'no refused upgrade reached the upstream')
  await waitFor(() => app.wsProxy.tunnels === 0, 2000, 'no tunnel')
  await noConnectionsLeft(app.server)
  t.pass('the gateway has no client connection left')
  await waitFor(() => openFds() <= before, 3000, 'the descriptors to be back to the baseline')
  t.ok(openFds() <= before, `open descriptors ${openFds()} <= ${before}`)
})

t.test('the hand-made way (hijack, write a status line, end) is also cleaned up, and accepted upgrades still work', async (t) => {
  const { server } = await wsUpstream(t)
  const { app, port } = await gateway(t, { upstream: origin(server) }, {}, (app) => {
    app.addHook('onRequest', async (request, reply) => {
      if (request.headers.authorization === 'Bearer good') return
      reply.hijack()
      request.raw.socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
    })
  })
  for (let i = 0; i < 20; i++) {
    const client = await rawClient(t, port, true)
    client.socket.write(wsHandshakeHead('/feed'))
    await client.end()
    t.equal(parseHead(client.text).status, 401)
    client.socket.destroy()
  }
  await noConnectionsLeft(app.server)
  t.pass('the hijacked connections were closed')
  const accepted = await rawClient(t, port)
  accepted.socket.write(wsHandshakeHead('/feed', ['Authorization: Bearer good']))
  await accepted.contains('\r\n\r\n')
  t.equal(parseHead(accepted.text).status, 101, 'a good token still upgrades')
  await waitFor(() => app.wsProxy.tunnels === 1, 2000, 'its tunnel')
})
