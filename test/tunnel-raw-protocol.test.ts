// Any protocol can be upgraded to, not only WebSocket: after the upstream's 101 the tunnel moves raw bytes and
// parses nothing. Bytes that ride along with either side's head (in the same TCP write) are part of the tunnel:
// each must reach the other side exactly once, in order, ahead of everything sent later.
import t from 'tap'
import { gateway, origin, waitFor } from './helpers/servers.js'
import { headUpstream, parseHead, pattern, rawClient, switching, switchingUpstream, upgradeHead } from './helpers/ws.js'

t.test('early bytes after both heads arrive once and in order, then binary flows both ways', async (t) => {
  const upstreamEarly = Buffer.from('UPSTREAM-EARLY\x00\xff|', 'latin1')
  const clientEarly = Buffer.from('CLIENT-EARLY\x00\xfe|', 'latin1')
  const upstream = await switchingUpstream(t, upstreamEarly)
  const { app, port } = await gateway(t, { upstream: origin(upstream) })
  const client = await rawClient(t, port)
  // The head and the first tunnel bytes in one write, before any 101.
  client.socket.write(Buffer.concat([Buffer.from(upgradeHead('/raw?proto=foo'), 'latin1'), clientEarly]))

  await client.until((r) => r.text.includes('\r\n\r\n') && r.length >= r.text.indexOf('\r\n\r\n') + 4 + upstreamEarly.length, 3000, 'the 101 and the upstream\'s early bytes')
  const headLength = client.text.indexOf('\r\n\r\n') + 4
  const head = parseHead(client.text)
  t.equal(head.statusLine, 'HTTP/1.1 101 Switching Protocols')
  t.equal(head.headers.upgrade, 'foo')
  t.match(head.headers.connection, /^upgrade$/i)
  t.ok(client.bytes.subarray(headLength).equals(upstreamEarly), 'the upstream\'s early bytes follow the 101, once')

  const [connection] = upstream.accepted
  await waitFor(() => connection.afterHead().length >= clientEarly.length, 2000, 'the client\'s early bytes upstream')
  t.ok(connection.afterHead().equals(clientEarly), 'the client\'s early bytes reach the upstream, once')
  const upstreamHead = parseHead(connection.head)
  t.equal(upstreamHead.headers.upgrade, 'foo', 'the upstream is asked for the client\'s protocol')
  t.equal(upstreamHead.headers.connection, 'upgrade')
  t.match(connection.head, /^GET \/raw\?proto=foo HTTP\/1\.1\r\n/)

  // Then arbitrary bytes, every byte value, both ways at once.
  const up = pattern(256 * 1024, 1)
  const down = pattern(300 * 1024 + 7, 2)
  client.socket.write(up)
  connection.socket.write(down)
  await waitFor(() => connection.afterHead().length >= clientEarly.length + up.length, 3000, 'client bytes upstream')
  await client.atLeast(headLength + upstreamEarly.length + down.length)
  t.ok(connection.afterHead().equals(Buffer.concat([clientEarly, up])), 'client → upstream: every byte, in order')
  t.ok(client.bytes.subarray(headLength).equals(Buffer.concat([upstreamEarly, down])), 'upstream → client: every byte, in order')
  t.equal(app.wsProxy.tunnels, 1)
  t.equal(app.wsProxy.upstreamConnections, 0, 'the tunnel\'s upstream socket left the pool')
})

t.test('bytes the client sends while the upstream is still deciding reach it after the 101, once', async (t) => {
  let answer: (() => void) | undefined
  const upstream = await headUpstream(t, ({ socket }) => {
    answer = () => socket.write(switching())
  })
  const { port } = await gateway(t, { upstream: origin(upstream) })
  const client = await rawClient(t, port)
  client.socket.write(upgradeHead('/later') + 'one|')
  await waitFor(() => answer !== undefined, 2000, 'the upgrade request upstream')
  // A second write while the handshake is pending: it waits in the client socket, it is not lost or parsed.
  await new Promise<void>((resolve) => client.socket.write('two|', () => resolve()))
  answer?.()
  await client.contains('\r\n\r\n')
  const [connection] = upstream.accepted
  await waitFor(() => connection.afterHead().length >= 8, 2000, 'the pending bytes upstream')
  client.socket.write('three|')
  await waitFor(() => connection.afterHead().length >= 14, 2000, 'the bytes sent after the 101')
  t.equal(connection.afterHead().toString(), 'one|two|three|')
})

t.test('Firefox\'s "Connection: keep-alive, Upgrade" upgrades too', async (t) => {
  const upstream = await switchingUpstream(t, 'hi')
  const { port } = await gateway(t, { upstream: origin(upstream) })
  const client = await rawClient(t, port)
  client.socket.write('GET /ff HTTP/1.1\r\nHost: gw\r\nConnection: keep-alive, Upgrade\r\nUpgrade: foo\r\n\r\n')
  await client.contains('\r\n\r\nhi')
  t.match(client.text, /^HTTP\/1\.1 101 Switching Protocols\r\n/)
  const upstreamHead = parseHead(upstream.accepted[0].head)
  t.equal(upstreamHead.headers.connection, 'upgrade', 'keep-alive is hop-by-hop: only the upgrade intent is passed on')
  t.notOk('keep-alive' in upstreamHead.headers)
})
