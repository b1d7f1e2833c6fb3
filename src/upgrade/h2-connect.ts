import { createHash, randomBytes } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Http2Stream } from 'node:http2'
import type { Socket } from 'node:net'
import { finished } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { FST_WS_PROXY_EXTENDED_CONNECT_REFUSED } from '../errors.js'
import { answerResponse, claimCovers, claimedPath, type CodedError, type RequestGate } from '../security/request-gate.js'
import { kWsKey } from '../symbols.js'
import type { UpgradeClaim } from './listener.js'

// WebSockets over HTTP/2 (RFC 8441). A browser opens one as a stream on its h2 connection: an extended CONNECT with
// `:protocol: websocket`, once the server's SETTINGS have ENABLE_CONNECT_PROTOCOL. The proxy routes it through Fastify
// as the GET handshake HTTP/1.1 would be (hooks see `GET`, `Upgrade: websocket` and the other fields), sends the
// upstream an ordinary HTTP/1.1 handshake with a key of its own, and on the upstream's 101 (upgrade/handshake.ts) answers
// the stream 200 and tunnels the stream's DATA to and from the upstream socket, with the same frame tracking as an
// HTTP/1.1 tunnel.

/** What the extended CONNECT handling hangs on an Http2ServerRequest. */
export interface ConnectRequest extends IncomingMessage {
  upgrade?: boolean
  stream: Http2Stream
  [kWsKey]?: string
}

/** The HTTP/2 server methods used here (Node's Http2Server and Http2SecureServer). */
interface H2Server {
  updateSettings (settings: { enableConnectProtocol: boolean }): void
}

/**
 * Takes the extended CONNECT requests of one HTTP/2 server (through its request gate, which owns the 'connect'
 * event) for the paths the plugin's registrations claim for upgrades.
 */
export class ExtendedConnect {
  readonly #fastify: FastifyInstance
  readonly #gate: RequestGate
  readonly #claims: UpgradeClaim[] = []

  constructor (fastify: FastifyInstance, gate: RequestGate) {
    this.#fastify = fastify
    this.#gate = gate
  }

  claim (claims: readonly UpgradeClaim[]): void {
    this.#claims.push(...claims)
  }

  route (req: IncomingMessage, res: ServerResponse): void {
    const protocol = req.headers[':protocol'] as string
    let err: CodedError | null = null
    if (protocol.toLowerCase() !== 'websocket') {
      err = new FST_WS_PROXY_EXTENDED_CONNECT_REFUSED(`protocol ${JSON.stringify(protocol)} is not supported`) as CodedError
    } else {
      // A head no hook should have to judge (too many fields, bad Host, a target that cannot be canonical), then
      // a path no route takes upgrades for.
      err = this.#gate.refusal(req)
      if (err === null && !this.#claims.some((claim) => claimCovers(claim, claimedPath(req.url as string)))) {
        err = new FST_WS_PROXY_EXTENDED_CONNECT_REFUSED('no WebSocket route for this path') as CodedError
      }
    }
    if (err !== null) {
      this.#fastify.log.info({ err, client: req.socket.remoteAddress }, 'extended CONNECT refused before routing')
      answerResponse(req, res, err)
      return
    }
    // From here it is the HTTP/1.1 handshake hooks know: a GET asking to upgrade to websocket.
    const connect = req as ConnectRequest
    connect.upgrade = true
    connect.method = 'GET'
    connect.headers.upgrade = 'websocket'
    connect[kWsKey] = randomBytes(16).toString('base64')
    this.#fastify.routing(req, res)
  }
}

const routers = new WeakMap<object, ExtendedConnect>()

/**
 * The extended CONNECT handling of `server`, installed on first use with `SETTINGS_ENABLE_CONNECT_PROTOCOL` advertised
 * to the sessions that connect from now on; null when the server is not an HTTP/2 one.
 */
export function extendedConnectFor (server: object, fastify: FastifyInstance, gate: RequestGate): ExtendedConnect | null {
  if (typeof (server as Partial<H2Server>).updateSettings !== 'function') return null
  let router = routers.get(server)
  if (router === undefined) {
    router = new ExtendedConnect(fastify, gate)
    routers.set(server, router)
    ;(server as H2Server).updateSettings({ enableConnectProtocol: true })
    gate.extendedConnect = router.route.bind(router)
  }
  return router
}

/** Stops taking extended CONNECT requests (the app is closing). */
export function releaseExtendedConnect (server: object): void {
  routers.delete(server)
}

/** RFC 6455 §4.2.2: the Sec-WebSocket-Accept an upstream must answer to `key`. */
export function acceptFor (key: string): string {
  return createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64')
}

/** The value of response header `lower` in an undici raw list, or undefined. */
function rawValue (raw: Buffer[], lower: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === lower.length && raw[i].toString('latin1').toLowerCase() === lower) return raw[i + 1].toString('latin1')
  }
  return undefined
}

/** Whether the upstream's 101 carries the Sec-WebSocket-Accept of the key the proxy sent (RFC 6455 §4.2.2). */
export function acceptMatches (req: ConnectRequest, raw: Buffer[]): boolean {
  return rawValue(raw, 'sec-websocket-accept') === acceptFor(req[kWsKey] as string)
}

/** The stream's 200 carries the upstream's other fields (subprotocol, extensions), not the HTTP/1.1 handshake's accept key. */
export function dropAcceptKey (headers: string[]): void {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i].toLowerCase() === 'sec-websocket-accept') headers.splice(i, 2)
  }
}

/** The client side of an RFC 8441 tunnel: the request's stream, given the net.Socket methods a tunnel calls. */
export function h2TunnelClient (req: ConnectRequest): Socket {
  const stream = req.stream as Http2Stream & TunnelStream
  stream.setNoDelay = setNoDelay
  stream.destroySoon = destroySoon
  return stream as unknown as Socket
}

/** The net.Socket methods a tunnel calls on its client that an Http2Stream lacks. */
interface TunnelStream {
  setNoDelay: () => void
  destroySoon: () => void
}

function setNoDelay (): void {
  // The session's socket is Node's: HTTP/2 frames are written as they come.
}

/** As net.Socket's: ends the writable side (END_STREAM), then destroys the stream once what is queued is sent. */
function destroySoon (this: Http2Stream): void {
  // A second end() is harmless (its error would go to a callback); finished() calls back at once when the writable
  // side has already finished, or the stream is gone.
  this.end()
  finished(this, { readable: false }, () => { this.destroy() })
}
