// The demo upstream's WebSocket echo (src/demo/websocket-echo.ts, written without the `ws` package so that the
// published CLI runs `--demo` alone): a `ws` client for what browsers do (compression, pings, fragments, large
// messages, closes either way) and raw sockets for handshakes and frames it refuses.
import t from 'tap'
import { constants, deflateRawSync } from 'node:zlib'
import { startDemoUpstream } from '../src/demo/upstream.js'
import { nextFrame } from '../src/demo/websocket-echo.js'
import type { Teardown } from './helpers/servers.js'
import { acceptFor, messages, openWs, parseFrames, rawClient, wsClosed, wsHandshakeHead, type Received } from './helpers/ws.js'

async function demo (t: Teardown): Promise<{ url: string, port: number }> {
  const upstream = await startDemoUpstream()
  t.teardown(() => upstream.close())
  return { url: upstream.url.replace('http', 'ws'), port: Number(new URL(upstream.url).port) }
}

/** A client frame: masked, as RFC 6455 §5.1 requires (unless `masked` is false). */
function frame (opcode: number, payload: Buffer, { fin = true, rsv1 = false, masked = true } = {}): Buffer {
  const length = payload.length
  const head = length < 126 ? Buffer.from([0, length]) : length < 65536 ? Buffer.from([0, 126, 0, 0]) : Buffer.alloc(10)
  if (length >= 126 && length < 65536) head.writeUInt16BE(length, 2)
  if (length >= 65536) {
    head[1] = 127
    head.writeBigUInt64BE(BigInt(length), 2)
  }
  head[0] = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode
  if (!masked) return Buffer.concat([head, payload])
  head[1] |= 0x80
  const mask = Buffer.from([1, 2, 3, 4])
  const body = Buffer.from(payload)
  for (let i = 0; i < body.length; i++) body[i] ^= mask[i & 3]
  return Buffer.concat([head, mask, body])
}

/** A raw client past the handshake (the welcome message received), optionally asking for compression. */
async function rawSession (t: Teardown, port: number, extra: string[] = []): Promise<Received> {
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead('/', extra))
  await client.contains('welcome')
  return client
}

t.test('a ws client: compressed text and binary, fragments, a ping, a large message, its own close code', async (t) => {
  const { url } = await demo(t)
  const ws = await openWs(t, url, ['chat', 'echo.v1'], { perMessageDeflate: { threshold: 0 } })
  t.equal(ws.protocol, 'echo.v1', 'echo.v1 preferred')
  t.match(ws.extensions, /^permessage-deflate/)
  t.match((await messages(ws, 1))[0].data.toString(), /^welcome: /)
  ws.send('hello')
  ws.send(Buffer.from([1, 2, 3, 255]))
  ws.send('frag', { fin: false })
  ws.send('ment', { fin: true })
  const large = Buffer.alloc(70_000, 7)
  ws.send(large)
  const echoed = await messages(ws, 4)
  t.same(echoed.slice(0, 3).map((m) => [m.data.toString('latin1'), m.isBinary]), [['hello', false], ['\x01\x02\x03\xff', true], ['fragment', false]])
  t.ok(echoed[3].data.equals(large), '70,000 bytes (a 64-bit length) both ways')
  const pong = new Promise<Buffer>((resolve) => ws.once('pong', resolve))
  ws.ping('are you there')
  t.equal((await pong).toString(), 'are you there')
  const closed = wsClosed(ws)
  ws.close(4000, 'bye')
  t.same(await closed, { code: 4000, reason: 'bye' }, 'the client\'s code and reason are answered')
})

t.test('the close command: the upstream closes with the code and reason, and ends on the client\'s answer', async (t) => {
  const { url } = await demo(t)
  const ws = await openWs(t, url)
  t.equal(ws.protocol, '')
  await messages(ws, 1)
  const closed = wsClosed(ws)
  ws.send('close 4321 why')
  t.same(await closed, { code: 4321, reason: 'why' })
})

t.test('handshakes it refuses: not a WebSocket one, unsupported subprotocols', async (t) => {
  const { port } = await demo(t)
  const plain = await rawClient(t, port)
  plain.socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n')
  await plain.end()
  t.match(plain.text, /^HTTP\/1\.1 400 Bad Request\r\n[^]*\r\n\r\nexpected a WebSocket handshake \(RFC 6455\)$/)
  const protocols = await rawClient(t, port)
  protocols.socket.write(wsHandshakeHead('/', ['Sec-WebSocket-Protocol: nope.v9, json']))
  await protocols.end()
  t.match(protocols.text, /\r\n\r\nunsupported subprotocol; this upstream speaks echo\.v1, chat$/)
})

t.test('frames sent with the handshake, and several frames in one packet, are each echoed', async (t) => {
  const { port } = await demo(t)
  const client = await rawClient(t, port)
  client.socket.write(Buffer.concat([Buffer.from(wsHandshakeHead('/')), frame(0x1, Buffer.from('early'))]))
  await client.contains('early')
  t.match(client.text, `Sec-WebSocket-Accept: ${acceptFor('dGhlIHNhbXBsZSBub25jZQ==')}\r\n`)
  const medium = frame(0x2, Buffer.alloc(300, 1))
  const large = frame(0x2, Buffer.alloc(66_000, 2))
  client.socket.write(Buffer.concat([medium, large]))
  await client.until((r) => r.length > 66_300)
  const frames = parseFrames(client.bytes.subarray(client.text.indexOf('\r\n\r\n') + 4))
  t.same(frames.map((f) => f.payload.length), [frames[0].payload.length, 5, 300, 66_000], 'welcome, then each echo whole')
  t.notOk(frames.some((f) => f.masked), 'server frames are not masked')
})

t.test('a frame is read once all of it has arrived, whatever its length encoding', async (t) => {
  for (const size of [5, 300, 66_000]) {
    const bytes = frame(0x2, Buffer.alloc(size, 3))
    for (let cut = 0; cut < bytes.length; cut += cut < 16 ? 1 : 4096) t.equal(nextFrame(bytes.subarray(0, cut)), null)
    t.match(nextFrame(Buffer.concat([bytes, Buffer.from([0x81])])), { fin: true, opcode: 2, masked: true, size: bytes.length })
  }
})

t.test('the HTTP side: the page, the API, anything else echoed as JSON', async (t) => {
  const { url } = await demo(t)
  const base = url.replace('ws', 'http')
  const page = await fetch(base + '/')
  t.match(await page.text(), /<title>fastify-ws-proxy demo<\/title>/)
  t.same(await (await fetch(base + '/api/hello')).json(), { hello: 'world', from: 'the demo upstream' })
  t.match(await (await fetch(base + '/x?y=1', { method: 'POST', body: 'abc' })).json(), { method: 'POST', url: '/x?y=1', bodyBytes: 3 })
})

t.test('a compressed message is inflated before it is echoed', async (t) => {
  const { port } = await demo(t)
  const client = await rawSession(t, port, ['Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits'])
  t.match(client.text, /Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; server_no_context_takeover\r\n/)
  const compressed = deflateRawSync(Buffer.from('squeezed'), { finishFlush: constants.Z_SYNC_FLUSH }).subarray(0, -4)
  client.socket.write(frame(0x1, compressed, { rsv1: true }))
  await client.contains('squeezed')
})

t.test('protocol violations end the connection', async (t) => {
  const { port } = await demo(t)
  const cases: Array<[string, Buffer, string[]]> = [
    ['an unmasked frame', frame(0x1, Buffer.from('x'), { masked: false }), []],
    ['RSV1 without permessage-deflate', frame(0x1, Buffer.from('x'), { rsv1: true }), []],
    ['RSV1 on a continuation', Buffer.concat([frame(0x1, Buffer.from('a'), { fin: false }), frame(0x0, Buffer.from('b'), { rsv1: true })]),
      ['Sec-WebSocket-Extensions: permessage-deflate']],
    ['a continuation that continues nothing', frame(0x0, Buffer.from('x')), []],
    ['a new message inside a fragmented one', Buffer.concat([frame(0x1, Buffer.from('a'), { fin: false }), frame(0x1, Buffer.from('b'))]), []],
    ['an unknown opcode', frame(0x3, Buffer.from('x')), []],
    ['a frame announcing more than 1 MiB', Buffer.concat([Buffer.from([0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0]), Buffer.alloc(4)]), []],
    ['fragments adding up to more than 1 MiB', Buffer.concat([frame(0x2, Buffer.alloc(600_000), { fin: false }), frame(0x0, Buffer.alloc(600_000))]), []],
    ['a compressed message that does not inflate', frame(0x1, Buffer.from('not deflate data'), { rsv1: true }), ['Sec-WebSocket-Extensions: permessage-deflate']]
  ]
  for (const [what, bytes, extra] of cases) {
    const client = await rawSession(t, port, extra)
    client.socket.write(bytes)
    await client.close()
    t.pass(what)
  }
})

t.test('a pong from the client is ignored; a Close ends the connection with the same code and reason', async (t) => {
  const { port } = await demo(t)
  const client = await rawSession(t, port)
  client.socket.write(Buffer.concat([frame(0xa, Buffer.from('unasked')), frame(0x8, Buffer.from([0x0f, 0xa0, 0x62, 0x79, 0x65]))]))
  await client.end()
  const frames = parseFrames(client.bytes.subarray(client.text.indexOf('\r\n\r\n') + 4))
  t.same(frames.slice(1).map((f) => [f.opcode, [...f.payload]]), [[0x8, [0x0f, 0xa0, 0x62, 0x79, 0x65]]], 'no answer to the pong; Close 4000 "bye" answered')
})
