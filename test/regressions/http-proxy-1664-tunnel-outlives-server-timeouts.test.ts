// node-http-proxy #1664: Node's own server timeouts (headersTimeout, requestTimeout) wrote a 408 into
// upgraded sockets and killed proxied WebSockets after ~60 s. A tunnel must outlive every server timeout.
import t from 'tap'
import { once } from 'node:events'
import { WebSocket } from 'ws'
import { gateway, origin, wsUpstream } from '../helpers/servers.js'

t.test('a tunnel outlives headersTimeout, requestTimeout, keepAliveTimeout and connectionTimeout', async (t) => {
  const { server } = await wsUpstream(t)
  const { app, url } = await gateway(t, { upstream: origin(server) }, {
    keepAliveTimeout: 200,
    requestTimeout: 300,
    connectionTimeout: 300
  })
  app.server.headersTimeout = 200
  app.server.requestTimeout = 300
  const ws = new WebSocket(url.replace('http', 'ws') + '/long')
  t.teardown(() => ws.terminate())
  await once(ws, 'open')
  let closed = false
  ws.on('close', () => { closed = true })
  const started = Date.now()
  // Six exchanges 250 ms apart: well past every timeout above, each of which would have fired by now.
  for (let i = 0; i < 6; i++) {
    await new Promise((resolve) => setTimeout(resolve, 250))
    ws.send(`message ${i}`)
    const [data] = await once(ws, 'message')
    t.equal(String(data), `message ${i}`)
  }
  t.ok(Date.now() - started >= 1500, 'the tunnel lived for at least 1.5 s')
  t.notOk(closed, 'and is still open')
  t.equal(app.wsProxy.tunnels, 1)
  ws.close(1000, 'done')
  const [code, reason] = await once(ws, 'close') as [number, Buffer]
  t.equal(code, 1000)
  t.equal(reason.toString(), 'done')
})
