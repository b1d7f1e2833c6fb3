// `CONNECT` on a reverse proxy: a 405 with the JSON error body and a closed connection (it used to be a silent
// close), before any hook, with nothing sent upstream; an app that takes CONNECT itself (a forward proxy on the
// same server) keeps it.
import t from 'tap'
import type { Socket } from 'node:net'
import type { IncomingMessage } from 'node:http'
import { logCapture } from '../helpers/servers.js'
import { errorOf, exchange, guardedGateway, issueRoutes, recordingUpstream } from './support.js'

const CONNECT = 'CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n'

t.test('CONNECT gets 405 FST_WS_PROXY_METHOD_NOT_ALLOWED and the connection is closed', async (t) => {
  const upstream = await recordingUpstream(t)
  const logs = logCapture()
  const gw = await guardedGateway(t, { routes: issueRoutes(upstream.origin) }, { fastify: { logger: { level: 'info', stream: logs.stream } } })
  for (const bytes of [CONNECT, CONNECT + '\x16\x03\x01\x00\x05hello', 'CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\nSSH-2.0-x\r\n', 'CONNECT /api/x HTTP/1.1\r\nHost: gateway.test\r\n\r\n']) {
    const answer = await exchange(t, gw.port, bytes, { waitClose: true })
    t.equal(answer.statusLine, 'HTTP/1.1 405 Method Not Allowed')
    t.same(errorOf(answer), { statusCode: 405, code: 'FST_WS_PROXY_METHOD_NOT_ALLOWED', error: 'Method Not Allowed', message: 'Method CONNECT is not allowed' })
    t.equal(answer.headers['content-type'], 'application/json; charset=utf-8')
    t.equal(Number(answer.headers['content-length']), Buffer.byteLength(answer.body))
    t.equal(answer.headers.connection, 'close')
    t.ok(answer.closed, 'then closed')
  }
  t.equal(gw.hookSeen.length, 0, 'no hook ran')
  t.equal(upstream.arrivals.length, 0)
  t.equal(upstream.connections(), 0, 'no upstream connection')
  const logged = logs.records.filter((r) => r.msg === 'CONNECT refused')
  t.equal(logged.length, 4, 'each is logged')
  t.equal(logged[0].level, 30, 'at info')
  t.equal(logged[0].err?.code, 'FST_WS_PROXY_METHOD_NOT_ALLOWED')
})

for (const when of ['before', 'after'] as const) {
  t.test(`an app's own 'connect' listener (added ${when} the plugin) keeps CONNECT`, async (t) => {
    const upstream = await recordingUpstream(t)
    const forward = (_req: IncomingMessage, socket: Socket): void => {
      socket.end('HTTP/1.1 200 Connection Established\r\n\r\n')
    }
    const gw = await guardedGateway(t, { routes: issueRoutes(upstream.origin) }, {
      setup: (app) => { if (when === 'before') app.server.on('connect', forward) }
    })
    if (when === 'after') gw.app.server.on('connect', forward)
    const answer = await exchange(t, gw.port, CONNECT, { waitClose: true })
    t.equal(answer.text, 'HTTP/1.1 200 Connection Established\r\n\r\n', 'only the app\'s answer on the wire')
    t.equal(upstream.arrivals.length, 0)
  })
}

t.test('closing the app removes the plugin\'s connect listener', async (t) => {
  const upstream = await recordingUpstream(t)
  const gw = await guardedGateway(t, { routes: issueRoutes(upstream.origin) })
  t.equal(gw.app.server.listenerCount('connect'), 1)
  await gw.app.close()
  t.equal(gw.app.server.listenerCount('connect'), 0)
})
