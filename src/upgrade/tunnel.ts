import type { Socket } from 'node:net'
import type { FastifyBaseLogger } from 'fastify'
import type { ProxyRoute } from '../routing/proxy-route.js'
import { kTunnel } from '../symbols.js'
import type { TunnelCloseReason } from '../telemetry/events.js'
import { goingAwayFrame, pingFrame } from './control-frames.js'
import { relayFrames } from './frame-relay.js'
import { FrameStream, track, type FrameEvents } from './frame-tracker.js'
import { dropReadBuffer, inPlaceReader, MAX_DROPS, readInPlace } from './tunnel-reads.js'
import type { UpstreamServer } from '../upstream/server.js'

/** What a tunnel reports to the set that owns it. */
export interface TunnelOwner {
  tunnelClosed (tunnel: Tunnel): void
}

// The one field a tunnel hangs on each of its sockets: peer and frames are read from the tunnel (one object shape).
interface TunnelSocket extends Socket {
  [kTunnel]: Tunnel
}

// How long a tunnel closed by a timer may take to flush its close frames and FIN before it is destroyed.
const EXPIRY_GRACE = 1000

/**
 * A byte tunnel between the client socket and the upstream socket after a 101.
 * Listeners are module-level functions that find their peer through symbols on `this` (no closures per tunnel).
 * Backpressure: a socket whose peer's write buffer is full is paused until the peer drains.
 * A FIN on one side is passed on as a FIN to the other; an error on either side destroys both.
 *
 * WebSocket tunnels also follow frame boundaries in each direction (headers only, see frame-tracker.ts), so that the
 * proxy can close them cleanly (a Close 1001 to each side at a boundary) and ping the client. Timers are not
 * per tunnel: a chunk sets a flag, and the set's sweep turns flags into timestamps and enforces the timeouts.
 */
export class Tunnel implements FrameEvents {
  readonly client: Socket
  readonly upstream: Socket
  readonly route: ProxyRoute
  /** The upstream server it goes to (it counts in the server's load until it closes). */
  readonly server: UpstreamServer
  /** The client address (Fastify's `request.ip`, so `trustProxy` applies) and the protocol switched to. */
  readonly clientAddress: string
  readonly protocol: string
  /** The client's HTTP version: `2` for a WebSocket over HTTP/2 (RFC 8441), whose client side is a stream. */
  httpVersion: '1.1' | '2' = '1.1'
  readonly log: FastifyBaseLogger
  readonly openedAt: number
  /** client → upstream and upstream → client frames; both null unless the protocol is WebSocket. */
  readonly fromClient: FrameStream | null
  readonly fromUpstream: FrameStream | null
  /** Set per upstream chunk, turned into `upstreamSilentSince` by the sweep: the cheapest per-chunk bookkeeping there is. */
  upstreamActive = true
  upstreamSilentSince: number
  /**
   * The other way, the sweep compares the upstream socket's `bytesWritten` with what it saw last: only bytes relayed
   * to the upstream count, not the pongs the proxy consumes (which would keep a pinged tunnel from ever being idle).
   */
  forwardedUpstream = 0
  clientSilentSince: number
  /** Send timeout: when the upstream's write buffer was first seen stuck, and how much had been flushed then. */
  sendStuckSince = 0
  flushed = 0
  /** Keep-alive: when the last ping went out, and whether its pong is awaited. */
  pingSentAt: number
  pingOutstanding = false
  /** Once closing (shutdown or a timer): the time by which it is destroyed whatever happens. */
  deadline = 0
  reason: TunnelCloseReason | null = null
  bytesFromClient = 0
  bytesFromUpstream = 0
  // The last chunk read from each side, held until the next one or the sweep: a GC that frees a batch of dead read
  // buffers with none live above them lets glibc trim its heap, and the next reads page-fault fresh memory in.
  lastFromClient: Buffer | null = null
  lastFromUpstream: Buffer | null = null
  /** How many times the sweep pointed an idle socket back at the shared read buffer (tunnel-reads.ts), capped. */
  readBuffersDropped = 0
  #open = 2
  readonly #owner: TunnelOwner

  constructor (client: Socket, upstream: Socket, route: ProxyRoute, server: UpstreamServer, clientAddress: string, protocol: string,
    log: FastifyBaseLogger, owner: TunnelOwner) {
    this.client = client
    this.upstream = upstream
    this.route = route
    this.server = server
    server.tunnels++
    this.clientAddress = clientAddress
    this.protocol = protocol
    this.log = log
    this.#owner = owner
    this.openedAt = Date.now()
    this.upstreamSilentSince = this.openedAt
    this.clientSilentSince = this.openedAt
    this.pingSentAt = this.openedAt
    const websocket = protocol.toLowerCase() === 'websocket'
    this.fromClient = websocket ? new FrameStream(true, this) : null
    this.fromUpstream = websocket ? new FrameStream(false, this) : null
  }

  /** Starts moving bytes; `clientHead` holds what the client sent after its request head (written upstream first). */
  start (clientHead: Buffer): void {
    const client = this.client as TunnelSocket
    const upstream = this.upstream as TunnelSocket
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
    listen(client)
    listen(upstream)
    if (clientHead.length > 0) clientOnData.call(client, clientHead)
    // Read in place where Node allows it (tunnel-reads.ts), else with 'data' events.
    if (!readInPlace(client, clientOnRead, clientOnData)) client.on('data', clientOnData)
    if (!readInPlace(upstream, upstreamOnRead, upstreamOnData)) upstream.on('data', upstreamOnData)
    client.resume()
    upstream.resume()
  }

  get closing (): boolean {
    return this.deadline !== 0
  }

  /** Ends the tunnel now: both sockets are destroyed. The first reason given is the one logged. */
  destroy (reason: TunnelCloseReason): void {
    this.reason ??= reason
    this.client.destroy()
    this.upstream.destroy()
  }

  /**
   * Closes the tunnel cleanly, giving it until `deadline` (then the sweep destroys it). A WebSocket tunnel gets a
   * Close 1001 "going away" toward each side that has not sent its own Close yet, at the next frame boundary
   * (unmasked to the client, masked to the upstream); each side is then sent a FIN once it has answered with
   * its Close. Any other tunnel, or one whose frames could not be followed, is half-closed both ways.
   */
  goAway (reason: TunnelCloseReason, deadline: number): void {
    if (this.closing) return
    this.reason ??= reason
    this.deadline = deadline
    const toUpstream = this.fromClient
    const toClient = this.fromUpstream
    if (toUpstream === null || toClient === null || toUpstream.lost || toClient.lost) {
      this.client.end()
      this.upstream.end()
      return
    }
    this.sayGoingAway(false)
  }

  /**
   * A timer fired: Close 1001 frames go out where a boundary allows it right now, then both sides get a FIN,
   * and whatever is still open a second later is destroyed.
   */
  expire (reason: TunnelCloseReason, now: number): void {
    // Only called by the sweep, which skips tunnels already closing.
    this.reason ??= reason
    this.deadline = now + EXPIRY_GRACE
    this.sayGoingAway(true)
    this.client.end()
    this.upstream.end()
  }

  /**
   * A Close 1001 toward each side that has not sent its own Close (none on a blind pipe): at the next boundary, or,
   * with `onlyAtBoundaryNow`, only where the bytes forwarded so far end on one. Its reason is the tunnel's.
   */
  sayGoingAway (onlyAtBoundaryNow: boolean): void {
    const toClient = this.fromUpstream
    const toUpstream = this.fromClient
    if (toClient === null || toUpstream === null) return
    // Set by every caller (goAway, expire) before it gets here.
    const reason = this.reason as TunnelCloseReason
    if (!toClient.sentClose && (!onlyAtBoundaryNow || toClient.atBoundary)) toClient.inject(goingAwayFrame(false, reason), true, this.client)
    if (!toUpstream.sentClose && (!onlyAtBoundaryNow || toUpstream.atBoundary)) toUpstream.inject(goingAwayFrame(true, reason), true, this.upstream)
  }

  /** Keep-alive: pings the client at the next boundary of the upstream's frames; its pong is consumed. */
  ping (now: number): void {
    const toClient = this.fromUpstream
    // Both streams exist for a WebSocket tunnel, neither for any other. Called by the sweep, which skips closing tunnels.
    const fromClient = this.fromClient as FrameStream
    if (toClient === null || toClient.lost || fromClient.lost) return
    const { frame, payload } = pingFrame()
    fromClient.pongPayload = payload
    fromClient.refresh()
    toClient.inject(frame, false, this.client)
    this.pingSentAt = now
    this.pingOutstanding = true
  }

  pongReceived (): void {
    this.pingOutstanding = false
  }

  closeAnswered (stream: FrameStream): void {
    // The side that sent this Close has finished its closing handshake with the proxy: it gets our FIN
    // (toward the client the proxy is the server, which closes the TCP connection first, RFC 6455 §7.1.1).
    ;(stream === this.fromClient ? this.client : this.upstream).end()
  }

  framesLost (stream: FrameStream): void {
    this.log.debug({ upstream: this.server.label, from: stream === this.fromClient ? 'client' : 'upstream' },
      'tunnel bytes are not WebSocket frames: relayed blind from here on')
    // A close already waiting for a boundary will not find one: fall back to half-closing.
    if (this.closing) {
      this.client.end()
      this.upstream.end()
    }
  }

  /** Called by the sweep: an idle tunnel holds no read buffer (a side that read nothing since the last sweep is idle). */
  releaseChunks (): void {
    if (this.lastFromClient === null && dropReadBuffer(this.client, this.readBuffersDropped < MAX_DROPS)) this.readBuffersDropped++
    if (this.lastFromUpstream === null && dropReadBuffer(this.upstream, this.readBuffersDropped < MAX_DROPS)) this.readBuffersDropped++
    this.lastFromClient = this.lastFromUpstream = null
  }

  socketClosed (): void {
    if (--this.#open === 0) this.#owner.tunnelClosed(this)
  }
}

function listen (socket: TunnelSocket): void {
  socket.on('drain', socketOnDrain)
  socket.on('end', socketOnEnd)
  socket.on('error', socketOnError)
  socket.on('close', socketOnClose)
}

function clientOnData (this: TunnelSocket, chunk: Buffer): boolean {
  const tunnel = this[kTunnel]
  tunnel.bytesFromClient += chunk.length
  tunnel.lastFromClient = chunk
  return relay(this, tunnel.upstream, tunnel.fromClient, chunk)
}

function upstreamOnData (this: TunnelSocket, chunk: Buffer): boolean {
  const tunnel = this[kTunnel]
  tunnel.upstreamActive = true
  tunnel.bytesFromUpstream += chunk.length
  tunnel.lastFromUpstream = chunk
  return relay(this, tunnel.client, tunnel.fromUpstream, chunk)
}

const clientOnRead = inPlaceReader(clientOnData)
const upstreamOnRead = inPlaceReader(upstreamOnData)

/** Writes `chunk` from `from` to `to`, following the frames `from` sends (null: a blind pipe). Returns whether nothing
 * holds `chunk` any more: `to` wrote it out at once or dropped it (the slow path may keep pieces of it, a pong's). */
function relay (from: Socket, to: Socket, frames: FrameStream | null, chunk: Buffer): boolean {
  const slow = frames !== null && frames.slow
  if (frames !== null && !slow) track(frames, chunk)
  // A peer that has already ended its writing side cannot take more; what arrives late is dropped.
  if (slow ? !relayFrames(frames, chunk, to) : to.writable && !to.write(chunk)) from.pause()
  return !slow && to.writableLength === 0
}

function peerOf (socket: TunnelSocket): Socket {
  const tunnel = socket[kTunnel]
  return socket === tunnel.client ? tunnel.upstream : tunnel.client
}

function socketOnDrain (this: TunnelSocket): void {
  peerOf(this).resume()
}

function socketOnEnd (this: TunnelSocket): void {
  peerOf(this).end()
}

function socketOnError (this: TunnelSocket, err: Error): void {
  const tunnel = this[kTunnel]
  const fromClient = this === tunnel.client
  tunnel.log.debug({ err, upstream: tunnel.server.label }, fromClient ? 'tunnel client socket error' : 'tunnel upstream socket error')
  tunnel.destroy(fromClient ? 'client-error' : 'upstream-error')
}

function socketOnClose (this: TunnelSocket): void {
  const tunnel = this[kTunnel]
  const fromClient = this === tunnel.client
  tunnel.reason ??= fromClient ? 'client-closed' : 'upstream-closed'
  // Nothing more can reach this side: flush what is queued for the peer, then let it go.
  ;(fromClient ? tunnel.upstream : tunnel.client).destroySoon()
  tunnel.socketClosed()
}
