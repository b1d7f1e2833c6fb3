// How a tunnel reads its sockets (src/upgrade/tunnel-reads.ts): plain TCP sockets are read in place (into one shared
// buffer, small chunks copied out of it, big reads into a buffer of the socket's own, read into again while nothing
// holds its last chunk), and the bytes arrive whole and in order whatever the mix of message sizes. The last chunk read from each side is held until the next one
// (bulk tunnels keep glibc from trimming its heap after each GC), and the sweep lets go of it: an idle tunnel holds
// no read buffer.
import t from 'tap'
import type { Socket } from 'node:net'
import type { WebSocket } from 'ws'
import { gateway, origin, waitFor, wsUpstream, type Teardown } from './helpers/servers.js'
import { messages, openWs, pattern, wsUrl } from './helpers/ws.js'
import { kTunnel } from '../src/symbols.js'
import type { Tunnel } from '../src/upgrade/tunnel.js'
import { MAX_DROPS } from '../src/upgrade/tunnel-reads.js'

/** The tunnels behind the gateway's connections (a tunnel's client socket is the server's). */
function tunnelsOf (server: { on (event: 'connection', fn: (socket: Socket) => void): unknown }): () => Tunnel[] {
  const sockets: Socket[] = []
  server.on('connection', (socket) => sockets.push(socket))
  return () => sockets.map((s) => (s as Socket & { [kTunnel]?: Tunnel })[kTunnel]).filter((x): x is Tunnel => x !== undefined)
}

/** The buffer `socket` reads into when it is read in place (Node's `onread` field), else null. */
function readBuffer (socket: Socket): Buffer | null {
  const field = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'kBuffer')
  const buffer = field === undefined ? null : (socket as unknown as Record<symbol, unknown>)[field]
  return Buffer.isBuffer(buffer) ? buffer : null
}

function readsInPlace (socket: Socket): boolean {
  return readBuffer(socket) !== null
}

/** A client's WebSocket through a gateway with `timeouts.idle` 1000 ms (the sweep ticks every 100 ms), and its tunnel. */
async function swept (t: Teardown): Promise<{ ws: WebSocket, tunnel: Tunnel }> {
  const { server } = await wsUpstream(t)
  const { app, url } = await gateway(t, { upstream: origin(server), timeouts: { idle: 1000 } })
  const tunnels = tunnelsOf(app.server)
  const ws = await openWs(t, wsUrl(url))
  await waitFor(() => tunnels().length === 1, 2000, 'the tunnel')
  return { ws, tunnel: tunnels()[0] }
}

t.test('plain TCP sockets are read in place; messages of every size arrive whole and in order both ways', async (t) => {
  const { server } = await wsUpstream(t, { maxPayload: 8 * 1024 * 1024 })
  const { app, url } = await gateway(t, { upstream: origin(server) })
  const tunnels = tunnelsOf(app.server)
  const ws = await openWs(t, wsUrl(url), undefined, { maxPayload: 8 * 1024 * 1024 })
  await waitFor(() => tunnels().length === 1, 2000, 'the tunnel')
  const tunnel = tunnels()[0]
  t.ok(readsInPlace(tunnel.client), 'the client socket is read in place')
  t.ok(readsInPlace(tunnel.upstream), 'the upstream socket is read in place')
  // Small (copied out of the shared buffer), big (reads of 16 KiB and more move to a buffer of the socket's own),
  // then small again (back to the shared buffer after two), and a burst of small ones sharing reads.
  const sizes = [1, 64, 125, 126, 4000, 20_000, 65_536, 70_000, 1024 * 1024, 3 * 1024 * 1024, 64, 2, 300_000, 10]
  const sent = sizes.map((n, i) => pattern(n, i))
  for (const payload of sent) ws.send(payload)
  const echoed = await messages(ws, sent.length, 10_000)
  t.same(echoed.map((m) => m.data.length), sizes, 'every message came back with its size')
  t.ok(echoed.every((m, i) => m.data.equals(sent[i])), 'and its bytes, in order')
  const burst = Array.from({ length: 200 }, (_, i) => pattern(64 + (i % 7), i))
  for (const payload of burst) ws.send(payload)
  const back = await messages(ws, burst.length, 10_000)
  t.ok(back.every((m, i) => m.data.equals(burst[i])), '200 small messages sent at once came back intact and in order')
  // The client's frames carry a 4-byte mask key each; otherwise the echo is byte for byte what was sent.
  t.equal(tunnel.bytesFromClient - tunnel.bytesFromUpstream, 4 * (sent.length + burst.length), 'the tunnel counted every byte each way')
})

t.test('an idle tunnel lets go of the last chunks it read at the next sweep', async (t) => {
  const { ws, tunnel } = await swept(t)
  // Caught between two sweeps: the chunks are held right after the echo.
  let heldBoth = false
  let last = pattern(100, 0)
  for (let attempt = 0; attempt < 20 && !heldBoth; attempt++) {
    last = pattern(100, attempt)
    ws.send(last)
    await messages(ws, 1)
    heldBoth = tunnel.lastFromClient !== null && tunnel.lastFromUpstream !== null
  }
  t.ok(heldBoth, 'after a round trip the tunnel holds the last chunk from each side')
  // The upstream's echo: an unmasked binary frame, a 2-byte header and the payload.
  t.same(tunnel.lastFromUpstream?.subarray(2), last, 'the chunk held from the upstream is the echo')
  await waitFor(() => tunnel.lastFromClient === null && tunnel.lastFromUpstream === null, 1000, 'the sweep to release the chunks')
  t.pass('within a sweep tick of going idle, it holds none')
  t.equal(tunnel.closing, false, 'and the tunnel is still open')
  ws.send('still there')
  t.equal((await messages(ws, 1))[0].data.toString(), 'still there', 'and still relays')
})

t.test('the sweep points an idle socket that read big back at the shared buffer, a few times per tunnel at most', async (t) => {
  // Each cycle below is idle for much less than a sweep tick.
  const { ws, tunnel } = await swept(t)
  const shared = readBuffer(tunnel.client)
  t.ok(shared !== null && shared === readBuffer(tunnel.upstream), 'both sockets start on the one shared buffer')
  const bothShared = (): boolean => readBuffer(tunnel.client) === shared && readBuffer(tunnel.upstream) === shared
  let cycles = 0
  // A 256 KiB frame is read in big reads: each side moves to a buffer of its own, which the sweep takes back once the
  // side is idle (one small read at the frame's end does not take it back by itself).
  for (; cycles < 40 && tunnel.readBuffersDropped < MAX_DROPS; cycles++) {
    const payload = pattern(256 * 1024 - 14, cycles)
    ws.send(payload)
    const [echo] = await messages(ws, 1)
    if (!echo.data.equals(payload)) t.fail(`cycle ${cycles}: the echo differs`)
    await waitFor(() => bothShared() || tunnel.readBuffersDropped === MAX_DROPS, 1000, 'the idle sides back on the shared buffer')
  }
  t.equal(tunnel.readBuffersDropped, MAX_DROPS, `after ${cycles} cycles of bulk then idle, the sweep took buffers back ${MAX_DROPS} times`)
  for (let i = 0; i < 3; i++) {
    ws.send(pattern(256 * 1024, i))
    await messages(ws, 1)
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
  t.equal(tunnel.readBuffersDropped, MAX_DROPS, 'and no more after that')
  ws.send('small')
  t.equal((await messages(ws, 1))[0].data.toString(), 'small', 'the tunnel still relays')
})

/** The spare read buffer tunnel-reads.ts keeps on a socket back on the shared buffer after bulk, or null. */
function spareOf (socket: Socket): Buffer | null {
  const field = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'fastify-ws-proxy.readSpare')
  const spare = field === undefined ? null : (socket as unknown as Record<symbol, unknown>)[field]
  return Buffer.isBuffer(spare) ? spare : null
}

t.test('bulk reads reuse one buffer of the socket\'s own while its peer takes the chunks at once; a small read moves back to the shared buffer and keeps it as a spare until the sweep', async (t) => {
  const { ws, tunnel } = await swept(t)
  const shared = readBuffer(tunnel.client)
  const ownOf = (socket: Socket): Buffer | null => readBuffer(socket) === shared ? spareOf(socket) : readBuffer(socket)
  const seen = { client: new Set<Buffer | null>(), upstream: new Set<Buffer | null>() }
  for (let i = 0; i < 8; i++) {
    const payload = pattern(256 * 1024, i)
    ws.send(payload)
    const [echo] = await messages(ws, 1)
    if (!echo.data.equals(payload)) t.fail(`message ${i}: the echo differs`)
    if (i === 0) continue
    seen.client.add(ownOf(tunnel.client))
    seen.upstream.add(ownOf(tunnel.upstream))
  }
  t.notOk(seen.client.has(null) || seen.upstream.has(null), 'both sockets kept a buffer of their own meanwhile')
  // One loopback write that does not go out at once (the kernel's buffer full for a moment) costs a new buffer.
  t.ok(seen.client.size <= 2 && seen.upstream.size <= 2,
    `7 messages of 256 KiB each way went through ${seen.client.size} and ${seen.upstream.size} buffers (at most 2)`)
  ws.send(pattern(100, 0))
  await messages(ws, 1)
  t.equal(readBuffer(tunnel.client), shared, 'after a small message the client socket reads into the shared buffer again')
  t.equal(readBuffer(tunnel.upstream), shared, 'and so does the upstream socket')
  t.ok(spareOf(tunnel.client) !== null && spareOf(tunnel.upstream) !== null, 'each keeps its own buffer as a spare')
  const big = pattern(256 * 1024, 9)
  ws.send(big)
  t.ok((await messages(ws, 1))[0].data.equals(big), 'the next big message came back intact (read through the spares)')
  ws.send(pattern(100, 1))
  await messages(ws, 1)
  await waitFor(() => spareOf(tunnel.client) === null && spareOf(tunnel.upstream) === null, 2000, 'the sweep to let go of the spares')
  t.equal(tunnel.readBuffersDropped, 0, 'idle, the tunnel holds no read buffer, and no socket had to be pointed back')
})
