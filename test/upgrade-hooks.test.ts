// Upgrades go through Fastify's router and hooks: a hook can refuse a WebSocket handshake with a real HTTP answer
// before any upstream connection exists, and an accepted upgrade is logged like any request (statusCode 101).
import t from 'tap'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { gateway, origin, wsUpstream, type Teardown } from './helpers/servers.js'
import { logCapture, messages, openWs, parseHead, rawClient, wsClosed, wsHandshakeHead, wsUrl } from './helpers/ws.js'

/** A ws upstream that counts every TCP connection it accepts. */
async function countedUpstream (t: Teardown) {
  const { server, wss } = await wsUpstream(t)
  const counter = { connections: 0 }
  server.on('connection', () => { counter.connections++ })
  return { server, wss, counter }
}

function refuseWithoutToken (request: FastifyRequest, reply: FastifyReply, done: () => void): void {
  if (request.headers.authorization === 'Bearer ok') {
    done()
    return
  }
  reply.code(401).header('WWW-Authenticate', 'Bearer realm="ws"').send({ error: 'token required' })
}

for (const hook of ['onRequest', 'preHandler'] as const) {
  t.test(`an ${hook} hook's 401 is a real HTTP answer on the wire and no upstream connection is made`, async (t) => {
    const { server, counter } = await countedUpstream(t)
    const seenUrls: string[] = []
    const guard = (request: FastifyRequest, reply: FastifyReply, done: () => void): void => {
      seenUrls.push(request.url)
      refuseWithoutToken(request, reply, done)
    }
    const { app, port } = await gateway(t, { upstream: origin(server) }, {}, (app: FastifyInstance) => {
      if (hook === 'onRequest') app.addHook('onRequest', guard)
      else app.addHook('preHandler', guard)
    })
    const client = await rawClient(t, port)
    client.socket.write(wsHandshakeHead('/guarded?room=1'))
    await client.close()
    const text = client.text
    const head = parseHead(text)
    t.equal(head.statusLine, 'HTTP/1.1 401 Unauthorized')
    t.equal(head.headers['www-authenticate'], 'Bearer realm="ws"')
    t.equal(head.headers.connection, 'close')
    t.same(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)), { error: 'token required' }, 'the hook\'s body, complete')
    t.ok(client.ended, 'the gateway closed the connection after the answer')
    t.same(seenUrls, ['/guarded?room=1'], 'the hook ran once for the upgrade request')
    t.equal(counter.connections, 0, 'the upstream was never contacted')
    t.equal(app.wsProxy.tunnels, 0)
    t.equal(app.wsProxy.upstreamConnections, 0)
  })
}

t.test('a ws client refused by a hook gets the 401 as its handshake failure', async (t) => {
  const { server, counter } = await countedUpstream(t)
  const { url } = await gateway(t, { upstream: origin(server) }, {}, (app) => {
    app.addHook('onRequest', refuseWithoutToken)
  })
  const error = await openWs(t, wsUrl(url, '/guarded')).then(() => null, (err: Error) => err)
  t.match(error?.message, /Unexpected server response: 401/)
  t.equal(counter.connections, 0)
})

t.test('a hook that throws answers with Fastify\'s error handler, still without an upstream connection', async (t) => {
  const { server, counter } = await countedUpstream(t)
  const { port } = await gateway(t, { upstream: origin(server) }, {}, (app) => {
    app.addHook('onRequest', async () => {
      throw Object.assign(new Error('not in this room'), { statusCode: 403, code: 'ROOM_FORBIDDEN' })
    })
  })
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead('/guarded'))
  await client.close()
  const text = client.text
  t.equal(parseHead(text).status, 403)
  t.same(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)), {
    statusCode: 403, code: 'ROOM_FORBIDDEN', error: 'Forbidden', message: 'not in this room'
  })
  t.equal(counter.connections, 0)
})

t.test('hooks that pass let the upgrade through, with what they decorated', async (t) => {
  const { server, wss, counter } = await countedUpstream(t)
  const ran: string[] = []
  const { app, url } = await gateway(t, { upstream: origin(server) }, {}, (app) => {
    app.addHook('onRequest', (request, reply, done) => {
      ran.push('onRequest')
      refuseWithoutToken(request, reply, done)
    })
    app.addHook('preHandler', async (request) => {
      ran.push('preHandler')
      // A hook may add what the upstream needs to know (the authenticated user).
      request.raw.headers['x-user'] = 'alice'
      request.raw.rawHeaders.push('X-User', 'alice')
    })
  })
  let user: string | undefined
  wss.on('connection', (_ws, req) => { user = req.headers['x-user'] as string })
  const ws = await openWs(t, wsUrl(url, '/guarded'), undefined, { headers: { authorization: 'Bearer ok' } })
  ws.send('let me in')
  const [echo] = await messages(ws, 1)
  t.equal(echo.data.toString(), 'let me in')
  t.same(ran, ['onRequest', 'preHandler'])
  t.equal(user, 'alice', 'the upstream saw the header a hook added')
  t.equal(counter.connections, 1)
  t.equal(app.wsProxy.tunnels, 1)
})

t.test('an accepted upgrade is logged as a completed request with statusCode 101', async (t) => {
  const { server } = await wsUpstream(t)
  const logs = logCapture()
  const { app, url } = await gateway(t, { upstream: origin(server) }, { logger: { level: 'info', stream: logs.stream } })
  const ws = await openWs(t, wsUrl(url, '/logged?x=1'))
  ws.close(1000)
  await wsClosed(ws)
  const incoming = logs.records.find((r) => r.msg === 'incoming request' && r.req?.url === '/logged?x=1')
  t.ok(incoming, 'the upgrade request was logged as incoming')
  const completed = logs.records.find((r) => r.msg === 'request completed' && r.reqId === incoming?.reqId)
  t.equal(completed?.res?.statusCode, 101, 'completed with 101')
  t.type(completed?.responseTime, 'number')
  t.equal(app.wsProxy.upstreamConnections, 0)
})

t.test('a hook\'s refusal is logged with its status, and nothing about an upstream', async (t) => {
  const { server } = await wsUpstream(t)
  const logs = logCapture()
  const { port } = await gateway(t, { upstream: origin(server) }, { logger: { level: 'info', stream: logs.stream } }, (app) => {
    app.addHook('onRequest', refuseWithoutToken)
  })
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead('/refused-and-logged'))
  await client.close()
  const completed = logs.records.filter((r) => r.msg === 'request completed')
  t.equal(completed.length, 1)
  t.equal(completed[0].res?.statusCode, 401)
  t.notOk(logs.records.some((r) => /tunnel/.test(r.msg ?? '')), 'no tunnel was logged')
})
