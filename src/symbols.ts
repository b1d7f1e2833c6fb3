// Private state hung on objects we do not own (sockets, responses), found by listeners via `this`.
export const kExchange = Symbol('fastify-ws-proxy.exchange')
export const kTunnel = Symbol('fastify-ws-proxy.tunnel')
export const kEarlyBytes = Symbol('fastify-ws-proxy.earlyBytes')
export const kEarlyLength = Symbol('fastify-ws-proxy.earlyLength')
export const kBody = Symbol('fastify-ws-proxy.body')
/** Set on a request whose head the request gate has checked before routing (header count, Host, singletons). */
export const kHeadChecked = Symbol('fastify-ws-proxy.headChecked')
/** The Sec-WebSocket-Key the proxy made for the upstream handshake of an HTTP/2 WebSocket (RFC 8441). */
export const kWsKey = Symbol('fastify-ws-proxy.wsKey')
