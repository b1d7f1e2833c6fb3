import type { FastifyPluginCallback } from 'fastify'
import fp from 'fastify-plugin'
import { tuneMalloc } from './allocator.js'
import { UploadSet } from './http/body.js'
import { Sweeper } from './timers/sweeper.js'
import { resolveOptions, type ResolvedOptions } from './options/resolve.js'
import type { WsProxyOptions } from './options/schema.js'
import { registerRoutes, type ProxyRuntime, type RouteClaims } from './routing/register.js'
import { releaseRequestGate, requestGateFor } from './security/request-gate.js'
import { exportMetrics } from './telemetry/prometheus.js'
import { UpstreamPools } from './upstream/pools.js'
import { Discovery } from './upstream/discovery.js'
import { UpstreamGroup } from './upstream/group.js'
import { HealthChecks } from './upstream/health.js'
import { registerHealthRoutes } from './telemetry/health-routes.js'
import type { ResolvedGroup } from './options/resolve-groups.js'
import { TunnelLimits } from './upgrade/tunnel-slot.js'
import { releaseUpgradeRouter, upgradeRouterFor } from './upgrade/listener.js'
import { extendedConnectFor, releaseExtendedConnect } from './upgrade/h2-connect.js'
import { TunnelSet } from './upgrade/tunnel-registry.js'
import { ProxyStateTotals, type WsProxyState } from './proxy-state.js'

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
export type { TunnelDrainMode } from './options/schema.js'
export type { DrainReason } from './upgrade/tunnel-registry.js'
export { wsProxyRewriteUrl } from './security/rewrite-url.js'
export type { WsProxyState, WsProxyEventName, WsProxyListener, UpstreamGroupInfo } from './proxy-state.js'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Totals and tunnel events of fastify-ws-proxy: of the registration that created it and of every later one in
     * its context or below (docs/semantics.md, "app.wsProxy in nested contexts").
     */
    wsProxy: WsProxyState
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
  for (const warning of resolved.warnings) fastify.log.warn(`fastify-ws-proxy: ${warning}`)
  if (resolved.tuneMalloc) tuneMalloc()
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
