import type { ServerResponse } from 'node:http'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Dispatcher } from 'undici'
import { FST_WS_PROXY_BAD_RESPONSE, FST_WS_PROXY_BODY_TOO_LARGE, FST_WS_PROXY_RESPONSE_ABORTED, FST_WS_PROXY_SEND_TIMEOUT } from '../errors.js'
import { buildResponseHeaders } from '../headers/response-headers.js'
import type { AttemptFailure } from '../options/upstream-schema.js'
import type { ProxyRoute } from '../routing/proxy-route.js'
import { kExchange } from '../symbols.js'
import { nextServer, statusFailure, type AttemptState } from '../upstream/next-upstream.js'
import type { UpstreamServer } from '../upstream/server.js'
import type { VarContext } from '../vars/context.js'
import type { BodyOwner, RequestBody } from './body.js'
import { attemptFailure, publicError, upstreamError } from './error-map.js'
import { writeResponseHead } from './response-head.js'

interface ExchangeResponse extends ServerResponse {
  [kExchange]?: ProxyExchange
}

/**
 * One proxied request: the undici dispatch handler that relays the upstream's answer to the client, maps its
 * errors, and tries failed attempts again where the group's `nextUpstream` says so (upstream/next-upstream.ts).
 * An upgrade handshake is one too, with a 101 of its own (UpgradeExchange, in the upgrade folder, extends it).
 * All state lives in fields set here, and the only listener (`res` 'close') is a module-level function.
 *
 * Before the response head the client gets a coded 502/504 through `reply.send`, so Fastify's error
 * handler and logger see it. From the head on the reply is hijacked and written straight to `res`;
 * a failure after that aborts the client connection instead of passing off a truncated body as complete.
 */
export class ProxyExchange implements Dispatcher.DispatchHandler, BodyOwner, AttemptState {
  readonly route: ProxyRoute
  readonly request: FastifyRequest
  readonly reply: FastifyReply
  readonly res: ExchangeResponse
  /** The request's variables when the route's templates use any, else null. */
  readonly vars: VarContext | null
  abortUpstream: ((err?: Error) => void) | null = null
  headSent = false
  /** True once the exchange has ended in any way; later events from either side are ignored. */
  finished = false
  /** The request body relayed to undici, when there is one. */
  body: RequestBody | null = null
  /** performance.now() at dispatch, for the response-head latency and the retry time budget. */
  readonly startedAt = performance.now()
  /** The server of the current (or last) attempt, and whether that attempt still counts in its load. */
  server!: UpstreamServer
  inFlight = false
  /** The request's key hash (hash methods), the servers tried so far (once a retry is considered), the next server. */
  hash = 0
  tried: UpstreamServer[] | null = null
  next: UpstreamServer | null = null
  options!: Dispatcher.DispatchOptions
  /** The headers hooks set on the reply (as handleRequest read and checked them), written on the relayed head. */
  hookHeaders!: Record<string, unknown>
  /** undici's resume for this response, until the client first lags (onData): then it listens to the response's 'drain'. */
  resume: (() => void) | null = null

  constructor (route: ProxyRoute, request: FastifyRequest, reply: FastifyReply, vars: VarContext | null) {
    this.route = route
    this.request = request
    this.reply = reply
    this.vars = vars
    this.res = reply.raw
    this.res[kExchange] = this
    this.res.on('close', resOnClose)
  }

  /** Starts an attempt on `server` (first or retry): it counts in the server's load until `endAttempt`. */
  dispatch (server: UpstreamServer): void {
    this.server = server
    this.inFlight = true
    this.abortUpstream = null
    server.active++
    server.requests++
    this.send(server)
  }

  /** Sends the attempt through the server's pool (an upgrade may dial a connection of its own: upgrade/handshake.ts). */
  send (server: UpstreamServer): void {
    // undici reads a request's TLS server name from its options (not in its types), else from its Host header.
    if (server.sni !== null) (this.options as Dispatcher.DispatchOptions & { servername?: string }).servername = server.sni
    server.pool(this.route.pool).dispatch(this.options, this)
  }

  /** The attempt ended: it leaves its server's load (least-conn). */
  endAttempt (): void {
    if (!this.inFlight) return
    this.inFlight = false
    this.server.active--
  }

  onConnect (abort: (err?: Error) => void): void {
    this.abortUpstream = abort
    // The client left while the request waited in the pool's queue.
    if (this.finished) abort()
  }

  // undici calls nothing after an abort or an error, so the callbacks below need no "finished" guard.
  onHeaders (statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    // Interim 1xx answers (103 Early Hints, ...) are not relayed; the final answer follows.
    if (statusCode < 200) return true
    const group = this.route.group
    const kind = statusFailure(group, statusCode)
    if (kind !== undefined) {
      if (this.statusFailed(kind, statusCode)) return false
    } else {
      group.attemptSucceeded(this.server)
    }
    const stats = this.route.stats
    stats.head((performance.now() - this.startedAt) / 1000)
    // RFC 9110 §15.5.22: a 426 must say which protocol to upgrade to, so its Upgrade header is kept. HTTP/2 has
    // neither Upgrade (RFC 9113 §8.2.2; rules cannot add connection-specific fields either) nor reason phrases.
    const h2 = this.request.raw.httpVersionMajor === 2
    const headers = this.responseHeaders(statusCode, rawHeaders, statusCode === 426 && !h2)
    const refused = headers instanceof Error ? headers : this.writeHead(statusCode, h2 ? '' : statusText, headers)
    if (refused !== null) {
      this.abortUpstream?.(refused)
      return false
    }
    this.reply.hijack()
    this.headSent = true
    stats.answered(statusCode)
    this.resume = resume
    return true
  }

  onData (chunk: Buffer): boolean {
    // undici is paused only once the client lags by RELAY_BUFFER: `write` returns false for any chunk over the
    // socket's 16 KiB high-water mark, and pausing undici's parser per chunk cost a re-read and re-copy of the
    // socket's data plus an empty write on resume. `drain` still follows the false `write`, and resumes it: listened
    // to from the first pause on, so that the many answers that never lag add no listener.
    const res = this.res
    if (res.write(chunk) || res.writableLength < RELAY_BUFFER) return true
    const resume = this.resume
    if (resume !== null) {
      res.on('drain', resume)
      this.resume = null
    }
    return false
  }

  onComplete (): void {
    this.endAttempt()
    this.finished = true
    this.release()
    this.res.end()
  }

  onError (err: Error): void {
    if (this.finished) return
    this.endAttempt()
    const next = this.next
    if (next !== null) {
      // statusFailed() aborted this attempt for a retry.
      this.next = null
      this.dispatch(next)
      return
    }
    // After the head the answer is the client's: nothing can be tried again, and nginx does not hold a failure
    // to read the rest of a response against the server either.
    if (this.headSent) {
      this.fail(err)
      return
    }
    const failure = attemptFailure(err)
    const server = this.server
    const group = this.route.group
    group.attemptFailed(server, err, failure.kind)
    const retry = failure.kind === null ? null : nextServer(group, this, failure.kind, failure.sent)
    if (retry === null) {
      this.fail(err)
      return
    }
    this.request.log.warn({ err, upstream: server.addr, next: retry.addr, attempt: (this.tried as UpstreamServer[]).length, group: group.name },
      'upstream attempt failed: trying the next server')
    this.retryWith(retry)
  }

  /**
   * An answer whose status the group counts as a failure (`failOn`) or retries (`nextUpstream.on`): counted, and when
   * another server may be tried the answer is dropped unseen (this attempt is aborted, see onError). True when dropped.
   */
  statusFailed (kind: AttemptFailure, statusCode: number): boolean {
    const group = this.route.group
    const server = this.server
    group.attemptFailed(server, new Error(`status ${statusCode}`), kind)
    const retry = nextServer(group, this, kind, true)
    if (retry === null) return false
    this.request.log.warn({ upstream: server.addr, statusCode, next: retry.addr, attempt: (this.tried as UpstreamServer[]).length, group: group.name },
      'upstream answered a status that is tried again: trying the next server')
    this.next = retry
    this.route.stats.retries++
    this.retryAddr(retry)
    ;(this.abortUpstream as (err?: Error) => void)(new Error(`status ${statusCode} tried on the next server`))
    return true
  }

  get method (): string {
    return this.options.method
  }

  /** Bodies are streamed, not buffered: once undici has read from one, it cannot be sent again. */
  get resendable (): boolean {
    const body = this.body
    return body === null || !(body.destroyed || body.readableDidRead)
  }

  retryWith (server: UpstreamServer): void {
    this.route.stats.retries++
    this.retryAddr(server)
    this.dispatch(server)
  }

  /** nginx `$upstream_addr` lists every server tried, comma-separated. */
  retryAddr (server: UpstreamServer): void {
    if (this.vars !== null) this.vars.upstreamAddr += `, ${server.addr}`
  }

  /** The exchange is over (called once, as it ends): what it holds is given back; its body, if any, leaves the send-timeout watch. */
  release (): void {
    if (this.body !== null) this.route.uploads.delete(this.body)
  }

  bodyTooLarge (limit: number): void {
    this.giveUp(new FST_WS_PROXY_BODY_TOO_LARGE(limit))
  }

  sendStalled (after: number): void {
    this.giveUp(new FST_WS_PROXY_SEND_TIMEOUT(this.server.label, after))
  }

  /** The proxy ends the exchange itself: through undici when it has the request (its onError follows), else now. */
  giveUp (err: Error): void {
    if (this.finished) return
    if (this.abortUpstream !== null) this.abortUpstream(err)
    else this.fail(err)
  }

  /** The client's response headers, or the error (already answered to the client) when a template's value was refused. */
  responseHeaders (statusCode: number, raw: Buffer[], keepUpgrade: boolean): string[] | Error {
    const vars = this.vars
    if (vars !== null) {
      vars.upstreamStatus = statusCode
      vars.upstreamHeaders = raw
    }
    try {
      return buildResponseHeaders(raw, keepUpgrade, this.route.response, vars)
    } catch (err) {
      this.request.log.warn({ err }, 'response refused: a header value would not be a valid HTTP field')
      this.fail(err as Error)
      return err as Error
    }
  }

  /**
   * Writes the response head; on Node's refusal (a status or header it will not send) nothing has been written,
   * so the client gets a clean 502 instead, and the refusal is returned.
   */
  writeHead (statusCode: number, statusText: string, headers: string[]): Error | null {
    const refused = writeResponseHead(this.res, this.hookHeaders, statusCode, statusText, headers, this.request.raw.httpVersionMajor === 2)
    if (refused === null) return null
    const error = new FST_WS_PROXY_BAD_RESPONSE(this.server.label, refused.message, { cause: refused })
    this.fail(error)
    return error
  }

  fail (err: Error): void {
    this.endAttempt()
    this.finished = true
    this.release()
    const route = this.route
    if (!this.headSent) {
      const answer = upstreamError(err, this.server.label, route.settings.connectTimeout, route.settings.readTimeout)
      route.stats.upstreamError(answer)
      route.stats.answered((answer as Error & { statusCode: number }).statusCode)
      // The client is still sending its body: it is read and dropped (see RequestBody), and the connection closed after the answer.
      if (this.body !== null && !this.request.raw.complete && this.request.raw.httpVersionMajor !== 2) this.reply.header('connection', 'close')
      this.reply.send(route.exposeErrors ? answer : publicError(answer, this.request.id))
      return
    }
    const aborted = new FST_WS_PROXY_RESPONSE_ABORTED(this.server.label, err.message, { cause: err })
    route.stats.upstreamError(aborted)
    this.request.log.warn({ err: aborted }, 'upstream response aborted')
    this.res.destroy()
  }
}

/** The client connection closed: release the upstream request and its socket if it is still running. */
function resOnClose (this: ExchangeResponse): void {
  const exchange = this[kExchange] as ProxyExchange
  this[kExchange] = undefined
  if (exchange.finished) return
  exchange.finished = true
  exchange.endAttempt()
  exchange.release()
  exchange.abortUpstream?.()
}

/** How far a response may run ahead of the client before undici's parser is paused (Node's pipe holds about as much). */
const RELAY_BUFFER = 128 * 1024
