import type { IncomingMessage, Server } from 'node:http'
import type { FastifyContextConfig, FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods } from 'fastify'
import type { Dispatcher } from 'undici'
import { FST_WS_PROXY_BAD_HEADER_VALUE, FST_WS_PROXY_BAD_PATH, FST_WS_PROXY_BODY_TOO_LARGE, FST_WS_PROXY_GET_UPSTREAM_FAILED, FST_WS_PROXY_NO_LIVE_UPSTREAM, FST_WS_PROXY_ORIGIN_FORBIDDEN, FST_WS_PROXY_REWRITE_HEADERS_FAILED, FST_WS_PROXY_UPGRADE_WITH_BODY } from './errors.js'
import { buildRequestHeaders, connectionIntent, headersObject, rewrittenHeaders } from './headers/request-headers.js'
import { invalidFields } from './headers/field.js'
import type { ResponseHeaderPlan } from './headers/response-headers.js'
import type { RewriteRule } from './headers/rules.js'
import { RequestBody, type UploadSet } from './http/body.js'
import { ProxyExchange, type ExchangeRoute } from './http/forward.js'
import { publicError } from './http/error-map.js'
import { h2HasBody } from './http/h2.js'
import { effectiveHeaderCap, headRefusal } from './security/request-head.js'
import { looksCanonical, targetRefusal } from './security/target.js'
import { kHeadChecked } from './symbols.js'
import { HOST_CONSTRAINT, HostTable, hostStrategy } from './routing/hosts.js'
import { RouteStats } from './telemetry/stats.js'
import { RouteTunnels, type TunnelLimits } from './upgrade/limits.js'
import { VarContext } from './vars/context.js'
import type { ResolvedRoute } from './options/resolve.js'
import type { UpstreamPools } from './upstream/pools.js'
import type { UpstreamGroup } from './upstream/group.js'
import type { ResolvedGroup } from './options/resolve-groups.js'
import type { UpgradeClaim } from './upgrade/listener.js'
import type { TunnelSet } from './upgrade/tunnel-registry.js'
import { DYNAMIC_ORIGINS, DynamicUpstreams, type DynamicOrigin } from './upstream/dynamic.js'
import type { GetUpstream, RewriteRequestHeaders } from './options/schema.js'

/**
 * One proxied route at request time. Everything that depends only on options is computed here once;
 * the handler does the per-request work: map the path, build the headers, dispatch.
 */
export class RouteProxy implements ExchangeRoute {
  readonly route: ResolvedRoute
  /** The full matched prefix: Fastify's register prefix followed by the route's. */
  readonly fullPrefix: string
  readonly label: string
  readonly group: UpstreamGroup
  /** Connection settings of the pools it uses (PoolSpec). */
  readonly poolKey: string
  readonly responseHeadLimit: number
  readonly tunnels: TunnelSet
  readonly limits: TunnelLimits
  readonly uploads: UploadSet
  readonly tunnelCount: RouteTunnels
  readonly stats: RouteStats
  readonly connectTimeout: number
  readonly readTimeout: number
  readonly sendTimeout: number
  readonly idleTimeout: number
  readonly maxTunnelLifetime: number
  readonly pingInterval: number
  readonly pingTimeout: number
  readonly tunnelDrain: ResolvedRoute['tunnelDrain']
  readonly bodyLimit: number
  readonly response: ResponseHeaderPlan
  // For VarContext: `$proxy_host`.
  readonly proxyHost: string
  /** Most header fields of a client request (`limits.headers`), and whether error bodies may name upstreams. */
  readonly headerFields: number
  readonly exposeErrors: boolean
  /** With `getUpstream`: the registration's request-time upstreams, and this route's proxies per returned string. */
  dynamic: DynamicUpstreams | null = null
  readonly #chosen = new Map<string, RouteProxy>()
  /** On a proxy `getUpstream` chose: the cache entry of its URL's origin (null: a configured group). */
  readonly origin: DynamicOrigin | null
  readonly #runtime: ProxyRuntime

  /** `chosen`: a proxy for an upstream `getUpstream` returned, sharing the route's counters and tunnel count. */
  constructor (route: ResolvedRoute, fullPrefix: string, runtime: ProxyRuntime, tunnelCount: RouteTunnels,
    chosen: { group: UpstreamGroup, stats: RouteStats, origin: DynamicOrigin | null } | null = null) {
    this.route = route
    this.fullPrefix = fullPrefix
    this.label = fullPrefix
    this.#runtime = runtime
    this.origin = chosen?.origin ?? null
    this.group = chosen?.group ?? runtime.groups.get(route.group) as UpstreamGroup
    this.poolKey = `${route.connectTimeout} ${route.responseHeadLimit}`
    this.responseHeadLimit = route.responseHeadLimit
    this.tunnels = runtime.tunnels
    this.limits = runtime.limits
    this.uploads = runtime.uploads
    this.tunnelCount = tunnelCount
    if (chosen === null) {
      this.stats = new RouteStats(fullPrefix, this.group.name)
      runtime.stats.push(this.stats)
    } else {
      this.stats = chosen.stats
    }
    this.connectTimeout = route.connectTimeout
    this.readTimeout = route.readTimeout
    this.sendTimeout = route.sendTimeout
    this.idleTimeout = route.idleTimeout
    this.maxTunnelLifetime = route.maxTunnelLifetime
    this.pingInterval = route.pingInterval
    this.pingTimeout = route.pingTimeout
    this.tunnelDrain = route.tunnelDrain
    this.bodyLimit = route.bodyLimit
    this.proxyHost = route.proxyHost
    this.headerFields = runtime.headerFields
    this.exposeErrors = runtime.exposeErrors
    const rules = route.responseRules
    this.response = {
      drop: rules.drop.size === 0 ? null : rules.drop,
      set: rules.set,
      add: rules.add,
      redirects: route.redirects.map((rule) => rule === 'default' ? this.defaultRedirect() : rule),
      cookieDomain: route.cookieDomain,
      cookiePath: route.cookiePath
    }
  }

  /**
   * nginx `proxy_redirect default`: the upstream URL of the route's mapped path turns back into the route's prefix.
   * With a rewrite, `http://upstream:port/rewrite/...` → `/prefix/...`; without, paths map as they are, so the
   * upstream origin → `/`. Relative, as nginx writes it: the client resolves it against the URL it asked for.
   */
  defaultRedirect (): RewriteRule {
    const scheme = this.route.origin.slice(0, this.route.origin.indexOf(':'))
    const rewrite = this.route.rewrite
    const replacement = rewrite === null ? '/' : this.fullPrefix
    const text = `${scheme}://${this.proxyHost}${rewrite ?? '/'}`
    return { text, re: null, to: () => replacement, variable: false }
  }

  /** nginx proxy_pass: without a URI the request URI goes as is; with one it replaces the matched prefix. */
  upstreamPath (url: string): string {
    return this.route.rewrite === null ? url : this.route.rewrite + url.slice(this.fullPrefix.length)
  }

  handle (request: FastifyRequest, reply: FastifyReply): void {
    // A header a hook set on the reply (from client input, say) with CR, LF or NUL: refused before anything goes
    // upstream, over HTTP/2 too (where Node would write it as it is), and left out of the refusal itself.
    const badFields = invalidFields(reply.getHeaders())
    if (badFields !== null) {
      for (const name of badFields) reply.removeHeader(name)
      const err = new FST_WS_PROXY_BAD_HEADER_VALUE(badFields[0])
      request.log.warn({ err }, 'request refused: a header a hook set would not be a valid HTTP field')
      this.refuse(reply, err)
      return
    }
    const req = request.raw
    const url = req.url as string
    // The upstream path is the mapping of exactly what hooks saw as `request.url`: nothing else is ever sent.
    if (!looksCanonical(url)) {
      const refusal = targetRefusal(url)
      if (refusal !== null) {
        this.refuse(reply, new FST_WS_PROXY_BAD_PATH(refusal))
        return
      }
    }
    // Prefixes match case-sensitively, as nginx locations do, whatever Fastify's `caseSensitive`: mapping `/API/x`
    // by the length of `/api/` would send the upstream a path no hook checking `/api/...` ever saw.
    if (!url.startsWith(this.fullPrefix)) {
      reply.callNotFound()
      return
    }
    // Checked by the request gate before routing, unless the request came another way (`inject()`).
    if ((req as { [kHeadChecked]?: boolean })[kHeadChecked] !== true) {
      const head = headRefusal(req, effectiveHeaderCap(this.headerFields, (req.socket as { server?: Server }).server?.maxHeadersCount))
      if (head !== null) {
        this.refuse(reply, head)
        return
      }
    }
    // `req.upgrade` is only true for requests Node handed to the 'upgrade' event: their socket has left
    // Node's HTTP parser, so any body would never be read; what followed the head travels in the tunnel.
    const upgrading = (req as { upgrade?: boolean }).upgrade === true
    // A browser sends `Origin` on every WebSocket handshake; without one the client is not a browser page, which
    // is all the check defends against (any other client can send whatever Origin it likes).
    const origins = this.route.allowedOrigins
    if (upgrading && origins !== null) {
      const origin = req.headers.origin
      if (origin !== undefined && !origins.allows(origin)) {
        const err = new FST_WS_PROXY_ORIGIN_FORBIDDEN()
        request.log.warn({ err, origin, client: request.ip }, 'upgrade refused: origin not allowed')
        this.refuse(reply, err)
        return
      }
    }
    const withBody = hasBody(req)
    if (upgrading && withBody) {
      // Its body sits unparsed (maybe chunked) on the socket: refused rather than sent upstream without it.
      this.refuse(reply, new FST_WS_PROXY_UPGRADE_WITH_BODY())
      return
    }
    if (withBody && this.bodyLimit > 0 && Number(req.headers['content-length'] ?? 0) > this.bodyLimit) {
      // Refused before anything goes upstream; Node reads and drops the body, then closes the connection
      // (over HTTP/2 only the stream ends).
      if (req.httpVersionMajor !== 2) reply.header('connection', 'close')
      this.refuse(reply, new FST_WS_PROXY_BODY_TOO_LARGE(this.bodyLimit))
      return
    }
    // @fastify/websocket, when it routed this upgrade, destroys the socket after the response unless told
    // the request is not its WebSocket; the tunnel owns the socket now.
    if (upgrading && (request as { ws?: boolean }).ws === true) (request as { ws?: boolean }).ws = false
    if (this.route.getUpstream === null) this.forward(request, reply, url, upgrading, withBody)
    else this.chosen(request, reply)?.forward(request, reply, url, upgrading, withBody)
  }

  /** Picks a server of the group and sends the request (or the upgrade) there. */
  forward (request: FastifyRequest, reply: FastifyReply, url: string, upgrading: boolean, withBody: boolean): void {
    const req = request.raw
    const route = this.route
    const vars = route.needsVars ? new VarContext(req, request.id, this, request.ip) : null
    const group = this.group
    const hash = group.single === null ? group.keyHash(vars, request.ip) : 0
    const server = group.pick(hash, null)
    if (server === null) {
      const err = new FST_WS_PROXY_NO_LIVE_UPSTREAM(group.name)
      this.stats.upstreamError(err)
      this.refuse(reply, this.exposeErrors ? err : publicError(err, request.id))
      return
    }
    if (vars !== null) vars.upstreamAddr = server.addr
    const options: Dispatcher.DispatchOptions = {
      path: this.upstreamPath(url),
      method: req.method as Dispatcher.HttpMethod,
      headers: null,
      body: null,
      upgrade: null,
      headersTimeout: this.readTimeout,
      bodyTimeout: this.readTimeout
    }
    try {
      options.headers = buildRequestHeaders(route, req, vars)
      // A protocol the route does not accept (h2c by default) goes as a plain request, whatever templates say.
      const protocols = route.upgradeProtocols
      // Node hands a request over as an upgrade only when it carries Upgrade.
      connectionIntent(options, route.requestRules, req, vars, upgrading && route.upgrade && protocols.allows(req.headers.upgrade as string))
      if (typeof options.upgrade === 'string' && !protocols.allows(options.upgrade)) options.upgrade = null
    } catch (err) {
      // A template turned client input into bytes that could split the head: nothing goes upstream.
      request.log.warn({ err }, 'request refused: a header value would not be a valid HTTP field')
      this.refuse(reply, err as Error)
      return
    }
    if (route.rewriteRequestHeaders !== null && !this.rewriteHeaders(request, reply, options, route.rewriteRequestHeaders)) return
    const exchange = new ProxyExchange(this, request, reply, vars)
    exchange.options = options
    exchange.hash = hash
    if (options.upgrade !== null && options.upgrade !== undefined) {
      const refusal = this.limits.acquire(this.tunnelCount, request.ip)
      if (refusal !== null) {
        exchange.finished = true
        this.stats.rejected[refusal.limit]++
        request.log.warn({ err: refusal.error, client: request.ip }, 'upgrade refused: tunnel limit reached')
        reply.header('retry-after', String(this.limits.retryAfter))
        this.refuse(reply, refusal.error)
        return
      }
      exchange.slotHolder = request.ip
    } else if (withBody && !upgrading) {
      const body = new RequestBody(req, exchange, this.bodyLimit, this.sendTimeout)
      exchange.body = body
      options.body = body
      this.uploads.add(body)
    }
    exchange.dispatch(server)
  }

  /**
   * `getUpstream`: the proxy for the upstream it returns (this one for `undefined`), or null once the request is answered
   * with FST_WS_PROXY_GET_UPSTREAM_FAILED (it threw or named no upstream). Proxies are kept per returned string, at most
   * DYNAMIC_ORIGINS per route, the least recently used going first.
   */
  chosen (request: FastifyRequest, reply: FastifyReply): RouteProxy | null {
    let text: unknown
    try {
      text = (this.route.getUpstream as GetUpstream)(request)
    } catch (err) {
      this.upstreamFailed(request, reply, err, 'it threw')
      return null
    }
    if (text === undefined) return this
    if (typeof text !== 'string') {
      this.upstreamFailed(request, reply, new TypeError(`expected a string or undefined, got ${text === null ? 'null' : typeof text}`), 'it returned no upstream')
      return null
    }
    const known = this.#chosen.get(text)
    if (known !== undefined && known.origin?.live !== false) {
      this.#chosen.delete(text)
      this.#chosen.set(text, known)
      if (known.origin !== null) (this.dynamic as DynamicUpstreams).touch(known.origin)
      return known
    }
    let proxy: RouteProxy
    try {
      proxy = this.derive(text)
    } catch (err) {
      this.upstreamFailed(request, reply, err, 'it returned no valid upstream')
      return null
    }
    this.#chosen.delete(text)
    this.#chosen.set(text, proxy)
    if (this.#chosen.size > DYNAMIC_ORIGINS) this.#chosen.delete(this.#chosen.keys().next().value as string)
    return proxy
  }

  /** This route aimed at what `getUpstream` returned: same settings, that group, `upstream`'s path rules. */
  derive (text: string): RouteProxy {
    const target = (this.dynamic as DynamicUpstreams).resolve(text, this.route.tls)
    const rewritePrefix = this.route.rewritePrefix
    if (target.path !== null && rewritePrefix !== null) {
      throw new Error('the URL has a path, which replaces the prefix, and the route has rewritePrefix; give one or the other')
    }
    const route: ResolvedRoute = Object.freeze({
      ...this.route,
      origin: target.origin,
      group: target.resolved,
      proxyHost: target.host,
      rewrite: rewritePrefix ?? target.path,
      needsVars: this.route.needsVars || target.resolved.hash?.constant === null,
      getUpstream: null,
      upgradeRoute: null
    })
    return new RouteProxy(route, this.fullPrefix, this.#runtime, this.tunnelCount, { group: target.group, stats: this.stats, origin: target.entry })
  }

  /** Answers 500 for a `getUpstream` that threw or named no upstream; the body names nothing internal unless `exposeErrors`. */
  upstreamFailed (request: FastifyRequest, reply: FastifyReply, err: unknown, what: string): void {
    request.log.error({ err, route: this.label }, `getUpstream failed (${what}): nothing was sent upstream`)
    const detail = this.exposeErrors ? `${what}: ${(err as Error).message}` : `${what} (details in the log, request ${request.id})`
    this.refuse(reply, new FST_WS_PROXY_GET_UPSTREAM_FAILED(this.label, detail))
  }

  /** `rewriteRequestHeaders` over the built headers; false once the request is answered (it threw, or its result is refused). */
  rewriteHeaders (request: FastifyRequest, reply: FastifyReply, options: Dispatcher.DispatchOptions, rewrite: RewriteRequestHeaders): boolean {
    const built = options.headers as string[]
    let result: unknown
    try {
      result = rewrite(request, headersObject(built))
    } catch (err) {
      request.log.error({ err, route: this.label }, 'rewriteRequestHeaders threw: nothing was sent upstream')
      const detail = this.exposeErrors ? `it threw: ${(err as Error).message}` : `it threw (details in the log, request ${request.id})`
      this.refuse(reply, new FST_WS_PROXY_REWRITE_HEADERS_FAILED(this.label, detail))
      return false
    }
    try {
      options.headers = rewrittenHeaders(built, result, this.label)
    } catch (err) {
      request.log.warn({ err, route: this.label }, 'request refused: rewriteRequestHeaders returned headers that cannot be sent')
      this.refuse(reply, err as Error)
      return false
    }
    return true
  }

  /** Answers a request the proxy refuses itself, counted with the route's answers. */
  refuse (reply: FastifyReply, err: Error): void {
    this.stats.answered((err as Error & { statusCode: number }).statusCode)
    reply.send(err)
  }
}

// RFC 9112 §6.3: a request has a body exactly when it has Content-Length or Transfer-Encoding.
function hasBody (req: IncomingMessage): boolean {
  if (req.httpVersionMajor === 2) return h2HasBody(req)
  const length = req.headers['content-length']
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
}

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

/** The parts of one plugin registration its route proxies share. */
export interface ProxyRuntime {
  readonly pools: UpstreamPools
  /** The groups of the registration, by what the options resolved. */
  readonly groups: ReadonlyMap<ResolvedGroup, UpstreamGroup>
  readonly tunnels: TunnelSet
  readonly limits: TunnelLimits
  readonly uploads: UploadSet
  /** Every route proxy's counters, for metrics. */
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
    const tunnelCount = new RouteTunnels(route.tunnelLimit)
    const proxy = new RouteProxy(route, base + route.prefix, runtime, tunnelCount)
    const upgrades = route.upgradeRoute === null ? proxy : new RouteProxy(route.upgradeRoute, proxy.fullPrefix, runtime, tunnelCount)
    proxy.dynamic = upgrades.dynamic = dynamic
    const handler = (request: FastifyRequest, reply: FastifyReply): void => {
      // Only requests Node handed over as upgrades go to `upgradeUpstream`.
      ((request.raw as { upgrade?: boolean }).upgrade === true ? upgrades : proxy).handle(request, reply)
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
