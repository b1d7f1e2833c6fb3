import type { IncomingMessage } from 'node:http'
import type { TLSSocket } from 'node:tls'
import type { Dispatcher } from 'undici'
import { FST_WS_PROXY_BAD_HEADER_VALUE, FST_WS_PROXY_BAD_REWRITTEN_HEADER, FST_WS_PROXY_REWRITE_HEADERS_FAILED } from '../errors.js'
import type { VarContext } from '../vars/context.js'
import { isFieldValue, isToken } from './field.js'
import { connectionTokens, isHopByHop } from './hop-by-hop.js'
import { requestHost } from '../vars/request-host.js'
import { kWsKey } from '../symbols.js'
import type { HeaderRule, RequestHeaderRules, UpstreamRequestHeaders } from './rules.js'

/** The per-route settings the request headers depend on. */
export interface RequestHeaderSettings {
  readonly proxyHost: string
  readonly preserveHost: boolean
  readonly xForwarded: boolean
  readonly requestRules: RequestHeaderRules | null
}

/**
 * The header list sent upstream, as a flat [name, value, ...] array in the client's order and case.
 * Dropped: hop-by-hop fields and those named by Connection (RFC 9110 §7.6.1, the Upgrade intent travels as
 * undici's `upgrade` option), `Expect` (Node already answered 100-continue; undici refuses it), and `Host`
 * and `X-Forwarded-*`, which are rebuilt. `TE: trailers` is kept, as Caddy does, for gRPC-style upstreams.
 * Then the route's rules apply: names they set or remove are dropped, set values and added values follow.
 * Throws FST_WS_PROXY_BAD_HEADER_VALUE when a template evaluates to bytes not allowed in a field value.
 */
export function buildRequestHeaders (settings: RequestHeaderSettings, req: IncomingMessage, vars: VarContext | null): string[] {
  const raw = req.rawHeaders
  const named = connectionTokens(req.headers.connection, true)
  const rules = settings.requestRules
  const drop = rules === null ? null : rules.drop
  const out: string[] = []
  let forwardedFor: string | undefined
  // HTTP/2: pseudo-header fields never go upstream, and the Cookie fields a client may split (RFC 9113 §8.2.3) go as one.
  const h2 = req.httpVersionMajor === 2
  let cookie = -1
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]
    if (h2 && name.charCodeAt(0) === 58 /* : */) continue
    const lower = name.toLowerCase()
    if (isHopByHop(lower)) {
      if (lower === 'te' && raw[i + 1].trim().toLowerCase() === 'trailers') out.push(name, 'trailers')
      continue
    }
    if (lower === 'host' || lower === 'expect') continue
    if (named !== null && named.includes(lower)) continue
    if (settings.xForwarded && lower.startsWith('x-forwarded-')) {
      // The client's X-Forwarded-For chain is kept and extended; Proto and Host are ours to state.
      if (lower === 'x-forwarded-for') forwardedFor = forwardedFor === undefined ? raw[i + 1] : `${forwardedFor}, ${raw[i + 1]}`
      if (lower === 'x-forwarded-for' || lower === 'x-forwarded-proto' || lower === 'x-forwarded-host') continue
    }
    if (drop !== null && drop.has(lower)) continue
    // An RFC 8441 WebSocket's upstream handshake carries the proxy's own key (an h2 client sends none).
    if (h2 && lower === 'sec-websocket-key') continue
    if (h2 && lower === 'cookie') {
      if (cookie !== -1) {
        out[cookie] += '; ' + raw[i + 1]
        continue
      }
      cookie = out.length + 1
    }
    out.push(name, raw[i + 1])
  }
  if (h2) {
    const key = (req as IncomingMessage & { [kWsKey]?: string })[kWsKey]
    if (key !== undefined) out.push('sec-websocket-key', key)
  }
  const clientHost = h2 ? requestHost(req) : req.headers.host
  const host = rules?.host ?? null
  if (host === null) {
    out.push('host', settings.preserveHost && clientHost !== undefined ? clientHost : settings.proxyHost)
  } else {
    // nginx: a header whose value is empty is not sent; undici then writes the upstream's own Host.
    const value = evaluate(host, vars)
    if (value !== '') out.push(host.name, value)
  }
  if (settings.xForwarded) {
    if (drop === null || !drop.has('x-forwarded-for')) {
      const address = req.socket.remoteAddress ?? ''
      out.push('x-forwarded-for', forwardedFor === undefined ? address : `${forwardedFor}, ${address}`)
    }
    if (drop === null || !drop.has('x-forwarded-proto')) out.push('x-forwarded-proto', (req.socket as TLSSocket).encrypted === true ? 'https' : 'http')
    if (clientHost !== undefined && (drop === null || !drop.has('x-forwarded-host'))) out.push('x-forwarded-host', clientHost)
  }
  if (rules !== null) {
    pushRules(out, rules.set, vars)
    pushRules(out, rules.add, vars)
  }
  return out
}

function pushRules (out: string[], rules: readonly HeaderRule[], vars: VarContext | null): void {
  for (let i = 0; i < rules.length; i++) {
    const value = evaluate(rules[i], vars)
    if (value !== '') out.push(rules[i].name, value)
  }
}

/** A rule's value; one that could carry CR, LF, NUL or another control byte is refused, never sent. */
export function evaluate (rule: HeaderRule, vars: VarContext | null): string {
  const value = rule.value(vars as VarContext)
  if (rule.check && !isFieldValue(value)) throw new FST_WS_PROXY_BAD_HEADER_VALUE(rule.name)
  return value
}

/** What the request asks of the upstream connection: the protocol to switch to, and whether to close it after. */
export type ConnectionIntent = Pick<Dispatcher.DispatchOptions, 'upgrade' | 'reset'>

/**
 * Decides undici's `upgrade` and `reset` options. Without rules an upgrade request keeps the client's `Upgrade`
 * (the nginx map idiom is built in) and plain requests keep the pooled connection alive. With `Connection` or
 * `Upgrade` set by templates, their values decide, as in nginx: the upgrade is asked for when Connection has the
 * token `upgrade` and Upgrade is not empty; `close` closes the upstream connection after the exchange. Only a
 * request Node handed over as an upgrade can become a tunnel: a plain request's socket still belongs to Node's parser.
 */
export function connectionIntent (intent: ConnectionIntent, rules: RequestHeaderRules | null, req: IncomingMessage,
  vars: VarContext | null, canUpgrade: boolean): void {
  const clientUpgrade = req.headers.upgrade ?? ''
  if (rules === null || (rules.connection === null && rules.upgrade === null)) {
    intent.upgrade = canUpgrade && clientUpgrade !== '' ? clientUpgrade : null
    return
  }
  const tokens = rules.connection === null ? null : connectionTokens(evaluate(rules.connection, vars))
  const protocol = rules.upgrade === null ? clientUpgrade : evaluate(rules.upgrade, vars)
  const wanted = rules.connection === null ? clientUpgrade !== '' : tokens?.includes('upgrade') === true
  intent.upgrade = canUpgrade && wanted && protocol !== '' ? protocol : null
  // Only ever set to true: undici's own choice (an upgrade never returns to the pool) must not be overridden.
  if (intent.upgrade === null && tokens?.includes('close') === true) intent.reset = true
}

/** Fields that stay the proxy's whatever `rewriteRequestHeaders` returns: message framing and hop-by-hop fields. */
function isManaged (lower: string): boolean {
  return isHopByHop(lower) || lower === 'content-length' || lower === 'expect'
}

/**
 * The built upstream header list as `rewriteRequestHeaders` gets it: lower-case names, a repeated field as an array.
 * A null-prototype object, so a client field named `__proto__` is a field like any other.
 */
export function headersObject (list: readonly string[]): UpstreamRequestHeaders {
  const headers: UpstreamRequestHeaders = Object.create(null) as UpstreamRequestHeaders
  for (let i = 0; i < list.length; i += 2) {
    const lower = list[i].toLowerCase()
    const known = headers[lower]
    if (known === undefined) headers[lower] = list[i + 1]
    else if (typeof known === 'string') headers[lower] = [known, list[i + 1]]
    else known.push(list[i + 1])
  }
  return headers
}

/**
 * The header list from what `rewriteRequestHeaders` returned, checked as any header the proxy writes: a name that is not
 * a token or a value with CR, LF, NUL or another control is FST_WS_PROXY_BAD_REWRITTEN_HEADER (400, the message never
 * echoes the bytes); a result that is not headers is FST_WS_PROXY_REWRITE_HEADERS_FAILED (500). What it says of
 * Content-Length, Expect and hop-by-hop fields is ignored: the built ones are kept (the body's framing and the
 * connection are the proxy's).
 */
export function rewrittenHeaders (built: readonly string[], result: unknown, route: string): string[] {
  if (result === null || typeof result !== 'object' || Array.isArray(result)) {
    throw new FST_WS_PROXY_REWRITE_HEADERS_FAILED(route, 'expected it to return a headers object')
  }
  const out: string[] = []
  for (const [name, value] of Object.entries(result as Record<string, unknown>)) {
    if (value === undefined) continue
    if (!isToken(name)) throw new FST_WS_PROXY_BAD_REWRITTEN_HEADER(route, 'a name that is not an RFC 9110 token')
    const lower = name.toLowerCase()
    if (isManaged(lower)) continue
    if (typeof value === 'string') {
      pushChecked(out, name, value, route)
    } else if (Array.isArray(value) && lower !== 'host' && value.every((item) => typeof item === 'string')) {
      for (const item of value as string[]) pushChecked(out, name, item, route)
    } else {
      throw new FST_WS_PROXY_REWRITE_HEADERS_FAILED(route, `header ${name}: expected ${lower === 'host' ? 'one string' : 'a string or an array of strings'}`)
    }
  }
  for (let i = 0; i < built.length; i += 2) {
    if (isManaged(built[i].toLowerCase())) out.push(built[i], built[i + 1])
  }
  return out
}

function pushChecked (out: string[], name: string, value: string, route: string): void {
  if (!isFieldValue(value)) throw new FST_WS_PROXY_BAD_REWRITTEN_HEADER(route, `header ${name}: a value with CR, LF, NUL or another control character`)
  out.push(name, value)
}
