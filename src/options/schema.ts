import { Type, type OptionalKind, type Static } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { LOG_LEVELS, type LogLevel } from '../telemetry/log-levels.js'
import type { MetricsRegistry } from '../telemetry/prometheus.js'
import { MapSchema } from './schema-headers.js'
import { PluginLimitsSchema, PoolSchema, type LimitOptions, type PoolOptions } from './schema-limits.js'
import { bool, PLUGIN_INHERITABLE, rewritePrefix, upstream, RouteSchema, type RouteOptions, type TimeoutOptions, type TunnelDrainMode } from './schema-route.js'
import { TlsSchema, UpstreamGroupSchema, type UpstreamGroupOptions } from './upstream-schema.js'

// The schema is the single source of the options: TS types are derived from it, `register` and the CLI
// validate with it, docs/options.md is written from its descriptions (npm run docs), and every default is
// written in it (DEFAULTS below is read from it). The parts: schema-route.ts, schema-headers.ts, schema-limits.ts,
// upstream-schema.ts; this file is the plugin level, and re-exports them all.

// Named here so that tsc's declaration emit can spell the plugin-level settings spread from schema-route.ts (TS4023).
export type { OptionalKind }

export * from './schema-route.js'
export * from './schema-headers.js'
export * from './schema-limits.js'

export type { MetricsRegistry }

export const MetricsSchema = Type.Object({
  // Checked by hand (set-aside.ts): an object to keep, not data. Typed as what the plugin uses of it.
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
    default: 5_000,
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
    'Off, they say what happened without internal addresses; the details are always logged. Default false.', false),
  http2ExtendedConnect: bool('On an HTTP/2 server (Fastify `http2: true`) with routes that take upgrades: advertise ' +
    '`SETTINGS_ENABLE_CONNECT_PROTOCOL` and proxy WebSockets over HTTP/2 (RFC 8441) to the HTTP/1.1 upstreams. ' +
    'Off, browsers open their WebSockets over HTTP/1.1 as before (docs/http2.md). Default true.', true),
  tuneMalloc: bool('On glibc (most Linux distributions): at the first registration, raise malloc\'s trim threshold the way glibc ' +
    'itself does after freeing a large block, so that the memory of Buffers freed by a garbage collection is reused instead of ' +
    'returned to the kernel and faulted back in (docs/operations.md#memory-allocator). The process may keep up to 32 MiB of ' +
    'freed heap. Per process, not per registration. Default true.', true),
  ...PLUGIN_INHERITABLE
}, { additionalProperties: false, description: 'Options of `fastify.register(wsProxyPlugin, options)`.' })

// The types a user meets in tsc's messages are named interfaces (not aliases, which tsc spells out key by key):
// a misspelt key then reads "'tmeouts' does not exist in type 'WsProxyOptions'".
/** The plugin's options: `fastify.register(wsProxyPlugin, options)`. See docs/options.md. */
export interface WsProxyOptions extends Omit<Static<typeof PluginOptionsSchema>, 'routes' | 'upstreams'> {
  /** The proxied locations. Use this, or the single-route shorthand `upstream` (+ `rewritePrefix`). */
  routes?: RouteOptions[]
  /** nginx `upstream` groups: name → group. A route names one as `http://name` (+ optional path). */
  upstreams?: Record<string, UpstreamGroupOptions>
}
/** Metrics export. */
export type MetricsOptions = Static<typeof MetricsSchema>
/** The proxy's own liveness and readiness endpoints. */
export type HealthOptions = Static<typeof HealthSchema>

/** The plugin level after the schema's defaults are applied: every inheritable setting but `methods` is filled. */
export type DefaultedOptions = WsProxyOptions & {
  timeouts: Required<Pick<TimeoutOptions, 'connect' | 'read' | 'send'>> & TimeoutOptions
  pool: Required<PoolOptions>
  limits: LimitOptions & { retryAfter: number, responseHead: number, headers: number }
  exposeErrors: boolean
  http2ExtendedConnect: boolean
  tuneMalloc: boolean
  closeGracePeriod: number
  tunnelLogLevel: LogLevel
  tunnelDrain: TunnelDrainMode
  preserveHost: boolean
  xForwarded: boolean
  upgrade: boolean
}

const defaulted = Value.Default(PluginOptionsSchema, {}) as DefaultedOptions

/** The defaults of the plugin's settings, read from the schema (public API: `import { DEFAULTS }`). */
export const DEFAULTS = Object.freeze({
  connectTimeout: defaulted.timeouts.connect,
  readTimeout: defaulted.timeouts.read,
  sendTimeout: defaulted.timeouts.send,
  closeGracePeriod: defaulted.closeGracePeriod,
  retryAfter: defaulted.limits.retryAfter,
  responseHead: defaulted.limits.responseHead,
  preserveHost: defaulted.preserveHost,
  xForwarded: defaulted.xForwarded,
  upgrade: defaulted.upgrade,
  connections: defaulted.pool.connections,
  keepAliveTimeout: defaulted.pool.keepAliveTimeout,
  headerFields: defaulted.limits.headers,
  exposeErrors: defaulted.exposeErrors,
  tunnelDrain: defaulted.tunnelDrain,
  http2ExtendedConnect: defaulted.http2ExtendedConnect,
  tuneMalloc: defaulted.tuneMalloc
})
