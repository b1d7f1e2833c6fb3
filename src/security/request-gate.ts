import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyBaseLogger } from 'fastify'
import { STATUS_CODES } from 'node:http'
import { FST_WS_PROXY_BAD_PATH, FST_WS_PROXY_METHOD_NOT_ALLOWED } from '../errors.js'
import { kHeadChecked } from '../symbols.js'
import { effectiveHeaderCap, headRefusal } from './request-head.js'
import { canonicalTarget, looksCanonical, type CanonicalTarget, type TargetRefusal } from './target.js'

/** Paths whose requests a plugin registration proxies: a prefix, or one exact path; with its header-field cap. */
export interface GateClaim {
  readonly path: string
  readonly exact: boolean
  readonly headerCap: number
}

export interface CodedError extends Error {
  code: string
  statusCode: number
}

type RequestListener = (req: IncomingMessage, res: ServerResponse) => void

/**
 * Refuses, before Fastify routes them and so before any hook, the requests for proxied paths that no hook should
 * have to judge: too many header fields (431), a bad or repeated Host, a repeated singleton field, a target that
 * cannot be made canonical (400). One gate per server, shared by every registration; it wraps Fastify's own
 * 'request' listener, and the upgrade router asks it about upgrades. `CONNECT` gets a 405 when nobody else takes it.
 * Requests that reach a proxied route by another way (`inject()`, a `serverFactory` wrapping Fastify's handler) are
 * checked by the route itself.
 */
export class RequestGate {
  readonly #server: Server
  readonly #log: FastifyBaseLogger
  readonly #claims: GateClaim[] = []
  readonly #fastifyListener: RequestListener | null
  readonly #listener: RequestListener
  readonly #connect: (req: IncomingMessage, socket: Socket | ServerResponse) => void

  constructor (server: Server, routing: RequestListener, log: FastifyBaseLogger) {
    this.#server = server
    this.#log = log
    this.#listener = (req, res) => this.onRequest(req, res)
    this.#connect = (req, socket) => this.onConnect(req, socket)
    // Fastify's handler is swapped for the gate in place, so listeners before and after it keep their order.
    const listeners = server.listeners('request') as RequestListener[]
    this.#fastifyListener = listeners.includes(routing) ? routing : null
    if (this.#fastifyListener !== null) {
      server.removeAllListeners('request')
      for (const listener of listeners) server.on('request', listener === routing ? this.#listener : listener)
    }
    server.on('connect', this.#connect)
  }

  claim (claims: readonly GateClaim[]): void {
    this.#claims.push(...claims)
  }

  /** The claim covering a request, by its target's canonical path (best effort for a refused target). */
  claimFor (url: string): GateClaim | null {
    return this.#claimOf(claimedPath(url))
  }

  #claimOf (target: string): GateClaim | null {
    for (const claim of this.#claims) {
      if (claimCovers(claim, target)) return claim
    }
    return null
  }

  /** Why a request for a proxied path is refused before routing, or null (then marked as checked). */
  refusal (req: IncomingMessage): CodedError | null {
    const url = req.url as string
    // One scan in the common case; a target that is not canonical is parsed once, for its claim and its refusal.
    const target = looksCanonical(url) ? null : canonicalTarget(url)
    const claim = this.#claimOf(target === null ? url : pathOf(url, target))
    if (claim === null) return null
    const head = headRefusal(req, effectiveHeaderCap(claim.headerCap, this.#server.maxHeadersCount))
    if (head !== null) return head as CodedError
    if (typeof target === 'string') return new FST_WS_PROXY_BAD_PATH(target) as CodedError
    (req as IncomingMessage & { [kHeadChecked]?: boolean })[kHeadChecked] = true
    return null
  }

  onRequest (req: IncomingMessage, res: ServerResponse): void {
    const err = this.refusal(req)
    if (err === null) {
      (this.#fastifyListener as RequestListener).call(this.#server, req, res)
      return
    }
    this.#log.info({ err, method: req.method, client: req.socket.remoteAddress }, 'request refused before routing')
    answerResponse(req, res, err)
  }

  /** An upgrade refused before routing: answered on the raw socket, which is then closed. */
  refuseUpgrade (req: IncomingMessage, socket: Socket): boolean {
    const err = this.refusal(req)
    if (err === null) return false
    this.#log.info({ err, method: req.method, client: socket.remoteAddress }, 'upgrade refused before routing')
    answerRaw(socket, err)
    return true
  }

  /**
   * Over HTTP/1.1 Node hands a CONNECT over with the raw socket; over HTTP/2 (an Http2Server's 'connect' event) with a
   * response on the stream. An RFC 8441 extended CONNECT (`:protocol`) goes to `extendedConnect` when one is set.
   */
  onConnect (req: IncomingMessage, socket: Socket | ServerResponse): void {
    if (req.httpVersionMajor === 2 && req.headers[':protocol'] !== undefined && this.extendedConnect !== null) {
      this.extendedConnect(req, socket as ServerResponse)
      return
    }
    // Another 'connect' listener (a forward proxy in the same app) owns CONNECT.
    if (this.#server.listenerCount('connect') > 1) return
    const err = new FST_WS_PROXY_METHOD_NOT_ALLOWED('CONNECT') as CodedError
    this.#log.info({ err, client: req.socket.remoteAddress }, 'CONNECT refused')
    if (req.httpVersionMajor === 2) answerResponse(req, socket as ServerResponse, err)
    else answerRaw(socket as Socket, err)
  }

  /** Takes HTTP/2 extended CONNECT requests (RFC 8441 WebSockets), set by the plugin when it enables them. */
  extendedConnect: ((req: IncomingMessage, res: ServerResponse) => void) | null = null

  close (): void {
    this.#server.removeListener('connect', this.#connect)
    if (this.#fastifyListener === null) return
    const listeners = this.#server.listeners('request') as RequestListener[]
    this.#server.removeAllListeners('request')
    for (const listener of listeners) this.#server.on('request', listener === this.#listener ? this.#fastifyListener : listener)
  }
}

/** Fastify's default error body, so clients meet one shape whether a refusal comes from the gate or a route. */
function errorBody (err: CodedError): string {
  return JSON.stringify({ statusCode: err.statusCode, code: err.code, error: STATUS_CODES[err.statusCode], message: err.message })
}

/** A refusal answered on a response: the connection is closed after it (HTTP/1.1), or only the stream ends (HTTP/2). */
export function answerResponse (req: IncomingMessage, res: ServerResponse, err: CodedError): void {
  const body = errorBody(err)
  const headers: Record<string, string | number> = { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) }
  // RFC 9113 §8.2.2: no Connection field on HTTP/2.
  if (req.httpVersionMajor !== 2) headers.connection = 'close'
  res.writeHead(err.statusCode, headers)
  res.end(body)
}

function answerRaw (socket: Socket, err: CodedError): void {
  const body = errorBody(err)
  socket.on('error', destroyOnError)
  socket.end(`HTTP/1.1 ${err.statusCode} ${STATUS_CODES[err.statusCode] as string}\r\ncontent-type: application/json; charset=utf-8\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
}

function destroyOnError (this: Socket): void {
  this.destroy()
}

const ABSOLUTE_PREFIX = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/

/** Whether a claim covers a target as `claimedPath` gives it (an exact claim: that path, maybe with a query). */
export function claimCovers (claim: { readonly path: string, readonly exact: boolean }, target: string): boolean {
  if (!target.startsWith(claim.path)) return false
  return !claim.exact || target.length === claim.path.length || target.charCodeAt(claim.path.length) === 63 /* ? */
}

/**
 * The target once canonical (its query kept: prefixes never contain `?`); for a refused one, its path with slashes
 * merged, to find its route. The common case returns the target itself, allocating nothing.
 */
export function claimedPath (url: string): string {
  return looksCanonical(url) ? url : pathOf(url, canonicalTarget(url))
}

/** The path a non-canonical target is claimed by: its canonical path, or for a refused one its slashes merged. */
function pathOf (url: string, target: CanonicalTarget | TargetRefusal): string {
  if (typeof target !== 'string') {
    const end = target.target.indexOf('?')
    return end === -1 ? target.target : target.target.slice(0, end)
  }
  const path = url.replace(ABSOLUTE_PREFIX, '').split(/[?#]/, 1)[0]
  return ('/' + path).replace(/\/+/g, '/')
}

const gates = new WeakMap<Server, RequestGate>()

/** The gate of `server`, installed on first use. */
export function requestGateFor (server: Server, routing: RequestListener, log: FastifyBaseLogger): RequestGate {
  let gate = gates.get(server)
  if (gate === undefined) {
    gate = new RequestGate(server, routing, log)
    gates.set(server, gate)
  }
  return gate
}

/** The gate of `server`, if one is installed. */
export function requestGateOf (server: Server): RequestGate | undefined {
  return gates.get(server)
}

/** Removes the gate (the app is closing): Fastify's listener is put back. */
export function releaseRequestGate (server: Server): void {
  const gate = gates.get(server)
  if (gate !== undefined) {
    gates.delete(server)
    gate.close()
  }
}
