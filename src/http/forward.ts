import type { ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Socket } from 'node:net'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Dispatcher } from 'undici'
import { FST_WS_PROXY_BAD_RESPONSE, FST_WS_PROXY_BODY_TOO_LARGE, FST_WS_PROXY_RESPONSE_ABORTED, FST_WS_PROXY_SEND_TIMEOUT } from '../errors.js'
import { buildResponseHeaders, type ResponseHeaderPlan } from '../headers/response-headers.js'
import { kExchange } from '../symbols.js'
import { takeOverClientSocket } from '../upgrade/listener.js'
import { h2Upgraded } from '../upgrade/h2-connect.js'
import { Tunnel, type TunnelRoute } from '../upgrade/tunnel.js'
import type { TunnelLimits } from '../upgrade/limits.js'
import type { TunnelSet } from '../upgrade/tunnel-registry.js'
import type { VarContext } from '../vars/context.js'
import type { AttemptFailure } from '../options/upstream-schema.js'
import type { BodyOwner, RequestBody, UploadSet } from './body.js'
import { attemptFailure, publicError, upstreamError } from './error-map.js'
import { isConnectionSpecific } from './h2.js'
import { wasOffered } from '../security/upgrade-protocols.js'
import type { UpstreamGroup } from '../upstream/group.js'
import { nextServer, statusFailure, type AttemptState } from '../upstream/next-upstream.js'
import type { PoolSpec, UpstreamServer } from '../upstream/server.js'

/** What an exchange needs from its route; one object per route, shared by all its requests. */
export interface ExchangeRoute extends TunnelRoute, PoolSpec {
  readonly group: UpstreamGroup
  readonly tunnels: TunnelSet
  readonly uploads: UploadSet
  readonly limits: TunnelLimits
  readonly response: ResponseHeaderPlan
  /** Whether error bodies may name the upstream (`exposeErrors`). */
  readonly exposeErrors: boolean
}

/** undici reads a request's TLS server name from its options (not in its types), else from its Host header. */
export interface TlsDispatchOptions extends Dispatcher.DispatchOptions {
  servername?: string
}

interface ExchangeResponse extends ServerResponse {
  [kExchange]?: ProxyExchange
}

/**
 * One proxied request: the undici dispatch handler that relays the upstream's answer to the client.
 * The same class serves plain requests and upgrade handshakes; only a 101 (undici's `onUpgrade`) differs.
 * All state lives in fields set here, and the only listener (`res` 'close') is a module-level function.
 *
 * Before the response head the client gets a coded 502/504 through `reply.send`, so Fastify's error
 * handler and logger see it. From the head on the reply is hijacked and written straight to `res`;
 * a failure after that aborts the client connection instead of passing off a truncated body as complete.
 */
export class ProxyExchange implements Dispatcher.DispatchHandler, BodyOwner, AttemptState {
  readonly route: ExchangeRoute
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
  /** The client address holding a tunnel slot (an upgrade until its 101 or its failure), else null. */
  slotHolder: string | null = null
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

  constructor (route: ExchangeRoute, request: FastifyRequest, reply: FastifyReply, vars: VarContext | null) {
    this.route = route
    this.request = request
    this.reply = reply
    this.vars = vars
    this.res = reply.raw
    this.res[kExchange] = this
    this.res.on('close', resOnClose)
  }

  /** Sends the request to `server` (first attempt or retry). */
  dispatch (server: UpstreamServer): void {
    this.server = server
    this.inFlight = true
    this.abortUpstream = null
    server.active++
    server.requests++
    if (server.sni !== null) (this.options as TlsDispatchOptions).servername = server.sni
    server.pool(this.route).dispatch(this.options, this)
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
    const res = this.res
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
    res.on('drain', resume)
    return true
  }

  onData (chunk: Buffer): boolean {
    return this.res.write(chunk)
  }

  onComplete (): void {
    this.endAttempt()
    this.finished = true
    this.releaseSlot()
    this.releaseBody()
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

  /** The upstream answered 101 to an upgrade: relay the 101 head, then tunnel raw bytes. */
  onUpgrade (statusCode: number, rawHeaders: Buffer[] | string[] | null, upstream: Duplex): void {
    const socket = upstream as Socket
    const raw = rawHeaders as Buffer[]
    /* c8 ignore next 5: undici delivers no 101 after an abort; should one come, the socket is not leaked */
    if (this.finished) {
      this.releaseSlot()
      socket.destroy()
      return
    }
    // RFC 9110 §7.8: a server must not switch to a protocol the client did not offer. Tunnelling one anyway would
    // pass upgradeProtocols (an h2c tunnel answering `Upgrade: foo`): garbage, as any other invalid answer.
    const protocol = upgradeProtocol(raw)
    if (!wasOffered(this.options.upgrade as string, protocol)) {
      socket.destroy()
      this.onError(new FST_WS_PROXY_BAD_RESPONSE(this.server.label, 'switched to a protocol the client did not offer'))
      return
    }
    if (this.request.raw.httpVersionMajor === 2) {
      // An RFC 8441 WebSocket: the client is an HTTP/2 stream (upgrade/h2-connect.ts).
      h2Upgraded(this, raw, socket, protocol)
      return
    }
    const res = this.res
    const client = this.request.raw.socket
    const route = this.route
    const server = this.server
    this.endAttempt()
    route.group.attemptSucceeded(server)
    route.stats.head((performance.now() - this.startedAt) / 1000)
    // RFC 9110 §7.8: the 101 names the protocol switched to (the upstream's Upgrade, kept); Connection is ours.
    const headers = this.responseHeaders(statusCode, raw, true)
    if (headers instanceof Error) {
      socket.destroy()
      return
    }
    headers.push('Connection', 'Upgrade')
    res.sendDate = false
    /* c8 ignore next 4: llhttp rejects every byte Node's writeHead would refuse before a 101 gets here */
    if (this.writeHead(statusCode, '', headers) !== null) {
      socket.destroy()
      return
    }
    this.reply.hijack()
    this.headSent = true
    // end() writes the head synchronously to the socket; the tunnel's bytes follow it in order.
    this.finished = true
    res.end()
    route.stats.answered(101)
    // The tunnel holds the slot from here on; the set gives it back when the tunnel closes.
    this.slotHolder = null
    const tunnel = new Tunnel(client, socket, route, server, this.request.ip, protocol, this.request.log, route.tunnels)
    tunnel.start(takeOverClientSocket(client))
    route.tunnels.add(tunnel)
    this.request.log.debug({ upstream: server.label }, 'tunnel opened')
  }

  /** The exchange is over: its body, if any, leaves the send-timeout watch. */
  releaseBody (): void {
    if (this.body !== null) this.route.uploads.delete(this.body)
  }

  releaseSlot (): void {
    if (this.slotHolder === null) return
    this.route.limits.release(this.route.tunnelCount, this.slotHolder)
    this.slotHolder = null
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
    const res = this.res
    try {
      // RFC 9110 §15: a status outside 100..599 is invalid; Node would relay up to 999.
      if (statusCode > 599) throw new RangeError(`Invalid status code: ${statusCode}`)
      setHookHeaders(this.reply, res, this.request.raw.httpVersionMajor === 2)
      res.writeHead(statusCode, statusText === '' ? undefined : statusText, headers)
      return null
    } catch (err) {
      for (const name of res.getHeaderNames()) res.removeHeader(name)
      // writeHead stores the reason phrase before validating it: left there, Fastify's 502 would throw again (and hang).
      if (this.request.raw.httpVersionMajor !== 2) res.statusMessage = ''
      const error = new FST_WS_PROXY_BAD_RESPONSE(this.server.label, (err as Error).message, { cause: err })
      this.fail(error)
      return error
    }
  }

  fail (err: Error): void {
    this.endAttempt()
    this.finished = true
    this.releaseSlot()
    this.releaseBody()
    const route = this.route
    if (!this.headSent) {
      const answer = upstreamError(err, this.server.label, route.connectTimeout, route.readTimeout)
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
  exchange.releaseSlot()
  exchange.releaseBody()
  exchange.abortUpstream?.()
}

/**
 * Headers a hook set on the reply (@fastify/cors's `Access-Control-*`): Fastify writes them in `reply.send`, which a
 * relayed answer bypasses. They go on the response first, so the upstream's headers of the same name replace them
 * (`writeHead` with a list), as headers set on `reply.raw` (@fastify/helmet) already are.
 */
function setHookHeaders (reply: FastifyReply, res: ServerResponse, h2: boolean): void {
  const headers = reply.getHeaders()
  for (const name in headers) {
    // Over HTTP/2 a connection-specific field (a hook's Keep-Alive) would make Node refuse the whole response.
    if (h2 && isConnectionSpecific(name)) continue
    // Never undefined: `reply.header()` stores '' for it, and `reply.raw` cannot hold it.
    if (!res.hasHeader(name)) res.setHeader(name, headers[name] as string | number | readonly string[])
  }
}

const WEBSOCKET = Buffer.from('websocket')

/** The protocol a 101 switched to (its `Upgrade` header), for logs and events. */
function upgradeProtocol (raw: Buffer[]): string {
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 7 && raw[i].toString('latin1').toLowerCase() === 'upgrade') {
      // The usual answer shares one string instead of each tunnel keeping its own copy.
      return raw[i + 1].equals(WEBSOCKET) ? 'websocket' : raw[i + 1].toString('latin1')
    }
  }
  /* c8 ignore start: undici refuses a 101 without Upgrade before it gets here */
  return ''
}
/* c8 ignore stop */
