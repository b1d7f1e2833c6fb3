// The WebSocket handshake is the client's and the upstream's: the proxy passes the offer and the answer through
// unchanged (subprotocols, key, version), so the client validates the upstream's own Sec-WebSocket-Accept.
import t from 'tap'
import type { IncomingMessage } from 'node:http'
import { gateway, origin, waitFor, wsUpstream } from './helpers/servers.js'
import { WS_KEY, acceptFor, messages, openWs, parseHead, rawClient, wsHandshakeHead, wsUrl } from './helpers/ws.js'

t.test('every offered subprotocol reaches the upstream, and its pick (not the first) reaches the client', async (t) => {
  const offered: string[][] = []
  const { server } = await wsUpstream(t, {
    handleProtocols (protocols) {
      offered.push([...protocols])
      return 'b'
    }
  })
  const { url } = await gateway(t, { upstream: origin(server) })
  const ws = await openWs(t, wsUrl(url, '/chat'), ['a', 'b', 'c'])
  t.same(offered, [['a', 'b', 'c']], 'the upstream saw the whole offer, in order')
  t.equal(ws.protocol, 'b', 'the client runs the upstream\'s pick')
  ws.send('in b')
  const [echo] = await messages(ws, 1)
  t.equal(echo.data.toString(), 'in b')
})

t.test('the Sec-WebSocket-Protocol lines reach the upstream as the client wrote them', async (t) => {
  let seen: IncomingMessage | undefined
  const { server, wss } = await wsUpstream(t, { handleProtocols: () => 'c' })
  wss.on('connection', (_ws, req) => { seen = req })
  const { port } = await gateway(t, { upstream: origin(server) })
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead('/raw', ['Sec-WebSocket-Protocol: a, b', 'Sec-WebSocket-Protocol: c']))
  await client.contains('\r\n\r\n')
  const head = parseHead(client.text)
  t.equal(head.status, 101)
  t.equal(head.headers['sec-websocket-protocol'], 'c')
  await waitFor(() => seen !== undefined, 2000, 'the upstream connection')
  const raw = (seen as IncomingMessage).rawHeaders
  const lines: string[] = []
  for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() === 'sec-websocket-protocol') lines.push(`${raw[i]}: ${raw[i + 1]}`)
  t.same(lines, ['Sec-WebSocket-Protocol: a, b', 'Sec-WebSocket-Protocol: c'], 'both lines, in order, untouched')
})

t.test('Sec-WebSocket-Key and Version reach the upstream untouched; the 101 carries the upstream\'s Accept for that key', async (t) => {
  const seen: Array<IncomingMessage['headers']> = []
  const { server, wss } = await wsUpstream(t)
  wss.on('headers', (_headers, req) => { seen.push(req.headers) })
  const { port } = await gateway(t, { upstream: origin(server) })
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead('/key'))
  await client.contains('\r\n\r\n')
  const head = parseHead(client.text)
  t.equal(head.statusLine, 'HTTP/1.1 101 Switching Protocols')
  t.equal(head.headers['sec-websocket-accept'], acceptFor(WS_KEY), 'the Accept answers the client\'s own key')
  t.equal(head.headers.upgrade, 'websocket')
  t.match(head.headers.connection, /^upgrade$/i)
  t.notOk('transfer-encoding' in head.headers, 'a 101 has no body framing')
  t.notOk('content-length' in head.headers)
  t.equal(seen.length, 1)
  t.equal(seen[0]['sec-websocket-key'], WS_KEY)
  t.equal(seen[0]['sec-websocket-version'], '13')
  t.equal(seen[0].upgrade, 'websocket')
  t.match(seen[0].connection, /^upgrade$/i)
})

t.test('a ws client validates the upstream\'s Accept for its random key (many handshakes)', async (t) => {
  const keys = new Set<string>()
  const { server, wss } = await wsUpstream(t)
  wss.on('headers', (_headers, req) => { keys.add(req.headers['sec-websocket-key'] as string) })
  const { url, app } = await gateway(t, { upstream: origin(server) })
  // `ws` fails the handshake ("Invalid Sec-WebSocket-Accept header") unless the Accept matches the key it sent.
  const clients = await Promise.all(Array.from({ length: 20 }, async () => openWs(t, wsUrl(url, '/many'))))
  t.equal(keys.size, 20, 'twenty distinct client keys reached the upstream')
  t.equal(app.wsProxy.tunnels, 20)
  for (const ws of clients) ws.close(1000)
})
