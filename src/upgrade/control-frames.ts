import { randomBytes } from 'node:crypto'
import { CLOSE, PING } from './frame-tracker.js'

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
