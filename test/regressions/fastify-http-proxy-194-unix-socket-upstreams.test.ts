// fastify-http-proxy #194: `unix+http` upstreams worked for HTTP, while WebSocket over a unix socket silently
// did nothing. Here a unix-socket upstream (nginx's `http://unix:/path.sock:` form) serves both.
import t from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import { rmSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { WebSocket, WebSocketServer } from 'ws'
import { gateway, type Seen, echoHandler } from '../helpers/servers.js'
import { request } from '../helpers/clients.js'

t.test('HTTP and WebSocket through a unix-socket upstream, with the URI mapping and Host: localhost', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fastify-ws-proxy-unix-'))
  const path = join(dir, 'upstream.sock')
  const server = http.createServer(echoHandler)
  const wss = new WebSocketServer({ server })
  wss.on('connection', (ws, req) => ws.on('message', (data) => ws.send(`${req.url ?? ''} ${data.toString()}`)))
  server.listen(path)
  await once(server, 'listening')
  t.teardown(async () => {
    for (const client of wss.clients) client.terminate()
    wss.close()
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
    rmSync(dir, { recursive: true, force: true })
  })

  const { app, url } = await gateway(t, { routes: [{ prefix: '/u/', upstream: `http://unix:${path}:/base/` }] })
  const res = await request(`${url}/u/items?x=1`)
  t.equal(res.status, 200)
  const seen = JSON.parse(res.body.toString()) as Seen
  t.equal(seen.url, '/base/items?x=1')
  t.equal(seen.headers.host, 'localhost', 'nginx sends Host: localhost to unix sockets')

  const ws = new WebSocket(`${url.replace('http', 'ws')}/u/chat`)
  t.teardown(() => ws.terminate())
  await once(ws, 'open')
  t.equal(app.wsProxy.tunnels, 1)
  ws.send('over the socket')
  const [data] = await once(ws, 'message')
  t.equal(String(data), '/base/chat over the socket')
  ws.close(1000)
  await once(ws, 'close')
})

t.test('a unix-socket upstream that does not exist is a 502 naming the socket', async (t) => {
  const path = join(tmpdir(), `fastify-ws-proxy-missing-${process.pid}.sock`)
  const { url } = await gateway(t, { upstream: `http://unix:${path}:` })
  const res = await request(`${url}/x`)
  t.equal(res.status, 502)
  const body = JSON.parse(res.body.toString()) as { code: string, message: string }
  t.equal(body.code, 'FST_WS_PROXY_CONNECT_FAILED')
  t.equal(body.message, `Could not connect to upstream unix:${path}: ENOENT`)
})
