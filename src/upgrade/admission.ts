import type { FastifyReply, FastifyRequest } from 'fastify'
import { FST_WS_PROXY_ORIGIN_FORBIDDEN, FST_WS_PROXY_UPGRADE_WITH_BODY } from '../errors.js'
import type { ProxyRoute } from '../routing/proxy-route.js'

// What an upgrade request must pass before anything goes upstream, after the checks every request passes
// (routing/proxy-request.ts). Each refusal is answered here, through Fastify, and counted with the route's answers.

/**
 * A request Node handed over as an upgrade: checked against `allowedOrigins` and refused with a body; false once
 * refused. Admitted, it is no longer @fastify/websocket's to close.
 */
export function admitUpgrade (route: ProxyRoute, request: FastifyRequest, reply: FastifyReply, withBody: boolean): boolean {
  // Cross-site WebSocket hijacking: a browser sends Origin on every WebSocket handshake; without one the client is not
  // a browser page, which is all the check defends against (any other client can send whatever Origin it likes).
  const origins = route.settings.allowedOrigins
  if (origins !== null) {
    const origin = request.raw.headers.origin
    if (origin !== undefined && !origins.allows(origin)) {
      const err = new FST_WS_PROXY_ORIGIN_FORBIDDEN()
      request.log.warn({ err, origin, client: request.ip }, 'upgrade refused: origin not allowed')
      route.refuse(reply, err)
      return false
    }
  }
  if (withBody) {
    // Its body sits unparsed (maybe chunked) on the socket: refused rather than sent upstream without it.
    route.refuse(reply, new FST_WS_PROXY_UPGRADE_WITH_BODY())
    return false
  }
  // @fastify/websocket, when it routed this upgrade, destroys the socket after the response unless told
  // the request is not its WebSocket; the tunnel owns the socket now.
  if ((request as { ws?: boolean }).ws === true) (request as { ws?: boolean }).ws = false
  return true
}

/**
 * An upgrade about to go upstream takes a tunnel slot (upgrade/tunnel-slot.ts); false once refused, when a cap is
 * reached, with a coded 503 and `Retry-After`.
 */
export function admitTunnel (route: ProxyRoute, request: FastifyRequest, reply: FastifyReply): boolean {
  const refusal = route.slots.acquire(request.ip)
  if (refusal === null) return true
  route.stats.rejected[refusal.limit]++
  request.log.warn({ err: refusal.error, client: request.ip }, 'upgrade refused: tunnel limit reached')
  reply.header('retry-after', String(route.slots.limits.retryAfter))
  route.refuse(reply, refusal.error)
  return false
}
