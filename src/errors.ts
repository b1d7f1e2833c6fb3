import createError from '@fastify/error'

// Every error this plugin raises or answers with. Codes are stable API: docs/troubleshooting.md lists them all.
// 502 = the upstream refused, reset or answered garbage; 504 = it did not answer in time (nginx's mapping).

/** Options rejected at `register` time. The message names the option path. */
export const FST_WS_PROXY_INVALID_OPTION = createError(
  'FST_WS_PROXY_INVALID_OPTION', 'Invalid fastify-ws-proxy option %s: %s', 500, TypeError)

/** The TCP/TLS connection to the upstream could not be established (refused, unreachable, DNS). */
export const FST_WS_PROXY_CONNECT_FAILED = createError(
  'FST_WS_PROXY_CONNECT_FAILED', 'Could not connect to upstream %s: %s', 502)

/** The connection to the upstream was not established within `timeouts.connect` (nginx proxy_connect_timeout). */
export const FST_WS_PROXY_CONNECT_TIMEOUT = createError(
  'FST_WS_PROXY_CONNECT_TIMEOUT', 'Connecting to upstream %s timed out after %d ms', 504)

/** The upstream sent nothing for `timeouts.read` ms before its response head (nginx proxy_read_timeout). */
export const FST_WS_PROXY_READ_TIMEOUT = createError(
  'FST_WS_PROXY_READ_TIMEOUT', 'Upstream %s sent no response within %d ms', 504)

/** The upstream closed or reset the connection before a complete response head. */
export const FST_WS_PROXY_UPSTREAM_RESET = createError(
  'FST_WS_PROXY_UPSTREAM_RESET', 'Upstream %s closed the connection before responding: %s', 502)

/**
 * undici refused the request the proxy built for the upstream (an invalid argument): a fault of the proxy, not of the
 * upstream or the client. Nothing was sent. Please report it with the log line, which has undici's error as its cause.
 */
export const FST_WS_PROXY_REQUEST_NOT_SENT = createError(
  'FST_WS_PROXY_REQUEST_NOT_SENT', 'The request for upstream %s could not be sent: %s', 500)

/** The upstream answered something that is not a valid HTTP/1.1 response (bad status, bad head, 101 unasked). */
export const FST_WS_PROXY_BAD_RESPONSE = createError(
  'FST_WS_PROXY_BAD_RESPONSE', 'Upstream %s sent an invalid response: %s', 502)

/**
 * The request target is refused, or is not in the canonical form hooks must see (see docs/security.md): encoded
 * `/` or `\\`, encoded or parameterised dot segments, a path above the root, an invalid escape or authority, a scheme
 * other than http(s); without `wsProxyRewriteUrl` also `//`, dot segments, fragments, escaped unreserved characters
 * and absolute-form targets. The message gives the reason, never the target.
 */
export const FST_WS_PROXY_BAD_PATH = createError(
  'FST_WS_PROXY_BAD_PATH', 'Request target refused: %s', 400)

/** The request has more header fields than `limits.headers` (or Node's `maxHeadersCount`): refused before any hook. */
export const FST_WS_PROXY_TOO_MANY_HEADERS = createError(
  'FST_WS_PROXY_TOO_MANY_HEADERS', 'Request has more than %d header fields', 431)

/** `Host` is missing (HTTP/1.1), empty, repeated or not a valid `host[:port]`: refused before any hook. */
export const FST_WS_PROXY_BAD_HOST = createError(
  'FST_WS_PROXY_BAD_HOST', 'Invalid Host header: %s', 400)

/**
 * A field Node keeps only once in `request.headers` (Authorization, Content-Type, ...) came twice: a hook would check
 * one value and the upstream might use the other, so the request is refused.
 */
export const FST_WS_PROXY_DUPLICATE_HEADER = createError(
  'FST_WS_PROXY_DUPLICATE_HEADER', 'Request has more than one %s header', 400)

/** A `CONNECT` request: the proxy is a reverse proxy, not a forward one. Answered 405 before any hook. */
export const FST_WS_PROXY_METHOD_NOT_ALLOWED = createError(
  'FST_WS_PROXY_METHOD_NOT_ALLOWED', 'Method %s is not allowed', 405)

/**
 * An HTTP/2 extended CONNECT (RFC 8441) the proxy cannot take: a `:protocol` other than `websocket`, or a path no
 * route of the plugin takes upgrades for. Answered before any hook.
 */
export const FST_WS_PROXY_EXTENDED_CONNECT_REFUSED = createError(
  'FST_WS_PROXY_EXTENDED_CONNECT_REFUSED', 'Extended CONNECT refused: %s', 501)

/** The response failed after its head had reached the client: the client connection is aborted (logged only). */
export const FST_WS_PROXY_RESPONSE_ABORTED = createError(
  'FST_WS_PROXY_RESPONSE_ABORTED', 'Response from upstream %s aborted after its head was sent: %s', 502)

/**
 * A tunnel's upstream sent nothing for `timeouts.read` ms, so the tunnel was closed (logged only: the timer's log
 * line carries this `code`, without an error object or stack, since a timeout is no exception).
 */
export const FST_WS_PROXY_TUNNEL_READ_TIMEOUT = createError(
  'FST_WS_PROXY_TUNNEL_READ_TIMEOUT', 'Tunnel to upstream %s closed: upstream silent for %d ms', 504)

/**
 * A header template evaluated to a value that may not appear in an HTTP field (CR, LF, NUL, other controls),
 * typically from a client-controlled variable, or a hook set such a value (or a name that is not a token) on the
 * reply. Nothing is sent upstream; the client gets a 400.
 */
export const FST_WS_PROXY_BAD_HEADER_VALUE = createError(
  'FST_WS_PROXY_BAD_HEADER_VALUE', 'Header %s would carry characters not allowed in an HTTP field value', 400)

/**
 * An upgrade request with a body (Content-Length > 0 or Transfer-Encoding, e.g. a POST asking for h2c). Node hands
 * such a request over as an upgrade, with its body unparsed on the socket, so it could not be relayed intact.
 */
export const FST_WS_PROXY_UPGRADE_WITH_BODY = createError(
  'FST_WS_PROXY_UPGRADE_WITH_BODY', 'An upgrade request with a body cannot be proxied', 501)

/**
 * A tunnel was closed by one of its other timers (logged only, as the `code` of the timer's log line): `send` (the
 * upstream took no bytes), `idle` (nothing either way), `maxTunnelLifetime`, or `ping` (the client did not answer
 * the proxy's ping).
 */
export const FST_WS_PROXY_TUNNEL_TIMEOUT = createError(
  'FST_WS_PROXY_TUNNEL_TIMEOUT', 'Tunnel to upstream %s closed: %s', 504)

/** Writing the request body to the upstream stalled for `timeouts.send` ms (nginx proxy_send_timeout). */
export const FST_WS_PROXY_SEND_TIMEOUT = createError(
  'FST_WS_PROXY_SEND_TIMEOUT', 'Upstream %s took no request bytes for %d ms', 504)

/** A tunnel limit (`limits.tunnels`, a route's `limits.tunnels`, `limits.tunnelsPerClient`) is reached: answered with Retry-After. */
export const FST_WS_PROXY_TOO_MANY_TUNNELS = createError(
  'FST_WS_PROXY_TOO_MANY_TUNNELS', 'Too many tunnels: the %s limit of %d is reached', 503)

/** The request body is larger than `limits.body` (Content-Length, or counted as it streams). */
export const FST_WS_PROXY_BODY_TOO_LARGE = createError(
  'FST_WS_PROXY_BODY_TOO_LARGE', 'Request body larger than %d bytes', 413)

/** No server of the group can take a request: every one is down, failed, unhealthy or draining (nginx "no live upstreams"). */
export const FST_WS_PROXY_NO_LIVE_UPSTREAM = createError(
  'FST_WS_PROXY_NO_LIVE_UPSTREAM', 'No live upstream server in %s', 502)

/** `fastify.wsProxy.group(name)` named no group of the registered proxies. */
export const FST_WS_PROXY_UNKNOWN_GROUP = createError(
  'FST_WS_PROXY_UNKNOWN_GROUP', 'No upstream group named %s (groups: %s)', 500, TypeError)

/**
 * An upgrade request whose `Origin` is not in the route's `allowedOrigins` (cross-site WebSocket hijacking):
 * answered before anything goes upstream. The message does not echo the origin, which the client chose.
 */
export const FST_WS_PROXY_ORIGIN_FORBIDDEN = createError(
  'FST_WS_PROXY_ORIGIN_FORBIDDEN', 'Upgrade requests from this Origin are not allowed on this route', 403)

/**
 * A route's `getUpstream` threw, or returned something that is not an upstream (not a string, an invalid URL, a path
 * beside `rewritePrefix`, a group of the other scheme). Nothing reaches any upstream; the details are in the log
 * (in the body only with `exposeErrors`).
 */
export const FST_WS_PROXY_GET_UPSTREAM_FAILED = createError(
  'FST_WS_PROXY_GET_UPSTREAM_FAILED', 'getUpstream of route %s failed: %s', 500)

/** A route's `rewriteRequestHeaders` threw or returned something that is not a headers object. Nothing goes upstream. */
export const FST_WS_PROXY_REWRITE_HEADERS_FAILED = createError(
  'FST_WS_PROXY_REWRITE_HEADERS_FAILED', 'rewriteRequestHeaders of route %s failed: %s', 500)

/**
 * A route's `rewriteRequestHeaders` returned a header field that may not be written into an HTTP head: a name that is
 * not an RFC 9110 token, or a value with CR, LF, NUL or another control character. Nothing is sent upstream.
 */
export const FST_WS_PROXY_BAD_REWRITTEN_HEADER = createError(
  'FST_WS_PROXY_BAD_REWRITTEN_HEADER', 'rewriteRequestHeaders of route %s returned an invalid header field: %s', 400)
