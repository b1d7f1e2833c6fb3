import { EventEmitter } from 'node:events'
import { inspect } from 'node:util'
import type { FastifyPluginCallback } from 'fastify'
import fp from 'fastify-plugin'
import { UploadSet } from './http/body.js'
import { Sweeper } from './timers/sweeper.js'
import { resolveOptions, type ResolvedOptions } from './options/resolve.js'
import type { WsProxyOptions } from './options/schema.js'
import { registerRoutes, type ProxyRuntime, type RouteClaims } from './routing/register.js'
import { releaseRequestGate, requestGateFor } from './security/request-gate.js'
import type { WsProxyEvents } from './telemetry/events.js'
import { exportMetrics } from './telemetry/prometheus.js'
import type { MetricsSnapshot, RouteStats } from './telemetry/stats.js'
import { UpstreamPools } from './upstream/pools.js'
import { Discovery } from './upstream/discovery.js'
import { UpstreamGroup, type UpstreamGroupApi } from './upstream/group.js'
import { HealthChecks } from './upstream/health.js'
import { registerHealthRoutes, type ReadinessSource } from './telemetry/health-routes.js'
import type { ServerInfo } from './upstream/server.js'
import { FST_WS_PROXY_UNKNOWN_GROUP } from './errors.js'
import { didYouMean } from './options/suggest.js'
import type { ResolvedGroup } from './options/resolve-groups.js'
import { TunnelLimits } from './upgrade/tunnel-slot.js'
import { releaseUpgradeRouter, upgradeRouterFor } from './upgrade/listener.js'
import { extendedConnectFor, releaseExtendedConnect } from './upgrade/h2-connect.js'
import { TunnelSet, type DrainReason } from './upgrade/tunnel-registry.js'

export type {
  WsProxyOptions, RouteOptions, TimeoutOptions, PoolOptions, ProxiedMethod,
  RequestHeaderOptions, ResponseHeaderOptions, RewriteRuleOptions, MapOptions,
  PingOptions, LimitOptions, RouteLimitOptions, MetricsOptions, MetricsRegistry, HealthOptions
} from './options/schema.js'
export type {
  ServerOptions, TlsOptions, HealthCheckOptions, NextUpstreamOptions, ResolveOptions, UpstreamGroupOptions, BalanceMethod,
  AttemptFailure, HostResolver
} from './options/upstream-schema.js'
export { ServerSchema, TlsSchema, HealthCheckSchema, NextUpstreamSchema, ResolveSchema, UpstreamGroupSchema } from './options/upstream-schema.js'
export type { ServerInfo, ServerState } from './upstream/server.js'
export type { UpstreamGroupApi, ServerUpdate } from './upstream/group.js'
export {
  PluginOptionsSchema, RouteSchema, PoolSchema, RequestHeadersSchema, ResponseHeadersSchema, MapSchema, DEFAULTS,
  PingSchema, PluginLimitsSchema, RouteLimitsSchema, MetricsSchema, HealthSchema
} from './options/schema.js'
export type { Readiness } from './telemetry/health-routes.js'
export type { GetUpstream, RewriteRequestHeaders, UpstreamRequestHeaders } from './options/schema.js'
export { DYNAMIC_ORIGINS } from './upstream/dynamic.js'
export type { WsProxyEvents, TunnelOpenEvent, TunnelCloseEvent, TunnelLogLevel, TunnelCloseReason } from './telemetry/events.js'
export type { MetricsSnapshot, RouteMetrics, LatencyHistogram, StatusClass, UpstreamErrorKind } from './telemetry/stats.js'
export type { TunnelLimitName } from './telemetry/stats.js'
export { resolveOptions, type ResolvedOptions, type ResolvedRoute } from './options/resolve.js'
export type { InvalidOptionsError, OptionProblem } from './options/problems.js'
export * from './errors.js'
export type { TunnelDrainMode } from './upgrade/tunnel.js'
export type { DrainReason } from './upgrade/tunnel-registry.js'
export { wsProxyRewriteUrl } from './security/rewrite-url.js'

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

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Totals and tunnel events of fastify-ws-proxy: of the registration that created it and of every later one in
     * its context or below (docs/semantics.md, "app.wsProxy in nested contexts").
     */
    wsProxy: WsProxyState
  }
}

/** The registrations one `wsProxy` decoration sums over. */
class ProxyStateTotals extends EventEmitter<WsProxyEvents> implements WsProxyState, ReadinessSource {
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

function passThroughParser (_req: unknown, _payload: unknown, done: (err: null) => void): void {
  // Proxied bodies are never parsed: the handler streams `request.raw` to the upstream as it arrives.
  done(null)
}

/** The sweep's tick follows the shortest timer any route has. */
function shortestTimer (options: ResolvedOptions): number {
  let shortest = Infinity
  for (const route of options.routes) {
    for (const ms of [route.readTimeout, route.sendTimeout, route.idleTimeout, route.maxTunnelLifetime, route.pingInterval, route.pingTimeout]) {
      if (ms > 0 && ms < shortest) shortest = ms
    }
  }
  return shortest
}

const plugin: FastifyPluginCallback<WsProxyOptions> = (fastify, options, done) => {
  let resolved: ResolvedOptions
  try {
    resolved = resolveOptions(options)
  } catch (err) {
    // A throw from a callback plugin would escape avvio and crash the process instead of failing `ready()`.
    done(err as Error)
    return
  }
  for (const warning of resolved.warnings) fastify.log.warn(`fastify-ws-proxy: ${warning}`)
  if (!fastify.hasDecorator('wsProxy')) fastify.decorate('wsProxy', new ProxyStateTotals())
  const totals = fastify.wsProxy as ProxyStateTotals
  const sweeper = new Sweeper(shortestTimer(resolved))
  const wake = (): void => sweeper.wake()
  const limits = new TunnelLimits(resolved.tunnelLimit, resolved.tunnelsPerClient, resolved.retryAfter)
  const pools = new UpstreamPools(resolved)
  const groups = new Map<ResolvedGroup, UpstreamGroup>()
  for (const group of resolved.groups) groups.set(group, new UpstreamGroup(group, pools, fastify.log))
  const runtime: ProxyRuntime = {
    pools,
    groups,
    tunnels: new TunnelSet(totals, resolved.tunnelLogLevel, wake),
    limits,
    uploads: new UploadSet(wake),
    stats: [],
    headerFields: resolved.headerFields,
    exposeErrors: resolved.exposeErrors
  }
  sweeper.watch(runtime.tunnels)
  sweeper.watch(runtime.uploads)
  totals.registrations.push(runtime)

  // The routes live in their own context: its catch-all body parser must not reach the user's routes,
  // and Fastify's register `prefix` (ignored for a fastify-plugin) is applied to that context instead.
  fastify.register((proxied, _opts, registered) => {
    proxied.removeAllContentTypeParsers()
    proxied.addContentTypeParser('*', passThroughParser)
    let claims: RouteClaims
    try {
      claims = registerRoutes(proxied, resolved.routes, runtime)
    } catch (err) {
      // A route another plugin has (@fastify/cors's `OPTIONS *` against a `/` route proxying OPTIONS): Fastify
      // throws at once, and a throw here would escape avvio, crash the process and leave `ready()` hanging.
      registered(err as Error)
      return
    }
    // Requests for proxied paths are checked before routing, so before any hook (see docs/security.md).
    const headerCap = resolved.headerFields
    const gate = requestGateFor(proxied.server, proxied.routing, proxied.log)
    gate.claim(claims.requests.map((claim) => ({ ...claim, headerCap })))
    if (claims.upgrades.length > 0) upgradeRouterFor(proxied.server, proxied).claim(claims.upgrades)
    // An HTTP/2 server: WebSockets over HTTP/2 (RFC 8441) for the same paths, unless turned off.
    if (claims.upgrades.length > 0 && resolved.http2ExtendedConnect) extendedConnectFor(proxied.server, proxied, gate)?.claim(claims.upgrades)
    if (totals.attachLatency !== null) runtime.stats.forEach(totals.attachLatency)
    registered()
  }, { prefix: (options.prefix ?? '').replace(/\/+$/, '') })

  // preClose runs before the server stops (Fastify already answers new requests 503): live tunnels get their
  // grace period to close cleanly, as server.close() would otherwise wait for them forever.
  fastify.addHook('preClose', async () => {
    totals.markDraining()
    await runtime.tunnels.drain(resolved.closeGracePeriod, totals.drainReason)
  })
  if (resolved.health !== null) {
    try {
      registerHealthRoutes(fastify, resolved.health, totals)
    } catch (err) {
      // A path another route has: Fastify throws at once, and a throw here would escape avvio (see above).
      done(err as Error)
      return
    }
  }
  // Health checks and DNS re-resolution start with the server and stop with it.
  fastify.addHook('onReady', async () => {
    for (const [options, group] of groups) {
      group.start(options.healthCheck === null ? null : new HealthChecks(group, options.healthCheck, fastify.log),
        options.discovery === null ? null : new Discovery(group, options.discovery, fastify.log))
    }
  })
  fastify.addHook('onClose', async () => {
    // Only now that the server is closed: an upgrade that arrives on a connection accepted before the drain is
    // still answered (503, or proxied and sent away with 1001) instead of being cut by Node.
    releaseUpgradeRouter(fastify.server)
    releaseExtendedConnect(fastify.server)
    releaseRequestGate(fastify.server)
    for (const group of groups.values()) group.stop()
    sweeper.stop()
    await runtime.pools.close()
  })
  if (resolved.metrics === null) {
    done()
    return
  }
  exportMetrics(fastify, () => totals.metrics(), resolved.metrics).then((attach) => {
    if (attach !== null) {
      totals.attachLatency = attach
      for (const registration of totals.registrations) registration.stats.forEach(attach)
    }
    done()
  }, done)
}

/**
 * The fastify-ws-proxy plugin: proxies its routes to HTTP/1.1 upstreams over pooled undici connections and
 * tunnels upgraded connections (WebSocket and any other protocol) byte for byte after the upstream's 101.
 * Register it as often as needed, under different prefixes or contexts, for different upstreams.
 */
const wsProxyPlugin = fp(plugin, { fastify: '5.x', name: 'fastify-ws-proxy' })

export default wsProxyPlugin
export { wsProxyPlugin }
