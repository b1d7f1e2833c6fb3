// The frame tracker behind graceful shutdown and keep-alive pings (src/upgrade/frame-tracker.ts, frame-relay.ts,
// control-frames.ts). TCP splits a byte stream anywhere, so every case is run with the stream cut at every byte
// position (and in three at a few): the bytes that reach the receiving socket must be exactly the frames that
// should go on, with the proxy's own control frame between two frames, never inside one. The receiver is a real
// loopback socket.
import t from 'tap'
import net, { type Socket } from 'node:net'
import { goingAwayFrame, pingFrame } from '../src/upgrade/control-frames.js'
import { relayFrames } from '../src/upgrade/frame-relay.js'
import { FrameStream, track, type FrameEvents } from '../src/upgrade/frame-tracker.js'
import { listen, within } from './helpers/servers.js'
import { parseFrames } from './helpers/ws.js'

/** A frame as a sender writes it; masked frames are what clients send. */
function frame (opcode: number, payload: Buffer, masked: boolean, fin = true): Buffer {
  const length = payload.length
  const extended = length < 126 ? 0 : length < 65536 ? 2 : 8
  const head = Buffer.alloc(2 + extended + (masked ? 4 : 0))
  head[0] = (fin ? 0x80 : 0) | opcode
  head[1] = (masked ? 0x80 : 0) | (extended === 0 ? length : extended === 2 ? 126 : 127)
  if (extended === 2) head.writeUInt16BE(length, 2)
  if (extended === 8) head.writeUInt32BE(length, 6)
  if (!masked) return Buffer.concat([head, payload])
  const key = Buffer.from([0x12, 0x34, 0x56, 0x78])
  key.copy(head, 2 + extended)
  const body = Buffer.from(payload.map((byte, i) => byte ^ key[i & 3]))
  return Buffer.concat([head, body])
}

const text = (s: string, masked = false): Buffer => frame(0x1, Buffer.from(s), masked)
const bytesOf = (n: number, seed: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff))

interface Recorded extends FrameEvents {
  pongs: number
  answered: number
  lost: number
}

function recorder (): Recorded {
  return {
    pongs: 0,
    answered: 0,
    lost: 0,
    pongReceived () { this.pongs++ },
    closeAnswered () { this.answered++ },
    framesLost () { this.lost++ }
  }
}

/** A connected loopback pair: writes go to `to`; `received()` resolves with every byte once `to` is ended. */
async function pair (t: Parameters<typeof listen>[0]): Promise<{ to: Socket, received: () => Promise<Buffer> }> {
  const chunks: Buffer[] = []
  let ended: () => void
  const done = new Promise<void>((resolve) => { ended = resolve })
  const server = await listen(t, net.createServer((socket) => {
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('end', () => { socket.end(); ended() })
  }))
  const to = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
  t.teardown(() => { to.destroy() })
  await within(new Promise((resolve) => to.once('connect', resolve)), 2000, 'the loopback pair to connect')
  return {
    to,
    received: async () => {
      to.end()
      await within(done, 2000, 'the receiver to see the end')
      return Buffer.concat(chunks)
    }
  }
}

/** Feeds `chunks` the way the tunnel does: `track` then write on the fast path, `relayFrames` when something is pending. */
function feed (s: FrameStream, to: Socket, chunk: Buffer): void {
  if (s.slow) {
    relayFrames(s, chunk, to)
    return
  }
  track(s, chunk)
  to.write(chunk)
}

function cuts (length: number): number[] {
  return Array.from({ length: length + 1 }, (_, i) => i)
}

t.test('the proxy\'s pong is consumed wherever the stream is cut; every other frame goes on byte for byte', async (t) => {
  const { payload } = pingFrame()
  const ours = frame(0xa, payload, true)
  const before = Buffer.concat([text('hello', true), frame(0xa, Buffer.from('not ours'), true)])
  const after = Buffer.concat([frame(0xa, bytesOf(8, 1), true), frame(0x2, bytesOf(300, 2), true), text('bye', true)])
  const stream = Buffer.concat([before, ours, after])
  const expected = Buffer.concat([before, after])
  for (const cut of cuts(stream.length)) {
    const { to, received } = await pair(t)
    const events = recorder()
    const s = new FrameStream(true, events)
    s.pongPayload = payload
    s.refresh()
    feed(s, to, stream.subarray(0, cut))
    feed(s, to, stream.subarray(cut))
    const got = await received()
    if (!got.equals(expected) || events.pongs !== 1) {
      t.fail(`cut at ${cut}: ${got.length} bytes relayed (expected ${expected.length}), ${events.pongs} pongs consumed`)
      return
    }
    t.equal(s.slow, false, 'back on the fast path once the pong is in')
  }
  t.pass(`${stream.length + 1} cut positions`)
})

t.test('a pong split across three chunks, its header included, is still recognised', async (t) => {
  const { payload } = pingFrame()
  const stream = Buffer.concat([text('a', true), frame(0xa, payload, true), text('b', true)])
  for (const first of [1, 7, 8, 9, 10]) {
    for (const second of [first + 1, first + 3, first + 9]) {
      const { to, received } = await pair(t)
      const events = recorder()
      const s = new FrameStream(true, events)
      s.pongPayload = payload
      s.refresh()
      for (const chunk of [stream.subarray(0, first), stream.subarray(first, second), stream.subarray(second)]) feed(s, to, chunk)
      t.same(await received(), Buffer.concat([text('a', true), text('b', true)]), `cuts at ${first} and ${second}`)
      t.equal(events.pongs, 1)
    }
  }
})

t.test('an unmasked pong with our payload (a client breaking RFC 6455 §5.3) is recognised all the same', async (t) => {
  const { payload } = pingFrame()
  const { to, received } = await pair(t)
  const events = recorder()
  const s = new FrameStream(true, events)
  s.pongPayload = payload
  s.refresh()
  feed(s, to, Buffer.concat([frame(0xa, payload, false), text('x', true)]))
  t.same(await received(), text('x', true))
  t.equal(events.pongs, 1)
})

t.test('a Close injected while a pong is held back: the pong is dropped with everything after the Close', async (t) => {
  const { payload } = pingFrame()
  const pong = frame(0xa, Buffer.from(payload.map((byte) => byte ^ 1)), true)
  const { to, received } = await pair(t)
  const events = recorder()
  const s = new FrameStream(true, events)
  s.pongPayload = payload
  s.refresh()
  feed(s, to, Buffer.concat([text('before', true), pong.subarray(0, 9)]))
  t.equal(s.inject(goingAwayFrame(true), true, to), true, 'a held frame starts on a boundary: written at once')
  feed(s, to, Buffer.concat([pong.subarray(9), text('after', true)]))
  const got = await received()
  t.same(got.subarray(0, 12), text('before', true))
  t.equal(got.length, 12 + 8, 'then only the masked Close')
  t.equal(events.pongs, 0)
})

t.test('a pong that only looks like ours (same length, other bytes) goes on', async (t) => {
  const { payload } = pingFrame()
  const other = Buffer.from(payload.map((byte) => byte ^ 0xff))
  const stream = frame(0xa, other, true)
  const { to, received } = await pair(t)
  const events = recorder()
  const s = new FrameStream(true, events)
  s.pongPayload = payload
  s.refresh()
  feed(s, to, stream.subarray(0, 5))
  feed(s, to, stream.subarray(5))
  t.same(await received(), stream)
  t.equal(events.pongs, 0)
  t.equal(s.pongPayload, payload, 'still waiting for ours')
})

t.test('a Close injected mid-stream lands on the next boundary: nothing of the sender follows it', async (t) => {
  const frames = [text('first'), frame(0x2, bytesOf(300, 3), false), frame(0x2, bytesOf(20, 4), false, false),
    frame(0x0, bytesOf(40, 5), false), text('last')]
  const stream = Buffer.concat(frames)
  const ends: number[] = []
  for (const f of frames) ends.push((ends.at(-1) ?? 0) + f.length)
  const close = goingAwayFrame(false)
  for (const cut of cuts(stream.length)) {
    const { to, received } = await pair(t)
    const events = recorder()
    const s = new FrameStream(false, events)
    feed(s, to, stream.subarray(0, cut))
    s.inject(close, true, to)
    feed(s, to, stream.subarray(cut))
    // Everything up to the end of the frame the cut fell in (or the cut itself, on a boundary), then the Close.
    const boundary = cut === 0 ? 0 : ends.find((end) => end >= cut) as number
    const expected = Buffer.concat([stream.subarray(0, boundary), close])
    const got = await received()
    if (!got.equals(expected)) {
      t.fail(`cut at ${cut}: got ${got.length} bytes, expected ${expected.length} (boundary ${boundary})`)
      return
    }
  }
  t.pass(`${stream.length + 1} cut positions`)
})

t.test('a Close injected while the sender is silent on a boundary is written at once', async (t) => {
  const { to, received } = await pair(t)
  const s = new FrameStream(false, recorder())
  feed(s, to, text('one'))
  t.equal(s.inject(goingAwayFrame(false), true, to), true, 'written now')
  const got = parseFrames(await received())
  t.same(got.map((f) => [f.opcode, f.payload.toString('hex')]), [[1, Buffer.from('one').toString('hex')], [8, '03e9']])
})

t.test('a Close waiting for the end of a frame is written when that frame ends, even if the chunk ends there', async (t) => {
  const big = frame(0x2, bytesOf(1000, 6), false)
  const { to, received } = await pair(t)
  const s = new FrameStream(false, recorder())
  feed(s, to, big.subarray(0, 100))
  t.equal(s.inject(goingAwayFrame(false), true, to), false, 'pending: a frame is in progress')
  feed(s, to, big.subarray(100))
  const got = parseFrames(await received())
  t.same(got.map((f) => f.opcode), [2, 8])
  t.same(got[0].payload, bytesOf(1000, 6))
})

t.test('after the injected Close, the sender\'s own Close is recognised (and dropped) wherever it is cut', async (t) => {
  const reply = frame(0x8, Buffer.from([0x03, 0xe9]), true)
  const stream = Buffer.concat([text('late', true), reply])
  for (const cut of cuts(stream.length)) {
    const { to, received } = await pair(t)
    const events = recorder()
    const s = new FrameStream(true, events)
    s.inject(goingAwayFrame(true), true, to)
    feed(s, to, stream.subarray(0, cut))
    feed(s, to, stream.subarray(cut))
    const got = await received()
    t.equal(events.answered, 1, `cut at ${cut}: the Close answer is seen once`)
    t.equal(got.length, 8, 'only the injected masked Close went out')
  }
})

t.test('the injected Close toward the upstream is masked and says 1001', async (t) => {
  const masked = goingAwayFrame(true)
  t.equal(masked[0], 0x88, 'FIN + Close')
  t.equal(masked[1], 0x82, 'masked, two bytes')
  const key = masked.subarray(2, 6)
  t.same([masked[6] ^ key[0], masked[7] ^ key[1]], [0x03, 0xe9])
  t.same(goingAwayFrame(false), Buffer.from([0x88, 0x02, 0x03, 0xe9]))
  t.same(goingAwayFrame(false, 'reload'), Buffer.from([0x88, 0x08, 0x03, 0xe9, ...Buffer.from('reload')]), 'the reason follows the code')
  const withReason = goingAwayFrame(true, 'reload')
  const mask = withReason.subarray(2, 6)
  t.same([...withReason.subarray(6)].map((b, i) => b ^ mask[i & 3]), [0x03, 0xe9, ...Buffer.from('reload')], 'masked toward the upstream')
})

t.test('a header split before the tracker switches to the slow path is not lost nor sent twice', async (t) => {
  const stream = Buffer.concat([frame(0x2, bytesOf(70_000, 7), true), text('tail', true)])
  // Cut inside the 14-byte header of the 64-bit-length frame, on the fast path; then a ping goes out.
  for (const cut of [1, 2, 5, 9, 13]) {
    const { to, received } = await pair(t)
    const s = new FrameStream(true, recorder())
    feed(s, to, stream.subarray(0, cut))
    s.pongPayload = pingFrame().payload
    s.refresh()
    feed(s, to, stream.subarray(cut, cut + 3))
    feed(s, to, stream.subarray(cut + 3))
    t.same(await received(), stream, `cut at ${cut}`)
  }
})

t.test('bytes that are not WebSocket frames are relayed blind, and the tunnel is told', async (t) => {
  const garbage = Buffer.concat([text('ok'), Buffer.from([0x83, 0x01, 0x00]), Buffer.from('more bytes')])
  const { to, received } = await pair(t)
  const events = recorder()
  const s = new FrameStream(false, events)
  s.pongPayload = pingFrame().payload
  s.refresh()
  feed(s, to, garbage)
  t.equal(events.lost, 1, 'reserved opcode 3: lost')
  t.equal(s.lost, true)
  t.equal(s.atBoundary, false, 'no boundary is known any more')
  feed(s, to, Buffer.from(' and the rest'))
  t.same(await received(), Buffer.concat([garbage, Buffer.from(' and the rest')]))
  t.equal(s.inject(goingAwayFrame(false), true, to), false, 'nothing can be injected')
})

t.test('a control frame longer than 125 bytes or fragmented, or a length past 2^53, loses the tracking', async (t) => {
  const cases: Array<[string, Buffer]> = [
    ['a 126-byte ping', frame(0x9, bytesOf(126, 8), false)],
    ['a fragmented close', frame(0x8, Buffer.from([3, 0xe9]), false, false)],
    ['a 2^63 length', Buffer.from([0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0])]
  ]
  for (const [what, bytes] of cases) {
    const events = recorder()
    const s = new FrameStream(false, events)
    track(s, bytes)
    t.equal(events.lost, 1, what)
  }
})
