import type { FastifyReply } from 'fastify'
import type { ResponseHeaderPlan } from '../headers/response-headers.js'
import type { RewriteRule } from '../headers/rules.js'
import type { UploadSet } from '../http/body.js'
import type { ResolvedRoute } from '../options/resolve.js'
import type { RouteStats } from '../telemetry/stats.js'
import type { RouteSlots } from '../upgrade/tunnel-slot.js'
import type { DynamicOrigin, DynamicUpstreams } from '../upstream/dynamic.js'
import type { UpstreamGroup } from '../upstream/group.js'
import type { PoolSpec } from '../upstream/server.js'

/** What a route is wired to at run time, beside its settings (fields of ProxyRoute). */
export type RouteWiring = Pick<ProxyRoute, 'group' | 'stats' | 'slots' | 'uploads' | 'headerFields' | 'exposeErrors' | 'dynamic' | 'origin'>

/**
 * One proxied route at run time, the one route type HTTP exchanges, handshakes and tunnels all read: its resolved
 * settings as they are, plus what it is wired to and what depends only on them (computed here once).
 */
export class ProxyRoute {
  readonly settings: ResolvedRoute
  /** The full matched prefix: Fastify's register prefix followed by the route's. */
  readonly fullPrefix: string
  /** What names the route in logs, metrics and events: its full prefix. */
  readonly label: string
  /** The group its requests go to. */
  readonly group: UpstreamGroup
  /** Its counters (shared with the routes `getUpstream` derives from it). */
  readonly stats: RouteStats
  /** Its tunnel slots (shared with its `upgradeUpstream` twin and the routes derived from it). */
  readonly slots: RouteSlots
  /** The registration's request bodies being sent, for the send-timeout sweep. */
  readonly uploads: UploadSet
  /** `limits.headers` and `exposeErrors` of the registration. */
  readonly headerFields: number
  readonly exposeErrors: boolean
  /** With `getUpstream`: the registration's request-time upstreams. */
  readonly dynamic: DynamicUpstreams | null
  /** On a route `getUpstream` chose: the cache entry of its URL's origin (null: a configured group, or not chosen). */
  readonly origin: DynamicOrigin | null
  /** The connection settings of the pools it uses. */
  readonly pool: PoolSpec
  /** The response header rules and rewrites, `proxy_redirect default` made concrete. */
  readonly response: ResponseHeaderPlan
  /** With `getUpstream`: the routes for the upstreams it returned, by returned string (routing/chosen-upstream.ts). */
  readonly chosen: Map<string, ProxyRoute> | null

  constructor (settings: ResolvedRoute, fullPrefix: string, wiring: RouteWiring) {
    this.settings = settings
    this.fullPrefix = fullPrefix
    this.label = fullPrefix
    this.group = wiring.group
    this.stats = wiring.stats
    this.slots = wiring.slots
    this.uploads = wiring.uploads
    this.headerFields = wiring.headerFields
    this.exposeErrors = wiring.exposeErrors
    this.dynamic = wiring.dynamic
    this.origin = wiring.origin
    const { connectTimeout, responseHeadLimit } = settings
    this.pool = { poolKey: `${connectTimeout} ${responseHeadLimit}`, connectTimeout, responseHeadLimit }
    const rules = settings.responseRules
    this.response = {
      drop: rules.drop.size === 0 ? null : rules.drop,
      set: rules.set,
      add: rules.add,
      redirects: settings.redirects.map((rule) => rule === 'default' ? this.defaultRedirect() : rule),
      cookieDomain: settings.cookieDomain,
      cookiePath: settings.cookiePath
    }
    this.chosen = settings.getUpstream === null ? null : new Map()
  }

  /**
   * nginx `proxy_redirect default`: the upstream URL of the route's mapped path turns back into the route's prefix.
   * With a rewrite, `http://upstream:port/rewrite/...` → `/prefix/...`; without, paths map as they are, so the
   * upstream origin → `/`. Relative, as nginx writes it: the client resolves it against the URL it asked for.
   */
  defaultRedirect (): RewriteRule {
    const scheme = this.settings.origin.slice(0, this.settings.origin.indexOf(':'))
    const rewrite = this.settings.rewrite
    const replacement = rewrite === null ? '/' : this.fullPrefix
    const text = `${scheme}://${this.settings.proxyHost}${rewrite ?? '/'}`
    return { text, re: null, to: () => replacement, variable: false }
  }

  /** nginx proxy_pass: without a URI the request URI goes as is; with one it replaces the matched prefix. */
  upstreamPath (url: string): string {
    return this.settings.rewrite === null ? url : this.settings.rewrite + url.slice(this.fullPrefix.length)
  }

  /** Answers a request the proxy refuses itself, counted with the route's answers. */
  refuse (reply: FastifyReply, err: Error): void {
    this.stats.answered((err as Error & { statusCode: number }).statusCode)
    reply.send(err)
  }
}
