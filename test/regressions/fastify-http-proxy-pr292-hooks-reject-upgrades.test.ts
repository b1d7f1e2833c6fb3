// fastify-http-proxy PR #292 (and http-proxy-middleware #1051): before 2023 hooks did not run for WebSocket
// upgrades, and rejecting one meant `socket.end()` by hand (a suspected leak). Here onRequest/preHandler hooks
// run for upgrades and refuse them with a real HTTP status on the wire; no upstream connection is made.
import t from 'tap'
import { gateway, origin, wsUpstream } from '../helpers/servers.js'
import { parseHead, rawClient, wsHandshakeHead } from '../helpers/ws.js'

t.test('an auth hook answers 401 to an upgrade without a token, 403 with a wrong one, and lets a good one through', async (t) => {
  const { server } = await wsUpstream(t)
  let upstreamConnections = 0
  server.on('connection', () => { upstreamConnections++ })
  const { app, port } = await gateway(t, { upstream: origin(server) }, {}, (app) => {
    app.addHook('onRequest', async (request, reply) => {
      const auth = request.headers.authorization
      if (auth === undefined) return reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'token required' })
    })
    app.addHook('preHandler', async (request, reply) => {
      if (request.headers.authorization !== 'Bearer good') return reply.code(403).send({ error: 'forbidden' })
    })
  })
  for (const [auth, status] of [[undefined, 401], ['Bearer bad', 403], ['Bearer good', 101]] as const) {
    const client = await rawClient(t, port)
    client.socket.write(wsHandshakeHead('/feed', auth === undefined ? [] : [`Authorization: ${auth}`]))
    await client.contains('\r\n\r\n')
    const head = parseHead(client.text)
    t.equal(head.status, status, `${auth ?? 'no token'}: ${status}`)
    if (status !== 101) {
      t.equal(head.headers.connection, 'close')
      await client.close()
      t.ok(client.closed, 'and the connection is closed, not left open')
    }
  }
  t.equal(upstreamConnections, 1, 'only the accepted upgrade reached the upstream')
  t.equal(app.wsProxy.tunnels, 1)
})
