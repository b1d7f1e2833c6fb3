// fastify-http-proxy #314 (ERR_INTERNAL_ASSERTION in assignSocket when @fastify/websocket routes coexist) and
// PR #258 (two upgrade handlers for one request). @fastify/websocket routes every upgrade through Fastify and
// wraps every route handler; the proxy must still tunnel its own paths, route each upgrade once (hooks run
// once), and leave @fastify/websocket's routes working, whichever plugin is registered first.
import t, { type Test } from 'tap'
import { once } from 'node:events'
import Fastify from 'fastify'
import websocket from '@fastify/websocket'
import { WebSocket } from 'ws'
import wsProxyPlugin from '../../src/index.js'
import { origin, portOf, wsUpstream } from '../helpers/servers.js'

async function roundTrip (t: Test, url: string, text: string): Promise<string> {
  const ws = new WebSocket(url)
  t.teardown(() => ws.terminate())
  await once(ws, 'open')
  ws.send(text)
  const [data] = await once(ws, 'message')
  // Still open after the handshake's response has ended: nothing tore the socket down.
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(ws.readyState, WebSocket.OPEN, `${url} stays open`)
  ws.close(1000, 'done')
  const [code] = await once(ws, 'close') as [number]
  t.equal(code, 1000, 'and closes cleanly')
  return String(data)
}

for (const proxyFirst of [false, true]) {
  t.test(`${proxyFirst ? 'proxy' : '@fastify/websocket'} registered first: both kinds of WebSocket work, hooks run once`, async (t) => {
    const { server } = await wsUpstream(t)
    const app = Fastify()
    t.teardown(() => app.close())
    let hooks = 0
    app.addHook('onRequest', async () => { hooks++ })
    const proxy = { routes: [{ prefix: '/proxy/', upstream: origin(server) + '/' }] }
    if (proxyFirst) await app.register(wsProxyPlugin, proxy)
    await app.register(websocket)
    if (!proxyFirst) await app.register(wsProxyPlugin, proxy)
    await app.register(async (local) => {
      local.get('/local', { websocket: true }, (socket) => {
        socket.on('message', (data: Buffer) => socket.send(`local: ${data.toString()}`))
      })
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const base = `ws://127.0.0.1:${portOf(app.server)}`

    t.equal(await roundTrip(t, `${base}/proxy/room`, 'via the upstream'), 'via the upstream')
    t.equal(hooks, 1, 'one routing pass for the proxied upgrade')
    t.equal(await roundTrip(t, `${base}/local`, 'hi'), 'local: hi')
    t.equal(hooks, 2, 'one routing pass for the local upgrade')
    t.equal(await roundTrip(t, `${base}/proxy/again`, 'twice'), 'twice')
    t.equal(hooks, 3)
  })
}
