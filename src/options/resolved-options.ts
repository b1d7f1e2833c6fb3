import type { TunnelLogLevel } from '../telemetry/events.js'
import { compileOrigins } from './origins.js'
import { MapRegistry } from './maps.js'
import { fail, ProblemList } from './problems.js'
import { resolveGroups, type ResolvedGroup } from './resolve-groups.js'
import { resolveRoute, type ResolvedRoute } from './resolve-route.js'
import type { DefaultedOptions, MetricsRegistry, RouteOptions } from './schema.js'
import { Targets } from './targets.js'

// The cross-field rules and the compilers over options the schema has checked and defaulted: the frozen result.

export interface ResolvedOptions {
  /** What is valid but likely a mistake (a group no route names), as `<path>: <reason>` lines for the log. */
  readonly warnings: readonly string[]
  readonly routes: readonly ResolvedRoute[]
  /** Every group the routes use (named ones, used or not, and one per upstream URL). */
  readonly groups: readonly ResolvedGroup[]
  readonly connections: number
  readonly keepAliveTimeout: number
  /** Tunnel caps over the registration (0: none) and the `Retry-After` of their 503. */
  readonly tunnelLimit: number
  readonly tunnelsPerClient: number
  readonly retryAfter: number
  readonly closeGracePeriod: number
  readonly tunnelLogLevel: TunnelLogLevel
  /** Most header fields in a client request (`limits.headers`). */
  readonly headerFields: number
  /** Whether error bodies name upstreams and system errors. */
  readonly exposeErrors: boolean
  /** Whether WebSockets over HTTP/2 (RFC 8441) are advertised and proxied on an HTTP/2 server. */
  readonly http2ExtendedConnect: boolean
  /** Whether the first registration raises glibc's malloc thresholds (allocator.ts). */
  readonly tuneMalloc: boolean
  /** The prom-client export, or null when `metrics` is not set. */
  readonly metrics: { registry: MetricsRegistry | null, path: string | null, prefix: string } | null
  /** The health endpoints' paths (null: that route is off), or null when `health` is not set. */
  readonly health: { live: string | null, ready: string | null } | null
}

/** The resolved options of the plugin level `options` (schema-checked, defaults applied), every cross-field problem at once. */
export function buildResolved (options: DefaultedOptions, registry: MetricsRegistry | null): ResolvedOptions {
  let routes: RouteOptions[]
  let base: string
  if (options.routes !== undefined) {
    if (options.upstream !== undefined || options.rewritePrefix !== undefined) {
      fail('upstream', 'use either `routes` or the single-route shorthand (`upstream`, `rewritePrefix`), not both')
    }
    routes = options.routes
    base = 'routes/'
  } else if (options.upstream !== undefined) {
    routes = [{ prefix: '/', upstream: options.upstream, rewritePrefix: options.rewritePrefix }]
    base = ''
  } else {
    fail('routes', 'expected `routes` (an array of { prefix, upstream }) or the shorthand `upstream`')
  }

  // Maps alone first: were one invalid, every template naming it would be reported as well.
  const maps = new MapRegistry(options.maps ?? {}, 'maps/')
  const tls = options.tls ?? null
  // From here on each group and each route is checked even when another failed, and every problem is reported.
  const problems = new ProblemList()
  const groups = resolveGroups(options.upstreams ?? {}, { response: false, map: maps.lookup, captures: null }, tls, problems)
  const targets = new Targets(groups, tls)
  // Compiled once, so an invalid plugin-level list fails at its own path even when every route has its own.
  const origins = problems.attempt(() => compileOrigins(options.allowedOrigins, 'allowedOrigins')) ?? null
  const seen = new Map<string, number>()
  const resolved = routes.map((route, i) => {
    const at = base === '' ? '' : `${base}${i}/`
    // Routes may share a prefix on different hosts (nginx: the same location in two servers), not on one host.
    for (const host of hostKeys(route.host)) {
      const key = `${host} ${route.prefix}`
      const previous = seen.get(key)
      if (previous !== undefined) {
        const where = host === '' ? '' : ` on host ${JSON.stringify(host)}`
        problems.problems.push({ path: `${at}prefix`, reason: `duplicate prefix ${JSON.stringify(route.prefix)}${where} (also routes/${previous}/prefix)` })
      }
      seen.set(key, i)
    }
    return problems.attempt(() => resolveRoute(route, at, options, maps, targets, origins)) as ResolvedRoute
  })
  problems.throwIfAny()

  const metrics = options.metrics
  return Object.freeze({
    warnings: Object.freeze(unusedGroups(groups, resolved)),
    routes: Object.freeze(resolved),
    groups: Object.freeze([...groups.values(), ...targets.urls.values()]),
    connections: options.pool.connections,
    keepAliveTimeout: options.pool.keepAliveTimeout,
    tunnelLimit: options.limits.tunnels ?? 0,
    tunnelsPerClient: options.limits.tunnelsPerClient ?? 0,
    retryAfter: options.limits.retryAfter,
    closeGracePeriod: options.closeGracePeriod,
    tunnelLogLevel: options.tunnelLogLevel,
    headerFields: options.limits.headers,
    exposeErrors: options.exposeErrors,
    http2ExtendedConnect: options.http2ExtendedConnect,
    tuneMalloc: options.tuneMalloc,
    // The schema's default has filled `prefix`.
    metrics: metrics === undefined ? null : { registry, path: metrics.path ?? null, prefix: metrics.prefix as string },
    // The schema's defaults have filled both paths.
    health: options.health === undefined ? null : { live: options.health.live || null, ready: options.health.ready || null }
  })
}

/** A named group no route names is likely a typo on one side (nginx is silent about it; a warning costs nothing). */
function unusedGroups (groups: ReadonlyMap<string, ResolvedGroup>, routes: readonly ResolvedRoute[]): string[] {
  const used = new Set<ResolvedGroup>()
  for (const route of routes) {
    used.add(route.group)
    if (route.upgradeRoute !== null) used.add(route.upgradeRoute.group)
  }
  return [...groups.values()].filter((group) => !used.has(group))
    .map((group) => `upstreams/${group.name}: no route names this group (as http://${group.name})`)
}

/** The names a route's `host` lists, as its duplicate check compares them ('' for a route without `host`). */
function hostKeys (host: string | string[] | undefined): string[] {
  if (host === undefined) return ['']
  // A name listed twice in one route (`a.test`, `A.test.`) is one name, not a route duplicating itself.
  return [...new Set((typeof host === 'string' ? [host] : host).map((name) => name.startsWith('~') ? name : name.toLowerCase().replace(/\.$/, '')))]
}
