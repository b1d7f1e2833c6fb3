import type { Socket } from 'node:net'
import type { FastifyBaseLogger } from 'fastify'
import { kPeer, kTunnel } from '../symbols.js'

/** Why a tunnel ended, as logged. */
export type TunnelCloseReason = 'client-closed' | 'upstream-closed' | 'client-error' | 'upstream-error' | 'read-timeout' | 'shutdown'

/** What a tunnel reports to the set that owns it. */
export interface TunnelOwner {
  tunnelClosed (tunnel: Tunnel): void
}

interface TunnelSocket extends Socket {
  [kPeer]: TunnelSocket
  [kTunnel]: Tunnel
}

/**
 * A raw byte tunnel between the client socket and the upstream socket after a 101: nothing is parsed.
 * Listeners are module-level functions that find their peer through symbols on `this` (no closures per tunnel).
 * Backpressure: a socket whose peer's write buffer is full is paused until the peer drains.
 * A FIN on one side is passed on as a FIN to the other; an error on either side destroys both.
 */
export class Tunnel {
  readonly client: Socket
  readonly upstream: Socket
  readonly origin: string
  readonly readTimeout: number
  readonly log: FastifyBaseLogger
  readonly openedAt: number
  /** Set on every upstream chunk, cleared by the sweep: the cheapest possible per-chunk bookkeeping. */
  upstreamActive = true
  /** When the sweep first saw the upstream silent. */
  silentSince = 0
  reason: TunnelCloseReason | null = null
  bytesFromClient = 0
  bytesFromUpstream = 0
  #open = 2
  readonly #owner: TunnelOwner

  constructor (client: Socket, upstream: Socket, origin: string, readTimeout: number, log: FastifyBaseLogger, owner: TunnelOwner) {
    this.client = client
    this.upstream = upstream
    this.origin = origin
    this.readTimeout = readTimeout
    this.log = log
    this.#owner = owner
    this.openedAt = Date.now()
  }

  /** Starts moving bytes; `clientHead` holds what the client sent after its request head (written upstream first). */
  start (clientHead: Buffer): void {
    const client = this.client as TunnelSocket
    const upstream = this.upstream as TunnelSocket
    client[kPeer] = upstream
    upstream[kPeer] = client
    client[kTunnel] = this
    upstream[kTunnel] = this
    // Node's server timeouts (headersTimeout, keepAliveTimeout, Fastify's connectionTimeout) must not reach a tunnel.
    client.setTimeout(0)
    upstream.setTimeout(0)
    client.setNoDelay(true)
    upstream.setNoDelay(true)
    // undici's sockets are not half-open: on the upstream's FIN Node would end our side too, and what the
    // client still sends would be lost. Each FIN is passed on by `socketOnEnd` instead (Node's server sockets already allow it).
    upstream.allowHalfOpen = true
    client.on('data', clientOnData)
    upstream.on('data', upstreamOnData)
    for (const socket of [client, upstream]) {
      socket.on('drain', socketOnDrain)
      socket.on('end', socketOnEnd)
      socket.on('error', socketOnError)
      socket.on('close', socketOnClose)
    }
    if (clientHead.length > 0) {
      this.bytesFromClient += clientHead.length
      upstream.write(clientHead)
    }
    client.resume()
    upstream.resume()
  }

  /** Ends the tunnel now: both sockets are destroyed. The first reason given is the one logged. */
  destroy (reason: TunnelCloseReason): void {
    this.reason ??= reason
    this.client.destroy()
    this.upstream.destroy()
  }

  socketClosed (): void {
    if (--this.#open === 0) {
      this.log.debug({
        upstream: this.origin,
        reason: this.reason,
        durationMs: Date.now() - this.openedAt,
        bytesFromClient: this.bytesFromClient,
        bytesFromUpstream: this.bytesFromUpstream
      }, 'tunnel closed')
      this.#owner.tunnelClosed(this)
    }
  }
}

function clientOnData (this: TunnelSocket, chunk: Buffer): void {
  this[kTunnel].bytesFromClient += chunk.length
  relay(this, chunk)
}

function upstreamOnData (this: TunnelSocket, chunk: Buffer): void {
  const tunnel = this[kTunnel]
  tunnel.upstreamActive = true
  tunnel.bytesFromUpstream += chunk.length
  relay(this, chunk)
}

function relay (from: TunnelSocket, chunk: Buffer): void {
  const to = from[kPeer]
  // A peer that has already ended its writing side cannot take more; what arrives late is dropped.
  if (to.writable && !to.write(chunk)) from.pause()
}

function socketOnDrain (this: TunnelSocket): void {
  this[kPeer].resume()
}

function socketOnEnd (this: TunnelSocket): void {
  this[kPeer].end()
}

function socketOnError (this: TunnelSocket, err: Error): void {
  const tunnel = this[kTunnel]
  const fromClient = this === tunnel.client
  tunnel.log.debug({ err, upstream: tunnel.origin }, fromClient ? 'tunnel client socket error' : 'tunnel upstream socket error')
  tunnel.destroy(fromClient ? 'client-error' : 'upstream-error')
}

function socketOnClose (this: TunnelSocket): void {
  const tunnel = this[kTunnel]
  const peer = this[kPeer]
  tunnel.reason ??= this === tunnel.client ? 'client-closed' : 'upstream-closed'
  // Nothing more can reach this side: flush what is queued for the peer, then let it go.
  peer.destroySoon()
  tunnel.socketClosed()
}
