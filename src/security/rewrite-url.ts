import type { IncomingMessage } from 'node:http'
import { canonicalTarget, looksCanonical } from './target.js'

/**
 * Fastify's `rewriteUrl`: every request target in its canonical form before routing, so `request.url` in every hook
 * is the path the upstream gets (docs/security.md). `Fastify({ rewriteUrl: wsProxyRewriteUrl })`; the gateway CLI
 * installs it. An absolute-form target becomes origin-form and its authority replaces `Host` (RFC 9112 §3.2.2). A
 * target that cannot be made canonical is left as it is: the proxy refuses it with 400 on its routes.
 */
export function wsProxyRewriteUrl (req: IncomingMessage): string {
  const url = req.url as string
  if (looksCanonical(url)) return url
  const target = canonicalTarget(url)
  if (typeof target === 'string') return url
  if (target.authority !== null) req.headers.host = target.authority
  return target.target
}
