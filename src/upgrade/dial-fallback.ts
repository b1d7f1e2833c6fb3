import { request as httpRequest, type ClientRequest, type IncomingMessage, type RequestOptions } from 'node:http'
import type { Socket } from 'node:net'
import { Duplex } from 'node:stream'
import { FST_WS_PROXY_BAD_RESPONSE } from '../errors.js'

/** What the fallback needs of a dial (upgrade/dial.ts's ReplayDial). */
export interface ReplayDial {
  readonly request: { readonly method: string, readonly headLimit: number }
  readonly socket: Socket
  readonly server: { readonly label: string }
  readonly owner: {
    onHeaders (statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean
    onData (chunk: Buffer): boolean
    onComplete (): void
  }
  response: IncomingMessage | null
  readonly timer: NodeJS.Timeout | null
  fail (err: Error): void
  finish (): void
  bodyStarted (): void
}

// An upgrade the upstream did not answer with a plain 101 (upgrade/dial.ts): a refusal with a body, a redirect, a
// 1xx first, or a head the dial's parser does not take. Node's HTTP client parser reads the answer from its first
// byte, through a stream that replays what the dial read and then the connection's own bytes (the request head it
// writes is dropped: the dial sent it). The answer reaches the exchange as undici's handler calls (onHeaders,
// onData, onComplete, onError), so it is relayed, retried and mapped as any other.

const kReplay = Symbol('replay')
const kDial = Symbol('dial')

interface ReplayedSocket extends Socket {
  [kReplay]: Replay
}

interface DialRequestMessage extends ClientRequest {
  [kDial]: ReplayDial
}

interface ReplayOptions extends RequestOptions {
  replay: Replay
}

/** The upstream connection as Node's HTTP client sees it: the bytes already read, then the rest. */
class Replay extends Duplex {
  readonly socket: ReplayedSocket

  constructor (socket: Socket, read: Buffer) {
    super()
    this.socket = socket as ReplayedSocket
    this.socket[kReplay] = this
    this.push(read)
    socket.on('data', replayOnData)
    socket.on('end', replayOnEnd)
    socket.on('error', replayOnError)
    socket.on('close', replayOnClose)
  }

  override _read (): void {
    this.socket.resume()
  }

  override _write (_chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    callback()
  }

  override _destroy (err: Error | null, callback: (err?: Error | null) => void): void {
    this.socket.destroy()
    callback(err)
  }
}

function replayOnData (this: ReplayedSocket, chunk: Buffer): void {
  if (!this[kReplay].push(chunk)) this.pause()
}

function replayOnEnd (this: ReplayedSocket): void {
  this[kReplay].push(null)
}

function replayOnError (this: ReplayedSocket, err: Error): void {
  this[kReplay].destroy(err)
}

function replayOnClose (this: ReplayedSocket): void {
  this[kReplay].destroy()
}

function createConnection (options: ReplayOptions): Duplex {
  return options.replay
}

/** Reads the upstream's answer with Node's parser; `read`: the bytes the dial read, from the answer's first. */
export function replayResponse (dial: ReplayDial, read: Buffer): void {
  const options: ReplayOptions = {
    method: dial.request.method,
    path: '/',
    setHost: false,
    maxHeaderSize: dial.request.headLimit,
    createConnection: createConnection as unknown as RequestOptions['createConnection'],
    replay: new Replay(dial.socket, read)
  }
  const req = httpRequest(options) as DialRequestMessage
  req[kDial] = dial
  req.on('response', fallbackOnResponse)
  req.on('upgrade', fallbackOnUpgrade)
  req.on('error', fallbackOnError)
  req.end()
}

function fallbackOnError (this: { [kDial]: ReplayDial }, err: Error): void {
  this[kDial].fail(err)
}

/** A 101 the dial's parser refused, which Node's takes: garbage all the same (undici refused such heads too). */
function fallbackOnUpgrade (this: DialRequestMessage, _res: IncomingMessage, socket: Socket): void {
  socket.destroy()
  badUpgrade(this[kDial])
}

function badUpgrade (dial: ReplayDial): void {
  dial.fail(new FST_WS_PROXY_BAD_RESPONSE(dial.server.label, 'malformed 101 response head'))
}

interface DialResponse extends IncomingMessage {
  [kDial]: ReplayDial
}

function fallbackOnResponse (this: DialRequestMessage, res: IncomingMessage): void {
  const dial = this[kDial]
  // A 101 without Upgrade: Node's parser reads it as an answer; undici held it garbage.
  if (res.statusCode === 101) {
    badUpgrade(dial)
    return
  }
  dial.bodyStarted()
  const raw = res.rawHeaders.map(latin1Buffer)
  const response = res as DialResponse
  response[kDial] = dial
  res.on('error', fallbackOnError)
  res.on('aborted', fallbackOnAborted)
  // False when the exchange dropped the answer (a status tried on the next server) or refused its head: it has
  // cancelled the dial by then, and the body is not read.
  if (!dial.owner.onHeaders(res.statusCode as number, raw, res.resume.bind(res), res.statusMessage as string)) return
  dial.response = res
  res.on('data', fallbackOnData)
  res.on('end', fallbackOnEnd)
}

/** The dial is over (it failed, or the client left): nothing more of the body is relayed. */
export function stopRelay (res: IncomingMessage): void {
  res.removeListener('data', fallbackOnData)
  res.removeListener('end', fallbackOnEnd)
}

function latin1Buffer (value: string): Buffer {
  return Buffer.from(value, 'latin1')
}

function fallbackOnData (this: DialResponse, chunk: Buffer): void {
  const dial = this[kDial]
  dial.timer?.refresh()
  if (!dial.owner.onData(chunk)) this.pause()
}

function fallbackOnEnd (this: DialResponse): void {
  const dial = this[kDial]
  dial.finish()
  dial.socket.destroy()
  dial.owner.onComplete()
}

function fallbackOnAborted (this: DialResponse): void {
  this[kDial].fail(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }))
}
