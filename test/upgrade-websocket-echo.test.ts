// WebSocket traffic through the tunnel: every kind of message arrives intact and in order, both ways.
import t from 'tap'
import { gateway, origin, wsUpstream } from './helpers/servers.js'
import { messages, openWs, pattern, within, wsClosed, wsUrl } from './helpers/ws.js'

t.test('text and binary messages echo with their type', async (t) => {
  const { server } = await wsUpstream(t)
  const { url } = await gateway(t, { upstream: origin(server) })
  const ws = await openWs(t, wsUrl(url, '/echo'))
  ws.send('héllo wörld ✓')
  ws.send(Buffer.from([0, 1, 2, 255, 254, 0]))
  ws.send('')
  const [text, binary, empty] = await messages(ws, 3)
  t.equal(text.isBinary, false)
  t.equal(text.data.toString('utf8'), 'héllo wörld ✓')
  t.equal(binary.isBinary, true)
  t.same([...binary.data], [0, 1, 2, 255, 254, 0])
  t.equal(empty.isBinary, false)
  t.equal(empty.data.length, 0)
})

t.test('a message sent in fragments reaches the upstream whole, text and binary', async (t) => {
  const { server, wss } = await wsUpstream(t)
  const { url } = await gateway(t, { upstream: origin(server) })
  const ws = await openWs(t, wsUrl(url, '/fragments'))
  ws.send('first ', { fin: false })
  ws.send('second ', { fin: false })
  ws.send('third', { fin: true })
  ws.send(Buffer.from([1, 2]), { fin: false, binary: true })
  ws.send(Buffer.from([3]), { fin: false, binary: true })
  ws.send(Buffer.from([4, 5]), { fin: true, binary: true })
  const [joinedText, joinedBinary] = await messages(ws, 2)
  t.equal(joinedText.data.toString(), 'first second third', 'three text fragments make one message')
  t.equal(joinedText.isBinary, false)
  t.same([...joinedBinary.data], [1, 2, 3, 4, 5], 'three binary fragments make one message')
  t.equal(joinedBinary.isBinary, true)
  t.equal(wss.clients.size, 1)
})

t.test('a 16 MiB binary message and a 1 MiB text message round-trip byte for byte', async (t) => {
  const { server } = await wsUpstream(t, { maxPayload: 64 * 1024 * 1024 })
  const { url } = await gateway(t, { upstream: origin(server) })
  const ws = await openWs(t, wsUrl(url, '/large'), undefined, { maxPayload: 64 * 1024 * 1024 })
  const big = pattern(16 * 1024 * 1024, 7)
  const text = 'abcdefghij✓'.repeat(1024 * 1024 / 12)
  ws.send(big)
  ws.send(text)
  const [echoedBig, echoedText] = await messages(ws, 2, 15_000)
  t.equal(echoedBig.data.length, big.length)
  t.ok(echoedBig.data.equals(big), 'the binary message is intact')
  t.equal(echoedText.data.toString(), text, 'the text message is intact')
})

t.test('1000 messages each way keep their order, interleaved', async (t) => {
  const { server, wss } = await wsUpstream(t)
  // The upstream also streams its own numbered messages while echoing the client's.
  wss.removeAllListeners('connection')
  wss.on('connection', (peer) => {
    peer.on('message', (data, isBinary) => peer.send(data, { binary: isBinary }))
    for (let i = 0; i < 1000; i++) peer.send(`server ${i}`)
  })
  const { url } = await gateway(t, { upstream: origin(server) })
  const ws = await openWs(t, wsUrl(url, '/order'))
  const received = messages(ws, 2000, 10_000)
  for (let i = 0; i < 1000; i++) ws.send(`client ${i}`)
  const all = (await received).map((m) => m.data.toString())
  t.same(all.filter((m) => m.startsWith('server ')), Array.from({ length: 1000 }, (_, i) => `server ${i}`), 'server-initiated messages in order')
  t.same(all.filter((m) => m.startsWith('client ')), Array.from({ length: 1000 }, (_, i) => `client ${i}`), 'echoes in order')
})

t.test('server-initiated messages arrive without the client sending anything', async (t) => {
  const { server, wss } = await wsUpstream(t)
  wss.removeAllListeners('connection')
  wss.on('connection', (peer) => {
    peer.send('welcome')
    peer.send(Buffer.from('ping-binary'))
    // A later push, not triggered by the client.
    setTimeout(() => peer.send('push after 50 ms'), 50)
  })
  const { url } = await gateway(t, { upstream: origin(server) })
  const ws = await openWs(t, wsUrl(url, '/push'))
  const got = await messages(ws, 3)
  t.same(got.map((m) => [m.data.toString(), m.isBinary]), [['welcome', false], ['ping-binary', true], ['push after 50 ms', false]])
  ws.close(1000)
  t.equal((await wsClosed(ws)).code, 1000)
})

t.test('ping and pong control frames pass through', async (t) => {
  const { server, wss } = await wsUpstream(t)
  const { url } = await gateway(t, { upstream: origin(server) })
  const ws = await openWs(t, wsUrl(url, '/ping'))
  const [peer] = [...wss.clients]
  const upstreamPing = within(new Promise<string>((resolve) => peer.once('ping', (data: Buffer) => resolve(data.toString()))), 2000, 'ping at the upstream')
  const clientPong = within(new Promise<string>((resolve) => ws.once('pong', (data: Buffer) => resolve(data.toString()))), 2000, 'pong at the client')
  ws.ping('are you there')
  t.equal(await upstreamPing, 'are you there', 'the upstream got the client ping')
  t.equal(await clientPong, 'are you there', 'the upstream\'s automatic pong came back')
  const clientPing = within(new Promise<string>((resolve) => ws.once('ping', (data: Buffer) => resolve(data.toString()))), 2000, 'ping at the client')
  peer.ping('server ping')
  t.equal(await clientPing, 'server ping')
})
