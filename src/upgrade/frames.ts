import type { Socket } from 'node:net'
import { randomBytes } from 'node:crypto'

// RFC 6455 §5.2 opcodes the tracker accepts; anything else means the bytes are not a WebSocket stream it understands.
const CLOSE = 0x8
const PING = 0x9
const PONG = 0xa
// As a bit mask (bit n: opcode n), tested once per frame header.
const KNOWN_OPCODES = (1 << 0x0) | (1 << 0x1) | (1 << 0x2) | (1 << CLOSE) | (1 << PING) | (1 << PONG)

/** What a frame stream reports to its tunnel. */
export interface FrameEvents {
  /** The pong answering the proxy's ping arrived (and was consumed). */
  pongReceived (): void
  /** After the proxy injected a Close into `stream`, its sender sent its own Close: that side is done. */
  closeAnswered (stream: FrameStream): void
  /** The bytes stopped parsing as WebSocket frames: boundaries are unknown from here on. */
  framesLost (stream: FrameStream): void
}

/**
 * WebSocket frame boundaries in one direction of a tunnel, read from frame headers only: payloads are never
 * unmasked nor copied (except the 8 bytes of a pong the proxy may be waiting for). Knowing where frames end
 * lets the proxy put its own control frames (a Close 1001 at shutdown, keep-alive pings) between two frames,
 * never inside one; RFC 6455 §5.4 allows control frames between the fragments of a message too.
 *
 * Two paths: `track` (nothing to inject or consume: count and forward the chunk whole) and `relayFrames`
 * (something pending: forward, hold or drop frame by frame).
 */
export class FrameStream {
  /** true for client → upstream: injected frames must be masked (RFC 6455 §5.3). */
  readonly towardUpstream: boolean
  readonly events: FrameEvents
  /** Payload bytes of the current frame not seen yet. */
  remaining = 0
  opcode = 0
  /**
   * A header split across chunks is gathered here, allocated the first time one is (an idle tunnel never needs it).
   * From Node's shared pool: a buffer of its own would cost an ArrayBuffer with its backing store.
   */
  header: Buffer | null = null
  headerLength = 0
  /** The split header's first bytes were forwarded already (by `track`): its frame must go on whole. */
  headerForwarded = false
  lost = false
  /** The sender has sent a Close frame. */
  sentClose = false
  /** A control frame to write at the next boundary; `pendingClose` when it is a Close. */
  pending: Buffer | null = null
  pendingClose = false
  /** The proxy injected a Close: whatever the sender sends afterwards is dropped. */
  closed = false
  /** The payload of the proxy's outstanding ping: the matching pong (in the other direction) is consumed. */
  pongPayload: Buffer | null = null
  /** The frame being held back while it may be that pong, and its total size. */
  held: Buffer[] | null = null
  heldSize = 0
  /** Set whenever `relayFrames` must run instead of `track`. */
  slow = false

  constructor (towardUpstream: boolean, events: FrameEvents) {
    this.towardUpstream = towardUpstream
    this.events = events
  }

  /** Whatever has been forwarded ends on a frame boundary, so a control frame can be written now. */
  get atBoundary (): boolean {
    return !this.lost && (this.held !== null || (this.remaining === 0 && (this.headerLength === 0 || !this.headerForwarded)))
  }

  /**
   * Queues a control frame for the next boundary, or writes it now when there is one (returns true then).
   * A Close turns the stream closed: the sender's later frames are dropped.
   */
  inject (frame: Buffer, isClose: boolean, to: Socket): boolean {
    // Callers never inject after a Close (the tunnel is closing by then), so `closed` needs no check here.
    if (this.atBoundary) {
      if (to.writable) to.write(frame)
      if (isClose) this.closed = true
      this.refresh()
      return true
    }
    this.pending = frame
    this.pendingClose = isClose
    this.refresh()
    return false
  }

  refresh (): void {
    // A split header withheld by the slow path must be completed (and written) by it too.
    this.slow = !this.lost && (this.pending !== null || this.closed || this.pongPayload !== null || this.held !== null ||
      (this.headerLength > 0 && !this.headerForwarded))
  }
}

/** The payloads of the Close frames the proxy writes: status 1001 "going away" and a short reason, one per reason. */
const goingAwayPayloads = new Map<string, Buffer>()

/**
 * A Close frame with status 1001 "going away" and `reason` (ASCII, at most 123 bytes: a control frame carries at
 * most 125, RFC 6455 §5.5), masked when it goes to the upstream. Without a reason the payload is the status alone.
 */
export function goingAwayFrame (masked: boolean, reason = ''): Buffer {
  let payload = goingAwayPayloads.get(reason)
  if (payload === undefined) {
    payload = Buffer.concat([Buffer.from([0x03, 0xe9]), Buffer.from(reason, 'utf8')])
    goingAwayPayloads.set(reason, payload)
  }
  return controlFrame(CLOSE, payload, masked)
}

/** A ping with a random 8-byte payload, sent to the client (unmasked); returns the frame and its payload. */
export function pingFrame (): { frame: Buffer, payload: Buffer } {
  const payload = randomBytes(8)
  return { frame: controlFrame(PING, payload, false), payload }
}

function controlFrame (opcode: number, payload: Buffer, masked: boolean): Buffer {
  const frame = Buffer.allocUnsafe(2 + (masked ? 4 : 0) + payload.length)
  frame[0] = 0x80 | opcode
  frame[1] = (masked ? 0x80 : 0) | payload.length
  if (!masked) {
    payload.copy(frame, 2)
    return frame
  }
  const key = randomBytes(4)
  key.copy(frame, 2)
  for (let i = 0; i < payload.length; i++) frame[6 + i] = payload[i] ^ key[i & 3]
  return frame
}

function headerSize (b1: number): number {
  const length = b1 & 0x7f
  return 2 + (length === 126 ? 2 : length === 127 ? 8 : 0) + ((b1 & 0x80) !== 0 ? 4 : 0)
}

function parseHeader (s: FrameStream, buf: Buffer, at: number): void {
  const b0 = buf[at]
  const opcode = b0 & 0x0f
  let length = buf[at + 1] & 0x7f
  if (length === 126) {
    length = buf.readUInt16BE(at + 2)
  } else if (length === 127) {
    const high = buf.readUInt32BE(at + 2)
    // RFC 6455 requires the top bit clear; past 2^53 a number could not count the payload anyway.
    if (high > 0x1fffff) return lose(s)
    length = high * 0x100000000 + buf.readUInt32BE(at + 6)
  }
  // Control frames are never fragmented and carry at most 125 bytes (RFC 6455 §5.5).
  if (((KNOWN_OPCODES >> opcode) & 1) === 0 || (opcode >= CLOSE && (length > 125 || (b0 & 0x80) === 0))) return lose(s)
  s.opcode = opcode
  s.remaining = length
  if (opcode === CLOSE) s.sentClose = true
}

function lose (s: FrameStream): void {
  s.lost = true
  s.remaining = 0
  s.pending = null
  s.refresh()
  s.events.framesLost(s)
}

/** Reads (the rest of) a frame header at `chunk[i]`; returns the index after it, or the chunk's end when it is split. */
function readHeader (s: FrameStream, chunk: Buffer, i: number): number {
  const end = chunk.length
  if (s.headerLength === 0 && end - i >= 2) {
    const size = headerSize(chunk[i + 1])
    if (end - i >= size) {
      parseHeader(s, chunk, i)
      return i + size
    }
  }
  const header = s.header ??= Buffer.allocUnsafe(14)
  while (i < end) {
    header[s.headerLength++] = chunk[i++]
    if (s.headerLength >= 2 && s.headerLength === headerSize(header[1])) {
      parseHeader(s, header, 0)
      s.headerLength = 0
      return i
    }
  }
  return i
}

/** The fast path: follows the frames of a chunk that is forwarded whole. A few comparisons per frame header. */
export function track (s: FrameStream, chunk: Buffer): void {
  const end = chunk.length
  let i = 0
  while (i < end && !s.lost) {
    if (s.remaining > 0) {
      const n = end - i < s.remaining ? end - i : s.remaining
      s.remaining -= n
      i += n
    } else {
      i = readHeader(s, chunk, i)
    }
  }
  // A header split across chunks has had its first bytes forwarded with this chunk.
  s.headerForwarded = s.headerLength > 0
}

// What happens to the frame whose header was just read.
const FORWARD = 0
const DROP = 1
const HOLD = 2

/**
 * The slow path, while something is pending: writes to `to` what goes on, frame by frame, injects the pending
 * control frame at the first boundary, holds a possible pong, drops what follows an injected Close.
 * Returns false when `to` asked the sender to wait (its buffer is full).
 */
export function relayFrames (s: FrameStream, chunk: Buffer, to: Socket): boolean {
  const end = chunk.length
  let ok = true
  let from = 0 // start of the bytes to forward that are not written yet
  let i = 0
  let disposition = s.held !== null ? HOLD : s.closed ? DROP : FORWARD
  // Never entered when lost (`slow` is false then); it breaks out as soon as a header loses the tracking.
  while (i < end) {
    if (s.remaining > 0) {
      const n = end - i < s.remaining ? end - i : s.remaining
      if (disposition === HOLD) hold(s, chunk.subarray(i, i + n))
      s.remaining -= n
      i += n
      if (disposition !== FORWARD) from = i
      if (s.remaining === 0 && disposition === HOLD) ok = releaseHeld(s, to) && ok
      continue
    }
    if (s.headerLength === 0 && s.pending !== null) {
      ok = write(to, chunk, from, i) && ok
      from = i
      if (to.writable) ok = to.write(s.pending) && ok
      if (s.pendingClose) s.closed = true
      s.pending = null
    }
    const start = i
    const carried = s.headerLength
    const carriedForwarded = s.headerForwarded
    i = readHeader(s, chunk, i)
    if (s.lost) break
    if (s.headerLength > 0) {
      // The chunk ends inside a header. Its bytes wait in `s.header` until the frame's fate is known,
      // unless its start is already out (forwarded by `track`): then the rest goes too.
      ok = write(to, chunk, from, carriedForwarded ? end : start) && ok
      from = end
      break
    }
    s.headerForwarded = false
    disposition = carriedForwarded
      ? FORWARD
      : s.closed
        ? DROP
        : s.pongPayload !== null && s.opcode === PONG && s.remaining === s.pongPayload.length ? HOLD : FORWARD
    if (disposition === FORWARD) {
      if (carried > 0 && !carriedForwarded) {
        // The header's first bytes, gathered from earlier chunks, go before the rest of it.
        ok = write(to, chunk, from, start) && ok
        if (to.writable) ok = to.write(Buffer.from((s.header as Buffer).subarray(0, carried))) && ok
        from = start
      }
      continue
    }
    ok = write(to, chunk, from, start) && ok
    from = i
    if (disposition === DROP) {
      if (s.opcode === CLOSE) s.events.closeAnswered(s)
      continue
    }
    // A held frame is a pong as long as the proxy's ping payload (8 bytes): its payload is still to come.
    s.held = []
    s.heldSize = 0
    if (carried > 0) hold(s, Buffer.from((s.header as Buffer).subarray(0, carried)))
    hold(s, chunk.subarray(start, i))
  }
  // Held and dropped bytes have moved `from` along; after an injected Close nothing more reaches the receiver
  // (and after lost tracking the rest goes on blind).
  if (!s.closed) ok = write(to, chunk, from, end) && ok
  // The chunk ended on a boundary: the pending frame need not wait for more bytes, which may never come.
  if (s.pending !== null && s.atBoundary) {
    if (to.writable) ok = to.write(s.pending) && ok
    if (s.pendingClose) s.closed = true
    s.pending = null
  }
  s.refresh()
  return ok
}

function write (to: Socket, chunk: Buffer, from: number, until: number): boolean {
  if (until <= from || !to.writable) return true
  return to.write(from === 0 && until === chunk.length ? chunk : chunk.subarray(from, until))
}

function hold (s: FrameStream, bytes: Buffer): void {
  (s.held as Buffer[]).push(bytes)
  s.heldSize += bytes.length
}

/** A held frame is complete: the proxy's pong is consumed, anything else goes on. */
function releaseHeld (s: FrameStream, to: Socket): boolean {
  const frame = Buffer.concat(s.held as Buffer[], s.heldSize)
  s.held = null
  s.heldSize = 0
  if (s.closed) return true
  const expected = s.pongPayload
  if (expected !== null && isPongFor(frame, expected)) {
    s.pongPayload = null
    s.events.pongReceived()
    return true
  }
  return write(to, frame, 0, frame.length)
}

function isPongFor (frame: Buffer, payload: Buffer): boolean {
  const masked = (frame[1] & 0x80) !== 0
  const at = frame.length - payload.length
  for (let i = 0; i < payload.length; i++) {
    const byte = masked ? frame[at + i] ^ frame[at - 4 + (i & 3)] : frame[at + i]
    if (byte !== payload[i]) return false
  }
  return true
}
