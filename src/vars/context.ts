import type { IncomingMessage } from 'node:http'

/** What a route contributes to variables: fixed at register time. */
export interface VarRoute {
  /** nginx `$proxy_host`: the upstream's host and port as written in `upstream` (a group's name). */
  readonly proxyHost: string
}

/**
 * The per-request state variables read. One object per request that uses templates (none otherwise); the
 * compiled templates are plain functions of it, so evaluating them allocates only the strings they build.
 */
export class VarContext {
  readonly req: IncomingMessage
  readonly requestId: string
  readonly route: VarRoute
  /** nginx `$remote_addr`: Fastify's `request.ip`, so `trustProxy` applies as nginx's realip module does. */
  readonly clientIp: string
  /** The match of the map regex whose value is being evaluated (nginx `$1`..`$9` and named captures). */
  captures: RegExpExecArray | null = null
  /** The upstream's answer, once it arrived: `$upstream_status`, `$upstream_http_<name>`. */
  upstreamStatus = 0
  upstreamHeaders: Buffer[] | null = null
  /** nginx `$upstream_addr`: `host:port` (or `unix:/path`) of the server picked, every server tried when retried (`a, b`). */
  upstreamAddr = ''
  #query = -2

  constructor (req: IncomingMessage, requestId: string, route: VarRoute, clientIp: string) {
    this.req = req
    this.requestId = requestId
    this.route = route
    this.clientIp = clientIp
  }

  /** Index of the `?` in the request URI, or -1. */
  get queryIndex (): number {
    if (this.#query === -2) this.#query = (this.req.url as string).indexOf('?')
    return this.#query
  }
}
