import { Type, type Static } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'

// Upstream groups (nginx `upstream { server ...; }`), their balancing, health and retry settings, and TLS to upstreams.
// Every default is written here, in the schema; UPSTREAM_DEFAULTS below is read from it.

const ms = (description: string, fallback?: number) =>
  Type.Integer({ minimum: 1, maximum: 2_147_483_647, description, ...(fallback === undefined ? {} : { default: fallback }) })

/** What happened to one attempt, in nginx `proxy_next_upstream` words. */
export const ATTEMPT_FAILURES = ['error', 'timeout', 'invalid_header', 'http_500', 'http_502', 'http_503', 'http_504',
  'http_403', 'http_404', 'http_429'] as const

const failures = (description: string) => Type.Optional(Type.Array(Type.Union(ATTEMPT_FAILURES.map((f) => Type.Literal(f)), { title: 'failure' }), {
  uniqueItems: true, default: ['error', 'timeout'], description
}))

export const ServerSchema = Type.Object({
  url: Type.String({
    pattern: '^https?://',
    description: '`http://host:port`, `https://host:port` or `http://unix:/path/to.sock:` (no path: the route\'s `upstream` gives it).'
  }),
  weight: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000, default: 1, description: 'nginx `weight`. Default 1.' })),
  maxFails: Type.Optional(Type.Integer({
    minimum: 0,
    default: 1,
    description: 'nginx `max_fails`: failed attempts (see `failOn`) within `failTimeout` that take the server out for `failTimeout`; 0 never does. Default 1.'
  })),
  failTimeout: Type.Optional(Type.Integer({
    minimum: 1,
    maximum: 2_147_483_647,
    default: 10_000,
    description: 'nginx `fail_timeout` (ms): the window failures are counted in, and how long a failed server stays out. Default 10000.'
  })),
  backup: Type.Optional(Type.Boolean({ default: false, description: 'nginx `backup`: used only while no primary server is available. Default false.' })),
  down: Type.Optional(Type.Boolean({ default: false, description: 'nginx `down`: never selected. Default false.' }))
}, { additionalProperties: false, description: 'One server of a group.' })

export const TlsSchema = Type.Object({
  ca: Type.Optional(Type.Union([Type.String(), Type.Array(Type.String())], { description: 'PEM certificate(s) trusted for the upstreams, instead of Node\'s bundled CAs.' })),
  cert: Type.Optional(Type.String({ description: 'PEM client certificate (mutual TLS), with `key`.' })),
  key: Type.Optional(Type.String({ description: 'PEM private key of `cert`.' })),
  servername: Type.Optional(Type.String({ minLength: 1, description: 'SNI and certificate name to check. Default: the server URL\'s host name.' })),
  rejectUnauthorized: Type.Optional(Type.Boolean({ default: true, description: 'Refuse upstreams whose certificate does not verify. Default true.' }))
}, { additionalProperties: false, description: 'TLS settings for `https:` upstreams (HTTP and upgrades alike).' })

export const HealthCheckSchema = Type.Object({
  path: Type.Optional(Type.String({ pattern: '^/', default: '/', description: 'Path probed with GET. Default `/`.' })),
  interval: Type.Optional(ms('Milliseconds between two probes of a server. Default 5000.', 5_000)),
  timeout: Type.Optional(ms('Milliseconds a probe may take (connect and head). Default 2000.', 2_000)),
  status: Type.Optional(Type.Tuple([Type.Integer({ minimum: 100, maximum: 599 }), Type.Integer({ minimum: 100, maximum: 599 })], {
    default: [200, 399],
    description: 'Statuses counted as healthy, `[lowest, highest]`. Default `[200, 399]`.'
  })),
  passes: Type.Optional(Type.Integer({ minimum: 1, default: 1, description: 'Consecutive good probes that bring an unhealthy server back. Default 1.' })),
  fails: Type.Optional(Type.Integer({ minimum: 1, default: 1, description: 'Consecutive bad probes that take a server out. Default 1.' })),
  headers: Type.Optional(Type.Record(Type.String(), Type.String(), { description: 'Headers sent with each probe (e.g. `host`).' }))
}, { additionalProperties: false, description: 'Active health checks (nginx Plus `health_check`): a periodic GET to every server; stopped on close.' })

export const NextUpstreamSchema = Type.Object({
  on: failures('nginx `proxy_next_upstream`: which failed attempts are tried again on another server; `[]` never retries. ' +
    'Only before anything reached the client. Default `["error", "timeout"]`.'),
  tries: Type.Optional(Type.Integer({ minimum: 0, default: 0, description: 'nginx `proxy_next_upstream_tries`: most attempts in all; 0 = every server once. Default 0.' })),
  timeout: Type.Optional(Type.Integer({
    minimum: 0,
    maximum: 2_147_483_647,
    default: 0,
    description: 'nginx `proxy_next_upstream_timeout`: no new attempt this many ms after the first began; 0 = no limit. Default 0.'
  })),
  nonIdempotent: Type.Optional(Type.Boolean({
    default: false,
    description: 'nginx `non_idempotent`: also retry POST, LOCK and PATCH after the request reached a server. Default false.'
  }))
}, { additionalProperties: false, description: 'Retries on the next server. A request whose body bytes have left is never retried (bodies are streamed, not buffered).' })

/** Name → addresses, for `resolve` (e.g. a service registry's client); default `dns.promises.lookup`. */
export type HostResolver = (hostname: string, family: 0 | 4 | 6) => Promise<string[]>

export const ResolveSchema = Type.Object({
  interval: ms('Milliseconds between two resolutions of each server host name.'),
  family: Type.Optional(Type.Union([Type.Literal(0), Type.Literal(4), Type.Literal(6)], { default: 0, description: 'Address family: 4, 6 or 0 for both. Default 0.' })),
  // Checked by hand (set-aside.ts): a function, not data.
  resolver: Type.Optional(Type.Unsafe<HostResolver>(Type.Any({ title: 'function', description: 'Function `(hostname, family) => Promise<string[]>` used instead of DNS (not in a JSON config).' })))
}, { additionalProperties: false, description: 'Re-resolve server host names: every address becomes a member, with the server\'s settings; members that disappear are drained.' })

export const BALANCE_METHODS = ['round-robin', 'least-conn', 'ip-hash', 'hash'] as const

export const UpstreamGroupSchema = Type.Object({
  servers: Type.Array(ServerSchema, { minItems: 1, description: 'The group\'s servers.' }),
  balance: Type.Optional(Type.Union(BALANCE_METHODS.map((m) => Type.Literal(m)), {
    default: 'round-robin',
    description: '`round-robin` (smooth weighted, nginx\'s default), `least-conn` (in-flight requests + live tunnels, per weight), ' +
      '`ip-hash` (client address, IPv4 /24 as nginx) or `hash` (on `hash`). Default round-robin.'
  })),
  hash: Type.Optional(Type.String({ minLength: 1, description: 'With `balance: "hash"`: the key template, e.g. `$remote_addr`, `$http_x_user`, `$cookie_session`.' })),
  consistent: Type.Optional(Type.Boolean({
    default: false,
    description: 'With `hash`/`ip-hash`: a ketama ring (nginx `hash ... consistent`): every instance maps a key alike, and removing one server moves only its keys. Default false.'
  })),
  failOn: failures('What counts toward `maxFails` (failure kinds: `error`, `timeout`, `invalid_header`, `http_500`, `http_502`, ' +
    '`http_503`, `http_504`, `http_403`, `http_404`, `http_429`). Default `["error", "timeout"]`, as nginx.'),
  nextUpstream: Type.Optional(NextUpstreamSchema),
  healthCheck: Type.Optional(HealthCheckSchema),
  tls: Type.Optional(TlsSchema),
  resolve: Type.Optional(ResolveSchema)
}, { additionalProperties: false, description: 'One group (nginx `upstream name { ... }`), named by routes as `http://name` or `https://name`.' })

/** One server of an upstream group. */
export interface ServerOptions extends Static<typeof ServerSchema> {
  /** `http://host:port`, `https://host:port` or a unix socket (`http://unix:/path:`), without a path. */
  url: string
}
/** TLS settings for `https:` upstreams. */
export type TlsOptions = Static<typeof TlsSchema>
/** Active health checks of a group. */
export type HealthCheckOptions = Static<typeof HealthCheckSchema>
/** Retries on the next server of a group. */
export type NextUpstreamOptions = Static<typeof NextUpstreamSchema>
/** DNS re-resolution of a group's server names. */
export type ResolveOptions = Static<typeof ResolveSchema>
/** An upstream group (nginx `upstream name { ... }`). */
export interface UpstreamGroupOptions extends Omit<Static<typeof UpstreamGroupSchema>, 'servers'> {
  /** The group's servers. */
  servers: ServerOptions[]
}
/** How a group picks a server. */
export type BalanceMethod = typeof BALANCE_METHODS[number]
/** A failed attempt, in nginx `proxy_next_upstream` words. */
export type AttemptFailure = typeof ATTEMPT_FAILURES[number]

/**
 * The defaults of a server, a group, its retries, health checks and re-resolution, read from the schemas above. The
 * options' defaults are applied to the plugin level only (`upstreams` is a record): a group's are taken from here.
 */
export const UPSTREAM_DEFAULTS = Object.freeze({
  server: Object.freeze(Value.Default(ServerSchema, {}) as Required<Omit<ServerOptions, 'url'>>),
  group: Object.freeze(Value.Default(UpstreamGroupSchema, {}) as Required<Pick<UpstreamGroupOptions, 'balance' | 'consistent' | 'failOn'>>),
  nextUpstream: Object.freeze(Value.Default(NextUpstreamSchema, {}) as Required<NextUpstreamOptions>),
  healthCheck: Object.freeze(Value.Default(HealthCheckSchema, {}) as Required<Omit<HealthCheckOptions, 'headers'>>),
  resolve: Object.freeze(Value.Default(ResolveSchema, {}) as Required<Pick<ResolveOptions, 'family'>>)
})
