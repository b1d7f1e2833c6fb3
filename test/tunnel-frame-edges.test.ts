// Edges of the frame tracking the main shutdown and ping tests do not reach: a WebSocket tunnel whose bytes stop
// parsing as frames while a Close still waits for a boundary (it falls back to half-closing); a handshake the
// upstream accepts while the app is already draining (its tunnel is sent away like the others, not left open);
// and keep-alive pings, which go only to tunnels whose frames are known.
import t from 'tap'
import { gateway, origin, waitFor } from './helpers/servers.js'
import { headUpstream, logCapture, parseFrames, rawClient, switching, upgradeHead } from './helpers/ws.js'

t.test('a tunnel whose frames stop parsing during the drain falls back to half-closing', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => {
    // A 101 to `websocket`, then the first 10 bytes of a 1000-byte binary frame: the upstream → client way is mid-frame.
    socket.write(switching('websocket'))
    socket.write(Buffer.concat([Buffer.from([0x82, 0x7e, 0x03, 0xe8]), Buffer.alloc(6, 1)]))
  }, true)
  const logs = logCapture()
  const { app, port } = await gateway(t, { upstream: origin(upstream), closeGracePeriod: 3000 }, { logger: { level: 'debug', stream: logs.stream } })
  const client = await rawClient(t, port, true)
  client.socket.write(upgradeHead('/ws', 'websocket'))
  await client.contains('\r\n\r\n')
  const headLength = client.text.indexOf('\r\n\r\n') + 4
  await client.atLeast(headLength + 10, 2000)
  const connection = upstream.accepted[0]

  const started = Date.now()
  const closing = app.close()
  // The upstream got its masked Close at once (the client → upstream way was on a boundary); the client's Close
  // waits for the end of the upstream's frame.
  await connection.received.until(() => connection.afterHead().length >= 8, 2000, 'the masked Close')
  // Then the client sends bytes that are no WebSocket frame (reserved opcode 3): that Close can no longer be placed
  // with certainty, so the tunnel is half-closed both ways, as a tunnel of any other protocol.
  client.socket.write(Buffer.from([0x83, 0x80, 0, 0, 0, 0]))
  await client.end(2000)
  await connection.received.end(2000)
  t.equal(client.length, headLength + 10, 'the client got the start of the frame and a FIN, no Close inside the frame')
  t.same(parseFrames(connection.afterHead()).map((f) => f.opcode), [8], 'the upstream got the Close and a FIN')
  client.socket.end()
  connection.socket.end()
  await closing
  t.ok(Date.now() - started < 2500, `close() did not wait for the deadline (${Date.now() - started} ms)`)
  t.match(logs.records.find((r) => r.msg === 'tunnel bytes are not WebSocket frames: relayed blind from here on'), { from: 'client' })
})

t.test('a handshake the upstream accepts during the drain opens a tunnel that is sent away at once', async (t) => {
  let release: () => void = () => {}
  const held = new Promise<void>((resolve) => { release = resolve })
  const upstream = await headUpstream(t, ({ socket, head }) => {
    const answer = (): void => { socket.write(switching('websocket')) }
    // The first tunnel opens at once; the second handshake waits until the app is draining.
    if (head.startsWith('GET /first')) answer()
    else held.then(answer, () => {})
  })
  const { app, port } = await gateway(t, { upstream: origin(upstream), closeGracePeriod: 1500 })
  const first = await rawClient(t, port)
  first.socket.write(upgradeHead('/first', 'websocket'))
  await first.contains('\r\n\r\n')
  const second = await rawClient(t, port)
  second.socket.write(upgradeHead('/second', 'websocket'))
  await waitFor(() => upstream.accepted.length === 2, 2000, 'the second handshake to reach the upstream')
  await upstream.accepted[1].received.contains('GET /second')

  const closing = app.close()
  // The first client does not answer its Close, so the drain lasts until the deadline; meanwhile the 101 comes.
  await first.contains('\x88\x0a\x03\xe9shutdown', 2000)
  release()
  await second.contains('\r\n\r\n', 2000)
  await second.until((r) => r.text.includes('\x88\x0a\x03\xe9shutdown'), 2000, 'the second tunnel\'s Close')
  const frames = parseFrames(second.bytes.subarray(second.text.indexOf('\r\n\r\n') + 4))
  t.same(frames.map((f) => [f.opcode, f.payload.toString('hex')]), [[8, '03e9' + Buffer.from('shutdown').toString('hex')]], 'the new tunnel got Close 1001 (shutdown) right after its 101')
  await closing
  t.equal(app.wsProxy.tunnels, 0)
})

t.test('keep-alive pings go only where frames are known: not on other protocols, not once tracking is lost', async (t) => {
  const cases: Array<[string, string, Buffer, Buffer]> = [
    ['another protocol', 'foo', Buffer.alloc(0), Buffer.alloc(0)],
    ['upstream bytes that are not frames', 'websocket', Buffer.from([0x83, 0x00]), Buffer.alloc(0)],
    ['client bytes that are not frames', 'websocket', Buffer.alloc(0), Buffer.from([0x83, 0x80, 0, 0, 0, 0])]
  ]
  for (const [what, protocol, fromUpstream, fromClient] of cases) {
    const upstream = await headUpstream(t, ({ socket }) => {
      socket.write(switching(protocol))
      if (fromUpstream.length > 0) socket.write(fromUpstream)
    })
    const { app, port } = await gateway(t, { upstream: origin(upstream), ping: { interval: 50, timeout: 100 } })
    const client = await rawClient(t, port)
    client.socket.write(upgradeHead('/x', protocol))
    await client.contains('\r\n\r\n')
    if (fromClient.length > 0) client.socket.write(fromClient)
    await new Promise((resolve) => setTimeout(resolve, 400))
    const after = client.bytes.subarray(client.text.indexOf('\r\n\r\n') + 4)
    t.same(after, fromUpstream, `${what}: no ping reached the client`)
    t.equal(app.wsProxy.tunnels, 1, `${what}: no ping timeout either`)
  }
})
