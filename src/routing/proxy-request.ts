import type { IncomingMessage, Server } from 'node:http'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Dispatcher } from 'undici'
import { FST_WS_PROXY_BAD_HEADER_VALUE, FST_WS_PROXY_BAD_PATH, FST_WS_PROXY_BODY_TOO_LARGE, FST_WS_PROXY_NO_LIVE_UPSTREAM, FST_WS_PROXY_REWRITE_HEADERS_FAILED } from '../errors.js'
import { invalidFields } from '../headers/field.js'
import { buildRequestHeaders, connectionIntent, headersObject, rewrittenHeaders } from '../headers/request-headers.js'
import { RequestBody } from '../http/body.js'
import { publicError } from '../http/error-map.js'
import { ProxyExchange } from '../http/exchange.js'
import { h2HasBody } from '../http/h2.js'
import type { RewriteRequestHeaders } from '../options/schema.js'
import { effectiveHeaderCap, headRefusal } from '../security/request-head.js'
import { looksCanonical, targetRefusal } from '../security/target.js'
import { kHeadChecked } from '../symbols.js'
import { admitTunnel, admitUpgrade } from '../upgrade/admission.js'
import { UpgradeExchange } from '../upgrade/handshake.js'
import type { TunnelSet } from '../upgrade/tunnel-registry.js'
import { VarContext } from '../vars/context.js'
import { chosenRoute } from './chosen-upstream.js'
import type { ProxyRoute } from './proxy-route.js'

// One request on a proxied route: the checks every request passes, then the upstream path, the headers, a server of
// the group, and an exchange (http/exchange.ts) or, for an upgrade, a handshake (upgrade/handshake.ts) to send it.

/** Handles a request the router gave `route`; `tunnels`: the registration's live tunnels, which an upgrade may join. */
export function handleRequest (route: ProxyRoute, request: FastifyRequest, reply: FastifyReply, tunnels: TunnelSet): void {
  // A header a hook set on the reply (from client input, say) with CR, LF or NUL: refused before anything goes
  // upstream, over HTTP/2 too (where Node would write it as it is), and left out of the refusal itself.
  // One copy of them per request (Fastify's getHeaders() merges two objects): the exchange writes these on the relayed head.
  const hooked = reply.getHeaders()
  const badFields = invalidFields(hooked)
  if (badFields !== null) {
    for (const name of badFields) reply.removeHeader(name)
    const err = new FST_WS_PROXY_BAD_HEADER_VALUE(badFields[0])
    request.log.warn({ err }, 'request refused: a header a hook set would not be a valid HTTP field')
    route.refuse(reply, err)
    return
  }
  const req = request.raw
  const url = req.url as string
  // The upstream path is the mapping of exactly what hooks saw as `request.url`: nothing else is ever sent.
  if (!looksCanonical(url)) {
    const refusal = targetRefusal(url)
    if (refusal !== null) {
      route.refuse(reply, new FST_WS_PROXY_BAD_PATH(refusal))
      return
    }
  }
  // Prefixes match case-sensitively, as nginx locations do, whatever Fastify's `caseSensitive`: mapping `/API/x`
  // by the length of `/api/` would send the upstream a path no hook checking `/api/...` ever saw.
  if (!url.startsWith(route.fullPrefix)) {
    reply.callNotFound()
    return
  }
  // Checked by the request gate before routing, unless the request came another way (`inject()`).
  if ((req as { [kHeadChecked]?: boolean })[kHeadChecked] !== true) {
    const head = headRefusal(req, effectiveHeaderCap(route.headerFields, (req.socket as { server?: Server }).server?.maxHeadersCount))
    if (head !== null) {
      route.refuse(reply, head)
      return
    }
  }
  // `req.upgrade` is only true for requests Node handed to the 'upgrade' event: their socket has left
  // Node's HTTP parser, so any body would never be read; what followed the head travels in the tunnel.
  const upgrading = (req as { upgrade?: boolean }).upgrade === true
  const withBody = hasBody(req)
  if (upgrading) {
    if (!admitUpgrade(route, request, reply, withBody)) return
  } else if (withBody && route.settings.bodyLimit > 0 && Number(req.headers['content-length'] ?? 0) > route.settings.bodyLimit) {
    // Refused before anything goes upstream; Node reads and drops the body, then closes the connection
    // (over HTTP/2 only the stream ends).
    if (req.httpVersionMajor !== 2) reply.header('connection', 'close')
    route.refuse(reply, new FST_WS_PROXY_BODY_TOO_LARGE(route.settings.bodyLimit))
    return
  }
  if (route.settings.getUpstream === null) {
    forward(route, request, reply, url, upgrading, withBody, tunnels, hooked)
    return
  }
  const chosen = chosenRoute(route, request, reply)
  if (chosen !== null) forward(chosen, request, reply, url, upgrading, withBody, tunnels, hooked)
}

/** Picks a server of the group and sends the request (or the upgrade) there; `hookHeaders`: what hooks set on the reply. */
function forward (route: ProxyRoute, request: FastifyRequest, reply: FastifyReply, url: string, upgrading: boolean, withBody: boolean,
  tunnels: TunnelSet, hookHeaders: Record<string, unknown>): void {
  const req = request.raw
  const settings = route.settings
  const vars = settings.needsVars ? new VarContext(req, request.id, settings, request.ip) : null
  const group = route.group
  const hash = group.single === null ? group.keyHash(vars, request.ip) : 0
  const server = group.pick(hash, null)
  if (server === null) {
    const err = new FST_WS_PROXY_NO_LIVE_UPSTREAM(group.name)
    route.stats.upstreamError(err)
    route.refuse(reply, route.exposeErrors ? err : publicError(err, request.id))
    return
  }
  if (vars !== null) vars.upstreamAddr = server.addr
  const options: Dispatcher.DispatchOptions = {
    path: route.upstreamPath(url),
    method: req.method as Dispatcher.HttpMethod,
    headers: null,
    body: null,
    upgrade: null,
    headersTimeout: settings.readTimeout,
    bodyTimeout: settings.readTimeout
  }
  try {
    options.headers = buildRequestHeaders(settings, req, vars)
    // A protocol the route does not accept (h2c by default) goes as a plain request, whatever templates say.
    const protocols = settings.upgradeProtocols
    // Node hands a request over as an upgrade only when it carries Upgrade.
    connectionIntent(options, settings.requestRules, req, vars, upgrading && settings.upgrade && protocols.allows(req.headers.upgrade as string))
    if (typeof options.upgrade === 'string' && !protocols.allows(options.upgrade)) options.upgrade = null
  } catch (err) {
    // A template turned client input into bytes that could split the head: nothing goes upstream.
    request.log.warn({ err }, 'request refused: a header value would not be a valid HTTP field')
    route.refuse(reply, err as Error)
    return
  }
  if (settings.rewriteRequestHeaders !== null && !rewriteHeaders(route, request, reply, options, settings.rewriteRequestHeaders)) return
  let exchange: ProxyExchange
  if (options.upgrade !== null && options.upgrade !== undefined) {
    if (!admitTunnel(route, request, reply)) return
    exchange = new UpgradeExchange(route, request, reply, vars, tunnels)
  } else {
    exchange = new ProxyExchange(route, request, reply, vars)
    // An upgrade with a body was refused (admitUpgrade).
    if (withBody) {
      const body = new RequestBody(req, exchange, settings.bodyLimit, settings.sendTimeout)
      exchange.body = body
      options.body = body
      route.uploads.add(body)
    }
  }
  exchange.options = options
  exchange.hookHeaders = hookHeaders
  exchange.hash = hash
  exchange.dispatch(server)
}

/** `rewriteRequestHeaders` over the built headers; false once the request is answered (it threw, or its result is refused). */
function rewriteHeaders (route: ProxyRoute, request: FastifyRequest, reply: FastifyReply, options: Dispatcher.DispatchOptions,
  rewrite: RewriteRequestHeaders): boolean {
  const built = options.headers as string[]
  let result: unknown
  try {
    result = rewrite(request, headersObject(built))
  } catch (err) {
    request.log.error({ err, route: route.label }, 'rewriteRequestHeaders threw: nothing was sent upstream')
    const detail = route.exposeErrors ? `it threw: ${(err as Error).message}` : `it threw (details in the log, request ${request.id})`
    route.refuse(reply, new FST_WS_PROXY_REWRITE_HEADERS_FAILED(route.label, detail))
    return false
  }
  try {
    options.headers = rewrittenHeaders(built, result, route.label)
  } catch (err) {
    request.log.warn({ err, route: route.label }, 'request refused: rewriteRequestHeaders returned headers that cannot be sent')
    route.refuse(reply, err as Error)
    return false
  }
  return true
}

// RFC 9112 §6.3: a request has a body exactly when it has Content-Length or Transfer-Encoding.
function hasBody (req: IncomingMessage): boolean {
  if (req.httpVersionMajor === 2) return h2HasBody(req)
  const length = req.headers['content-length']
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
}
