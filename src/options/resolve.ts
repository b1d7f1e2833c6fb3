import { TypeCompiler } from '@sinclair/typebox/compiler'
import { Value } from '@sinclair/typebox/value'
import type { RequestHeaderRules, ResponseRules, RewriteRule } from '../headers/rules.js'
import type { CaptureNames, LookupScope } from '../vars/builtins.js'
import type { TunnelLogLevel } from '../telemetry/events.js'
import type { OriginAllowList } from '../security/origins.js'
import { compileRequestRules, compileResponseRules, compileRewriteRule, compileRewriteRules } from './header-rules.js'
import { captureNames, MapRegistry } from './maps.js'
import { compileOrigins } from './origins.js'
import { UpgradeProtocols } from '../security/upgrade-protocols.js'
import { compileHost, type HostPattern } from '../routing/hosts.js'
import { resolveGroups, urlGroup, type ResolvedGroup } from './resolve-groups.js'
import { parseUpstream } from './upstream-url.js'
import { fail, ProblemList, type OptionProblem } from './problems.js'
import { schemaProblems } from './schema-problems.js'
import { closest } from '../suggest.js'
import type { TlsOptions } from './upstream-schema.js'
import { PluginOptionsSchema, PROXIED_METHODS, type TunnelDrainMode, type GetUpstream, type RewriteRequestHeaders, type LimitOptions, type MetricsRegistry, type PoolOptions, type RouteOptions, type TimeoutOptions, type WsProxyOptions } from './schema.js'

// Compiled once when the module loads; `register` only copies, applies defaults and checks.
const checker = TypeCompiler.Compile(PluginOptionsSchema)

/** Everything a route needs at request time, computed once at register time. */
export interface ResolvedRoute {
  /** The route's prefix as configured (Fastify's own register prefix is added when routes are registered). */
  readonly prefix: string
  /** `scheme://host:port` as written in `upstream` (a group's name for a group): the base of `proxy_redirect default`. */
  readonly origin: string
  /** Where requests go: a named group, or the one-server group of the URL. */
  readonly group: ResolvedGroup
  /** The `Host` sent upstream unless `preserveHost` (nginx `$proxy_host`: host and port as written, or the group's name). */
  readonly proxyHost: string
  /** What replaces the matched prefix in the upstream path; null passes the URI unchanged (nginx `proxy_pass` without URI). */
  readonly rewrite: string | null
  readonly connectTimeout: number
  readonly readTimeout: number
  readonly sendTimeout: number
  /** Tunnel timers; 0 when off. */
  readonly idleTimeout: number
  readonly maxTunnelLifetime: number
  readonly pingInterval: number
  readonly pingTimeout: number
  /** Most live tunnels on the route (0: no limit), request body bytes (0: no limit), upstream response head bytes. */
  readonly tunnelLimit: number
  readonly bodyLimit: number
  readonly responseHeadLimit: number
  readonly preserveHost: boolean
  readonly xForwarded: boolean
  readonly upgrade: boolean
  readonly methods: readonly string[]
  /** Compiled request header rules (plugin's and route's merged), or null when there are none. */
  readonly requestRules: RequestHeaderRules | null
  /** Compiled response header rules: names dropped, headers set and added. */
  readonly responseRules: ResponseRules
  /** `Location`/`Refresh` rewrites in order; `'default'` stands for the rule derived from the route (see RouteProxy). */
  readonly redirects: ReadonlyArray<RewriteRule | 'default'>
  readonly cookieDomain: readonly RewriteRule[]
  readonly cookiePath: readonly RewriteRule[]
  /** Whether any template reads the request's context, so a VarContext is made per request. */
  readonly needsVars: boolean
  /** The origins whose upgrade requests are allowed (`allowedOrigins`, the route's or else the plugin's); null: no check. */
  readonly allowedOrigins: OriginAllowList | null
  /** The protocols an `Upgrade` may name (`upgradeProtocols`, the route's or else the plugin's). */
  readonly upgradeProtocols: UpgradeProtocols
  /** The same route aimed at `upgradeUpstream`, for its upgrade requests; null when upgrades go to `upstream`. */
  readonly upgradeRoute: ResolvedRoute | null
  /** The route's `host` names compiled (nginx `server_name`), or null: every host. */
  readonly hosts: readonly HostPattern[] | null
  /** The Fastify route's `config` (`routes[].config`), as given. */
  readonly config: Readonly<Record<string, unknown>>
  /** `routes[].getUpstream` and `routes[].rewriteRequestHeaders` (JavaScript API), or null. */
  readonly getUpstream: GetUpstream | null
  readonly rewriteRequestHeaders: RewriteRequestHeaders | null
  /** `rewritePrefix` as given (null: none), and the plugin's `tls`: how a URL from `getUpstream` is used. */
  readonly rewritePrefix: string | null
  readonly tls: TlsOptions | null
  /** How its tunnels end when the app drains (the route's `tunnelDrain`, else the plugin's). */
  readonly tunnelDrain: TunnelDrainMode
}

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
  /** The prom-client export, or null when `metrics` is not set. */
  readonly metrics: { registry: MetricsRegistry | null, path: string | null, prefix: string } | null
  /** The health endpoints' paths (null: that route is off), or null when `health` is not set. */
  readonly health: { live: string | null, ready: string | null } | null
}

/** Checks `options` against the schema and the cross-field rules. Never mutates the caller's object. */
export function resolveOptions (options: unknown): ResolvedOptions {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    fail('', 'expected an object')
  }
  const own = stripFastifyKeys(options as Record<string, unknown>)
  // A prom-client Registry is an object to keep, not data to check or copy: it is set aside and put back.
  const metrics = own.metrics as Record<string, unknown> | undefined
  let registry: MetricsRegistry | null = null
  if (metrics !== null && typeof metrics === 'object' && metrics.registry !== undefined) {
    registry = checkRegistry(metrics.registry)
    own.metrics = { ...metrics, registry: undefined }
    delete (own.metrics as Record<string, unknown>).registry
  }
  const resolvers = setAsideResolvers(own)
  const configs = new Map<number, Record<string, unknown>>()
  const configProblems = setAsideRouteConfigs(own, configs)
  const functions = new Map<number, RouteFunctions>()
  configProblems.push(...setAsideRouteFunctions(own, functions))
  // Checked before the copy: Value.Clone throws its own uncoded error on a function or a bigint (say a hook from
  // another proxy plugin's options), which the check reports as the bad option it is. Defaults are valid, so
  // checking before they are applied accepts and rejects the same options.
  const problems = new ProblemList()
  problems.problems.push(...configProblems, ...schemaProblems(checker.Errors(own)))
  problems.throwIfAny()
  const copy = Value.Clone(own)
  Value.Default(PluginOptionsSchema, copy)
  for (const [name, resolver] of resolvers) {
    ((copy as WsProxyOptions).upstreams?.[name].resolve as Record<string, unknown>).resolver = resolver
  }
  for (const [i, config] of configs) ((copy as WsProxyOptions).routes as RouteOptions[])[i].config = config
  for (const [i, hooks] of functions) Object.assign(((copy as WsProxyOptions).routes as RouteOptions[])[i], hooks)
  return buildResolved(copy as WsProxyOptions, registry)
}

/**
 * The routes' `config` objects, taken out of a shallow copy of the options (like the registry): they belong to other
 * plugins (a rate-limit `keyGenerator` is a function), so they are handed to Fastify as given, never copied.
 */
function setAsideRouteConfigs (own: Record<string, unknown>, configs: Map<number, Record<string, unknown>>): OptionProblem[] {
  const problems: OptionProblem[] = []
  if (!Array.isArray(own.routes)) return problems
  own.routes = own.routes.map((route: unknown, i) => {
    if (route === null || typeof route !== 'object' || !('config' in route)) return route
    const { config, ...rest } = route as Record<string, unknown>
    if (config === undefined) return rest
    if (config === null || typeof config !== 'object' || Array.isArray(config)) {
      problems.push({ path: `routes/${i}/config`, reason: 'expected an object (the Fastify route config)' })
    } else {
      configs.set(i, config as Record<string, unknown>)
    }
    return rest
  })
  return problems
}

type RouteFunctions = Pick<RouteOptions, 'getUpstream' | 'rewriteRequestHeaders'>

const ROUTE_FUNCTIONS = {
  getUpstream: '(request) => string | undefined',
  rewriteRequestHeaders: '(request, headers) => headers'
} as const

/** The routes' functions (`getUpstream`, `rewriteRequestHeaders`), taken out like their `config`: code is never copied. */
function setAsideRouteFunctions (own: Record<string, unknown>, functions: Map<number, RouteFunctions>): OptionProblem[] {
  const problems: OptionProblem[] = []
  if (!Array.isArray(own.routes)) return problems
  own.routes = own.routes.map((route: unknown, i) => {
    if (route === null || typeof route !== 'object') return route
    const rest: Record<string, unknown> = { ...route }
    for (const [key, signature] of Object.entries(ROUTE_FUNCTIONS)) {
      const fn = rest[key]
      delete rest[key]
      if (fn === undefined) continue
      if (typeof fn !== 'function') {
        problems.push({ path: `routes/${i}/${key}`, reason: `expected a function ${signature}` })
        continue
      }
      const hooks = functions.get(i) ?? {}
      hooks[key as keyof RouteFunctions] = fn as never
      functions.set(i, hooks)
    }
    return rest
  })
  return problems
}

/** The `resolve.resolver` functions of the groups, taken out of a shallow copy of the options (like the registry). */
function setAsideResolvers (own: Record<string, unknown>): Map<string, unknown> {
  const resolvers = new Map<string, unknown>()
  const groups = own.upstreams
  if (groups === null || typeof groups !== 'object') return resolvers
  const kept: Record<string, unknown> = { ...groups }
  for (const [name, group] of Object.entries(kept)) {
    const resolve = (group as { resolve?: unknown } | null)?.resolve
    if (resolve === null || typeof resolve !== 'object' || !('resolver' in resolve)) continue
    const { resolver, ...rest } = resolve as Record<string, unknown>
    if (resolver === undefined) continue
    if (typeof resolver !== 'function') fail(`upstreams/${name}/resolve/resolver`, 'expected a function (hostname, family) => Promise<string[]>')
    resolvers.set(name, resolver)
    kept[name] = { ...(group as object), resolve: rest }
  }
  own.upstreams = kept
  return resolvers
}

function checkRegistry (registry: unknown): MetricsRegistry {
  const candidate = registry as Partial<MetricsRegistry> | null
  if (typeof candidate?.registerMetric !== 'function' || typeof candidate.getSingleMetric !== 'function') {
    fail('metrics/registry', 'expected a prom-client Registry')
  }
  return registry as MetricsRegistry
}

// Fastify hands its own register options to the plugin too; `prefix` is in the schema, these two are not ours.
function stripFastifyKeys (options: Record<string, unknown>): Record<string, unknown> {
  const { logLevel, logSerializers, ...rest } = options
  return rest
}

function buildResolved (options: WsProxyOptions, registry: MetricsRegistry | null): ResolvedOptions {
  const plugin = options as Defaulted
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
    return problems.attempt(() => resolveRoute(route, at, plugin, maps, targets, origins)) as ResolvedRoute
  })
  problems.throwIfAny()

  const metrics = options.metrics
  return Object.freeze({
    warnings: Object.freeze(unusedGroups(groups, resolved)),
    routes: Object.freeze(resolved),
    groups: Object.freeze([...groups.values(), ...targets.urls.values()]),
    connections: plugin.pool.connections,
    keepAliveTimeout: plugin.pool.keepAliveTimeout,
    tunnelLimit: plugin.limits.tunnels ?? 0,
    tunnelsPerClient: plugin.limits.tunnelsPerClient ?? 0,
    retryAfter: plugin.limits.retryAfter,
    closeGracePeriod: plugin.closeGracePeriod,
    tunnelLogLevel: plugin.tunnelLogLevel,
    headerFields: plugin.limits.headers,
    exposeErrors: plugin.exposeErrors,
    http2ExtendedConnect: plugin.http2ExtendedConnect,
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

/** The plugin level after `Value.Default`: the schema's defaults fill every inheritable setting but `methods`. */
type Defaulted = WsProxyOptions & {
  timeouts: Required<Pick<TimeoutOptions, 'connect' | 'read' | 'send'>> & TimeoutOptions
  pool: Required<PoolOptions>
  limits: LimitOptions & { retryAfter: number, responseHead: number, headers: number }
  exposeErrors: boolean
  http2ExtendedConnect: boolean
  closeGracePeriod: number
  tunnelLogLevel: TunnelLogLevel
  tunnelDrain: TunnelDrainMode
  preserveHost: boolean
  xForwarded: boolean
  upgrade: boolean
}

/** What a route's `upstream` (or `upgradeUpstream`) names: a group, or a URL (one one-server group per origin). */
class Targets {
  readonly groups: ReadonlyMap<string, ResolvedGroup>
  readonly urls = new Map<string, ResolvedGroup>()
  readonly #tls: TlsOptions | null

  constructor (groups: ReadonlyMap<string, ResolvedGroup>, tls: TlsOptions | null) {
    this.groups = groups
    this.#tls = tls
  }

  resolve (text: string, at: string): { group: ResolvedGroup, origin: string, host: string, path: string | null } {
    const { origin, host, path, socketPath } = parseUpstream(text, at)
    // nginx: a proxy_pass host that names an upstream block means the group.
    const group = socketPath === null ? this.groups.get(host) : undefined
    if (group !== undefined) {
      if (!origin.startsWith(group.scheme + ':')) {
        fail(at, `group ${JSON.stringify(host)} has ${group.scheme}: servers; name it ${group.scheme}://${host}`)
      }
      return { group, origin, host, path }
    }
    if (socketPath === null) this.#nearMiss(text, host, at)
    const key = socketPath ?? origin
    let url = this.urls.get(key)
    if (url === undefined) {
      url = urlGroup(origin, socketPath, this.#tls)
      this.urls.set(key, url)
    }
    return { group: url, origin, host, path }
  }

  /**
   * A host without a port or a dot that is one typo away from a group's name (`http://chatt` beside `chat`) is
   * taken for a misspelt group, not a host: as a host it would fail every request with 502 ENOTFOUND.
   */
  #nearMiss (text: string, host: string, at: string): void {
    if (host.length < 3 || host.includes('.') || host.includes(':') || !/^https?:\/\/[^/:]+(\/|$)/.test(text)) return
    const group = closest(host, this.groups.keys())
    if (group === null) return
    const scheme = text.slice(0, text.indexOf(':'))
    fail(at, `no upstream group is named ${JSON.stringify(host)}; did you mean ${JSON.stringify(group)} (${scheme}://${group})? ` +
      `For a host of that name, give its port (${scheme}://${host}:${scheme === 'https' ? 443 : 80})`)
  }
}

function resolveRoute (route: RouteOptions, at: string, plugin: Defaulted, maps: MapRegistry, targets: Targets, origins: OriginAllowList | null): ResolvedRoute {
  const { group, origin, host, path } = targets.resolve(route.upstream, `${at}upstream`)
  if (path !== null && route.rewritePrefix !== undefined) {
    fail(`${at}rewritePrefix`, 'the upstream URL already has a path, which replaces the prefix (nginx proxy_pass URI); give one or the other')
  }
  const hosts = compileHosts(route.host, `${at}host`)
  const rules = resolveHeaderRules(route, at, plugin, maps, hostCaptureNames(hosts))
  const ping = route.ping ?? plugin.ping
  const resolved: ResolvedRoute = {
    prefix: route.prefix,
    origin,
    group,
    proxyHost: host,
    rewrite: route.rewritePrefix ?? path,
    connectTimeout: route.timeouts?.connect ?? plugin.timeouts.connect,
    readTimeout: route.timeouts?.read ?? plugin.timeouts.read,
    sendTimeout: route.timeouts?.send ?? plugin.timeouts.send,
    idleTimeout: route.timeouts?.idle ?? plugin.timeouts.idle ?? 0,
    maxTunnelLifetime: route.timeouts?.maxTunnelLifetime ?? plugin.timeouts.maxTunnelLifetime ?? 0,
    pingInterval: ping?.interval ?? 0,
    pingTimeout: ping?.timeout ?? 0,
    tunnelLimit: route.limits?.tunnels ?? 0,
    bodyLimit: route.limits?.body ?? plugin.limits.body ?? 0,
    responseHeadLimit: route.limits?.responseHead ?? plugin.limits.responseHead,
    preserveHost: route.preserveHost ?? plugin.preserveHost,
    xForwarded: route.xForwarded ?? plugin.xForwarded,
    upgrade: route.upgrade ?? plugin.upgrade,
    methods: Object.freeze([...(route.methods ?? plugin.methods ?? PROXIED_METHODS)]),
    ...rules,
    // The hash key of the group is a request template too.
    needsVars: rules.needsVars || group.hash?.constant === null,
    allowedOrigins: route.allowedOrigins === undefined ? origins : compileOrigins(route.allowedOrigins, `${at}allowedOrigins`),
    upgradeProtocols: new UpgradeProtocols(route.upgradeProtocols ?? plugin.upgradeProtocols ?? null),
    upgradeRoute: null,
    hosts,
    config: route.config ?? {},
    getUpstream: route.getUpstream ?? null,
    rewriteRequestHeaders: route.rewriteRequestHeaders ?? null,
    rewritePrefix: route.rewritePrefix ?? null,
    tls: plugin.tls ?? null,
    tunnelDrain: route.tunnelDrain ?? plugin.tunnelDrain
  }
  if (route.upgradeUpstream === undefined) return Object.freeze(resolved)
  const target = targets.resolve(route.upgradeUpstream, `${at}upgradeUpstream`)
  if (target.path !== null && route.rewritePrefix !== undefined) {
    fail(`${at}rewritePrefix`, 'upgradeUpstream has a path, which replaces the prefix for upgrades; give one or the other')
  }
  const upgradeRoute: ResolvedRoute = Object.freeze({
    ...resolved,
    origin: target.origin,
    group: target.group,
    proxyHost: target.host,
    rewrite: route.rewritePrefix ?? target.path,
    needsVars: rules.needsVars || target.group.hash?.constant === null
  })
  return Object.freeze({ ...resolved, upgradeRoute })
}

type HeaderSettings = Pick<ResolvedRoute, 'requestRules' | 'responseRules' | 'redirects' | 'cookieDomain' | 'cookiePath' | 'needsVars'>

/**
 * Compiles a route's header templates over the plugin's: header rules merge per name, `redirect` and the cookie
 * rules are taken whole from the route when it has them. The shorthand's single route has no options of its own,
 * so its rules are the plugin's, named at the plugin's path.
 */
function resolveHeaderRules (route: RouteOptions, at: string, plugin: Defaulted, maps: MapRegistry, hostCaptures: CaptureNames | null): HeaderSettings {
  const request: LookupScope = { response: false, map: maps.lookup, captures: null, hostCaptures }
  const response: LookupScope = { ...request, response: true }
  const own = at === '' ? undefined : route
  const levels = (key: string) => ({ plugin: `${key}/`, route: `${at}${key}/` })
  const requestRules = compileRequestRules(plugin.requestHeaders, own?.requestHeaders, levels('requestHeaders'), request)
  const responseRules = compileResponseRules(plugin.responseHeaders, own?.responseHeaders, levels('responseHeaders'), response)
  // Where a whole-list setting comes from, for error paths: the route when it sets it, else the plugin.
  const from = (key: 'redirect' | 'cookieDomain' | 'cookiePath') => own?.[key] !== undefined ? `${at}${key}/` : `${key}/`
  const redirect = own?.redirect ?? plugin.redirect ?? ['default']
  const redirects = redirect === false
    ? []
    : redirect.map((rule, i) => rule === 'default' ? 'default' as const : compileRewriteRule(rule, `${from('redirect')}${i}`, response))
  const cookieDomain = compileRewriteRules(own?.cookieDomain ?? plugin.cookieDomain ?? [], from('cookieDomain'), response, true)
  const cookiePath = compileRewriteRules(own?.cookiePath ?? plugin.cookiePath ?? [], from('cookiePath'), response)
  const written = [...(requestRules === null ? [] : [...requestRules.set, ...requestRules.add, requestRules.host, requestRules.connection, requestRules.upgrade]),
    ...responseRules.set, ...responseRules.add, ...cookieDomain, ...cookiePath, ...redirects.filter((rule) => rule !== 'default')]
  return { requestRules, responseRules, redirects, cookieDomain, cookiePath, needsVars: written.some((rule) => rule?.variable === true) }
}

/** The names a route's `host` lists, as its duplicate check compares them ('' for a route without `host`). */
function hostKeys (host: string | string[] | undefined): string[] {
  if (host === undefined) return ['']
  // A name listed twice in one route (`a.test`, `A.test.`) is one name, not a route duplicating itself.
  return [...new Set((typeof host === 'string' ? [host] : host).map((name) => name.startsWith('~') ? name : name.toLowerCase().replace(/\.$/, '')))]
}

/**
 * What `$1`..`$9` and `$name` may name in a route's templates: the most groups and every name over its `~regex` hosts
 * (nginx `server_name` captures); null when it has none. A group the regex that matched lacks is empty.
 */
function hostCaptureNames (hosts: readonly HostPattern[] | null): CaptureNames | null {
  const regexes = (hosts ?? []).flatMap((pattern) => pattern.kind === 'regex' ? [captureNames(pattern.re)] : [])
  if (regexes.length === 0) return null
  return { count: Math.max(...regexes.map((c) => c.count)), names: [...new Set(regexes.flatMap((c) => c.names))] }
}

function compileHosts (host: string | string[] | undefined, at: string): readonly HostPattern[] | null {
  if (host === undefined) return null
  const names = typeof host === 'string' ? [host] : host
  return Object.freeze(names.map((name, i) => {
    const pattern = compileHost(name)
    if (typeof pattern === 'string') fail(typeof host === 'string' ? at : `${at}/${i}`, pattern)
    return pattern
  }))
}
