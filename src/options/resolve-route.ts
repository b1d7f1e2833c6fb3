import { compileHost, type HostPattern } from './host-patterns.js'
import type { OriginAllowList } from '../security/origins.js'
import { UpgradeProtocols } from '../security/upgrade-protocols.js'
import type { CaptureNames } from '../vars/builtins.js'
import { captureNames, type MapRegistry } from './maps.js'
import { compileOrigins } from './origins.js'
import { fail } from './problems.js'
import { resolveHeaderRules, type HeaderSettings } from './resolve-headers.js'
import type { ResolvedGroup } from './resolve-groups.js'
import { PROXIED_METHODS, type DefaultedOptions, type GetUpstream, type RewriteRequestHeaders, type RouteOptions, type TunnelDrainMode } from './schema.js'
import type { Targets } from './targets.js'
import type { TlsOptions } from './upstream-schema.js'

/**
 * Everything a route needs at request time, computed once at register time. Its header settings (`requestRules`,
 * `responseRules`, `redirects`, `cookieDomain`, `cookiePath`, `needsVars`) are declared with their compiler, in
 * resolve-headers.ts.
 */
export interface ResolvedRoute extends HeaderSettings {
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

/** One route over the plugin level; `at` is its option path (`routes/0/`, or `''` for the shorthand's route). */
export function resolveRoute (route: RouteOptions, at: string, plugin: DefaultedOptions, maps: MapRegistry, targets: Targets, origins: OriginAllowList | null): ResolvedRoute {
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
