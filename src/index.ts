import { EventEmitter } from 'node:events'
import type { FastifyPluginCallback } from 'fastify'
import fp from 'fastify-plugin'
import { UploadSet } from './http/body.js'
import { Sweeper } from './lifecycle/sweeper.js'
import { resolveOptions, type ResolvedOptions } from './options/resolve.js'
import type { WsProxyOptions } from './options/schema.js'
import { registerRoutes, type ProxyRuntime } from './routes.js'
import type { WsProxyEvents } from './telemetry/events.js'
import { exportMetrics } from './telemetry/prometheus.js'
import type { MetricsSnapshot, RouteStats } from './telemetry/stats.js'
import { UpstreamPools } from './upstream/pools.js'
import { TunnelLimits } from './upgrade/limits.js'
import { releaseUpgradeRouter, upgradeRouterFor } from './upgrade/listener.js'
import { TunnelSet } from './upgrade/tunnels.js'

export type {
  WsProxyOptions, RouteOptions, TimeoutOptions, PoolOptions, ProxiedMethod,
  RequestHeaderOptions, ResponseHeaderOptions, RewriteRuleOptions, MapOptions,
  PingOptions, LimitOptions, RouteLimitOptions, MetricsOptions, MetricsRegistry
} from './options/schema.js'
export {
  PluginOptionsSchema, RouteSchema, PoolSchema, RequestHeadersSchema, ResponseHeadersSchema, MapSchema, DEFAULTS,
  PingSchema, PluginLimitsSchema, RouteLimitsSchema, MetricsSchema
} from './options/schema.js'
export type { WsProxyEvents, TunnelOpenEvent, TunnelCloseEvent, TunnelLogLevel } from './telemetry/events.js'
export type { MetricsSnapshot, RouteMetrics, LatencyHistogram, StatusClass, UpstreamErrorKind } from './telemetry/stats.js'
export type { TunnelLimitName } from './upgrade/limits.js'
export { resolveOptions, type ResolvedOptions, type ResolvedRoute } from './options/resolve.js'
export * from './errors.js'
export type { TunnelCloseReason } from './upgrade/tunnel.js'

/** Live state of the proxies registered in a Fastify context and its children; emits `tunnelOpen` and `tunnelClose`. */
export interface WsProxyState extends EventEmitter<WsProxyEvents> {
  /** Tunnels currently open. */
  readonly tunnels: number
  /** Connections currently open to upstreams in the keep-alive pools (tunnels not included). */
  readonly upstreamConnections: number
  /** The counters of every route: requests, upstream errors, head latency, tunnels, bytes. */
  metrics (): MetricsSnapshot
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Totals over every fastify-ws-proxy registration in this context and its children, and tunnel events. */
    wsProxy: WsProxyState
  }
}

/** The registrations one `wsProxy` decoration sums over. */
class ProxyStateTotals extends EventEmitter<WsProxyEvents> implements WsProxyState {
  readonly registrations: ProxyRuntime[] = []
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
}

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
  if (!fastify.hasDecorator('wsProxy')) fastify.decorate('wsProxy', new ProxyStateTotals())
  const totals = fastify.wsProxy as ProxyStateTotals
  const sweeper = new Sweeper(shortestTimer(resolved))
  const wake = (): void => sweeper.wake()
  const limits = new TunnelLimits(resolved.tunnelLimit, resolved.tunnelsPerClient, resolved.retryAfter)
  const runtime: ProxyRuntime = {
    pools: new UpstreamPools(resolved),
    tunnels: new TunnelSet(limits, totals, resolved.tunnelLogLevel, wake),
    limits,
    uploads: new UploadSet(wake),
    stats: []
  }
  sweeper.watch(runtime.tunnels)
  sweeper.watch(runtime.uploads)
  totals.registrations.push(runtime)

  // The routes live in their own context: its catch-all body parser must not reach the user's routes,
  // and Fastify's register `prefix` (ignored for a fastify-plugin) is applied to that context instead.
  fastify.register((proxied, _opts, registered) => {
    proxied.removeAllContentTypeParsers()
    proxied.addContentTypeParser('*', passThroughParser)
    const claims = registerRoutes(proxied, resolved.routes, runtime)
    if (claims.length > 0) upgradeRouterFor(proxied.server, proxied).claim(claims)
    if (totals.attachLatency !== null) runtime.stats.forEach(totals.attachLatency)
    registered()
  }, { prefix: (options.prefix ?? '').replace(/\/+$/, '') })

  // preClose runs before the server stops (Fastify already answers new requests 503): live tunnels get their
  // grace period to close cleanly, as server.close() would otherwise wait for them forever.
  fastify.addHook('preClose', async () => {
    releaseUpgradeRouter(fastify.server)
    await runtime.tunnels.drain(resolved.closeGracePeriod)
  })
  fastify.addHook('onClose', async () => {
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
