// fastify-http-proxy #130 (fixed by #131): errors raised on proxied WebSocket connections (protocol violations,
// sockets failing under a peer) were emitted with no listener and crashed the process. Here every such error
// ends the connection it belongs to, is relayed as the peers' own bytes, and nothing escapes as unhandled.
import t from 'tap'
import { WebSocket } from 'ws'
import { gateway, origin, recordUnhandled, waitFor, within, wsUpstream } from '../helpers/servers.js'
import { acceptFor, headUpstream, parseFrames, parseHead, rawClient, switching, upgradeHead, WS_KEY, wsHandshakeHead, wsUrl } from '../helpers/ws.js'
import { request } from '../helpers/clients.js'

const unhandled = recordUnhandled(t)

t.test('a client sending unmasked frames: the upstream ws server\'s 1002 reaches the client, the tunnel is freed', async (t) => {
  const { server, wss } = await wsUpstream(t)
  const upstreamErrors: string[] = []
  wss.on('connection', (ws) => ws.on('error', (err) => upstreamErrors.push(err.message)))
  const { app, port } = await gateway(t, { upstream: origin(server) })
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead('/chat'))
  await client.contains('\r\n\r\n')
  const head = parseHead(client.text)
  t.equal(head.status, 101)
  t.equal(head.headers['sec-websocket-accept'], acceptFor(WS_KEY))
  const headLength = client.text.indexOf('\r\n\r\n') + 4
  // A text frame "hi" without the mask bit: RFC 6455 §5.1 requires servers to fail such a connection.
  client.socket.write(Buffer.from([0x81, 0x02, 0x68, 0x69]))
  await client.close()
  const frames = parseFrames(client.bytes.subarray(headLength))
  t.equal(frames.length, 1, 'one frame came back')
  t.equal(frames[0].opcode, 0x8, 'a close frame')
  t.equal(frames[0].payload.readUInt16BE(0), 1002, 'protocol error, as the upstream sent it')
  t.match(upstreamErrors, [/MASK must be set/], 'the error was the upstream\'s to handle')
  await waitFor(() => app.wsProxy.tunnels === 0 && wss.clients.size === 0, 2000, 'the tunnel and the upstream WebSocket to close')
})

t.test('an upstream sending a masked frame: the ws client fails with 1002/1006 and the gateway keeps serving', async (t) => {
  const upstream = await headUpstream(t, ({ socket, head }) => {
    const accept = acceptFor(/sec-websocket-key: (\S+)/i.exec(head)?.[1] ?? '')
    socket.write(switching('websocket').replace('\r\n\r\n', `\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`))
    // Servers must not mask (RFC 6455 §5.1): a masked "hi" from the server side is a protocol error for the client.
    socket.write(Buffer.from([0x81, 0x82, 1, 2, 3, 4, 0x68 ^ 1, 0x69 ^ 2]))
  })
  const { app, url } = await gateway(t, { upstream: origin(upstream) })
  const ws = new WebSocket(wsUrl(url, '/chat'))
  t.teardown(() => ws.terminate())
  const errors: string[] = []
  ws.on('error', (err) => errors.push(err.message))
  const [code] = await within(new Promise<[number]>((resolve) => ws.once('close', (c: number) => resolve([c]))), 3000, 'the client to close')
  t.match(errors, [/MASK must be clear/], 'the client saw the upstream\'s violation')
  t.ok(code === 1002 || code === 1006, `closed with ${code}`)
  await waitFor(() => app.wsProxy.tunnels === 0, 2000, 'the tunnel to close')
  await upstream.accepted[0].received.close()
  t.pass('the upstream socket was closed too')
  // This upstream answers 101 to anything: to a plain request, which asked for no upgrade, that is garbage.
  t.equal((await request(`${url}/after`)).status, 502, 'the gateway still answers')
})

t.test('a handshake the upstream ws server finds invalid: its 400 is relayed, then the connection closes', async (t) => {
  const { server, wss } = await wsUpstream(t)
  const { app, port } = await gateway(t, { upstream: origin(server) })
  // No Sec-WebSocket-Key and an unsupported version: `ws` refuses the upgrade with an HTTP answer.
  for (const extra of [['Sec-WebSocket-Version: 13'], ['Sec-WebSocket-Version: 99', `Sec-WebSocket-Key: ${WS_KEY}`]]) {
    const client = await rawClient(t, port)
    client.socket.write(upgradeHead('/chat', 'websocket', extra))
    await client.close()
    t.equal(parseHead(client.text).status, 400, extra.join(' + '))
  }
  t.equal(wss.clients.size, 0)
  t.equal(app.wsProxy.tunnels, 0)
})

t.test('a client flooding a tunnel whose upstream dies mid-stream: both sides end, no write error escapes', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => {
    socket.write(switching('websocket'))
    // Reset once some of the flood has arrived: the gateway's pending writes to it then fail (EPIPE/ECONNRESET).
    socket.on('data', () => { if (socket.bytesRead > 256 * 1024 && !socket.destroyed) socket.resetAndDestroy() })
  })
  const { app, port } = await gateway(t, { upstream: origin(upstream) })
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead('/flood'))
  await client.contains('\r\n\r\n')
  const chunk = Buffer.alloc(64 * 1024, 0x61)
  let written = 0
  const flood = setInterval(() => {
    if (client.socket.destroyed || written > 16 * 1024 * 1024) { clearInterval(flood); return }
    client.socket.write(chunk)
    written += chunk.length
  }, 1)
  t.teardown(() => clearInterval(flood))
  await client.close(5000)
  clearInterval(flood)
  t.ok(written > 256 * 1024, `the client had written ${written} bytes when its connection was closed`)
  await waitFor(() => app.wsProxy.tunnels === 0, 2000, 'the tunnel to close')
})

t.test('nothing above raised an unhandled error', async (t) => {
  t.same(unhandled, [])
})
