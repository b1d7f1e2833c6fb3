import type { FastifyContextConfig, FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods } from 'fastify'
import type { UploadSet } from '../http/body.js'
import type { ResolvedGroup } from '../options/resolve-groups.js'
import type { ResolvedRoute } from '../options/resolve.js'
import { RouteStats } from '../telemetry/stats.js'
import type { UpgradeClaim } from '../upgrade/listener.js'
import type { TunnelSet } from '../upgrade/tunnel-registry.js'
import { RouteSlots, type TunnelLimits } from '../upgrade/tunnel-slot.js'
import { DynamicUpstreams } from '../upstream/dynamic.js'
import type { UpstreamGroup } from '../upstream/group.js'
import type { UpstreamPools } from '../upstream/pools.js'
import { HOST_CONSTRAINT, HostTable, hostStrategy } from './hosts.js'
import { handleRequest } from './proxy-request.js'
import { ProxyRoute } from './proxy-route.js'

/** Fastify's register prefix without its trailing slash, as Fastify itself joins it with route URLs. */
function instancePrefix (instance: FastifyInstance): string {
  return instance.prefix.endsWith('/') ? instance.prefix.slice(0, -1) : instance.prefix
}

const kProxyHandler = 'fastifyWsProxyHandler'

const hostTables = new WeakMap<object, HostTable>()

/** The host names of every registration on one server, behind the router's host strategy (added once). */
function hostTableFor (instance: FastifyInstance): HostTable {
  let table = hostTables.get(instance.server)
  if (table === undefined) {
    table = new HostTable()
    hostTables.set(instance.server, table)
    // find-my-way's types say its stores hold handlers; what the router really keeps there is a bitmask per value.
    instance.addConstraintStrategy(hostStrategy(table) as unknown as Parameters<FastifyInstance['addConstraintStrategy']>[0])
  }
  return table
}

/**
 * @fastify/websocket wraps every route's handler (a global onRoute hook) and, for an upgrade it routed,
 * accepts the WebSocket itself and closes it when the route is not one of its own. Hooks of a child context
 * run after its parents', so this one puts the proxy's handler back on the proxy's routes.
 */
function keepProxyHandlers (routeOptions: { handler: unknown, config?: unknown }): void {
  const own = (routeOptions.config as Record<string, unknown> | undefined)?.[kProxyHandler]
  if (typeof own === 'function') routeOptions.handler = own
}

/** The parts of one plugin registration its routes share. */
export interface ProxyRuntime {
  readonly pools: UpstreamPools
  /** The groups of the registration, by what the options resolved. */
  readonly groups: ReadonlyMap<ResolvedGroup, UpstreamGroup>
  readonly tunnels: TunnelSet
  readonly limits: TunnelLimits
  readonly uploads: UploadSet
  /** Every route's counters, for metrics. */
  readonly stats: RouteStats[]
  /** `limits.headers` and `exposeErrors` of the registration. */
  readonly headerFields: number
  readonly exposeErrors: boolean
}

/** The paths a registration proxies: those whose upgrades it takes, and all of them (for the request gate). */
export interface RouteClaims {
  readonly upgrades: UpgradeClaim[]
  readonly requests: UpgradeClaim[]
}

/** The run-time route of `settings` under `fullPrefix`, with counters of its own. */
function proxyRoute (settings: ResolvedRoute, fullPrefix: string, runtime: ProxyRuntime, slots: RouteSlots, dynamic: DynamicUpstreams | null): ProxyRoute {
  const group = runtime.groups.get(settings.group) as UpstreamGroup
  const stats = new RouteStats(fullPrefix, group.name)
  runtime.stats.push(stats)
  const { uploads, headerFields, exposeErrors } = runtime
  return new ProxyRoute(settings, fullPrefix, { group, stats, slots, uploads, headerFields, exposeErrors, dynamic, origin: null })
}

/** Registers the routes of one plugin registration in `instance` (its own context); returns the paths it proxies. */
export function registerRoutes (instance: FastifyInstance, routes: readonly ResolvedRoute[], runtime: ProxyRuntime): RouteClaims {
  const base = instancePrefix(instance)
  const supported = new Set(instance.supportedMethods)
  const claimed: UpgradeClaim[] = []
  const requests: UpgradeClaim[] = []
  const hosts = routes.some((route) => route.hosts !== null) ? hostTableFor(instance) : null
  const dynamic = routes.some((route) => route.getUpstream !== null) ? new DynamicUpstreams(runtime.groups, runtime.pools, instance.log) : null
  if (instance.hasDecorator('websocketServer')) instance.addHook('onRoute', keepProxyHandlers)
  for (const route of routes) {
    for (const method of route.methods) {
      // Fastify 5 knows only the common methods; the rest of what Node parses is added (server-wide).
      if (!supported.has(method)) {
        instance.addHttpMethod(method, { hasBody: true })
        supported.add(method)
      }
    }
    // The route's tunnel cap covers its upgrades wherever they go.
    const slots = new RouteSlots(route.tunnelLimit, runtime.limits)
    const proxy = proxyRoute(route, base + route.prefix, runtime, slots, dynamic)
    const upgrades = route.upgradeRoute === null ? proxy : proxyRoute(route.upgradeRoute, proxy.fullPrefix, runtime, slots, dynamic)
    const tunnels = runtime.tunnels
    const handler = (request: FastifyRequest, reply: FastifyReply): void => {
      // Only requests Node handed over as upgrades go to `upgradeUpstream`.
      handleRequest((request.raw as { upgrade?: boolean }).upgrade === true ? upgrades : proxy, request, reply, tunnels)
    }
    let constraints: Record<string, string[]> | undefined
    if (route.hosts !== null) {
      for (const pattern of route.hosts) (hosts as HostTable).add(pattern)
      constraints = { [HOST_CONSTRAINT]: route.hosts.map((pattern) => pattern.key) }
    }
    instance.route({
      method: [...route.methods] as HTTPMethods[],
      url: route.prefix + '*',
      exposeHeadRoute: false,
      constraints,
      // A plugin that declares its own config keys (@fastify/rate-limit's `rateLimit`) makes this key an excess property.
      config: { ...route.config, [kProxyHandler]: handler } as FastifyContextConfig,
      handler
    })
    if (route.upgrade) claimed.push({ path: proxy.fullPrefix, exact: false })
    requests.push({ path: proxy.fullPrefix, exact: false })
    const bare = proxy.fullPrefix.slice(0, -1)
    if (proxy.fullPrefix.endsWith('/') && bare !== '') {
      // nginx: a prefix location ending in "/" answers the same URI without the slash with a 301 to it.
      instance.route({
        method: ['GET', 'HEAD'],
        url: route.prefix === '/' ? '/' : route.prefix.slice(0, -1),
        prefixTrailingSlash: 'no-slash',
        exposeHeadRoute: false,
        constraints,
        handler (request, reply) {
          const url = request.raw.url as string
          const query = url.indexOf('?')
          reply.redirect(proxy.fullPrefix + (query === -1 ? '' : url.slice(query)), 301)
        }
      })
      if (route.upgrade) claimed.push({ path: bare, exact: true })
      requests.push({ path: bare, exact: true })
    }
  }
  return { upgrades: claimed, requests }
}
