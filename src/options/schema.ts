import { LOG_LEVELS } from '../telemetry/log-levels.js'
import { TlsSchema, UpstreamGroupSchema, type UpstreamGroupOptions } from './upstream-schema.js'
import type { FastifyRequest } from 'fastify'
import type { UpstreamRequestHeaders } from '../headers/rules.js'
import { Type, type Static, type TObject, type TOptional, type TInteger, type TArray, type TUnion, type TLiteral } from '@sinclair/typebox'

// The schema is the single source of the options: TS types are derived from it, `register` and the CLI
// validate with it, and docs/options.md is written from its descriptions (npm run docs).

/**
 * Every method Node 20's parser accepts (`http.METHODS`), except CONNECT, which Node hands to a separate
 * 'connect' event. Written out so that the type is a union of literals; a test compares it with `http.METHODS`.
 */
export const PROXIED_METHODS = ['ACL', 'BIND', 'CHECKOUT', 'COPY', 'DELETE', 'GET', 'HEAD', 'LINK', 'LOCK', 'M-SEARCH',
  'MERGE', 'MKACTIVITY', 'MKCALENDAR', 'MKCOL', 'MOVE', 'NOTIFY', 'OPTIONS', 'PATCH', 'POST', 'PROPFIND', 'PROPPATCH',
  'PURGE', 'PUT', 'QUERY', 'REBIND', 'REPORT', 'SEARCH', 'SOURCE', 'SUBSCRIBE', 'TRACE', 'UNBIND', 'UNLINK', 'UNLOCK',
  'UNSUBSCRIBE'] as const

export const DEFAULTS = Object.freeze({
  connectTimeout: 60_000,
  readTimeout: 60_000,
  sendTimeout: 60_000,
  closeGracePeriod: 5_000,
  retryAfter: 5,
  responseHead: 16_384,
  preserveHost: false,
  xForwarded: true,
  upgrade: true,
  connections: 128,
  keepAliveTimeout: 4_000,
  headerFields: 100,
  exposeErrors: false,
  tunnelDrain: 'immediate' as const,
  http2ExtendedConnect: true
})

const ms = (description: string, fallback: number | undefined) =>
  Type.Optional(Type.Integer({ minimum: 1, maximum: 2_147_483_647, description, ...(fallback === undefined ? {} : { default: fallback }) }))

const bool = (description: string, fallback: boolean | undefined) =>
  Type.Optional(Type.Boolean({ description, ...(fallback === undefined ? {} : { default: fallback }) }))

type TTimeouts = TObject<{
  connect: TOptional<TInteger>
  read: TOptional<TInteger>
  send: TOptional<TInteger>
  idle: TOptional<TInteger>
  maxTunnelLifetime: TOptional<TInteger>
}>
type TMethods = TOptional<TArray<TUnion<Array<TLiteral<typeof PROXIED_METHODS[number]>>>>>

function timeoutsSchema (withDefaults: boolean): TOptional<TTimeouts> {
  return Type.Optional(Type.Object({
    connect: ms('nginx `proxy_connect_timeout`: milliseconds to establish the connection to the upstream. Default 60000.',
      withDefaults ? DEFAULTS.connectTimeout : undefined),
    read: ms('nginx `proxy_read_timeout`: milliseconds the upstream may stay silent between two successive reads, ' +
      'response head included (504 before the head, abort after it). On a tunnel: closed when the upstream sends nothing for this long. Default 60000.',
    withDefaults ? DEFAULTS.readTimeout : undefined),
    send: ms('nginx `proxy_send_timeout`: milliseconds the upstream may take none of the bytes waiting for it (request body, ' +
      'or tunnel bytes from the client) before the request gets a 504 (aborted after the head) or the tunnel is closed. Default 60000.',
    withDefaults ? DEFAULTS.sendTimeout : undefined),
    idle: ms('Tunnels only (no nginx counterpart): closed when nothing moves either way for this long. ' +
      'Unlike `read`, a chatty client keeps a tunnel with a silent upstream alive. Default: off.', undefined),
    maxTunnelLifetime: ms('Tunnels only: closed (with Close 1001 frames for WebSocket) after this long whatever the traffic, ' +
      'e.g. to rotate long-lived connections across upstreams. Default: off.', undefined)
  }, { additionalProperties: false, description: 'Timeouts in milliseconds.', ...(withDefaults ? { default: {} } : {}) }))
}

function methodsSchema (): TMethods {
  return Type.Optional(Type.Array(Type.Union(PROXIED_METHODS.map((m) => Type.Literal(m)), { title: 'method' }), {
    minItems: 1,
    uniqueItems: true,
    description: 'HTTP methods proxied on the route. Default: every method Node parses except CONNECT.'
  }))
}

const bytes = (description: string, fallback?: number) =>
  Type.Optional(Type.Integer({ minimum: 1, description, ...(fallback === undefined ? {} : { default: fallback }) }))
const count = (description: string) => Type.Optional(Type.Integer({ minimum: 1, description }))

export const PingSchema = Type.Object({
  interval: Type.Integer({ minimum: 1, maximum: 2_147_483_647, description: 'Milliseconds between two pings to the client.' }),
  timeout: Type.Integer({ minimum: 1, maximum: 2_147_483_647, description: 'Milliseconds the client has to answer a ping with its pong before the tunnel is closed.' })
}, {
  additionalProperties: false,
  description: 'Proxy keep-alive on WebSocket tunnels: the proxy pings the client and closes the tunnel (Close 1001 to the upstream) ' +
    'when the pong does not come in time. The pongs are consumed, never reach the upstream. Default: off.'
})

const BODY_LIMIT = 'nginx `client_max_body_size`: most request body bytes, by `Content-Length` or counted as the body streams ' +
  '(never buffered); beyond it the client gets 413 and the connection is closed. Default: no limit.'
const RESPONSE_HEAD_LIMIT = 'Most bytes of an upstream response head (status line and headers); a larger one is a 502. Default 16384.'

export const RouteLimitsSchema = Type.Object({
  tunnels: count('Most live tunnels on this route (handshakes in flight included); beyond it upgrades get 503 with `Retry-After`. Default: no limit.'),
  body: bytes(BODY_LIMIT),
  responseHead: bytes(RESPONSE_HEAD_LIMIT)
}, { additionalProperties: false, description: 'Limits of this route (`body` and `responseHead` override the plugin\'s).' })

export const PluginLimitsSchema = Type.Object({
  tunnels: count('Most live tunnels over all routes of this registration; beyond it upgrades get 503 with `Retry-After`. Default: no limit.'),
  tunnelsPerClient: count('Most live tunnels per client address (`request.ip`, so Fastify\'s `trustProxy` applies). Default: no limit.'),
  retryAfter: Type.Optional(Type.Integer({ minimum: 0, default: DEFAULTS.retryAfter, description: 'Seconds in the `Retry-After` of a 503 for a tunnel limit. Default 5.' })),
  body: bytes(BODY_LIMIT),
  responseHead: bytes(RESPONSE_HEAD_LIMIT, DEFAULTS.responseHead),
  headers: Type.Optional(Type.Integer({
    minimum: 1,
    default: DEFAULTS.headerFields,
    description: 'Most header fields in a client request for a proxied path; beyond it the request gets 431 before any hook ' +
      'runs. Node\'s own `maxHeadersCount` (1000 fields unless set) caps it, since hooks could not see fields past it. Default 100.'
  }))
}, { additionalProperties: false, default: {}, description: 'Limits. Client request heads are limited by Node\'s server options (docs/semantics.md, "Limits").' })

const headerName = Type.String({ minLength: 1 })
const templates = (description: string) => Type.Optional(Type.Record(Type.String(), Type.String(), { description }))
const templateLists = (description: string) =>
  Type.Optional(Type.Record(Type.String(), Type.Union([Type.String(), Type.Array(Type.String())]), { description }))
const names = (description: string) => Type.Optional(Type.Array(headerName, { uniqueItems: true, description }))

export const RequestHeadersSchema = Type.Object({
  set: templates('nginx `proxy_set_header`: header name → template. Replaces the client\'s value; a value that evaluates ' +
    'to `""` is not sent. `Host`, `Connection` and `Upgrade` may be set (docs/semantics.md, "Header templates").'),
  add: templateLists('Header name → template (or list of templates) appended after the client\'s values; empty results are not sent.'),
  remove: names('Headers not forwarded upstream.')
}, { additionalProperties: false, description: 'Request header rules. A route\'s rules override the plugin\'s per header name.' })

export const ResponseHeadersSchema = Type.Object({
  set: templates('Header name → template, replacing the upstream\'s value; `""` removes it. Response variables allowed.'),
  add: templateLists('Header name → template (or list) appended to the upstream\'s values (nginx `add_header ... always`).'),
  hide: names('nginx `proxy_hide_header`: upstream headers not passed to the client.')
}, { additionalProperties: false, description: 'Response header rules (101 answers included; `Sec-WebSocket-*` cannot be touched).' })

const RewriteRuleSchema = Type.Object({
  from: Type.String({ minLength: 1, description: 'Prefix to replace, or a regular expression starting with `~` (`~*` ignores case).' }),
  to: Type.String({ description: 'Template replacing it; regex captures are `$1`..`$9` and named groups.' })
}, { additionalProperties: false })

/** Settings a route inherits from the plugin level when it does not set them. */
function inheritable (withDefaults: boolean) {
  return {
    requestHeaders: Type.Optional(RequestHeadersSchema),
    responseHeaders: Type.Optional(ResponseHeadersSchema),
    redirect: Type.Optional(Type.Union([Type.Literal(false), Type.Array(Type.Union([Type.Literal('default'), RewriteRuleSchema]))], {
      description: 'nginx `proxy_redirect` for `Location` and `Refresh`: `false`, or rules tried in order, `"default"` being ' +
        'the upstream URL + mapped path → the route\'s prefix. Default `["default"]`.'
    })),
    cookieDomain: Type.Optional(Type.Array(RewriteRuleSchema, { description: 'nginx `proxy_cookie_domain`: rewrites `Domain=` of `Set-Cookie` (`from` matched whole, ignoring case and a leading dot).' })),
    cookiePath: Type.Optional(Type.Array(RewriteRuleSchema, { description: 'nginx `proxy_cookie_path`: rewrites the start of `Path=` in `Set-Cookie`.' })),
    timeouts: timeoutsSchema(withDefaults),
    preserveHost: bool('Send the client\'s `Host` upstream (nginx `proxy_set_header Host $host`) instead of the upstream\'s ' +
      '(nginx default, `$proxy_host`). Default false.', withDefaults ? DEFAULTS.preserveHost : undefined),
    xForwarded: bool('Append the client address to `X-Forwarded-For` and set `X-Forwarded-Proto` and `X-Forwarded-Host`. Default true.',
      withDefaults ? DEFAULTS.xForwarded : undefined),
    upgrade: bool('Proxy requests carrying `Upgrade` (WebSocket and any other protocol) and tunnel the connection after a 101. ' +
      'When false they are proxied as plain requests without their Upgrade intent. Default true.', withDefaults ? DEFAULTS.upgrade : undefined),
    methods: methodsSchema(),
    ping: Type.Optional(PingSchema),
    upgradeProtocols: Type.Optional(Type.Array(Type.String({ pattern: UPGRADE_PROTOCOL_NAME }), {
      uniqueItems: true,
      description: 'The protocols a client may switch to through `Upgrade` (names without version, any case), e.g. `["websocket"]`. ' +
        'An upgrade naming another protocol is proxied as a plain request without its Upgrade intent. A route\'s list replaces the ' +
        'plugin\'s. Default: every protocol but `h2c` (RFC 9113 deprecates it; tunnelled, it carries HTTP/2 requests no hook sees).'
    })),
    allowedOrigins: Type.Optional(Type.Union([Type.Array(Type.String()), Type.Literal(false)], {
      description: 'Against cross-site WebSocket hijacking: the origins whose pages may open upgrades (WebSockets) here, ' +
        'as `scheme://host[:port]` (`https://app.example.com`) or `scheme://*.domain[:port]` (every subdomain, at any depth). ' +
        'An upgrade with another `Origin` gets 403 and never reaches the upstream; one without `Origin` (not from a browser) passes. ' +
        'Compared ignoring case, default ports left out. Plain requests are not checked (that is CORS). A route\'s list replaces ' +
        'the plugin\'s; `false` turns the check off. Default: off.'
    })),
    tunnelDrain: Type.Optional(Type.Union(TUNNEL_DRAIN_MODES.map((mode) => Type.Literal(mode)), {
      ...(withDefaults ? { default: DEFAULTS.tunnelDrain } : {}),
      description: 'How live tunnels end when the app drains (`app.close()`, a gateway stop or reload), within `closeGracePeriod`: ' +
        '`immediate`: Close 1001 at once; `deadline` (nginx `worker_shutdown_timeout`): untouched until the close window (the last ' +
        'tenth of the grace period, at most 1 s), then Close 1001; `spread`: each at its own moment, evenly spaced with jitter ' +
        'before the close window, so clients reconnect at a steady rate. What is left at the end is destroyed (docs/semantics.md). Default immediate.'
    }))
  }
}

/** The values of `tunnelDrain`. */
export const TUNNEL_DRAIN_MODES = ['immediate', 'deadline', 'spread'] as const
/** How live tunnels end when the app drains (`tunnelDrain`). */
export type TunnelDrainMode = typeof TUNNEL_DRAIN_MODES[number]

// RFC 9110 §5.6.2 token.
const UPGRADE_PROTOCOL_NAME = "^[!#$%&'*+\\-.^_`|~0-9A-Za-z]+$"

const prefix = Type.String({
  pattern: '^/[^?#*:]*$',
  description: 'Path prefix the route matches, as an nginx prefix `location` (`/chat/` matches `/chat/` and everything below it). ' +
    'A prefix ending in `/` also answers its slash-less form with a 301 to it, as nginx does.'
})

const upstream = Type.String({
  pattern: '^https?://',
  description: 'nginx `proxy_pass`: `http://host:port` passes the request URI unchanged; with a path ' +
    '(`http://host:port/` or `http://host:port/base/`) the matched prefix is replaced by that path. ' +
    'Unix sockets as in nginx: `http://unix:/path/to.sock:` (+ optional URI); `Host` is then `localhost`. ' +
    'A group of `upstreams` is named as a host: `http://name` or `https://name` (its servers\' scheme).'
})

const rewritePrefix = (description: string) => Type.String({ pattern: '^/[^?#]*$', description })
const ROUTE_REWRITE = 'Replaces the matched prefix in the upstream path (the same as giving `upstream` a path; use one or the other).'

const upgradeUpstream = Type.String({
  pattern: '^https?://',
  description: 'Where the route\'s upgrade requests (WebSockets) go, when not to `upstream` (e.g. a separate WebSocket service; ' +
    '@fastify/http-proxy\'s `wsUpstream`). Same syntax and path rules as `upstream`; without a path, `rewritePrefix` applies.'
})

export const RouteSchema = Type.Object({
  prefix,
  upstream,
  upgradeUpstream: Type.Optional(upgradeUpstream),
  rewritePrefix: Type.Optional(rewritePrefix(ROUTE_REWRITE)),
  limits: Type.Optional(RouteLimitsSchema),
  host: Type.Optional(Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1, uniqueItems: true })], {
    description: 'nginx `server_name`: the hosts this route serves, a name or a list: exact names (any case, port ignored), ' +
      '`*.example.com` (every subdomain, any depth), `.example.com` (that and `example.com`), `~regex`. A request\'s `Host` picks ' +
      'one name (exact, then the longest wildcard, then regexes in route order); then the routes listing it compete on the path. ' +
      'A Host no route names is served by the routes without `host`, else 404. Default: every host.'
  })),
  config: Type.Optional(Type.Record(Type.String(), Type.Unknown(), {
    description: 'The Fastify route\'s `config` (`request.routeOptions.config` in hooks), for per-route plugin settings such as ' +
      '@fastify/rate-limit\'s `rateLimit`; applies to the route\'s upgrades too.'
  })),
  getUpstream: Type.Optional(Type.Unsafe<GetUpstream>(Type.Any({
    title: 'function',
    description: 'Function `(request) => string | undefined`, called once per request and upgrade: the upstream for this one, ' +
      'a URL or a group (`http://name`) with the same path rules as `upstream`; `undefined`: the route\'s. Synchronous; a throw ' +
      'or an invalid answer is a 500 (not in a JSON config).'
  }))),
  rewriteRequestHeaders: Type.Optional(Type.Unsafe<RewriteRequestHeaders>(Type.Any({
    title: 'function',
    description: 'Function `(request, headers) => headers` over the upstream request\'s headers (lower-case names), after the header ' +
      'rules, for requests and upgrades. Its result is checked like any header (an invalid name or value is a 400, never sent); ' +
      '`Content-Length`, `Expect` and hop-by-hop fields stay the proxy\'s. Synchronous; a throw is a 500 (not in a JSON config).'
  }))),
  ...inheritable(false)
}, { additionalProperties: false, description: 'One proxied location.' })

export const PoolSchema = Type.Object({
  connections: Type.Optional(Type.Integer({
    minimum: 1,
    default: DEFAULTS.connections,
    description: 'Most connections open to one upstream origin (requests beyond wait in a queue). Tunnels leave the pool on 101 and do not count. Default 128.'
  })),
  keepAliveTimeout: Type.Optional(Type.Integer({
    minimum: 1,
    default: DEFAULTS.keepAliveTimeout,
    description: 'Milliseconds an idle pooled connection is kept (shortened further when the upstream announces a shorter Keep-Alive). Default 4000.'
  }))
}, { additionalProperties: false, default: {}, description: 'The keep-alive pool kept for each upstream origin.' })

export const MapSchema = Type.Object({
  source: Type.String({ description: 'Template whose value is looked up, e.g. `$http_upgrade`.' }),
  cases: Type.Optional(Type.Record(Type.String(), Type.String(), {
    description: 'Key → value template. Keys match ignoring case; `~regex` / `~*regex` keys are tried in order after them ' +
      '(their captures are `$1`..`$9` and named groups in the value); `\\` escapes a leading `~`.'
  })),
  default: Type.Optional(Type.String({ description: 'Value template when no key matches. Default `""`.' }))
}, { additionalProperties: false, description: 'One map (nginx `map SOURCE $name { ... }`).' })

/** What the plugin needs of a prom-client `Registry` (any prom-client version from 13 on has it). */
export interface MetricsRegistry {
  registerMetric: (metric: never) => void
  getSingleMetric: (name: string) => unknown
}

export const MetricsSchema = Type.Object({
  // Checked by hand (resolve.ts): an object to keep, not data. Typed as what the plugin uses of it.
  registry: Type.Optional(Type.Unsafe<MetricsRegistry>(Type.Any({
    description: 'The prom-client `Registry` to register on. Default: prom-client\'s global `register` (not in a JSON config).'
  }))),
  path: Type.Optional(Type.String({ pattern: '^/', description: 'Serve the registry in Prometheus text format at this path (e.g. `/metrics`). Default: no route.' })),
  prefix: Type.Optional(Type.String({ pattern: '^[a-zA-Z_:][a-zA-Z0-9_:]*$', default: 'fastify_ws_proxy_', description: 'Metric name prefix. Default `fastify_ws_proxy_`.' }))
}, { additionalProperties: false, description: 'Export metrics through prom-client (tunnels, bytes, requests, upstream errors, head latency).' })

export const HealthSchema = Type.Object({
  live: Type.Optional(Type.Union([Type.String({ pattern: '^/' }), Type.Literal(false)], {
    title: 'path | false',
    default: '/healthz',
    description: 'Liveness: `GET` answers 200 `{"status":"live"}` while the process serves requests, draining included. `false`: no route. Default `/healthz`.'
  })),
  ready: Type.Optional(Type.Union([Type.String({ pattern: '^/' }), Type.Literal(false)], {
    title: 'path | false',
    default: '/readyz',
    description: 'Readiness: `GET` answers 200 `{"status":"ready"}`, or 503 `{"status":"draining"}` from the moment `app.close()` (or `wsProxy.markDraining()`) begins, ' +
      'or 503 `{"status":"no-live-upstream","groups":[...]}` while a group has no server up. `false`: no route. Default `/readyz`.'
  }))
}, { additionalProperties: false, description: 'The proxy\'s own health endpoints for balancers and orchestrators (Kubernetes probes), at absolute paths (not below `prefix`); GET and HEAD. Off unless set; `{}` serves both at their default paths.' })

export const PluginOptionsSchema = Type.Object({
  routes: Type.Optional(Type.Array(RouteSchema, { minItems: 1, description: 'The proxied locations. Use this, or the single-route shorthand `upstream` (+ `rewritePrefix`).' })),
  upstream: Type.Optional(upstream),
  prefix: Type.Optional(Type.String({
    description: 'Fastify\'s own register prefix: every route is mounted below it (with the shorthand, the single route matches exactly this prefix).'
  })),
  rewritePrefix: Type.Optional(rewritePrefix('Shorthand: the `rewritePrefix` of the single route.')),
  pool: Type.Optional(PoolSchema),
  maps: Type.Optional(Type.Record(Type.String(), MapSchema, {
    description: 'nginx `map`: variable name → { source, cases, default }, usable as `$name` in every template.'
  })),
  limits: Type.Optional(PluginLimitsSchema),
  closeGracePeriod: Type.Optional(Type.Integer({
    minimum: 0,
    maximum: 2_147_483_647,
    default: DEFAULTS.closeGracePeriod,
    description: 'At `app.close()`: milliseconds live tunnels get to close cleanly (WebSocket: Close 1001 to both sides at a frame ' +
      'boundary; others: half-closed) before they are destroyed. New upgrades get 503 meanwhile. Default 5000.'
  })),
  tunnelLogLevel: Type.Optional(Type.Union(LOG_LEVELS.map((level) => Type.Literal(level)), {
    default: 'info',
    description: 'Level of the one line logged per closed tunnel (route, upstream, client, reason, duration, bytes). Default info.'
  })),
  metrics: Type.Optional(MetricsSchema),
  upstreams: Type.Optional(Type.Record(Type.String(), UpstreamGroupSchema, {
    description: 'nginx `upstream` groups: name → { servers, balance, ... }. A route names one as `http://name` (+ optional path).'
  })),
  tls: Type.Optional(TlsSchema),
  health: Type.Optional(HealthSchema),
  exposeErrors: bool('Error bodies name the upstream and the system error (`connect ECONNREFUSED 10.0.0.7:8080`), for development. ' +
    'Off, they say what happened without internal addresses; the details are always logged. Default false.', DEFAULTS.exposeErrors),
  http2ExtendedConnect: bool('On an HTTP/2 server (Fastify `http2: true`) with routes that take upgrades: advertise ' +
    '`SETTINGS_ENABLE_CONNECT_PROTOCOL` and proxy WebSockets over HTTP/2 (RFC 8441) to the HTTP/1.1 upstreams. ' +
    'Off, browsers open their WebSockets over HTTP/1.1 as before (docs/http2.md). Default true.', DEFAULTS.http2ExtendedConnect),
  ...inheritable(true)
}, { additionalProperties: false, description: 'Options of `fastify.register(wsProxyPlugin, options)`.' })

// The types a user meets in tsc's messages are named interfaces (not aliases, which tsc spells out key by key):
// a misspelt key then reads "'tmeouts' does not exist in type 'WsProxyOptions'".
/**
 * `routes[].getUpstream`: the upstream of one request or upgrade, a URL (`http://127.0.0.1:3001`, with the path rules of
 * `upstream`) or a group (`http://name`); `undefined` sends it to the route's `upstream`. Synchronous, called once each.
 */
export type GetUpstream = (request: FastifyRequest) => string | undefined

export type { UpstreamRequestHeaders }

/**
 * `routes[].rewriteRequestHeaders`: the header fields sent upstream, from those the proxy built (after the header rules).
 * It may change `headers` and return it, or return a new object; a name whose value is `undefined` is not sent.
 */
export type RewriteRequestHeaders = (request: FastifyRequest, headers: UpstreamRequestHeaders) => Record<string, string | readonly string[] | undefined>

/** One proxied route (a nginx `location` with `proxy_pass`). */
export interface RouteOptions extends Static<typeof RouteSchema> {
  /** Chooses the upstream per request or upgrade (JavaScript API only). */
  getUpstream?: GetUpstream
  /** Rewrites the upstream request's headers after the header rules (JavaScript API only). */
  rewriteRequestHeaders?: RewriteRequestHeaders
  /** Path prefix the route matches, as an nginx prefix `location` (`/chat/` matches `/chat/` and below). */
  prefix: string
  /** nginx `proxy_pass`: an upstream URL (`http://host:port[/path]`), a unix socket or a group (`http://name`). */
  upstream: string
}
/** Timeouts in milliseconds. */
export type TimeoutOptions = NonNullable<RouteOptions['timeouts']>
/** Upstream keep-alive pool settings. */
export type PoolOptions = Static<typeof PoolSchema>
/** The plugin's options: `fastify.register(wsProxyPlugin, options)`. See docs/options.md. */
export interface WsProxyOptions extends Omit<Static<typeof PluginOptionsSchema>, 'routes' | 'upstreams'> {
  /** The proxied locations. Use this, or the single-route shorthand `upstream` (+ `rewritePrefix`). */
  routes?: RouteOptions[]
  /** nginx `upstream` groups: name → group. A route names one as `http://name` (+ optional path). */
  upstreams?: Record<string, UpstreamGroupOptions>
}
/** Request header rules (nginx `proxy_set_header`). */
export type RequestHeaderOptions = Static<typeof RequestHeadersSchema>
/** Response header rules (nginx `proxy_hide_header`, `add_header`). */
export type ResponseHeaderOptions = Static<typeof ResponseHeadersSchema>
/** One `Location`/`Set-Cookie` rewrite rule (nginx `proxy_redirect`, `proxy_cookie_*`). */
export type RewriteRuleOptions = Static<typeof RewriteRuleSchema>
/** One user map (nginx `map`). */
export type MapOptions = Static<typeof MapSchema>
/** Proxy keep-alive pings on WebSocket tunnels. */
export type PingOptions = Static<typeof PingSchema>
/** Limits of one route. */
export type RouteLimitOptions = Static<typeof RouteLimitsSchema>
/** Limits of a plugin registration. */
export type LimitOptions = Static<typeof PluginLimitsSchema>
/** Metrics export. */
export type MetricsOptions = Static<typeof MetricsSchema>
/** The proxy's own liveness and readiness endpoints. */
export type HealthOptions = Static<typeof HealthSchema>
/** An HTTP method that can be proxied. */
export type ProxiedMethod = NonNullable<RouteOptions['methods']>[number]
