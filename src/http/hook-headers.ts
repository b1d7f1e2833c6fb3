import type { ServerResponse } from 'node:http'
import { isConnectionSpecific } from './h2.js'

/**
 * Headers a hook set on the reply (@fastify/cors's `Access-Control-*`): Fastify writes them in `reply.send`, which a
 * relayed answer bypasses. They go on the response first, so the upstream's headers of the same name replace them
 * (`writeHead` with a list), as headers set on `reply.raw` (@fastify/helmet) already are.
 */
export function setHookHeaders (headers: Record<string, unknown>, res: ServerResponse, h2: boolean): void {
  for (const name in headers) {
    // Over HTTP/2 a connection-specific field (a hook's Keep-Alive) would make Node refuse the whole response.
    if (h2 && isConnectionSpecific(name)) continue
    // Never undefined: `reply.header()` stores '' for it, and `reply.raw` cannot hold it.
    if (!res.hasHeader(name)) res.setHeader(name, headers[name] as string | number | readonly string[])
  }
}
