import type { EventEmitter } from 'node:events'
import type { Swept } from '../timers/sweeper.js'
import type { TunnelCloseEvent, TunnelCloseReason, TunnelLogLevel, WsProxyEvents } from '../telemetry/events.js'
import type { RouteStats } from '../telemetry/stats.js'
import type { ResolvedRoute } from '../options/resolve.js'
import type { Tunnel, TunnelOwner } from './tunnel.js'

/** Why the app drains: the reason its tunnels are closed with. */
export type DrainReason = 'shutdown' | 'reload'

/** The close window of a grace period (`deadline` mode, and the end of `spread`): a tenth of it, at most 1 s. */
export function closeWindow (grace: number): number {
  return Math.min(1000, Math.floor(grace / 10))
}

/** A tunnel waiting for its moment to go away during a drain. */
interface Scheduled {
  readonly tunnel: Tunnel
  readonly at: number
}

/**
 * The live tunnels of one plugin registration: their timers (one sweep for all, see Sweeper), their graceful
 * shutdown, their slots given back (upgrade/tunnel-slot.ts), their counters, their close log line and events.
 */
export class TunnelSet implements TunnelOwner, Swept {
  readonly #live = new Set<Tunnel>()
  readonly #events: EventEmitter<WsProxyEvents>
  readonly #level: TunnelLogLevel
  readonly #wake: () => void
  #closing = false
  #deadline = 0
  #grace = 0
  #drained: (() => void) | null = null
  #deadlineTimer: NodeJS.Timeout | null = null
  #reason: DrainReason = 'shutdown'
  /** When the close window opens (`deadline` tunnels go away then; `spread` ones before). */
  #closeAt = 0
  /** `deadline` and `spread` tunnels in the order of their moments, the next one at `#next`; one timer for all. */
  #queue: Scheduled[] = []
  #next = 0
  #queueTimer: NodeJS.Timeout | undefined = undefined

  constructor (events: EventEmitter<WsProxyEvents>, level: TunnelLogLevel, wake: () => void) {
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
        route: route.label, upstream: tunnel.server.label, client: tunnel.clientAddress, protocol: tunnel.protocol, openedAt: tunnel.openedAt, httpVersion: tunnel.httpVersion
      })
    }
    this.#wake()
    // A handshake the upstream accepted after the app began closing goes away like the others: at once (within
    // their deadline, or a grace period of its own when they are all gone: server.close() waits for every
    // connection, upgraded ones included), or, in the other modes, when the close window opens.
    if (!this.#closing) return
    if (this.#drained === null || route.settings.tunnelDrain === 'immediate') {
      tunnel.goAway(this.#reason, this.#drained === null ? Date.now() + this.#grace : this.#deadline)
    } else {
      // Last in the queue: every moment in it is at most `closeAt`.
      this.#queue.push({ tunnel, at: this.#closeAt })
      clearTimeout(this.#queueTimer)
      this.armQueue(Date.now())
    }
  }

  tunnelClosed (tunnel: Tunnel): void {
    this.#live.delete(tunnel)
    tunnel.server.tunnels--
    const route = tunnel.route
    route.slots.release(tunnel.clientAddress)
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
      httpVersion: tunnel.httpVersion,
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
      tunnel.releaseChunks()
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
        if (now >= tunnel.deadline) tunnel.destroy(this.#reason)
        continue
      }
      const route = tunnel.route.settings
      const expired = expiry(tunnel, route, now)
      if (expired !== null) {
        const [reason, after] = expired
        // A timeout is not an exception: one line with the reason and the setting, no error and no stack.
        tunnel.log.info({
          reason,
          code: reason === 'read-timeout' ? 'FST_WS_PROXY_TUNNEL_READ_TIMEOUT' : 'FST_WS_PROXY_TUNNEL_TIMEOUT',
          upstream: tunnel.server.label,
          after
        }, `tunnel ${reason.replace('-', ' ')}`)
        tunnel.expire(reason, now)
      } else if (route.pingInterval > 0 && !tunnel.pingOutstanding && now - tunnel.pingSentAt >= route.pingInterval) {
        tunnel.ping(now)
      }
    }
  }

  /**
   * Graceful shutdown: every tunnel goes away (Close 1001 frames with `reason`, or half-close) at the moment its
   * route's `tunnelDrain` gives it: `immediate` now, `deadline` when the close window opens (the last tenth of
   * `grace`, at most 1 s), `spread` at its own moment, evenly spaced with jitter before the close window. What is
   * still open after `grace` ms is destroyed. Resolves once every tunnel is closed.
   */
  drain (grace: number, reason: DrainReason = 'shutdown'): Promise<void> {
    this.#closing = true
    this.#grace = grace
    this.#reason = reason
    if (this.#live.size === 0) return Promise.resolve()
    const now = Date.now()
    this.#deadline = now + grace
    this.#closeAt = this.#deadline - closeWindow(grace)
    const spread: Tunnel[] = []
    const atWindow: Tunnel[] = []
    for (const tunnel of this.#live) {
      const mode = grace === 0 ? 'immediate' : tunnel.route.settings.tunnelDrain
      if (mode === 'immediate') {
        tunnel.goAway(reason, this.#deadline)
      } else if (mode === 'spread') {
        spread.push(tunnel)
      } else {
        atWindow.push(tunnel)
      }
    }
    // Slot i of n over [now, closeAt): a moment drawn in each slot, so the goodbyes keep a steady rate but no
    // two instances of a fleet send theirs in lockstep.
    const slot = (this.#closeAt - now) / spread.length
    for (let i = 0; i < spread.length; i++) this.#queue.push({ tunnel: spread[i], at: now + Math.floor((i + Math.random()) * slot) })
    for (const tunnel of atWindow) this.#queue.push({ tunnel, at: this.#closeAt })
    return new Promise((resolve) => {
      this.#drained = resolve
      // Not left to the sweep, whose tick may be a second: the deadline is what `app.close()` waits for.
      this.#deadlineTimer = setTimeout(destroyAll, grace, this)
      this.armQueue(now)
    })
  }

  /** Sends away every scheduled tunnel whose moment has come, then waits for the next one. */
  goAwayDue (): void {
    this.#queueTimer = undefined
    const now = Date.now()
    const queue = this.#queue
    while (this.#next < queue.length && queue[this.#next].at <= now) {
      const { tunnel } = queue[this.#next++]
      // One that closed by itself meanwhile has nothing left to say.
      if (this.#live.has(tunnel)) tunnel.goAway(this.#reason, this.#deadline)
    }
    this.armQueue(now)
  }

  armQueue (now: number): void {
    if (this.#next < this.#queue.length) this.#queueTimer = setTimeout(goAwayDue, this.#queue[this.#next].at - now, this)
  }

  destroyAll (): void {
    for (const tunnel of this.#live) tunnel.destroy(this.#reason)
  }

  finishDrain (): void {
    if (this.#deadlineTimer !== null) clearTimeout(this.#deadlineTimer)
    clearTimeout(this.#queueTimer)
    this.#deadlineTimer = null
    this.#queueTimer = undefined
    this.#queue = []
    this.#next = 0
    const drained = this.#drained
    this.#drained = null
    drained?.()
  }
}

function destroyAll (set: TunnelSet): void {
  set.destroyAll()
}

function goAwayDue (set: TunnelSet): void {
  set.goAwayDue()
}

/** The first timer of `tunnel` that has run out, with its setting, or null. */
function expiry (tunnel: Tunnel, route: ResolvedRoute, now: number): [TunnelCloseReason, number] | null {
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
