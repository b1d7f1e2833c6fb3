import type { Socket } from 'node:net'
import { CLOSE, PONG, readHeader, type FrameStream } from './frame-tracker.js'

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
