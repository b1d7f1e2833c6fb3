// Backpressure through the tunnel: when one side stops reading, the gateway stops reading the other side (its
// write buffers stay small, the sender's writes start returning false and stall), and when the reader comes back
// every byte is delivered intact. Without it, a fast upstream and a slow client would grow the gateway's memory.
import t from 'tap'
import { createHash } from 'node:crypto'
import type { Socket } from 'node:net'
import { gateway, origin, waitFor } from './helpers/servers.js'
import { headUpstream, rawClient, switching, upgradeHead } from './helpers/ws.js'

const CHUNK = 64 * 1024
const TOTAL = 48 * 1024 * 1024

/** Chunk `i` of a flood: its index in the first 4 bytes, then a fixed pattern; any loss or reorder changes the hash. */
function chunk (i: number): Buffer {
  const buf = Buffer.alloc(CHUNK, i & 0xff)
  buf.writeUInt32BE(i, 0)
  return buf
}

/** Writes TOTAL bytes to `socket` as fast as it accepts them, honouring backpressure; reports what it did. */
function flood (socket: Socket) {
  const state = { written: 0, blockedAt: 0, blocked: false, done: false, hash: createHash('sha256'), digest: '' }
  let i = 0
  const pump = (): void => {
    state.blocked = false
    while (state.written < TOTAL && !socket.destroyed) {
      const buf = chunk(i++)
      state.hash.update(buf)
      state.written += buf.length
      if (!socket.write(buf)) {
        state.blocked = true
        state.blockedAt = Date.now()
        socket.once('drain', pump)
        return
      }
    }
    state.done = true
    state.digest = state.hash.digest('hex')
  }
  pump()
  return state
}

/** True once `state` has stayed blocked (no drain) for `ms`: the sender is stalled, not just briefly full. */
function stalledFor (state: { blocked: boolean, blockedAt: number }, ms: number): boolean {
  return state.blocked && Date.now() - state.blockedAt >= ms
}

t.test('a client that does not read stalls a flooding upstream; resuming delivers everything intact', async (t) => {
  let floodState: ReturnType<typeof flood> | undefined
  const upstream = await headUpstream(t, ({ socket }) => {
    socket.write(switching())
    floodState = flood(socket)
  })
  const gatewaySockets: Socket[] = []
  const { app, port } = await gateway(t, { upstream: origin(upstream) }, {}, (app) => {
    app.server.on('connection', (socket: Socket) => gatewaySockets.push(socket))
  })
  const client = await rawClient(t, port)
  client.socket.write(upgradeHead('/flood'))
  await client.contains('\r\n\r\n')
  client.socket.pause()
  const headLength = client.text.indexOf('\r\n\r\n') + 4

  // Stalled: the upstream's writes return false and no drain comes for half a second.
  await waitFor(() => floodState !== undefined && stalledFor(floodState, 500), 10_000, 'the upstream to stall')
  const state = floodState as ReturnType<typeof flood>
  t.ok(state.written < TOTAL / 2, `the upstream stalled after ${(state.written / 1048576).toFixed(1)} MiB of ${TOTAL / 1048576}`)
  t.notOk(state.done)
  const [gatewayClientSocket] = gatewaySockets
  t.ok(gatewayClientSocket.writableLength < 1024 * 1024, `the gateway buffers ${gatewayClientSocket.writableLength} bytes for the client (< 1 MiB)`)

  client.socket.resume()
  await client.atLeast(headLength + TOTAL, 20_000)
  t.ok(state.done, 'the upstream finished once the client read again')
  const received = createHash('sha256')
  let skip = headLength
  for (const c of client.chunks) {
    if (skip >= c.length) {
      skip -= c.length
      continue
    }
    received.update(skip > 0 ? c.subarray(skip) : c)
    skip = 0
  }
  t.equal(client.length - headLength, TOTAL, 'every byte arrived, no more')
  t.equal(received.digest('hex'), state.digest, 'in order and intact')
  t.equal(app.wsProxy.tunnels, 1)
})

t.test('an upstream that does not read stalls a flooding client; resuming delivers everything intact', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => {
    socket.pause()
    socket.write(switching())
  })
  const { port } = await gateway(t, { upstream: origin(upstream) })
  const client = await rawClient(t, port)
  client.socket.write(upgradeHead('/flood-up'))
  await client.contains('\r\n\r\n')
  const state = flood(client.socket)
  await waitFor(() => stalledFor(state, 500), 10_000, 'the client to stall')
  t.ok(state.written < TOTAL / 2, `the client stalled after ${(state.written / 1048576).toFixed(1)} MiB`)

  const [connection] = upstream.accepted
  const headLength = Buffer.byteLength(connection.head, 'latin1')
  connection.socket.resume()
  await connection.received.atLeast(headLength + TOTAL, 20_000)
  t.ok(state.done)
  t.equal(connection.received.length - headLength, TOTAL)
  const hash = createHash('sha256').update(connection.afterHead()).digest('hex')
  t.equal(hash, state.digest, 'in order and intact')
})
