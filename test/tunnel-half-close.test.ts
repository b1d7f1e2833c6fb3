// How tunnels end. A FIN is passed on as a FIN (half-close: the other direction keeps flowing until its own FIN);
// a reset or a vanished peer destroys the other side; whatever happens, tunnels and upstream sockets return to 0.
import t from 'tap'
import { gateway, origin, waitFor } from './helpers/servers.js'
import { headUpstream, rawClient, switching, switchingUpstream, upgradeHead, type Received, type ScriptedServer } from './helpers/ws.js'

/** A raw client whose tunnel is open: the 101 has arrived and the upstream side is known. */
async function openTunnel (t: Parameters<typeof rawClient>[0], port: number, upstream: ScriptedServer, allowHalfOpen = false) {
  const client = await rawClient(t, port, allowHalfOpen)
  const index = upstream.accepted.length
  client.socket.write(upgradeHead('/half'))
  await client.contains('\r\n\r\n')
  const headLength = client.text.indexOf('\r\n\r\n') + 4
  await waitFor(() => upstream.accepted.length > index, 2000, 'the upstream connection')
  return { client, connection: upstream.accepted[index], tunnelBytes: (r: Received) => r.bytes.subarray(headLength).toString('latin1') }
}

t.test('client half-close: the upstream gets the bytes then EOF, and can still answer until it ends too', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => { socket.write(switching()) }, true)
  const { app, port } = await gateway(t, { upstream: origin(upstream) })
  const { client, connection, tunnelBytes } = await openTunnel(t, port, upstream)

  client.socket.end('last words from the client')
  await connection.received.end()
  t.equal(connection.afterHead().toString(), 'last words from the client', 'the bytes, then EOF')
  t.ok(connection.received.ended, 'the upstream saw EOF')
  t.notOk(connection.received.closed, 'its socket stays open for writing')

  connection.socket.write('the upstream still talks')
  await client.until((r) => tunnelBytes(r) === 'the upstream still talks', 2000, 'the answer after the half-close')
  t.notOk(client.ended, 'no EOF for the client yet')

  connection.socket.end(' and is done')
  await client.close()
  t.equal(tunnelBytes(client), 'the upstream still talks and is done')
  t.ok(client.ended, 'the client saw EOF after the last byte')
  await connection.received.close()
  t.pass('the upstream socket closed')
  await waitFor(() => app.wsProxy.tunnels === 0, 2000, 'the tunnel to go')
})

t.test('upstream half-close: the client gets the bytes then EOF, and can still send until it ends too', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => { socket.write(switching()) }, true)
  const { app, port } = await gateway(t, { upstream: origin(upstream) })
  const { client, connection, tunnelBytes } = await openTunnel(t, port, upstream, true)

  connection.socket.end('the upstream is done talking')
  await client.end()
  t.equal(tunnelBytes(client), 'the upstream is done talking')
  t.ok(client.ended)
  t.notOk(client.closed, 'the client can still write')

  client.socket.write('but the client is not')
  await connection.received.until((r) => r.text.endsWith('but the client is not'), 2000, 'the client\'s bytes after the upstream\'s FIN')
  client.socket.end()
  await connection.received.close()
  await client.close()
  t.equal(connection.afterHead().toString(), 'but the client is not')
  await waitFor(() => app.wsProxy.tunnels === 0, 2000, 'the tunnel to go')
})

t.test('a client reset destroys the upstream side', async (t) => {
  const upstream = await switchingUpstream(t)
  const { app, port } = await gateway(t, { upstream: origin(upstream) })
  const { client, connection } = await openTunnel(t, port, upstream)
  client.socket.write('bytes before the reset')
  await connection.received.until((r) => r.text.endsWith('bytes before the reset'), 2000, 'bytes upstream')
  client.socket.resetAndDestroy()
  await connection.received.close()
  t.pass('the upstream socket closed')
  await waitFor(() => app.wsProxy.tunnels === 0, 2000, 'the tunnel to go')
})

t.test('an upstream reset destroys the client side', async (t) => {
  const upstream = await switchingUpstream(t)
  const { app, port } = await gateway(t, { upstream: origin(upstream) })
  const { client, connection, tunnelBytes } = await openTunnel(t, port, upstream)
  connection.socket.write('bytes before the reset')
  await client.until((r) => tunnelBytes(r) === 'bytes before the reset', 2000, 'bytes at the client')
  connection.socket.resetAndDestroy()
  await client.close()
  t.pass('the client socket closed')
  await waitFor(() => app.wsProxy.tunnels === 0, 2000, 'the tunnel to go')
  t.equal(app.wsProxy.upstreamConnections, 0)
})

t.test('200 clients vanishing mid-tunnel leave no tunnel and no upstream socket behind', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => {
    socket.write(switching())
    // A chatty upstream: something is always in flight when the client disappears.
    socket.on('data', (chunk: Buffer) => { if (!socket.destroyed) socket.write(chunk) })
  })
  const { app, port } = await gateway(t, { upstream: origin(upstream) })
  const opened = await Promise.all(Array.from({ length: 200 }, async (_, i) => {
    const tunnel = await openTunnel(t, port, upstream)
    tunnel.client.socket.write(`client ${i} `.repeat(100))
    return tunnel
  }))
  t.equal(app.wsProxy.tunnels, 200)
  t.equal(upstream.accepted.length, 200)
  opened.forEach(({ client }, i) => {
    // Half reset (RST), half plain destroy (FIN, then gone): both are abrupt for a tunnel.
    if (i % 2 === 0) client.socket.resetAndDestroy()
    else client.socket.destroy()
  })
  await waitFor(() => app.wsProxy.tunnels === 0, 5000, 'every tunnel to go')
  await waitFor(() => upstream.accepted.every((c) => c.received.closed), 5000, 'every upstream socket to close')
  t.equal(app.wsProxy.upstreamConnections, 0)
  t.pass('200 tunnels and their upstream sockets are gone')
})
