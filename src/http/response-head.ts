import type { ServerResponse } from 'node:http'
import { isConnectionSpecific } from './h2.js'

/**
 * Headers a hook set on the reply (@fastify/cors's `Access-Control-*`): Fastify writes them in `reply.send`, which a
 * relayed answer bypasses. They go on the response first, so the upstream's headers of the same name replace them
 * (`writeHead` with a list), as headers set on `reply.raw` (@fastify/helmet) already are.
 */
function setHookHeaders (headers: Record<string, unknown>, res: ServerResponse, h2: boolean): void {
  for (const name in headers) {
    // Over HTTP/2 a connection-specific field (a hook's Keep-Alive) would make Node refuse the whole response.
    if (h2 && isConnectionSpecific(name)) continue
    // Never undefined: `reply.header()` stores '' for it, and `reply.raw` cannot hold it.
    if (!res.hasHeader(name)) res.setHeader(name, headers[name] as string | number | readonly string[])
  }
}

/**
 * Writes a relayed response's head: the hooks' headers, then the upstream's (`headers`, a flat list). Returns null, or
 * Node's refusal (a status or header it will not send) with nothing written, the response left clean for an error answer.
 */
export function writeResponseHead (res: ServerResponse, hookHeaders: Record<string, unknown>, statusCode: number, statusText: string,
  headers: string[], h2: boolean): Error | null {
  try {
    // RFC 9110 §15: a status outside 100..599 is invalid; Node would relay up to 999.
    if (statusCode > 599) throw new RangeError(`Invalid status code: ${statusCode}`)
    setHookHeaders(hookHeaders, res, h2)
    res.writeHead(statusCode, statusText === '' ? undefined : statusText, headers)
    return null
  } catch (err) {
    for (const name of res.getHeaderNames()) res.removeHeader(name)
    // writeHead stores the reason phrase before validating it: left there, Fastify's 502 would throw again (and hang).
    if (!h2) res.statusMessage = ''
    return err as Error
  }
}
