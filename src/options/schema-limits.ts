import { Type, type Static } from '@sinclair/typebox'

// Limits (a route's, the plugin's) and the upstream keep-alive pool. Defaults are written here, in the schema only.

const bytes = (description: string, fallback?: number) =>
  Type.Optional(Type.Integer({ minimum: 1, description, ...(fallback === undefined ? {} : { default: fallback }) }))
const count = (description: string) => Type.Optional(Type.Integer({ minimum: 1, description }))

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
  retryAfter: Type.Optional(Type.Integer({ minimum: 0, default: 5, description: 'Seconds in the `Retry-After` of a 503 for a tunnel limit. Default 5.' })),
  body: bytes(BODY_LIMIT),
  responseHead: bytes(RESPONSE_HEAD_LIMIT, 16_384),
  headers: Type.Optional(Type.Integer({
    minimum: 1,
    default: 100,
    description: 'Most header fields in a client request for a proxied path; beyond it the request gets 431 before any hook ' +
      'runs. Node\'s own `maxHeadersCount` (1000 fields unless set) caps it, since hooks could not see fields past it. Default 100.'
  }))
}, { additionalProperties: false, default: {}, description: 'Limits. Client request heads are limited by Node\'s server options (docs/semantics.md, "Limits").' })

export const PoolSchema = Type.Object({
  connections: Type.Optional(Type.Integer({
    minimum: 1,
    default: 128,
    description: 'Most connections open to one upstream origin (requests beyond wait in a queue). Upgrade handshakes open a connection of their own and do not count. Default 128.'
  })),
  keepAliveTimeout: Type.Optional(Type.Integer({
    minimum: 1,
    default: 4_000,
    description: 'Milliseconds an idle pooled connection is kept (shortened further when the upstream announces a shorter Keep-Alive). Default 4000.'
  }))
}, { additionalProperties: false, default: {}, description: 'The keep-alive pool kept for each upstream origin.' })

/** Upstream keep-alive pool settings. */
export type PoolOptions = Static<typeof PoolSchema>
/** Limits of one route. */
export type RouteLimitOptions = Static<typeof RouteLimitsSchema>
/** Limits of a plugin registration. */
export type LimitOptions = Static<typeof PluginLimitsSchema>
