import net, { type Socket } from 'node:net'
import type { IncomingMessage } from 'node:http'
import { createHash } from 'node:crypto'
import { WebSocket, type ClientOptions } from 'ws'
import { listen, within, type Teardown } from './servers.js'
// Shared with the HTTP helpers; re-exported so tests import them from here as before.
export { within, closedPort, logCapture, type LogRecord } from './servers.js'

// Helpers for the upgrade and tunnel tests: bounded waits, WebSocket clients, raw sockets that record every
// byte they receive, scripted upgrade upstreams, a minimal WebSocket frame reader and captured Fastify logs.

/** Resolves once `socket` has emitted 'close' (at once if it already has), or rejects after `ms`. */
export async function closed (socket: Socket, ms = 2000, what = 'the socket to close'): Promise<void> {
  if (socket.closed) return
  await within(new Promise<void>((resolve) => socket.once('close', () => resolve())), ms, what)
}

/** `http://127.0.0.1:port` → `ws://127.0.0.1:port` + path. */
export function wsUrl (url: string, path = '/'): string {
  return url.replace(/^http/, 'ws') + path
}

/** One received WebSocket message. */
export interface Message { data: Buffer, isBinary: boolean }

/** Messages a client has received and not yet taken with `messages()`; recorded from the client's creation. */
const inboxes = new WeakMap<WebSocket, { queue: Message[], wake: (() => void) | null }>()

function inboxOf (ws: WebSocket) {
  let inbox = inboxes.get(ws)
  if (inbox === undefined) {
    const created = { queue: [] as Message[], wake: null as (() => void) | null }
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      created.queue.push({ data, isBinary })
      created.wake?.()
    })
    inboxes.set(ws, created)
    inbox = created
  }
  return inbox
}

/**
 * A `ws` client, terminated at teardown; resolves once it is open (bounded). Its messages are recorded from the
 * start, so what the upstream sends right after the handshake (possibly in the 101's packet) is never missed.
 */
export async function openWs (t: Teardown, url: string, protocols?: string | string[], options: ClientOptions = {}): Promise<WebSocket> {
  const ws = new WebSocket(url, protocols, options)
  t.teardown(() => {
    // Terminating a handshake still under way makes `ws` emit an error; at teardown nobody is listening.
    ws.on('error', () => {})
    ws.terminate()
  })
  inboxOf(ws)
  await within(new Promise<void>((resolve, reject) => {
    ws.once('open', resolve)
    ws.once('error', reject)
  }), 3000, `the WebSocket to ${url} to open`)
  return ws
}

/** A WebSocket's close as its owner saw it. */
export interface CloseEvent { code: number, reason: string }

/** Resolves with the close code and reason `ws` reports, bounded. */
export async function wsClosed (ws: WebSocket, ms = 3000): Promise<CloseEvent> {
  return within(new Promise<CloseEvent>((resolve) => {
    ws.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() }))
  }), ms, 'the WebSocket to close')
}

/** Takes the next `count` messages `ws` received, in order, waiting for them (bounded). */
export async function messages (ws: WebSocket, count: number, ms = 5000): Promise<Message[]> {
  const inbox = inboxOf(ws)
  try {
    await within(new Promise<void>((resolve) => {
      inbox.wake = () => { if (inbox.queue.length >= count) resolve() }
      inbox.wake()
    }), ms, () => `${count} messages (got ${inbox.queue.length})`)
  } finally {
    inbox.wake = null
  }
  return inbox.queue.splice(0, count)
}

/**
 * Everything one raw socket receives, kept in order, with its end-of-stream and close recorded.
 * Waits on it are bounded and poll nothing: each new chunk, 'end' or 'close' re-checks the waiters.
 */
export class Received {
  readonly socket: Socket
  readonly chunks: Buffer[] = []
  length = 0
  ended = false
  closed = false
  error: Error | null = null
  #waiters = new Set<() => void>()

  constructor (socket: Socket) {
    this.socket = socket
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk)
      this.length += chunk.length
      this.#check()
    })
    socket.on('end', () => { this.ended = true; this.#check() })
    socket.on('error', (err) => { this.error = err })
    socket.on('close', () => { this.closed = true; this.#check() })
  }

  get bytes (): Buffer {
    return Buffer.concat(this.chunks, this.length)
  }

  /** What was received, as latin1 text (one char per byte). */
  get text (): string {
    return this.bytes.toString('latin1')
  }

  #check (): void {
    for (const waiter of this.#waiters) waiter()
  }

  /** Resolves when `predicate` holds; rejects after `ms`, or when the socket closes and it still does not hold. */
  async until (predicate: (r: Received) => boolean, ms = 3000, what = 'bytes'): Promise<void> {
    if (predicate(this)) return
    let waiter: (() => void) | undefined
    try {
      await within(new Promise<void>((resolve, reject) => {
        waiter = () => {
          if (predicate(this)) resolve()
          else if (this.closed) reject(new Error(`socket closed while waiting for ${what}; received ${JSON.stringify(this.text.slice(0, 300))}`))
        }
        this.#waiters.add(waiter)
      }), ms, what)
    } finally {
      if (waiter !== undefined) this.#waiters.delete(waiter)
    }
  }

  /** Resolves once at least `n` bytes have arrived. */
  async atLeast (n: number, ms = 3000): Promise<void> {
    await this.until((r) => r.length >= n, ms, `${n} bytes`)
  }

  /** Resolves once the received text contains `text`. */
  async contains (text: string, ms = 3000): Promise<void> {
    await this.until((r) => r.text.includes(text), ms, JSON.stringify(text))
  }

  /** Resolves once the peer has ended (FIN) or the socket has closed. */
  async end (ms = 3000): Promise<void> {
    await this.until((r) => r.ended || r.closed, ms, 'end of stream')
  }

  /** Resolves once the socket has closed. */
  async close (ms = 3000): Promise<void> {
    await this.until((r) => r.closed, ms, 'close')
  }
}

/**
 * A raw TCP client connected to 127.0.0.1:`port`, destroyed at teardown, recording what it receives.
 * With `allowHalfOpen` it can keep writing after the gateway has ended its side.
 */
export async function rawClient (t: Teardown, port: number, allowHalfOpen = false): Promise<Received> {
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen })
  t.teardown(() => { socket.destroy() })
  const received = new Received(socket)
  await within(new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  }), 2000, 'the raw client to connect')
  return received
}

/** An HTTP/1.1 upgrade request head for `path` asking for `protocol`, with extra header lines. */
export function upgradeHead (path: string, protocol = 'foo', extra: string[] = []): string {
  return [`GET ${path} HTTP/1.1`, 'Host: gateway.test', 'Connection: Upgrade', `Upgrade: ${protocol}`, ...extra].join('\r\n') + '\r\n\r\n'
}

/** A WebSocket handshake head for `path` with a fixed key (its accept is `acceptFor(WS_KEY)`). */
export const WS_KEY = 'dGhlIHNhbXBsZSBub25jZQ=='
/** Sends a WebSocket handshake for `path` to the gateway on `port` and reads the answer to its end: status, text, ms taken. */
export async function timedHandshake (t: Teardown, port: number, path: string): Promise<{ status: number, text: string, elapsed: number }> {
  const client = await rawClient(t, port)
  const started = Date.now()
  client.socket.write(wsHandshakeHead(path))
  await client.close(5000)
  return { status: parseHead(client.text).status, text: client.text, elapsed: Date.now() - started }
}

export function wsHandshakeHead (path: string, extra: string[] = []): string {
  return upgradeHead(path, 'websocket', ['Sec-WebSocket-Version: 13', `Sec-WebSocket-Key: ${WS_KEY}`, ...extra])
}

/** RFC 6455 §4.2.2: the Sec-WebSocket-Accept answering `key`. */
export function acceptFor (key: string): string {
  return createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64')
}

/** The index just past the first blank line of `bytes`, or -1 while the head is incomplete. */
export function headEnd (bytes: Buffer): number {
  const i = bytes.indexOf('\r\n\r\n')
  return i === -1 ? -1 : i + 4
}

/** The first line (status or request line), the status and the lowercased headers of an HTTP head. */
export function parseHead (text: string): { statusLine: string, status: number, headers: Record<string, string>, names: string[] } {
  const head = text.slice(0, text.indexOf('\r\n\r\n'))
  const [statusLine, ...lines] = head.split('\r\n')
  const headers: Record<string, string> = {}
  const names: string[] = []
  for (const line of lines) {
    const colon = line.indexOf(':')
    const name = line.slice(0, colon)
    names.push(name)
    const lower = name.toLowerCase()
    const value = line.slice(colon + 1).trim()
    headers[lower] = headers[lower] === undefined ? value : `${headers[lower]}, ${value}`
  }
  return { statusLine, status: Number(statusLine.split(' ')[1]), headers, names }
}

/** One connection to a scripted upstream: its bytes, and its request head once complete. */
export interface UpstreamConnection {
  socket: Socket
  received: Received
  /** The request head as received (up to the blank line), '' until complete. */
  head: string
  /** Bytes received after the request head. */
  afterHead (): Buffer
}

/** `accepted`: every connection the server took, in order (net.Server's own `connections` is a deprecated count). */
export type ScriptedServer = net.Server & { accepted: UpstreamConnection[] }

/**
 * A `net` upstream that records every connection and calls `onHead` once per connection when its request head
 * is complete (later heads on the same connection are not parsed: tunnels carry arbitrary bytes).
 * With `allowHalfOpen` its sockets stay writable after the gateway ends its side (the script ends them).
 */
export async function headUpstream (t: Teardown, onHead: (c: UpstreamConnection) => void, allowHalfOpen = false): Promise<ScriptedServer> {
  const connections: UpstreamConnection[] = []
  const server = net.createServer({ allowHalfOpen }, (socket) => {
    const received = new Received(socket)
    const connection: UpstreamConnection = {
      socket,
      received,
      head: '',
      afterHead () {
        return received.bytes.subarray(Buffer.byteLength(connection.head, 'latin1'))
      }
    }
    connections.push(connection)
    const onData = (): void => {
      const end = headEnd(received.bytes)
      if (end === -1) return
      socket.removeListener('data', onData)
      connection.head = received.bytes.subarray(0, end).toString('latin1')
      onHead(connection)
    }
    socket.on('data', onData)
  }) as ScriptedServer
  server.accepted = connections
  return listen(t, server)
}

/** The 101 a raw upstream answers for protocol `protocol`. */
export function switching (protocol = 'foo'): string {
  return `HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${protocol}\r\nConnection: Upgrade\r\n\r\n`
}

/** A raw upstream that answers every upgrade head with a 101 (followed by `early`, in the same write). */
export async function switchingUpstream (t: Teardown, early: Buffer | string = ''): Promise<ScriptedServer> {
  return headUpstream(t, ({ socket }) => {
    socket.write(Buffer.concat([Buffer.from(switching(), 'latin1'), typeof early === 'string' ? Buffer.from(early, 'latin1') : early]))
  })
}

/** One WebSocket frame as it travelled on the wire (payload unmasked). */
export interface Frame {
  fin: boolean
  rsv1: boolean
  opcode: number
  masked: boolean
  payload: Buffer
}

/** Parses the complete frames at the start of `bytes` (RFC 6455 §5.2); a trailing partial frame is left out. */
export function parseFrames (bytes: Buffer): Frame[] {
  const frames: Frame[] = []
  let at = 0
  while (at + 2 <= bytes.length) {
    const b0 = bytes[at]
    const b1 = bytes[at + 1]
    let length = b1 & 0x7f
    let offset = at + 2
    if (length === 126) {
      if (offset + 2 > bytes.length) break
      length = bytes.readUInt16BE(offset)
      offset += 2
    } else if (length === 127) {
      if (offset + 8 > bytes.length) break
      length = Number(bytes.readBigUInt64BE(offset))
      offset += 8
    }
    const masked = (b1 & 0x80) !== 0
    const mask = masked ? bytes.subarray(offset, offset + 4) : null
    if (masked) offset += 4
    if (offset + length > bytes.length) break
    const payload = Buffer.from(bytes.subarray(offset, offset + length))
    if (mask !== null) for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3]
    frames.push({ fin: (b0 & 0x80) !== 0, rsv1: (b0 & 0x40) !== 0, opcode: b0 & 0x0f, masked, payload })
    at = offset + length
  }
  return frames
}

/** `n` bytes of a repeating, position-dependent pattern: a dropped, duplicated or reordered byte shows. */
export function pattern (n: number, seed = 0): Buffer {
  const buf = Buffer.allocUnsafe(n)
  for (let i = 0; i < n; i++) buf[i] = (i * 31 + seed + (i >>> 8)) & 0xff
  return buf
}

/** A `ws` client whose handshake is answered with something other than a 101: that answer, body included. */
export async function unexpectedResponse (t: Teardown, url: string, headers: Record<string, string> = {}) {
  const ws = new WebSocket(url, { headers })
  // With an 'unexpected-response' listener the handshake stays pending: terminate() then reports an error.
  ws.on('error', () => {})
  t.teardown(() => ws.terminate())
  const res = await within(new Promise<IncomingMessage>((resolve, reject) => {
    ws.once('unexpected-response', (_req, res) => resolve(res))
    ws.once('open', () => reject(new Error('the handshake must not succeed')))
  }), 3000, 'unexpected-response')
  const chunks: Buffer[] = []
  for await (const chunk of res) chunks.push(chunk as Buffer)
  return { status: res.statusCode as number, headers: res.headers, body: Buffer.concat(chunks) }
}
