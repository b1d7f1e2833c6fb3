import type { Socket } from 'node:net'

// RFC 6455 §5.2 opcodes the tracker accepts; anything else means the bytes are not a WebSocket stream it understands.
export const CLOSE = 0x8
export const PING = 0x9
export const PONG = 0xa
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
 * Two paths: `track` here (nothing to inject or consume: count and forward the chunk whole) and `relayFrames`
 * (frame-relay.ts: something pending, forward, hold or drop frame by frame). The frames it injects: control-frames.ts.
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
export function readHeader (s: FrameStream, chunk: Buffer, i: number): number {
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
