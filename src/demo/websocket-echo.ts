import { createHash } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { constants, inflateRawSync } from 'node:zlib'

// A small WebSocket server side (RFC 6455) for the demo upstream, on node:http's 'upgrade' event, so that the
// published package runs `--demo` without the `ws` package. It reads client frames (fragmented, pinged,
// permessage-deflate compressed) and writes unfragmented, uncompressed ones. Not for production use.

/** RFC 6455 §1.3: the GUID the accept key is derived with. */
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
/** Most bytes of one message (all its fragments); a larger one ends the connection. */
const MAX_MESSAGE = 1 << 20
// RFC 7692 §7.2.2: a compressed message lacks the deflate block's 4-byte tail, which the reader adds back.
const DEFLATE_TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff])
const OP_CONTINUATION = 0x0
const OP_TEXT = 0x1
const OP_BINARY = 0x2
const OP_CLOSE = 0x8
const OP_PING = 0x9
const OP_PONG = 0xa

/** One accepted WebSocket connection. */
export interface EchoConnection {
  send (data: Buffer | string, isBinary?: boolean): void
  /** Sends a Close frame; the TCP connection ends when the client answers with its own. */
  close (code: number, reason?: string): void
}

export interface EchoHandlers {
  /** The subprotocol to answer with (null: none), or a refusal: the handshake gets 400 with this text. */
  pickProtocol (offered: string[]): { protocol: string | null } | { refusal: string }
  open (connection: EchoConnection): void
  message (connection: EchoConnection, data: Buffer, isBinary: boolean): void
}

function refuse (socket: Duplex, text: string): void {
  socket.end(`HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`)
}

/** A handler for node:http's 'upgrade' event that accepts WebSocket handshakes and hands their messages to `handlers`. */
export function websocketEcho (handlers: EchoHandlers): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  return (req, socket, head) => {
    socket.on('error', destroy)
    const key = req.headers['sec-websocket-key']
    // RFC 6455 §4.2.1: a GET with `Upgrade: websocket`, version 13 and a 16-byte key (24 base64 characters).
    if (req.method !== 'GET' || req.headers.upgrade?.toLowerCase() !== 'websocket' ||
      req.headers['sec-websocket-version'] !== '13' || key === undefined || !/^[A-Za-z0-9+/]{22}==$/.test(key)) {
      refuse(socket, 'expected a WebSocket handshake (RFC 6455)')
      return
    }
    const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim()).filter((p) => p !== '')
    const pick = handlers.pickProtocol(offered)
    if ('refusal' in pick) {
      refuse(socket, pick.refusal)
      return
    }
    // The client may send compressed messages; the answers go uncompressed, which RFC 7692 allows per message.
    const deflate = /(^|,)\s*permessage-deflate\b/.test(req.headers['sec-websocket-extensions'] ?? '')
    const accept = createHash('sha1').update(key + GUID).digest('base64')
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${accept}\r\n` +
      (pick.protocol === null ? '' : `Sec-WebSocket-Protocol: ${pick.protocol}\r\n`) +
      (deflate ? 'Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; server_no_context_takeover\r\n' : '') +
      '\r\n')
    const connection = new Connection(socket, handlers, deflate)
    handlers.open(connection)
    socket.on('data', (chunk: Buffer) => connection.read(chunk))
    if (head.length > 0) connection.read(head)
  }
}

function destroy (this: Duplex): void {
  this.destroy()
}

/** One frame as read from the client, payload unmasked; `size` is its length on the wire. */
export interface Frame { fin: boolean, rsv1: boolean, opcode: number, masked: boolean, payload: Buffer, size: number }

/** The complete frame at the start of `bytes`, or null while it is incomplete (RFC 6455 §5.2). */
export function nextFrame (bytes: Buffer): Frame | null {
  if (bytes.length < 2) return null
  let length = bytes[1] & 0x7f
  let offset = 2
  if (length === 126) {
    if (bytes.length < 4) return null
    length = bytes.readUInt16BE(2)
    offset = 4
  } else if (length === 127) {
    if (bytes.length < 10) return null
    // Above MAX_MESSAGE the frame is refused; the high bytes only need to make it large.
    length = Math.min(Number(bytes.readBigUInt64BE(2)), MAX_MESSAGE + 1)
    offset = 10
  }
  const masked = (bytes[1] & 0x80) !== 0
  const mask = masked ? bytes.subarray(offset, offset + 4) : null
  if (mask !== null) offset += 4
  // An opcode no frame has: the connection is dropped without waiting for a payload it will not take.
  if (length > MAX_MESSAGE) return { fin: true, rsv1: false, opcode: -1, masked, payload: Buffer.alloc(0), size: 0 }
  if (bytes.length < offset + length) return null
  const payload = Buffer.from(bytes.subarray(offset, offset + length))
  if (mask !== null) for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3]
  return { fin: (bytes[0] & 0x80) !== 0, rsv1: (bytes[0] & 0x40) !== 0, opcode: bytes[0] & 0x0f, masked, payload, size: offset + length }
}

class Connection implements EchoConnection {
  readonly #socket: Duplex
  readonly #handlers: EchoHandlers
  readonly #deflate: boolean
  #pending = Buffer.alloc(0)
  /** The fragments of the message being received, its kind, and whether it is compressed. */
  #fragments: Buffer[] = []
  #size = 0
  #binary = false
  #compressed = false
  #closing = false

  constructor (socket: Duplex, handlers: EchoHandlers, deflate: boolean) {
    this.#socket = socket
    this.#handlers = handlers
    this.#deflate = deflate
  }

  send (data: Buffer | string, isBinary = typeof data !== 'string'): void {
    this.#frame(isBinary ? OP_BINARY : OP_TEXT, Buffer.from(data))
  }

  close (code: number, reason = ''): void {
    const payload = Buffer.alloc(2 + Buffer.byteLength(reason))
    payload.writeUInt16BE(code)
    payload.write(reason, 2)
    this.#frame(OP_CLOSE, payload)
    this.#closing = true
  }

  #frame (opcode: number, payload: Buffer): void {
    const length = payload.length
    const head = length < 126 ? Buffer.alloc(2) : length < 65536 ? Buffer.alloc(4) : Buffer.alloc(10)
    head[0] = 0x80 | opcode
    if (length < 126) {
      head[1] = length
    } else if (length < 65536) {
      head[1] = 126
      head.writeUInt16BE(length, 2)
    } else {
      head[1] = 127
      head.writeBigUInt64BE(BigInt(length), 2)
    }
    this.#socket.write(Buffer.concat([head, payload]))
  }

  read (chunk: Buffer): void {
    this.#pending = Buffer.concat([this.#pending, chunk])
    for (;;) {
      const frame = nextFrame(this.#pending)
      if (frame === null) return
      this.#pending = this.#pending.subarray(frame.size)
      if (!this.#handle(frame)) {
        destroy.call(this.#socket)
        return
      }
    }
  }

  /** Acts on one frame; false for a protocol violation (the connection is then dropped). */
  #handle ({ fin, rsv1, opcode, masked, payload }: Frame): boolean {
    // RFC 6455 §5.1: a client masks every frame. RFC 7692 §6: RSV1 marks the first frame of a compressed message.
    if (!masked || (rsv1 && (!this.#deflate || opcode === OP_CONTINUATION))) return false
    if (opcode === OP_PING) {
      this.#frame(OP_PONG, payload)
      return true
    }
    if (opcode === OP_PONG) return true
    if (opcode === OP_CLOSE) {
      // Answer a client's Close with the same code and reason (RFC 6455 §5.5.1, as ws does); after our own Close, its
      // answer ends it.
      if (!this.#closing) this.#frame(OP_CLOSE, payload)
      this.#closing = true
      this.#socket.end()
      return true
    }
    const starts = opcode === OP_TEXT || opcode === OP_BINARY
    if (starts === (this.#fragments.length > 0) || (!starts && opcode !== OP_CONTINUATION)) return false
    if (starts) {
      this.#binary = opcode === OP_BINARY
      this.#compressed = rsv1
    }
    this.#size += payload.length
    if (this.#size > MAX_MESSAGE) return false
    this.#fragments.push(payload)
    if (!fin) return true
    const whole = Buffer.concat(this.#fragments)
    this.#fragments = []
    this.#size = 0
    let data = whole
    if (this.#compressed) {
      try {
        // The message ends without a final block: flushed, not finished.
        data = inflateRawSync(Buffer.concat([whole, DEFLATE_TAIL]), { finishFlush: constants.Z_SYNC_FLUSH })
      } catch {
        return false
      }
    }
    this.#handlers.message(this, data, this.#binary)
    return true
  }
}
