// nginx proxy_read_timeout on an upgraded connection: the tunnel is closed when the upstream has sent nothing for
// `timeouts.read` ms. Only the upstream's silence counts: a chatty client does not keep a silent upstream's tunnel
// open (nginx behaves the same), while an upstream that keeps talking keeps it open indefinitely.
import t from 'tap'
import { gateway, origin, waitFor, wsUpstream } from './helpers/servers.js'
import { headUpstream, logCapture, openWs, rawClient, switching, upgradeHead, wsClosed, wsUrl, type ScriptedServer } from './helpers/ws.js'

async function tunnelTo (t: Parameters<typeof rawClient>[0], port: number, upstream: ScriptedServer) {
  const client = await rawClient(t, port)
  client.socket.write(upgradeHead('/idle'))
  await client.contains('\r\n\r\n')
  return { client, openedAt: Date.now(), connection: upstream.accepted[upstream.accepted.length - 1] }
}

t.test('a tunnel whose upstream sends nothing is closed after timeouts.read, and the close is logged', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => { socket.write(switching()) })
  const logs = logCapture()
  const { app, port } = await gateway(t, { upstream: origin(upstream), timeouts: { read: 300 } }, { logger: { level: 'info', stream: logs.stream } })
  const { client, openedAt, connection } = await tunnelTo(t, port, upstream)
  await client.close(3000)
  const lived = Date.now() - openedAt
  t.ok(lived >= 250 && lived <= 1500, `closed after ${lived} ms (timeouts.read 300)`)
  await connection.received.close()
  t.pass('the upstream socket was closed too')
  await waitFor(() => app.wsProxy.tunnels === 0, 2000, 'the tunnel to go')
  const record = logs.records.find((r) => r.msg === 'tunnel read timeout')
  t.match(record, { level: 30, reason: 'read-timeout', code: 'FST_WS_PROXY_TUNNEL_READ_TIMEOUT', upstream: origin(upstream), after: 300 })
  t.notOk(record !== undefined && 'err' in record, 'no error (nor its stack) for a timeout')
})

t.test('a chatty client does not keep a silent upstream\'s tunnel open', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => { socket.write(switching()) })
  const { port } = await gateway(t, { upstream: origin(upstream), timeouts: { read: 300 } })
  const { client, openedAt, connection } = await tunnelTo(t, port, upstream)
  let sent = 0
  const chatter = setInterval(() => {
    if (!client.socket.destroyed) client.socket.write(`tick ${sent++}|`)
  }, 50)
  t.teardown(() => clearInterval(chatter))
  await client.close(3000)
  clearInterval(chatter)
  const lived = Date.now() - openedAt
  t.ok(lived >= 250 && lived <= 1500, `closed after ${lived} ms despite the client's traffic`)
  t.ok(sent >= 3, `the client sent ${sent} messages meanwhile`)
  t.match(connection.afterHead().toString(), /^tick 0\|tick 1\|tick 2\|/, 'and they did reach the upstream')
})

t.test('a tunnel whose upstream talks every 100 ms stays open well past timeouts.read', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => {
    socket.write(switching())
    let n = 0
    const timer = setInterval(() => { if (!socket.destroyed) socket.write(`beat ${n++}|`) }, 100)
    socket.on('close', () => clearInterval(timer))
  })
  const { app, port } = await gateway(t, { upstream: origin(upstream), timeouts: { read: 300 } })
  const { client, openedAt } = await tunnelTo(t, port, upstream)
  // Twelve heartbeats take ~1.2 s: four read timeouts' worth.
  await client.contains('beat 11|', 5000)
  t.ok(Date.now() - openedAt >= 1000, 'open for more than a second')
  t.notOk(client.closed, 'still open')
  t.equal(app.wsProxy.tunnels, 1)
})

t.test('a WebSocket with a silent upstream is closed after timeouts.read (Close 1001 at the client)', async (t) => {
  const { server } = await wsUpstream(t)
  const { app, url } = await gateway(t, { upstream: origin(server), timeouts: { read: 300 } })
  const ws = await openWs(t, wsUrl(url, '/quiet'))
  const openedAt = Date.now()
  const { code } = await wsClosed(ws, 3000)
  const lived = Date.now() - openedAt
  t.equal(code, 1001)
  t.ok(lived >= 250 && lived <= 1500, `closed after ${lived} ms`)
  await waitFor(() => app.wsProxy.tunnels === 0, 2000, 'the tunnel to go')
})

t.test('each route keeps its own tunnel read timeout', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => { socket.write(switching()) })
  const { port } = await gateway(t, {
    routes: [
      { prefix: '/fast/', upstream: origin(upstream), timeouts: { read: 200 } },
      { prefix: '/slow/', upstream: origin(upstream), timeouts: { read: 5000 } }
    ]
  })
  const fast = await rawClient(t, port)
  fast.socket.write(upgradeHead('/fast/x'))
  const slow = await rawClient(t, port)
  slow.socket.write(upgradeHead('/slow/x'))
  await slow.contains('\r\n\r\n')
  await fast.close(3000)
  t.pass('the 200 ms tunnel closed')
  t.notOk(slow.closed, 'the 5 s tunnel is still open')
})
