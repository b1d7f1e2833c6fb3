// Which upgrades the proxy takes. Its listener claims the paths of its upgrading routes; other 'upgrade' listeners
// on the server (socket.io, a hand-written ws server, ...) keep every other path. With no other listener,
// unclaimed upgrades go through Fastify as Node would route them without any listener (so a 404 is a real 404).
// A route with `upgrade: false` proxies an upgrade request as a plain request.
import t from 'tap'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { gateway, httpUpstream, origin, wsUpstream, type Seen } from './helpers/servers.js'
import { request } from './helpers/clients.js'
import { parseHead, rawClient, wsHandshakeHead, type Received } from './helpers/ws.js'

function body (client: Received): string {
  return client.text.slice(client.text.indexOf('\r\n\r\n') + 4)
}

t.test('an unclaimed path is left to the server\'s other upgrade listener; claimed paths are still proxied', async (t) => {
  const { server } = await wsUpstream(t)
  const otherSaw: string[] = []
  const { port } = await gateway(t, { routes: [{ prefix: '/ws/', upstream: origin(server) }] }, {}, (app) => {
    app.server.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
      otherSaw.push(req.url as string)
      // This listener owns everything outside /ws/, and answers it its own way.
      if (!(req.url as string).startsWith('/ws/')) socket.end('HTTP/1.1 418 I\'m a teapot\r\nConnection: close\r\nContent-Length: 5\r\n\r\nother')
    })
  })

  const other = await rawClient(t, port)
  other.socket.write(wsHandshakeHead('/socket.io/?EIO=4'))
  await other.close()
  t.equal(other.text, 'HTTP/1.1 418 I\'m a teapot\r\nConnection: close\r\nContent-Length: 5\r\n\r\nother', 'only the other listener answered')

  const proxied = await rawClient(t, port)
  proxied.socket.write(wsHandshakeHead('/ws/chat'))
  await proxied.contains('\r\n\r\n')
  t.equal(parseHead(proxied.text).status, 101, 'a claimed path is proxied')
  t.same(otherSaw, ['/socket.io/?EIO=4', '/ws/chat'], 'the other listener saw both and answered only its own')
})

t.test('with no other listener, an unclaimed upgrade gets Fastify\'s own answer, then the connection closes', async (t) => {
  const { server } = await wsUpstream(t)
  let upstreamConnections = 0
  server.on('connection', () => { upstreamConnections++ })
  const { port } = await gateway(t, { routes: [{ prefix: '/ws/', upstream: origin(server) }] }, {}, (app) => {
    app.get('/hello', async () => ({ hello: 'world' }))
  })

  const missing = await rawClient(t, port)
  missing.socket.write(wsHandshakeHead('/nothing/here'))
  await missing.close()
  const head = parseHead(missing.text)
  t.equal(head.statusLine, 'HTTP/1.1 404 Not Found')
  t.equal(head.headers.connection, 'close')
  t.same(JSON.parse(body(missing)), { message: 'Route GET:/nothing/here not found', error: 'Not Found', statusCode: 404 })
  t.ok(missing.ended, 'the gateway closed the connection')

  const own = await rawClient(t, port)
  own.socket.write(wsHandshakeHead('/hello'))
  await own.close()
  t.equal(parseHead(own.text).status, 200, 'the app\'s own route answers the upgrade request as a plain one')
  t.same(JSON.parse(body(own)), { hello: 'world' })
  t.equal(upstreamConnections, 0, 'nothing was proxied')
})

t.test('the bare prefix of an upgrading route answers the upgrade with nginx\'s 301 to the slash form', async (t) => {
  const { server } = await wsUpstream(t)
  const { port } = await gateway(t, { routes: [{ prefix: '/ws/', upstream: origin(server) }] })
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead('/ws?room=1'))
  await client.close()
  const head = parseHead(client.text)
  t.equal(head.status, 301)
  t.equal(head.headers.location, '/ws/?room=1')
})

t.test('a route with upgrade: false proxies an upgrade request as a plain request and relays the answer', async (t) => {
  const upstream = await httpUpstream(t)
  const { app, url } = await gateway(t, { routes: [{ prefix: '/plain/', upstream: origin(upstream), upgrade: false }] })
  const res = await request(`${url}/plain/x`, { headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' } })
  t.equal(res.status, 200)
  const seen = JSON.parse(res.body.toString()) as Seen
  t.equal(seen.url, '/plain/x')
  t.notOk('upgrade' in seen.headers, 'no Upgrade upstream')
  t.notMatch(seen.headers.connection ?? '', /upgrade/i, 'no Connection: upgrade upstream')
  t.equal(seen.headers['sec-websocket-key'], 'dGhlIHNhbXBsZSBub25jZQ==', 'end-to-end headers still pass')
  t.equal(app.wsProxy.tunnels, 0)
})

t.test('upgrade: false next to an upgrading route: the upgrade request is forwarded plain, then the connection closes', async (t) => {
  const upstream = await httpUpstream(t)
  const { server: wsServer } = await wsUpstream(t)
  const { app, port } = await gateway(t, {
    routes: [
      { prefix: '/ws/', upstream: origin(wsServer) },
      { prefix: '/plain/', upstream: origin(upstream), upgrade: false }
    ]
  })
  const client = await rawClient(t, port)
  // The path is not claimed, but with no other listener the proxy's router still routes it (to the plain route).
  client.socket.write(wsHandshakeHead('/plain/y'))
  await client.close()
  const head = parseHead(client.text)
  t.equal(head.status, 200)
  t.equal(head.headers.connection, 'close', 'the socket left HTTP parsing: this answer is its last')
  const seen = JSON.parse(body(client)) as Seen
  t.equal(seen.url, '/plain/y')
  t.notOk('upgrade' in seen.headers, 'no Upgrade upstream')
  t.notMatch(seen.headers.connection ?? '', /upgrade/i, 'no Connection: upgrade upstream')
  t.equal(app.wsProxy.tunnels, 0)
})
