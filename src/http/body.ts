import type { IncomingMessage } from 'node:http'
import { Readable } from 'node:stream'
import type { Swept } from '../timers/sweeper.js'
import { kBody } from '../symbols.js'

/** What a request body reports to its exchange. */
export interface BodyOwner {
  /** `limits.body` was exceeded: the client is answered 413 and nothing more goes upstream. */
  bodyTooLarge (limit: number): void
  /** The upstream took no body bytes for `timeouts.send` ms. */
  sendStalled (after: number): void
}

interface BodyRequest extends IncomingMessage {
  [kBody]: RequestBody
}

/**
 * The request body as undici reads it: the client's request relayed through a Readable of ours, so that
 * - bytes are counted against `limits.body` as they stream (never buffered whole);
 * - the sweep sees undici pausing it while the upstream takes nothing (nginx proxy_send_timeout);
 * - when the proxy gives up (413, 504, an upstream error), undici destroys this stream, not the client's request:
 *   the client still gets its answer whole (what it still sends is read and dropped meanwhile, not left to cause a reset).
 */
export class RequestBody extends Readable {
  readonly req: IncomingMessage
  readonly owner: BodyOwner
  readonly limit: number
  readonly sendTimeout: number
  received = 0
  /** Send timeout: when the sweep first saw undici pausing this stream, and the byte count then. */
  stalledSince = 0
  stalledAt = 0

  constructor (req: IncomingMessage, owner: BodyOwner, limit: number, sendTimeout: number) {
    super()
    this.req = req
    this.owner = owner
    this.limit = limit
    this.sendTimeout = sendTimeout
    ;(req as BodyRequest)[kBody] = this
    req.on('data', reqOnData)
    req.on('end', reqOnEnd)
    req.on('close', reqOnClose)
  }

  override _read (): void {
    this.req.resume()
  }

  override _destroy (err: Error | null, callback: (error?: Error | null) => void): void {
    const req = this.req
    req.removeListener('data', reqOnData)
    req.removeListener('end', reqOnEnd)
    req.removeListener('close', reqOnClose)
    // What the client still sends is read and dropped while the answer goes out, so that it is not lost to a reset
    // (closing a socket with unread bytes makes the kernel send RST); the connection is closed after the answer.
    if (!req.complete) req.resume()
    callback(err)
  }
}

function reqOnData (this: BodyRequest, chunk: Buffer): void {
  const body = this[kBody]
  body.received += chunk.length
  if (body.limit > 0 && body.received > body.limit) {
    body.owner.bodyTooLarge(body.limit)
    return
  }
  if (!body.push(chunk)) this.pause()
}

function reqOnEnd (this: BodyRequest): void {
  this[kBody].push(null)
}

function reqOnClose (this: BodyRequest): void {
  // The client went away mid-body: undici sees its body closed early and aborts the request. A complete request's
  // 'close' normally comes after undici has let go of the body (and this listener), but Node does not promise the order.
  /* c8 ignore next */
  if (!this.complete) this[kBody].destroy()
}

/**
 * Request bodies of exchanges in progress, for the send timeout: a body undici has paused (the upstream's socket is
 * full) whose byte count has not moved for `timeouts.send` ms is stalled. Checked by the registration's sweep.
 */
export class UploadSet implements Swept {
  readonly #bodies = new Set<RequestBody>()
  readonly #wake: () => void

  constructor (wake: () => void) {
    this.#wake = wake
  }

  get size (): number {
    return this.#bodies.size
  }

  add (body: RequestBody): void {
    this.#bodies.add(body)
    this.#wake()
  }

  /** The exchange ended (answered, failed or abandoned by the client). */
  delete (body: RequestBody): void {
    this.#bodies.delete(body)
  }

  sweep (now: number): void {
    for (const body of this.#bodies) {
      // A body sent whole is never paused again: the read timeout takes over until the exchange removes it.
      if (!body.isPaused()) {
        body.stalledSince = 0
        continue
      }
      if (body.stalledSince === 0 || body.received !== body.stalledAt) {
        body.stalledSince = now
        body.stalledAt = body.received
      } else if (now - body.stalledSince >= body.sendTimeout) {
        this.#bodies.delete(body)
        body.owner.sendStalled(body.sendTimeout)
      }
    }
  }
}
