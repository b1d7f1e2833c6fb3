import type { FastifyRequest } from 'fastify'
import { Type, type Static, type TObject, type TOptional, type TInteger, type TArray, type TUnion, type TLiteral, type TBoolean } from '@sinclair/typebox'
import type { UpstreamRequestHeaders } from '../headers/rules.js'
import { RequestHeadersSchema, ResponseHeadersSchema, RewriteRuleSchema } from './schema-headers.js'
import { RouteLimitsSchema } from './schema-limits.js'

// One route (nginx `location` + `proxy_pass`), and the settings a route inherits from the plugin level.

/**
 * Every method Node 20's parser accepts (`http.METHODS`), except CONNECT, which Node hands to a separate
 * 'connect' event. Written out so that the type is a union of literals; a test compares it with `http.METHODS`.
 */
export const PROXIED_METHODS = ['ACL', 'BIND', 'CHECKOUT', 'COPY', 'DELETE', 'GET', 'HEAD', 'LINK', 'LOCK', 'M-SEARCH',
  'MERGE', 'MKACTIVITY', 'MKCALENDAR', 'MKCOL', 'MOVE', 'NOTIFY', 'OPTIONS', 'PATCH', 'POST', 'PROPFIND', 'PROPPATCH',
  'PURGE', 'PUT', 'QUERY', 'REBIND', 'REPORT', 'SEARCH', 'SOURCE', 'SUBSCRIBE', 'TRACE', 'UNBIND', 'UNLINK', 'UNLOCK',
  'UNSUBSCRIBE'] as const

const ms = (description: string, fallback: number | undefined) =>
  Type.Optional(Type.Integer({ minimum: 1, maximum: 2_147_483_647, description, ...(fallback === undefined ? {} : { default: fallback }) }))

export const bool = (description: string, fallback: boolean | undefined): TOptional<TBoolean> =>
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
      withDefaults ? 60_000 : undefined),
    read: ms('nginx `proxy_read_timeout`: milliseconds the upstream may stay silent between two successive reads, ' +
      'response head included (504 before the head, abort after it). On a tunnel: closed when the upstream sends nothing for this long. Default 60000.',
    withDefaults ? 60_000 : undefined),
    send: ms('nginx `proxy_send_timeout`: milliseconds the upstream may take none of the bytes waiting for it (request body, ' +
      'or tunnel bytes from the client) before the request gets a 504 (aborted after the head) or the tunnel is closed. Default 60000.',
    withDefaults ? 60_000 : undefined),
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

export const PingSchema = Type.Object({
  interval: Type.Integer({ minimum: 1, maximum: 2_147_483_647, description: 'Milliseconds between two pings to the client.' }),
  timeout: Type.Integer({ minimum: 1, maximum: 2_147_483_647, description: 'Milliseconds the client has to answer a ping with its pong before the tunnel is closed.' })
}, {
  additionalProperties: false,
  description: 'Proxy keep-alive on WebSocket tunnels: the proxy pings the client and closes the tunnel (Close 1001 to the upstream) ' +
    'when the pong does not come in time. The pongs are consumed, never reach the upstream. Default: off.'
})

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
      '(nginx default, `$proxy_host`). Default false.', withDefaults ? false : undefined),
    xForwarded: bool('Append the client address to `X-Forwarded-For` and set `X-Forwarded-Proto` and `X-Forwarded-Host`. Default true.',
      withDefaults ? true : undefined),
    upgrade: bool('Proxy requests carrying `Upgrade` (WebSocket and any other protocol) and tunnel the connection after a 101. ' +
      'When false they are proxied as plain requests without their Upgrade intent. Default true.', withDefaults ? true : undefined),
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
      ...(withDefaults ? { default: 'immediate' } : {}),
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

/** The inheritable settings at the plugin level: with the schema's defaults, which routes inherit. */
export const PLUGIN_INHERITABLE = inheritable(true)

const prefix = Type.String({
  pattern: '^/[^?#*:]*$',
  description: 'Path prefix the route matches, as an nginx prefix `location` (`/chat/` matches `/chat/` and everything below it). ' +
    'A prefix ending in `/` also answers its slash-less form with a 301 to it, as nginx does.'
})

export const upstream = Type.String({
  pattern: '^https?://',
  description: 'nginx `proxy_pass`: `http://host:port` passes the request URI unchanged; with a path ' +
    '(`http://host:port/` or `http://host:port/base/`) the matched prefix is replaced by that path. ' +
    'Unix sockets as in nginx: `http://unix:/path/to.sock:` (+ optional URI); `Host` is then `localhost`. ' +
    'A group of `upstreams` is named as a host: `http://name` or `https://name` (its servers\' scheme).'
})

export const rewritePrefix = (description: string) => Type.String({ pattern: '^/[^?#]*$', description })
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
/** Proxy keep-alive pings on WebSocket tunnels. */
export type PingOptions = Static<typeof PingSchema>
/** An HTTP method that can be proxied. */
export type ProxiedMethod = NonNullable<RouteOptions['methods']>[number]
