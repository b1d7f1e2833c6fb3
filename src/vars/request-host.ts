import type { IncomingMessage } from 'node:http'

// The request's host as variables read it: its authority (`$host`, `$http_host`) and, when a route's `~regex` host name
// chose it, that regex's match (`$1`..`$9`, `$name`; set by the router's host constraint, routing/hosts.ts).

/**
 * The authority a request names, as Fastify's `request.host` reads it: `Host`, else HTTP/2's `:authority`
 * (the request gate refuses an HTTP/2 request whose two disagree).
 */
export function requestHost (req: IncomingMessage): string | undefined {
  return req.headers.host ?? (req.headers[':authority'] as string | undefined)
}

/** Set on a request whose Host a `~regex` name selected: that regex's match. */
export const kHostMatch = Symbol('fastify-ws-proxy.hostMatch')

/** The match of the `~regex` host name that selected the request's route, or undefined (an exact or wildcard name). */
export function hostMatchOf (req: IncomingMessage): RegExpExecArray | undefined {
  return (req as { [kHostMatch]?: RegExpExecArray })[kHostMatch]
}
