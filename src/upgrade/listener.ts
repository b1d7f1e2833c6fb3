import { ServerResponse, type IncomingMessage, type Server } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { claimCovers, claimedPath, requestGateOf } from '../security/request-gate.js'
import { kEarlyBytes, kEarlyLength } from '../symbols.js'

/** A path whose upgrade requests a plugin registration takes: a prefix, or one exact path. */
export interface UpgradeClaim {
  readonly path: string
  readonly exact: boolean
}

/**
 * Sends the server's 'upgrade' requests through Fastify's router, so hooks run and a hook's 401 reaches the
 * wire as a real HTTP answer. One listener per server, shared by every registration of the plugin.
 *
 * Only upgrades for claimed paths are taken: other 'upgrade' listeners (@fastify/websocket, socket.io, ...)
 * keep theirs. When no other listener exists, unclaimed upgrades are routed too, as Node would have done
 * without any listener, so the app's own routes still answer them (e.g. with a 404).
 */
export class UpgradeRouter {
  readonly #server: Server
  readonly #fastify: FastifyInstance
  readonly #claims: UpgradeClaim[] = []
  readonly #listener: (req: IncomingMessage, socket: Socket, head: Buffer) => void

  constructor (server: Server, fastify: FastifyInstance) {
    this.#server = server
    this.#fastify = fastify
    this.#listener = (req, socket, head) => this.route(req, socket, head)
    server.on('upgrade', this.#listener)
  }

  claim (claims: readonly UpgradeClaim[]): void {
    this.#claims.push(...claims)
  }

  /** Whether a target, as `claimedPath` gives it (maybe with its query), is under a claim. */
  claims (target: string): boolean {
    for (const claim of this.#claims) {
      if (claimCovers(claim, target)) return true
    }
    return false
  }

  route (req: IncomingMessage, socket: Socket, head: Buffer): void {
    // By the path the target names once canonical: `http://x/ws/` and `//ws/` are upgrades for `/ws/` too.
    if (!this.claims(claimedPath(req.url as string)) && this.#server.listenerCount('upgrade') > 1) return
    // The other listeners run after this one in the same emit; decide once they all have.
    process.nextTick(routeAfterListeners, this, req, socket, head)
  }

  routeNow (req: IncomingMessage, socket: Socket, head: Buffer): void {
    // Another listener that routes upgrades through Fastify (@fastify/websocket) has bound a response to
    // the socket: the request reaches our route handler through it, so routing it again would run every
    // hook twice (and Node would refuse the second response on the socket).
    if ((socket as { _httpMessage?: unknown })._httpMessage != null) return
    /* c8 ignore next: a client reset within this one tick; nothing is left to answer */
    if (socket.destroyed) return
    // A head no hook should have to judge (too many fields, bad Host, a target that cannot be canonical): answered here.
    if (requestGateOf(this.#server)?.refuseUpgrade(req, socket) === true) return
    // Until a tunnel owns it, an error on the client socket (a reset during the handshake) must not crash
    // the process; the response's 'close' then releases the upstream request.
    socket.on('error', socketOnHandshakeError)
    // Read the socket while the upstream decides: a client that gives up (FIN) is then noticed at once, and
    // its request released (nginx: 499), instead of holding an upstream slot until timeouts.read.
    // What it sends meanwhile is kept for the tunnel, up to a bound.
    const early = socket as HandshakeSocket
    early[kEarlyBytes] = head.length > 0 ? [head] : []
    early[kEarlyLength] = head.length
    socket.on('data', handshakeSocketOnData)
    socket.on('end', handshakeSocketOnEnd)
    socket.resume()
    const res = new ServerResponse(req)
    // The socket has left Node's HTTP parser: whatever is answered here is the last response on it.
    res.shouldKeepAlive = false
    res.assignSocket(socket)
    // Node removed its own 'drain' relay when it handed the socket over: without this one, an answer larger than
    // the socket's buffer (a big refusal body) would wait forever for a 'drain' on the response.
    socket.on('drain', handshakeSocketOnDrain)
    res.on('finish', upgradeResponseOnFinish)
    /* c8 ignore start: Fastify's router answers its errors; a throw would escape the server's 'upgrade' emit
       and crash the process, so it is guarded all the same */
    try {
      this.#fastify.routing(req, res)
    } catch (err) {
      this.#fastify.log.error({ err }, 'routing an upgrade request failed')
      socket.destroy()
    }
    /* c8 ignore stop */
  }

  close (): void {
    this.#server.removeListener('upgrade', this.#listener)
  }
}

function routeAfterListeners (router: UpgradeRouter, req: IncomingMessage, socket: Socket, head: Buffer): void {
  router.routeNow(req, socket, head)
}

/** What a client sent after its request head and before the tunnel took its socket over. */
interface HandshakeSocket extends Socket {
  [kEarlyBytes]: Buffer[]
  [kEarlyLength]: number
}

// Beyond this the socket is paused (the client waits for the 101 anyway); the rest stays in the kernel.
const EARLY_BYTES_LIMIT = 64 * 1024

function handshakeSocketOnData (this: HandshakeSocket, chunk: Buffer): void {
  this[kEarlyBytes].push(chunk)
  this[kEarlyLength] += chunk.length
  if (this[kEarlyLength] >= EARLY_BYTES_LIMIT) this.pause()
}

function handshakeSocketOnEnd (this: HandshakeSocket): void {
  this.destroy()
}

// Never pushed to: the socket's 'data' listener is gone by the time it holds this.
const NO_BYTES: Buffer[] = []

/**
 * Hands the client socket over to a tunnel: stops the handshake's reading and returns, in order, every
 * byte the client sent after its request head (usually none: a WebSocket client waits for the 101).
 */
export function takeOverClientSocket (socket: Socket): Buffer {
  const early = socket as HandshakeSocket
  socket.removeListener('data', handshakeSocketOnData)
  socket.removeListener('end', handshakeSocketOnEnd)
  socket.removeListener('error', socketOnHandshakeError)
  socket.removeListener('drain', handshakeSocketOnDrain)
  socket.pause()
  const chunks = early[kEarlyBytes] ?? NO_BYTES
  // The tunnel keeps the socket for its whole life: nothing of the handshake's should stay on it.
  early[kEarlyBytes] = NO_BYTES
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)
}

function socketOnHandshakeError (this: Socket): void {
  this.destroy()
}

function handshakeSocketOnDrain (this: Socket): void {
  (this as { _httpMessage?: ServerResponse | null })._httpMessage?.emit('drain')
}

/** A non-101 answer closes the connection once written; after a 101 the socket belongs to the tunnel. */
function upgradeResponseOnFinish (this: ServerResponse): void {
  const socket = this.socket as Socket
  socket.removeListener('drain', handshakeSocketOnDrain)
  this.detachSocket(socket)
  // After a 101 the socket belongs to the tunnel (see takeOverClientSocket); otherwise this was the last answer.
  if (this.statusCode !== 101) socket.destroySoon()
}

const routers = new WeakMap<Server, UpgradeRouter>()

/** The router of `server`, installed on first use. */
export function upgradeRouterFor (server: Server, fastify: FastifyInstance): UpgradeRouter {
  let router = routers.get(server)
  if (router === undefined) {
    router = new UpgradeRouter(server, fastify)
    routers.set(server, router)
  }
  return router
}

/** Removes the server's listener (the app is closing). */
export function releaseUpgradeRouter (server: Server): void {
  const router = routers.get(server)
  if (router !== undefined) {
    routers.delete(server)
    router.close()
  }
}
