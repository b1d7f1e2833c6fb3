import type { EventEmitter } from 'node:events'
import { FST_WS_PROXY_TUNNEL_READ_TIMEOUT, FST_WS_PROXY_TUNNEL_TIMEOUT } from '../errors.js'
import type { Swept } from '../lifecycle/sweeper.js'
import type { TunnelCloseEvent, TunnelLogLevel, WsProxyEvents } from '../telemetry/events.js'
import type { RouteStats } from '../telemetry/stats.js'
import type { TunnelLimits } from './limits.js'
import { tunnelHttpVersion } from './h2-connect.js'
import type { Tunnel, TunnelCloseReason, TunnelOwner, TunnelRoute } from './tunnel.js'

/**
 * The live tunnels of one plugin registration: their timers (one sweep for all, see Sweeper), their graceful
 * shutdown, their slots in the limits, their counters, their close log line and events.
 */
export class TunnelSet implements TunnelOwner, Swept {
  readonly #live = new Set<Tunnel>()
  readonly #limits: TunnelLimits
  readonly #events: EventEmitter<WsProxyEvents>
  readonly #level: TunnelLogLevel
  readonly #wake: () => void
  #closing = false
  #deadline = 0
  #grace = 0
  #drained: (() => void) | null = null
  #deadlineTimer: NodeJS.Timeout | null = null

  constructor (limits: TunnelLimits, events: EventEmitter<WsProxyEvents>, level: TunnelLogLevel, wake: () => void) {
    this.#limits = limits
    this.#events = events
    this.#level = level
    this.#wake = wake
  }

  get size (): number {
    return this.#live.size
  }

  /** Bytes carried so far by live tunnels, per route, for a metrics snapshot (one pass over the set). */
  liveBytes (): Map<RouteStats, [number, number]> {
    const bytes = new Map<RouteStats, [number, number]>()
    for (const tunnel of this.#live) {
      const stats = tunnel.route.stats
      const sums = bytes.get(stats)
      if (sums === undefined) {
        bytes.set(stats, [tunnel.bytesFromClient, tunnel.bytesFromUpstream])
      } else {
        sums[0] += tunnel.bytesFromClient
        sums[1] += tunnel.bytesFromUpstream
      }
    }
    return bytes
  }

  add (tunnel: Tunnel): void {
    this.#live.add(tunnel)
    const route = tunnel.route
    route.stats.opened++
    route.stats.live++
    if (this.#events.listenerCount('tunnelOpen') > 0) {
      this.#events.emit('tunnelOpen', {
        route: route.label, upstream: tunnel.server.label, client: tunnel.clientAddress, protocol: tunnel.protocol, openedAt: tunnel.openedAt, httpVersion: tunnelHttpVersion(tunnel.client)
      })
    }
    this.#wake()
    // A handshake the upstream accepted after the app began closing goes away at once, with 1001 like the others
    // (within their deadline, or a grace period of its own when they are all gone: server.close() waits for
    // every connection, upgraded ones included).
    if (this.#closing) tunnel.goAway('shutdown', this.#drained === null ? Date.now() + this.#grace : this.#deadline)
  }

  tunnelClosed (tunnel: Tunnel): void {
    this.#live.delete(tunnel)
    tunnel.server.tunnels--
    const route = tunnel.route
    this.#limits.release(route.tunnelCount, tunnel.clientAddress)
    const reason = tunnel.reason as TunnelCloseReason
    const stats = route.stats
    stats.live--
    stats.closed[reason]++
    stats.bytesFromClient += tunnel.bytesFromClient
    stats.bytesFromUpstream += tunnel.bytesFromUpstream
    if (this.#level !== 'silent' || this.#events.listenerCount('tunnelClose') > 0) this.report(tunnel, reason)
    if (this.#closing && this.#live.size === 0) this.finishDrain()
  }

  /** One structured line per closed tunnel, and the `tunnelClose` event. */
  report (tunnel: Tunnel, reason: TunnelCloseReason): void {
    const route = tunnel.route
    const event: TunnelCloseEvent = {
      route: route.label,
      upstream: tunnel.server.label,
      client: tunnel.clientAddress,
      protocol: tunnel.protocol,
      openedAt: tunnel.openedAt,
      httpVersion: tunnelHttpVersion(tunnel.client),
      reason,
      durationMs: Date.now() - tunnel.openedAt,
      bytesFromClient: tunnel.bytesFromClient,
      bytesFromUpstream: tunnel.bytesFromUpstream
    }
    if (this.#level !== 'silent') tunnel.log[this.#level](event, 'tunnel closed')
    this.#events.emit('tunnelClose', event)
  }

  sweep (now: number): void {
    for (const tunnel of this.#live) {
      if (tunnel.upstreamActive) {
        tunnel.upstreamActive = false
        tunnel.upstreamSilentSince = now
      }
      const forwarded = tunnel.upstream.bytesWritten
      if (forwarded !== tunnel.forwardedUpstream) {
        tunnel.forwardedUpstream = forwarded
        tunnel.clientSilentSince = now
      }
      if (tunnel.closing) {
        if (now >= tunnel.deadline) tunnel.destroy('shutdown')
        continue
      }
      const route = tunnel.route
      const expired = expiry(tunnel, route, now)
      if (expired !== null) {
        const [reason, after] = expired
        const err = reason === 'read-timeout'
          ? new FST_WS_PROXY_TUNNEL_READ_TIMEOUT(tunnel.server.label, after)
          : new FST_WS_PROXY_TUNNEL_TIMEOUT(tunnel.server.label, `${reason} after ${after} ms`)
        tunnel.log.info({ err, reason }, `tunnel ${reason.replace('-', ' ')}`)
        tunnel.expire(reason, now)
      } else if (route.pingInterval > 0 && !tunnel.pingOutstanding && now - tunnel.pingSentAt >= route.pingInterval) {
        tunnel.ping(now)
      }
    }
  }

  /**
   * Graceful shutdown: every tunnel goes away (Close 1001 frames, or half-close), and what is still open after
   * `grace` ms is destroyed. Resolves once every tunnel is closed.
   */
  drain (grace: number): Promise<void> {
    this.#closing = true
    this.#grace = grace
    if (this.#live.size === 0) return Promise.resolve()
    this.#deadline = Date.now() + grace
    for (const tunnel of this.#live) tunnel.goAway('shutdown', this.#deadline)
    return new Promise((resolve) => {
      this.#drained = resolve
      // Not left to the sweep, whose tick may be a second: the deadline is what `app.close()` waits for.
      this.#deadlineTimer = setTimeout(destroyAll, grace, this)
    })
  }

  destroyAll (): void {
    for (const tunnel of this.#live) tunnel.destroy('shutdown')
  }

  finishDrain (): void {
    if (this.#deadlineTimer !== null) clearTimeout(this.#deadlineTimer)
    this.#deadlineTimer = null
    const drained = this.#drained
    this.#drained = null
    drained?.()
  }
}

function destroyAll (set: TunnelSet): void {
  set.destroyAll()
}

/** The first timer of `tunnel` that has run out, with its setting, or null. */
function expiry (tunnel: Tunnel, route: TunnelRoute, now: number): [TunnelCloseReason, number] | null {
  if (now - tunnel.upstreamSilentSince >= route.readTimeout) return ['read-timeout', route.readTimeout]
  if (route.idleTimeout > 0 && now - Math.max(tunnel.upstreamSilentSince, tunnel.clientSilentSince) >= route.idleTimeout) {
    return ['idle-timeout', route.idleTimeout]
  }
  if (tunnel.pingOutstanding && now - tunnel.pingSentAt >= route.pingTimeout) return ['ping-timeout', route.pingTimeout]
  if (route.maxTunnelLifetime > 0 && now - tunnel.openedAt >= route.maxTunnelLifetime) return ['lifetime', route.maxTunnelLifetime]
  if (route.sendTimeout > 0 && sendStuckFor(tunnel, now) >= route.sendTimeout) return ['send-timeout', route.sendTimeout]
  return null
}

/**
 * nginx proxy_send_timeout on a tunnel: how long the upstream has taken none of the bytes waiting for it.
 * `bytesWritten - writableLength` is what the kernel has accepted; while it does not move and bytes wait, the write is stuck.
 */
function sendStuckFor (tunnel: Tunnel, now: number): number {
  const upstream = tunnel.upstream
  const waiting = upstream.writableLength
  if (waiting === 0) {
    tunnel.sendStuckSince = 0
    return 0
  }
  const flushed = upstream.bytesWritten - waiting
  if (tunnel.sendStuckSince === 0 || flushed !== tunnel.flushed) {
    tunnel.flushed = flushed
    tunnel.sendStuckSince = now
    return 0
  }
  return now - tunnel.sendStuckSince
}
