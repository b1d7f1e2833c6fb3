import { isIP } from 'node:net'
import type { LookupScope } from '../vars/builtins.js'
import type { Template } from '../vars/template.js'
import { addressOf, parseUpstream } from './upstream-url.js'
import { compileAt } from './maps.js'
import { fail, type ProblemList } from './problems.js'
import {
  UPSTREAM_DEFAULTS, type AttemptFailure, type BalanceMethod, type HostResolver, type ServerOptions, type TlsOptions, type UpstreamGroupOptions
} from './upstream-schema.js'

/** One server of a group, as selection and the pools need it. */
export interface ResolvedServer {
  /** The server's URL as configured (its identity in the API and on a consistent-hash ring). */
  readonly url: string
  readonly origin: string
  readonly socketPath: string | null
  /** Host name for TLS (SNI) and DNS re-resolution. */
  readonly hostname: string
  /** nginx `$upstream_addr`: `host:port` or `unix:/path`. */
  readonly addr: string
  readonly weight: number
  readonly maxFails: number
  readonly failTimeout: number
  readonly backup: boolean
  readonly down: boolean
}

export interface ResolvedHealthCheck {
  readonly path: string
  readonly interval: number
  readonly timeout: number
  readonly status: readonly [number, number]
  readonly passes: number
  readonly fails: number
  readonly headers: Readonly<Record<string, string>>
}

export interface ResolvedDiscovery {
  readonly interval: number
  readonly family: 0 | 4 | 6
  readonly resolver: HostResolver | null
}

/** An upstream group: a named one (`upstreams`), or the one-server group of a route naming a URL. */
export interface ResolvedGroup {
  /** The group's name, or for a URL the URL's origin (`unix:/path` for a unix socket): how logs and metrics name it. */
  readonly name: string
  readonly named: boolean
  readonly scheme: 'http' | 'https'
  readonly servers: readonly ResolvedServer[]
  readonly balance: BalanceMethod
  /** The hash key (`hash`), or null. */
  readonly hash: Template | null
  readonly consistent: boolean
  readonly failOn: ReadonlySet<AttemptFailure>
  readonly retryOn: ReadonlySet<AttemptFailure>
  /** Most attempts (0: every server once) and the time budget in ms (0: none). */
  readonly tries: number
  readonly retryTimeout: number
  readonly nonIdempotent: boolean
  readonly healthCheck: ResolvedHealthCheck | null
  readonly tls: TlsOptions | null
  readonly discovery: ResolvedDiscovery | null
}

// The schemas' defaults (`upstreams` is a record, which the options' defaults do not reach into).
const { server: SERVER, group: GROUP, nextUpstream: NEXT, healthCheck: HEALTH, resolve: RESOLVE } = UPSTREAM_DEFAULTS
const GROUP_NAME = /^[a-z0-9_][a-z0-9_.-]*$/

/** A server's options (defaults applied) checked as a group member at `at` (e.g. `upstreams/api/servers/0/`). */
export function resolveServer (server: ServerOptions, at: string, scheme: 'http' | 'https' | null): ResolvedServer {
  const parsed = parseUpstream(server.url, `${at}url`)
  if (parsed.path !== null && parsed.path !== '/') fail(`${at}url`, 'a server URL has no path; the route\'s `upstream` gives it (http://group/path)')
  const own = parsed.origin.startsWith('https:') ? 'https' : 'http'
  if (scheme !== null && own !== scheme) {
    fail(`${at}url`, `every server of a group uses the same scheme (${scheme}:), got ${JSON.stringify(server.url)}`)
  }
  return Object.freeze({
    url: parsed.socketPath === null ? parsed.origin : `http://unix:${parsed.socketPath}:`,
    origin: parsed.origin,
    socketPath: parsed.socketPath,
    hostname: parsed.hostname,
    addr: addressOf(parsed.origin, parsed.socketPath),
    weight: server.weight ?? SERVER.weight,
    maxFails: server.maxFails ?? SERVER.maxFails,
    failTimeout: server.failTimeout ?? SERVER.failTimeout,
    backup: server.backup ?? SERVER.backup,
    down: server.down ?? SERVER.down
  })
}

/** The named groups of the options, compiled; hash keys are request templates (maps visible). */
export function resolveGroups (groups: Record<string, UpstreamGroupOptions>, scope: LookupScope, pluginTls: TlsOptions | null,
  problems: ProblemList): Map<string, ResolvedGroup> {
  const resolved = new Map<string, ResolvedGroup>()
  for (const [name, group] of Object.entries(groups)) {
    // Each group is checked even when another failed; a failed one is left out (the caller reports every problem).
    problems.attempt(() => {
      if (!GROUP_NAME.test(name)) fail(`upstreams/${JSON.stringify(name)}`, 'a group name is lower case letters, digits, "_", "-" and "." (it is written as a URL host: http://name)')
      resolved.set(name, resolveGroup(name, group, `upstreams/${name}/`, scope, pluginTls))
    })
  }
  return resolved
}

function resolveGroup (name: string, group: UpstreamGroupOptions, at: string, scope: LookupScope, pluginTls: TlsOptions | null): ResolvedGroup {
  const first = parseUpstream(group.servers[0].url, `${at}servers/0/url`)
  const scheme = first.origin.startsWith('https:') ? 'https' : 'http'
  const seen = new Map<string, number>()
  const servers = group.servers.map((server, i) => {
    const resolved = resolveServer(server, `${at}servers/${i}/`, scheme)
    const previous = seen.get(resolved.url)
    if (previous !== undefined) fail(`${at}servers/${i}/url`, `duplicate server ${JSON.stringify(resolved.url)} (also ${at}servers/${previous}/url)`)
    seen.set(resolved.url, i)
    return resolved
  })
  const balance = group.balance ?? GROUP.balance
  if (balance === 'hash' && group.hash === undefined) fail(`${at}hash`, 'balance "hash" needs a key template, e.g. "$remote_addr"')
  if (balance !== 'hash' && group.hash !== undefined) fail(`${at}hash`, `a hash key is only used with balance "hash", not ${JSON.stringify(balance)}`)
  if (group.consistent === true && balance !== 'hash' && balance !== 'ip-hash') fail(`${at}consistent`, 'consistent hashing needs balance "hash" or "ip-hash"')
  const check = group.healthCheck
  const discovery = group.resolve
  if (discovery !== undefined && servers.every((s) => s.socketPath !== null || isIP(s.hostname) !== 0)) {
    fail(`${at}resolve`, 'no server of the group has a host name to resolve')
  }
  const next = group.nextUpstream
  return Object.freeze({
    name,
    named: true,
    scheme,
    servers: Object.freeze(servers),
    balance,
    hash: group.hash === undefined ? null : compileAt(group.hash, scope, `${at}hash`),
    consistent: group.consistent ?? GROUP.consistent,
    failOn: new Set(group.failOn ?? GROUP.failOn),
    retryOn: new Set(next?.on ?? NEXT.on),
    tries: next?.tries ?? NEXT.tries,
    retryTimeout: next?.timeout ?? NEXT.timeout,
    nonIdempotent: next?.nonIdempotent ?? NEXT.nonIdempotent,
    healthCheck: check === undefined
      ? null
      : Object.freeze({
        path: check.path ?? HEALTH.path,
        interval: check.interval ?? HEALTH.interval,
        timeout: check.timeout ?? HEALTH.timeout,
        status: check.status ?? HEALTH.status,
        passes: check.passes ?? HEALTH.passes,
        fails: check.fails ?? HEALTH.fails,
        headers: check.headers ?? {}
      }),
    tls: group.tls ?? pluginTls,
    discovery: discovery === undefined ? null : { interval: discovery.interval, family: discovery.family ?? RESOLVE.family, resolver: discovery.resolver ?? null }
  })
}

/** The one-server group of a route that names a URL: nginx's defaults, with retries and failure marking moot. */
export function urlGroup (origin: string, socketPath: string | null, pluginTls: TlsOptions | null): ResolvedGroup {
  // The URL was checked with its route; its origin (or socket) is a valid server URL.
  const server = resolveServer({ url: socketPath === null ? origin : `http://unix:${socketPath}:`, maxFails: 0 }, '', null)
  return Object.freeze({
    name: socketPath === null ? origin : `unix:${socketPath}`,
    named: false,
    scheme: origin.startsWith('https:') ? 'https' : 'http',
    servers: Object.freeze([server]),
    balance: 'round-robin',
    hash: null,
    consistent: false,
    failOn: new Set<AttemptFailure>(),
    retryOn: new Set<AttemptFailure>(),
    tries: 1,
    retryTimeout: 0,
    nonIdempotent: false,
    healthCheck: null,
    tls: origin.startsWith('https:') ? pluginTls : null,
    discovery: null
  })
}
