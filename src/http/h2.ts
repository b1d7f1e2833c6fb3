import type { IncomingMessage } from 'node:http'

// HTTP/2 requests (Fastify `http2: true`) arrive through Node's compatibility API: `request.raw` is an
// Http2ServerRequest whose headers hold the pseudo-header fields (`:method`, `:path`, `:authority`, `:scheme`,
// `:protocol`) and usually no Host. These helpers let the HTTP/1.1 code paths read such a request
// (its authority: vars/request-host.ts).

/**
 * Whether an HTTP/2 request has a body: its HEADERS frame did not end the stream (no Content-Length is needed).
 * An extended CONNECT's stream stays open for the tunnel: it has none.
 */
export function h2HasBody (req: IncomingMessage): boolean {
  return req.headers[':protocol'] === undefined && (req as IncomingMessage & { stream: { endAfterHeaders: boolean } }).stream.endAfterHeaders !== true
}

// RFC 9113 §8.2.2: fields an HTTP/2 message must not carry (Node refuses to send them, or drops Connection with a warning).
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings', 'te'])

/** Whether a (lowercase) field name is connection-specific, so never sent on an HTTP/2 response. */
export function isConnectionSpecific (lowerName: string): boolean {
  return CONNECTION_SPECIFIC.has(lowerName)
}
