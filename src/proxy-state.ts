import { EventEmitter } from 'node:events'
import { inspect } from 'node:util'
import { FST_WS_PROXY_UNKNOWN_GROUP } from './errors.js'
import { didYouMean } from './suggest.js'
import type { ProxyRuntime } from './routing/register.js'
import type { WsProxyEvents } from './telemetry/events.js'
import type { ReadinessSource } from './telemetry/health-routes.js'
import type { MetricsSnapshot, RouteStats } from './telemetry/stats.js'
import type { DrainReason } from './upgrade/tunnel-registry.js'
import type { UpstreamGroup, UpstreamGroupApi } from './upstream/group.js'
import type { ServerInfo } from './upstream/server.js'

// `app.wsProxy`: the live state of the proxies of a Fastify context, summed over its registrations (index.ts
// decorates the first registration's context with it and adds every later one).

/** The names of the events of `fastify.wsProxy`. */
export type WsProxyEventName = keyof WsProxyEvents
/** A listener of `fastify.wsProxy`'s event `E`. */
export type WsProxyListener<E extends WsProxyEventName> = (...args: WsProxyEvents[E]) => void

/**
 * Live state of the proxies of a Fastify context: the registration that created it (the first one in a context
 * that could see no `wsProxy`) and every later registration in that context or below it. Emits `tunnelOpen` and
 * `tunnelClose`. See docs/semantics.md, "app.wsProxy in nested contexts".
 */
export interface WsProxyState extends EventEmitter<WsProxyEvents> {
  // The event methods are narrowed to the known names, so a misspelt one reads
  // "'tunnelClos' is not assignable to parameter of type 'WsProxyEventName'".
  on<E extends WsProxyEventName>(event: E, listener: WsProxyListener<E>): this
  once<E extends WsProxyEventName>(event: E, listener: WsProxyListener<E>): this
  off<E extends WsProxyEventName>(event: E, listener: WsProxyListener<E>): this
  addListener<E extends WsProxyEventName>(event: E, listener: WsProxyListener<E>): this
  removeListener<E extends WsProxyEventName>(event: E, listener: WsProxyListener<E>): this
  prependListener<E extends WsProxyEventName>(event: E, listener: WsProxyListener<E>): this
  prependOnceListener<E extends WsProxyEventName>(event: E, listener: WsProxyListener<E>): this
  /** Tunnels currently open. */
  readonly tunnels: number
  /** Connections currently open to upstreams in the keep-alive pools (tunnels not included). */
  readonly upstreamConnections: number
  /** The counters of every route: requests, upstream errors, head latency, tunnels, bytes. */
  metrics (): MetricsSnapshot
  /** Every named upstream group with its servers' state, load and last error. */
  upstreams (): UpstreamGroupInfo[]
  /** A named upstream group, to change its members at run time; throws FST_WS_PROXY_UNKNOWN_GROUP. */
  group (name: string): UpstreamGroupApi
  /** Whether a drain has begun (`markDraining()` or `app.close()`): readiness answers 503. */
  readonly draining: boolean
  /**
   * Readiness answers 503 from now on, before `app.close()` (which does it too): for a stop that first sheds new connections.
   * `reason` (default `'shutdown'`) is what `app.close()` then closes tunnels with: `'reload'` for a reload (Close frames,
   * `tunnelClose` events, logs and metrics say so).
   */
  markDraining (reason?: DrainReason): void
}

/** A named group as `fastify.wsProxy.upstreams()` reports it. */
export interface UpstreamGroupInfo {
  readonly name: string
  readonly balance: UpstreamGroupApi['balance']
  readonly servers: ServerInfo[]
}

/** The registrations one `wsProxy` decoration sums over. */
export class ProxyStateTotals extends EventEmitter<WsProxyEvents> implements WsProxyState, ReadinessSource {
  readonly registrations: ProxyRuntime[] = []
  draining = false
  drainReason: DrainReason = 'shutdown'
  /** Set once metrics are exported: binds a route's latency histogram. */
  attachLatency: ((route: RouteStats) => void) | null = null

  get tunnels (): number {
    let n = 0
    for (const r of this.registrations) n += r.tunnels.size
    return n
  }

  get upstreamConnections (): number {
    let n = 0
    for (const r of this.registrations) n += r.pools.connected
    return n
  }

  metrics (): MetricsSnapshot {
    const routes = []
    for (const registration of this.registrations) {
      const live = registration.tunnels.liveBytes()
      for (const stats of registration.stats) {
        const [fromClient, fromUpstream] = live.get(stats) ?? [0, 0]
        routes.push(stats.snapshot(fromClient, fromUpstream))
      }
    }
    return { routes }
  }

  markDraining (reason: DrainReason = this.drainReason): void {
    this.draining = true
    this.drainReason = reason
  }

  /** console.log() and util.inspect() show the public state, not the registrations behind it. */
  [inspect.custom] (): object {
    const { tunnels, upstreamConnections, draining } = this
    return Object.assign(Object.create(WsProxyStateView.prototype) as object, { tunnels, upstreamConnections, draining, routes: this.metrics().routes.length })
  }

  * allGroups (): Generator<UpstreamGroup> {
    for (const registration of this.registrations) yield * registration.groups.values()
  }

  * namedGroups (): Generator<UpstreamGroup> {
    for (const group of this.allGroups()) if (group.named) yield group
  }

  upstreams (): UpstreamGroupInfo[] {
    return [...this.namedGroups()].map((group) => ({ name: group.name, balance: group.balance, servers: group.servers() }))
  }

  group (name: string): UpstreamGroupApi {
    const groups = [...this.namedGroups()]
    const group = groups.find((g) => g.name === name)
    if (group === undefined) {
      const names = groups.map((g) => g.name)
      throw new FST_WS_PROXY_UNKNOWN_GROUP(JSON.stringify(name), (names.join(', ') || 'none') + didYouMean(name, names))
    }
    return group
  }
}

/** The class name console.log() shows for `wsProxy`. */
class WsProxyStateView {}
