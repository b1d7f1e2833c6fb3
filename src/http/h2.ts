import type { IncomingMessage } from 'node:http'

// HTTP/2 requests (Fastify `http2: true`) arrive through Node's compatibility API: `request.raw` is an
// Http2ServerRequest whose headers hold the pseudo-header fields (`:method`, `:path`, `:authority`, `:scheme`,
// `:protocol`) and usually no Host. These helpers let the HTTP/1.1 code paths read such a request.

/** Whether a request came over HTTP/2. */
export function isH2 (req: IncomingMessage): boolean {
  return req.httpVersionMajor === 2
}

/**
 * The authority a request names, as Fastify's `request.host` reads it: `Host`, else HTTP/2's `:authority`
 * (the request gate refuses an HTTP/2 request whose two disagree).
 */
export function requestHost (req: IncomingMessage): string | undefined {
  return req.headers.host ?? (req.headers[':authority'] as string | undefined)
}

/**
 * Whether an HTTP/2 request has a body: its HEADERS frame did not end the stream (no Content-Length is needed).
 * An extended CONNECT's stream stays open for the tunnel: it has none.
 */
export function h2HasBody (req: IncomingMessage): boolean {
  return req.headers[':protocol'] === undefined && (req as IncomingMessage & { stream: { endAfterHeaders: boolean } }).stream.endAfterHeaders !== true
}
