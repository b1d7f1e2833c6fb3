// fastify-reply-from #449 / PR #450: headers named in `Connection` (RFC 9110 §7.6.1) were forwarded. A WebSocket
// handshake carries `Connection` both ways too (`Connection: Upgrade, X-Foo`): the names it lists must be stripped
// from the upgrade request and from the 101, while Upgrade itself still reaches both sides.
import t from 'tap'
import { gateway, origin } from '../helpers/servers.js'
import { acceptFor, headUpstream, parseHead, rawClient, upgradeHead, WS_KEY } from '../helpers/ws.js'

t.test('Connection: Upgrade, X-Hop on the handshake and Connection: Upgrade, X-Internal on the 101 are both honoured', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => {
    socket.write([
      'HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade, X-Internal-Route', 'X-Internal-Route: pod-7',
      'Keep-Alive: timeout=5', `Sec-WebSocket-Accept: ${acceptFor(WS_KEY)}`, 'X-Public: yes', '', ''
    ].join('\r\n'))
    socket.on('data', (chunk: Buffer) => socket.write(Buffer.concat([Buffer.from('echo:'), chunk])))
  })
  const { port } = await gateway(t, { upstream: origin(upstream) })
  const client = await rawClient(t, port)
  client.socket.write(upgradeHead('/chat', 'websocket', ['Sec-WebSocket-Version: 13', `Sec-WebSocket-Key: ${WS_KEY}`, 'X-Hop: secret',
    'X-Keep: kept', 'Keep-Alive: 300']).replace('Connection: Upgrade', 'Connection: keep-alive, Upgrade, X-Hop'))
  await client.contains('\r\n\r\n')

  const sent = parseHead(upstream.accepted[0].head)
  t.equal(sent.headers['x-hop'], undefined, 'X-Hop, named by the client\'s Connection, stopped at the gateway')
  t.equal(sent.headers['keep-alive'], undefined)
  t.equal(sent.headers['x-keep'], 'kept', 'an unlisted header passes')
  t.equal(sent.headers.upgrade, 'websocket')
  t.match(sent.headers.connection, /^upgrade$/i, 'the upstream is asked to upgrade, nothing else')
  t.equal(sent.headers['sec-websocket-key'], WS_KEY)

  const answer = parseHead(client.text)
  t.equal(answer.status, 101)
  t.equal(answer.headers['x-internal-route'], undefined, 'X-Internal-Route, named by the upstream\'s Connection, stopped at the gateway')
  t.equal(answer.headers['keep-alive'], undefined)
  t.equal(answer.headers['x-public'], 'yes')
  t.match(answer.headers.connection, /^upgrade$/i)
  t.equal(answer.headers.upgrade, 'websocket')
  t.equal(answer.headers['sec-websocket-accept'], acceptFor(WS_KEY))

  const headLength = client.length
  client.socket.write('ping')
  await client.until((r) => r.length >= headLength + 9, 2000, 'the echo')
  t.equal(client.bytes.subarray(headLength).toString(), 'echo:ping', 'and the tunnel carries bytes')
})
