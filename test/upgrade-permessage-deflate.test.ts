// permessage-deflate (RFC 7692) is negotiated between the client and the upstream, not with the proxy: the offer
// and the answer pass through, and the compressed frames (RSV1 set, masked by the client) are relayed as they are.
import t from 'tap'
import { constants, inflateRawSync } from 'node:zlib'
import type { IncomingMessage } from 'node:http'
import { gateway, origin, waitFor, wsUpstream } from './helpers/servers.js'
import { acceptFor, headUpstream, messages, openWs, parseFrames, parseHead, pattern, wsUrl } from './helpers/ws.js'

t.test('negotiated end to end: the upstream sees the client\'s offer, the client runs the upstream\'s answer', async (t) => {
  const seen: IncomingMessage[] = []
  // threshold 0: even tiny messages are compressed, both ways.
  const { server, wss } = await wsUpstream(t, { perMessageDeflate: { threshold: 0 } })
  wss.on('headers', (_headers, req) => { seen.push(req) })
  const { url } = await gateway(t, { upstream: origin(server) })
  const ws = await openWs(t, wsUrl(url, '/deflate'), undefined, { perMessageDeflate: { threshold: 0 } })
  t.equal(seen.length, 1)
  // ws offers "permessage-deflate; client_max_window_bits"; the proxy must neither drop nor answer it itself.
  t.equal(seen[0].headers['sec-websocket-extensions'], 'permessage-deflate; client_max_window_bits')
  t.match(ws.extensions, /^permessage-deflate/, 'the client runs permessage-deflate')
  const [upstreamSide] = [...wss.clients]
  t.match(upstreamSide.extensions, /^permessage-deflate/, 'and so does the upstream')

  const text = 'compress me '.repeat(10_000)
  const binary = pattern(1024 * 1024, 3)
  ws.send(text)
  ws.send(binary)
  ws.send('x')
  const got = await messages(ws, 3, 10_000)
  t.equal(got[0].data.toString(), text)
  t.ok(got[1].data.equals(binary), 'a 1 MiB binary message survives compression both ways')
  t.equal(got[2].data.toString(), 'x')
})

t.test('an upstream that declines permessage-deflate gets an uncompressed connection, whatever the client offered', async (t) => {
  const { server } = await wsUpstream(t, { perMessageDeflate: false })
  const { url } = await gateway(t, { upstream: origin(server) })
  const ws = await openWs(t, wsUrl(url, '/plain'), undefined, { perMessageDeflate: { threshold: 0 } })
  t.equal(ws.extensions, '', 'no extension: the proxy did not accept the offer on the upstream\'s behalf')
  ws.send('not compressed')
  const [echo] = await messages(ws, 1)
  t.equal(echo.data.toString(), 'not compressed')
})

t.test('the upstream receives the client\'s compressed frames byte for byte (RSV1, mask, fragments)', async (t) => {
  // A scripted upstream that accepts permessage-deflate by hand and keeps every byte the client's frames made.
  const upstream = await headUpstream(t, ({ socket, head }) => {
    const key = parseHead(head).headers['sec-websocket-key']
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${acceptFor(key)}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n`)
  })
  const { url } = await gateway(t, { upstream: origin(upstream) })
  const ws = await openWs(t, wsUrl(url, '/frames'), undefined, { perMessageDeflate: { threshold: 0 } })
  t.equal(ws.extensions, 'permessage-deflate')
  const message = 'hello hello hello hello'
  ws.send(message)
  ws.send('one ', { fin: false, compress: false })
  ws.send('two ', { fin: false, compress: false })
  ws.send('three', { fin: true, compress: false })
  const [connection] = upstream.accepted
  await waitFor(() => parseFrames(connection.afterHead()).length === 4, 2000, 'four frames at the upstream')
  const [compressed, ...fragments] = parseFrames(connection.afterHead())

  t.equal(compressed.rsv1, true, 'RSV1 marks the compressed message')
  t.equal(compressed.masked, true, 'the client\'s mask is kept (a terminating proxy would re-mask or unmask)')
  t.equal(compressed.opcode, 1)
  // RFC 7692 §7.2.2: the sender strips the trailing 00 00 ff ff of the deflate block; add it back to inflate.
  const inflated = inflateRawSync(Buffer.concat([compressed.payload, Buffer.from([0, 0, 0xff, 0xff])]), { finishFlush: constants.Z_SYNC_FLUSH })
  t.equal(inflated.toString(), message)
  t.same(fragments.map((f) => [f.fin, f.opcode, f.rsv1, f.payload.toString()]), [
    [false, 1, false, 'one '],
    [false, 0, false, 'two '],
    [true, 0, false, 'three']
  ], 'three frames: text, continuation, final continuation, as the client sent them')
})
