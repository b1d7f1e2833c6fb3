import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2'
import { within, type Teardown } from './servers.js'
import type { Frame } from './ws.js'

// A WebSocket client over HTTP/2 (RFC 8441) for the tests: the extended CONNECT, masked frames written by hand, and
// the server's frames parsed as they arrive.

/** A client frame (masked, RFC 6455 §5.3). */
export function maskedFrame (opcode: number, payload: Buffer, fin = true): Buffer {
  const mask = randomBytes(4)
  const length = payload.length
  const head = length < 126 ? Buffer.from([0, 0x80 | length]) : length < 65536 ? Buffer.alloc(4) : Buffer.alloc(10)
  if (length >= 126 && length < 65536) {
    head[1] = 0x80 | 126
    head.writeUInt16BE(length, 2)
  } else if (length >= 65536) {
    head[1] = 0x80 | 127
    head.writeBigUInt64BE(BigInt(length), 2)
  }
  head[0] = (fin ? 0x80 : 0) | opcode
  const masked = Buffer.allocUnsafe(length)
  for (let i = 0; i < length; i++) masked[i] = payload[i] ^ mask[i & 3]
  return Buffer.concat([head, mask, masked])
}

/** A Close frame's payload: the code, then the reason. */
export function closePayload (code: number, reason = ''): Buffer {
  const payload = Buffer.alloc(2 + Buffer.byteLength(reason))
  payload.writeUInt16BE(code, 0)
  payload.write(reason, 2)
  return payload
}

/** The frames a stream received so far, parsed incrementally; `ended` once END_STREAM came, `closed` with its RST code. */
export class FrameReader {
  readonly frames: Frame[] = []
  ended = false
  closed = false
  rstCode = -1
  /** The first 64 KiB received, as they came (a refusal's body). */
  start: Buffer = Buffer.alloc(0)

  constructor (stream: ClientHttp2Stream) {
    stream.on('data', (chunk: Buffer) => {
      if (this.start.length < 65536) this.start = Buffer.concat([this.start, chunk])
      this.#chunks.push(chunk)
      this.#length += chunk.length
      this.#parse()
    })
    stream.on('end', () => { this.ended = true })
    stream.on('close', () => {
      this.closed = true
      this.rstCode = stream.rstCode ?? -1
    })
  }

  // Chunks are joined only once a whole frame is in (a 16 MiB frame arrives in a thousand chunks).
  #chunks: Buffer[] = []
  #length = 0
  #need = 2

  #parse (): void {
    while (this.#length >= this.#need) {
      const bytes = this.#chunks.length === 1 ? this.#chunks[0] : Buffer.concat(this.#chunks)
      this.#chunks = [bytes]
      let length = bytes[1] & 0x7f
      let offset = 2
      if (length === 126) {
        if (bytes.length < 4) { this.#need = 4; return }
        length = bytes.readUInt16BE(2)
        offset = 4
      } else if (length === 127) {
        if (bytes.length < 10) { this.#need = 10; return }
        length = Number(bytes.readBigUInt64BE(2))
        offset = 10
      }
      const masked = (bytes[1] & 0x80) !== 0
      if (masked) offset += 4
      if (bytes.length < offset + length) {
        this.#need = offset + length
        return
      }
      const b0 = bytes[0]
      this.frames.push({ fin: (b0 & 0x80) !== 0, rsv1: (b0 & 0x40) !== 0, opcode: b0 & 0x0f, masked, payload: Buffer.from(bytes.subarray(offset, offset + length)) })
      const rest = bytes.subarray(offset + length)
      this.#chunks = rest.length === 0 ? [] : [rest]
      this.#length = rest.length
      this.#need = 2
    }
  }

  /** Resolves once `count` frames arrived; bounded by `ms`. */
  async next (count: number, ms = 5000): Promise<Frame[]> {
    const deadline = Date.now() + ms
    while (this.frames.length < count) {
      if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for frame ${count} (${this.frames.length} so far)`)
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    return this.frames.slice(0, count)
  }
}

export interface H2WebSocket {
  stream: ClientHttp2Stream
  status: number
  headers: IncomingHttpHeaders
  reader: FrameReader
}

/**
 * Opens an extended CONNECT (`:protocol` websocket by default) on `session` for `path`, and resolves with the answer's
 * head (the stream stays open; any body a refusal carries is in `body()`). Bounded by `ms`.
 */
export async function openH2WebSocket (t: Teardown, session: ClientHttp2Session, path: string, extra: OutgoingHttpHeaders = {}, ms = 5000): Promise<H2WebSocket> {
  const stream = session.request({
    ':method': 'CONNECT', ':protocol': 'websocket', ':path': path, ':scheme': 'http', 'sec-websocket-version': '13', ...extra
  })
  stream.on('error', () => {})
  t.teardown(() => { stream.destroy() })
  const reader = new FrameReader(stream)
  const [headers] = await within(once(stream, 'response'), ms, `the answer to the extended CONNECT for ${path}`) as [IncomingHttpHeaders]
  return { stream, status: headers[':status'] as unknown as number, headers, reader }
}

/** What a refused extended CONNECT's stream carried to its end. */
export async function bodyOf (ws: H2WebSocket, ms = 3000): Promise<string> {
  if (!ws.reader.closed) await within(once(ws.stream, 'close'), ms, 'the stream to close')
  // Node 20's http2 client spins forever (until std::bad_alloc) when another stream of the session is destroyed in the
  // same tick as this one's 'close': the teardown of a test that ends right here would do that.
  await new Promise((resolve) => setImmediate(resolve))
  return ws.reader.start.toString()
}
