// node-http-proxy #994 "WebSocket idle timeout" / #1223: there was no control over how long a proxied WebSocket
// may sit idle, so dead peers held both sockets forever. Here `timeouts.read` (nginx proxy_read_timeout, per
// route) closes a tunnel whose upstream has gone silent, freeing both sockets; live ones are not affected.
import t from 'tap'
import { gateway, origin, waitFor, wsUpstream } from '../helpers/servers.js'
import { messages, openWs, wsClosed, wsUrl } from '../helpers/ws.js'

t.test('a silent upstream\'s tunnel is closed after the route\'s read timeout; a talking one stays', async (t) => {
  const { server, wss } = await wsUpstream(t)
  const talkers = new Set<unknown>()
  wss.on('connection', (ws, req) => {
    if (req.url === '/talk') {
      talkers.add(ws)
      const timer = setInterval(() => ws.send('tick'), 100)
      ws.on('close', () => clearInterval(timer))
    }
  })
  const { app, url } = await gateway(t, { routes: [{ prefix: '/', upstream: origin(server), timeouts: { read: 400 } }] })
  const silent = await openWs(t, wsUrl(url, '/silent'))
  const talking = await openWs(t, wsUrl(url, '/talk'))
  const started = Date.now()
  const { code } = await wsClosed(silent, 3000)
  t.equal(code, 1001, 'the silent tunnel is closed with 1001 "going away"')
  t.ok(Date.now() - started >= 350, 'not before the timeout')
  await waitFor(() => wss.clients.size === 1, 2000, 'its upstream socket to close')
  t.ok((await messages(talking, 3)).length === 3, 'the talking tunnel is still carrying messages')
  await waitFor(() => app.wsProxy.tunnels === 1, 2000, 'one tunnel left')
  t.equal(app.wsProxy.tunnels, 1)
})
