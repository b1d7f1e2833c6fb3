import type { IncomingMessage } from 'node:http'
import { connect, type NetConnectOpts, type Socket } from 'node:net'
import { isFieldValue, isToken } from '../headers/field.js'
import type { UpstreamServer } from '../upstream/server.js'
import { errors } from '../upstream/undici.js'
import { replayResponse, stopRelay } from './dial-fallback.js'

/** What a dial reports to: the handshake (UpgradeExchange), with undici's handler methods. */
export interface DialOwner {
  onConnect (abort: (err?: Error) => void): void
  onUpgrade (statusCode: number, rawHeaders: Buffer[], upstream: Socket): void
  onHeaders (statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean
  onData (chunk: Buffer): boolean
  onComplete (): void
  onError (err: Error): void
}

/** How a dial sends the request: what undici's dispatch options hold for an upgrade. */
export interface DialRequest {
  readonly method: string
  readonly path: string
  readonly upgrade: string
  readonly headers: readonly string[]
  readonly connectTimeout: number
  readonly readTimeout: number
  readonly headLimit: number
}

const kDial = Symbol('upgradeDial')
interface DialSocket extends Socket {
  [kDial]: UpgradeDial | null
}

/** Where a plain-HTTP server is dialled, worked out once per server. */
interface DialTarget {
  /** net.connect's options (the read buffer undici's connector asks for too), shared by every dial. */
  readonly options: NetConnectOpts
  /** undici's Host line when the request names none. */
  readonly hostLine: string
}

const targets = new WeakMap<UpstreamServer, DialTarget>()

function targetOf (server: UpstreamServer): DialTarget {
  let target = targets.get(server)
  if (target === undefined) {
    // `addr` is `host:port` (an IPv6 address in brackets, the port always there) or `unix:/path`.
    const addr = server.addr
    const colon = addr.lastIndexOf(':')
    const options = server.socketPath !== null
      ? { path: server.socketPath, highWaterMark: 64 * 1024 }
      : { host: addr.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(addr.slice(colon + 1)), highWaterMark: 64 * 1024 }
    target = { options, hostLine: `host: ${new URL(server.origin).host}\r\n` }
    targets.set(server, target)
  }
  return target
}

// For parse101, which reads bytes: RFC 9110 §5.6.2 token characters, and the bytes a field value may hold (as headers/field.ts).
const TOKEN = new Uint8Array(256)
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TOKEN[c.charCodeAt(0)] = 1
const VALUE = new Uint8Array(256)
for (let c = 0; c < 256; c++) VALUE[c] = c === 9 || (c >= 32 && c !== 127) ? 1 : 0
// A request target: no space or control byte (what Node's HTTP client refuses in a path too).
const TARGET = /^[\x21-\x7e\x80-\xff]+$/

/**
 * The head an upgrade sends, as undici writes it (Host first, then Connection and Upgrade, then the fields in
 * order); null when undici would refuse the request or treat it otherwise (a second Host, a field it manages, a
 * byte it rejects): such a request goes through undici, which answers it as before.
 */
export function upgradeHead (request: DialRequest, server: UpstreamServer): string | null {
  const hostLine = targetOf(server).hostLine
  const headers = request.headers
  let host: string | null = null
  let fields = ''
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]
    const value = headers[i + 1]
    if (!isToken(name) || !isFieldValue(value)) return null
    if (name.length === 4 && name.toLowerCase() === 'host') {
      if (host !== null) return null
      host = value
      continue
    }
    if (isUndiciManaged(name)) return null
    fields += `${name}: ${value}\r\n`
  }
  if (!isFieldValue(request.upgrade) || !TARGET.test(request.path)) return null
  return `${request.method} ${request.path} HTTP/1.1\r\n${host === null ? hostLine : `host: ${host}\r\n`}connection: upgrade\r\nupgrade: ${request.upgrade}\r\n${fields}\r\n`
}

function isUndiciManaged (name: string): boolean {
  const lower = name.toLowerCase()
  return lower === 'connection' || lower === 'upgrade' || lower === 'keep-alive' || lower === 'transfer-encoding' ||
    lower === 'content-length' || lower === 'expect'
}

/**
 * An upgrade request on a connection of its own: a written head and a strict parser for the 101 that follows.
 * Anything but a well-formed 101 (another status, a head this parser does not take) is handed, with the bytes read
 * so far, to Node's HTTP client parser (dial-fallback.ts), which relays it to the exchange as undici did.
 * Cheaper than undici's upgrade: no pool, no request object, no parser of its own to free, no error object made
 * per handshake; the connection never joins a pool since it becomes the tunnel's.
 */
export class UpgradeDial {
  readonly owner: DialOwner
  readonly server: UpstreamServer
  readonly socket: DialSocket
  readonly request: DialRequest
  /** A non-101 answer as Node's parser reads it (dial-fallback.ts), while it is relayed. */
  response: IncomingMessage | null = null
  /** The response bytes read until its head is complete. */
  read: Buffer | null = null
  timer: NodeJS.Timeout | null
  done = false
  /** The bound `abort` handed to the exchange (its abortUpstream). */
  readonly abort: (err?: Error) => void

  constructor (owner: DialOwner, server: UpstreamServer, request: DialRequest, head: string) {
    this.owner = owner
    this.server = server
    this.request = request
    const socket = connect(targetOf(server).options) as DialSocket
    this.socket = socket
    socket[kDial] = this
    // As undici's connector sets them: the socket becomes a long-lived tunnel.
    socket.setKeepAlive(true, 60e3)
    socket.setNoDelay(true)
    socket.on('connect', dialOnConnect)
    socket.on('data', dialOnData)
    socket.on('end', dialOnEnd)
    socket.on('error', dialOnError)
    socket.on('close', dialOnEnd)
    socket.write(head, 'latin1')
    this.timer = setTimeout(dialTimedOut, request.connectTimeout, this, CONNECTING)
    this.abort = this.cancel.bind(this)
    owner.onConnect(this.abort)
  }

  /** The exchange gives up (the client left, a timeout): the connection is dropped; with a reason, the exchange hears it. */
  cancel (err?: Error): void {
    // Never after the dial is done: the exchange has ended by then (a tunnel, an answer relayed, an error answered).
    this.finish()
    this.socket.destroy()
    if (err !== undefined) this.owner.onError(err)
  }

  /** The dial is over: no timer, no listener of ours left on the socket. */
  finish (): void {
    this.done = true
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.unlisten()
    if (this.response !== null) stopRelay(this.response)
  }

  unlisten (): void {
    const socket = this.socket
    socket[kDial] = null
    socket.removeListener('connect', dialOnConnect)
    socket.removeListener('data', dialOnData)
    socket.removeListener('end', dialOnEnd)
    socket.removeListener('error', dialOnError)
    socket.removeListener('close', dialOnEnd)
  }

  fail (err: Error): void {
    if (this.done) return
    this.finish()
    this.socket.destroy()
    this.owner.onError(err)
  }

  onData (chunk: Buffer): void {
    const buf = this.read === null ? chunk : Buffer.concat([this.read, chunk])
    const end = buf.indexOf(CRLF2)
    if (end === -1) {
      // Bytes that cannot begin a 101 go to Node's parser at once: a garbage answer is refused without waiting for more.
      const n = Math.min(buf.length, STATUS_101.length)
      if (buf.compare(STATUS_101, 0, n, 0, n) !== 0) this.handOver(buf)
      else if (buf.length >= this.request.headLimit) this.fail(new errors.HeadersOverflowError())
      else this.read = buf
      return
    }
    if (end + 4 > this.request.headLimit) {
      this.fail(new errors.HeadersOverflowError())
      return
    }
    const raw = parse101(buf, end)
    if (raw === null) {
      // Not a plain 101: Node's HTTP parser reads the answer, from its first byte.
      this.handOver(buf)
      return
    }
    this.finish()
    const socket = this.socket
    if (end + 4 < buf.length) {
      // The upstream's first bytes after its 101 (its first frames): the tunnel reads them first.
      socket.pause()
      socket.unshift(buf.subarray(end + 4))
    }
    this.owner.onUpgrade(101, raw, socket)
  }

  /** Node's parser reads the answer from here on; the read timeout still runs. */
  handOver (read: Buffer): void {
    this.unlisten()
    replayResponse(this, read)
  }

  /** The answer's head is in: from now on the read timeout is the time between two reads of its body (undici's bodyTimeout). */
  bodyStarted (): void {
    clearTimeout(this.timer as NodeJS.Timeout)
    this.timer = setTimeout(dialTimedOut, this.request.readTimeout, this, READING_BODY)
  }
}

/** Sends the upgrade `head` to `server` on a connection of its own; the dial reports to `owner`. */
export function dialUpgrade (owner: DialOwner, server: UpstreamServer, request: DialRequest, head: string): UpgradeDial {
  return new UpgradeDial(owner, server, request, head)
}

const CRLF2 = Buffer.from('\r\n\r\n')
const STATUS_101 = Buffer.from('HTTP/1.1 101')

/**
 * The fields of a 101 head `buf[0, end)` as undici gives them (name, value, ... views of the head), or null when
 * the head is anything but a 101 this parser is sure of: no obs-fold, no field without a token name, no control
 * byte, an Upgrade field, no framing field. Such heads go to Node's parser, which judges them.
 */
export function parse101 (buf: Buffer, end: number): Buffer[] | null {
  if (end < 12 || buf.compare(STATUS_101, 0, 12, 0, 12) !== 0) return null
  let i = 12
  const sep = buf[i]
  if (sep !== 13) {
    if (sep !== 32) return null
    for (i++; buf[i] !== 13; i++) if (VALUE[buf[i]] === 0) return null
  }
  if (buf[i + 1] !== 10) return null
  i += 2
  const raw: Buffer[] = []
  let upgrade = false
  while (i < end + 2) {
    const nameStart = i
    while (TOKEN[buf[i]] === 1) i++
    if (i === nameStart || buf[i] !== 58) return null
    const nameEnd = i
    i++
    while (buf[i] === 32 || buf[i] === 9) i++
    const valueStart = i
    while (buf[i] !== 13) {
      if (VALUE[buf[i]] === 0) return null
      i++
    }
    if (buf[i + 1] !== 10) return null
    let valueEnd = i
    while (valueEnd > valueStart && (buf[valueEnd - 1] === 32 || buf[valueEnd - 1] === 9)) valueEnd--
    const nameLength = nameEnd - nameStart
    if (nameLength === 7 && buf.toString('latin1', nameStart, nameEnd).toLowerCase() === 'upgrade') upgrade = true
    else if ((nameLength === 14 || nameLength === 17) && isFraming(buf.toString('latin1', nameStart, nameEnd))) return null
    raw.push(buf.subarray(nameStart, nameEnd), buf.subarray(valueStart, valueEnd))
    i += 2
  }
  return upgrade ? raw : null
}

function isFraming (name: string): boolean {
  const lower = name.toLowerCase()
  return lower === 'content-length' || lower === 'transfer-encoding'
}

function dialOnConnect (this: DialSocket): void {
  const dial = this[kDial] as UpgradeDial
  clearTimeout(dial.timer as NodeJS.Timeout)
  dial.timer = setTimeout(dialTimedOut, dial.request.readTimeout, dial, READING_HEAD)
}

function dialOnData (this: DialSocket, chunk: Buffer): void {
  (this[kDial] as UpgradeDial).onData(chunk)
}

function dialOnEnd (this: DialSocket): void {
  (this[kDial] as UpgradeDial).fail(new errors.SocketError('other side closed'))
}

function dialOnError (this: DialSocket, err: Error): void {
  (this[kDial] as UpgradeDial).fail(err)
}

const CONNECTING = 0
const READING_HEAD = 1
const READING_BODY = 2

function dialTimedOut (dial: UpgradeDial, phase: number): void {
  dial.timer = null
  dial.fail(phase === CONNECTING ? new errors.ConnectTimeoutError() : phase === READING_HEAD ? new errors.HeadersTimeoutError() : new errors.BodyTimeoutError())
}
