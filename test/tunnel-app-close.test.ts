// app.close() with live tunnels and pooled keep-alive connections: tunnels would keep server.close() waiting
// forever, so they are closed first (preClose: a Close 1001 to WebSocket peers, a half-close for other tunnels);
// the pools are closed after. Everything must end promptly and leave no socket or timer behind.
import t from 'tap'
import type { Socket } from 'node:net'
import { gateway, httpUpstream, origin, waitFor, wsUpstream } from './helpers/servers.js'
import { request } from './helpers/clients.js'
import { closed, headUpstream, openWs, rawClient, switching, upgradeHead, wsClosed, wsUrl, type CloseEvent } from './helpers/ws.js'

/** Active handles of the kinds a leak would show as, counted by type. */
function handles (): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const type of process.getActiveResourcesInfo()) {
    if (type === 'TCPSocketWrap' || type === 'TCPServerWrap' || type === 'Timeout') counts[type] = (counts[type] ?? 0) + 1
  }
  return counts
}

t.test('app.close() with live tunnels and pooled sockets resolves promptly and leaves nothing behind', async (t) => {
  const upstreamSockets: Socket[] = []
  const http = await httpUpstream(t)
  const { server: wsServer } = await wsUpstream(t)
  const raw = await headUpstream(t, ({ socket }) => { socket.write(switching()) })
  for (const server of [http, wsServer, raw]) server.on('connection', (socket: Socket) => upstreamSockets.push(socket))
  const before = handles()

  const { app, url, port } = await gateway(t, {
    routes: [
      { prefix: '/api/', upstream: origin(http) },
      { prefix: '/ws/', upstream: origin(wsServer) },
      { prefix: '/raw/', upstream: origin(raw) }
    ]
  })
  // Keep-alive connections in the pool: two requests in parallel need two connections.
  const answers = await Promise.all([request(`${url}/api/a`), request(`${url}/api/b`)])
  t.same(answers.map((a) => a.status), [200, 200])
  t.equal(app.wsProxy.upstreamConnections, 2, 'two idle keep-alive connections are pooled')

  const sockets = await Promise.all([1, 2, 3].map(async (i) => openWs(t, wsUrl(url, `/ws/${i}`))))
  const wsCloses: Array<Promise<CloseEvent>> = sockets.map(async (ws) => wsClosed(ws))
  const rawTunnel = await rawClient(t, port)
  rawTunnel.socket.write(upgradeHead('/raw/x'))
  await rawTunnel.contains('\r\n\r\n')
  t.equal(app.wsProxy.tunnels, 4)

  const started = Date.now()
  await app.close()
  const took = Date.now() - started
  t.ok(took < 2000, `app.close() resolved in ${took} ms`)
  t.equal(app.wsProxy.upstreamConnections, 0)
  // The tunnels' sockets were destroyed before close() resolved; their 'close' events follow within a tick or two.
  await waitFor(() => app.wsProxy.tunnels === 0, 1000, 'the destroyed tunnels to report closed')

  const codes = await Promise.all(wsCloses)
  t.same(codes.map((c) => c.code), [1001, 1001, 1001], 'every WebSocket client got a Close 1001 "going away"')
  await rawTunnel.close()
  t.pass('the raw tunnel client saw its connection close')
  await Promise.all(upstreamSockets.map(async (socket) => closed(socket, 2000, 'an upstream socket to close')))
  t.equal(upstreamSockets.length, 6, 'two pooled + four tunnelled upstream sockets, all closed')

  await waitFor(() => {
    const after = handles()
    return after.TCPSocketWrap === before.TCPSocketWrap && after.TCPServerWrap === before.TCPServerWrap
  }, 2000, 'the TCP handles to be released')
  const after = handles()
  t.equal(after.TCPSocketWrap, before.TCPSocketWrap, 'no TCP socket left')
  t.equal(after.TCPServerWrap, before.TCPServerWrap, 'no listening socket left')
  t.ok((after.Timeout ?? 0) <= (before.Timeout ?? 0) + 1, `no timers left (${before.Timeout ?? 0} before, ${after.Timeout ?? 0} after)`)
})

t.test('app.close() while a handshake waits for the upstream: no tunnel outlives the app', async (t) => {
  let answer: (() => void) | undefined
  const upstream = await headUpstream(t, ({ socket }) => { answer = () => socket.write(switching()) })
  const { app, port } = await gateway(t, { upstream: origin(upstream), timeouts: { read: 3000 } })
  const client = await rawClient(t, port)
  client.socket.write(upgradeHead('/pending'))
  await waitFor(() => answer !== undefined, 2000, 'the handshake upstream')
  const closing = app.close()
  // The upstream says yes once the app is already closing.
  answer?.()
  const started = Date.now()
  await closing
  t.ok(Date.now() - started < 2000, 'app.close() resolved promptly')
  await client.close()
  t.pass('the client connection was closed')
  await upstream.accepted[0].received.close()
  t.pass('the upstream connection was closed')
  await waitFor(() => app.wsProxy.tunnels === 0, 1000, 'no tunnel')
})
