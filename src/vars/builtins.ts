import { hostname } from 'node:os'
import type { TLSSocket } from 'node:tls'
import type { VarContext } from './context.js'
import { didYouMean } from '../suggest.js'
import { hostMatchOf, requestHost } from './request-host.js'

/** A compiled template or variable: a plain function of the request's context. */
export type Expr = (c: VarContext) => string

const HOSTNAME = hostname()

// nginx's built-in variables, with nginx's meaning. docs/options.md lists them from `VARIABLE_DOCS`.
const BUILTINS: Record<string, Expr> = {
  host: (c) => hostOf(requestHost(c.req)),
  hostname: () => HOSTNAME,
  remote_addr: (c) => c.clientIp,
  realip_remote_addr: (c) => orEmpty(c.req.socket.remoteAddress),
  remote_port: (c) => orEmpty(c.req.socket.remotePort),
  server_addr: (c) => orEmpty(c.req.socket.localAddress),
  server_port: (c) => orEmpty(c.req.socket.localPort),
  scheme: (c) => (c.req.socket as TLSSocket).encrypted === true ? 'https' : 'http',
  request_method: (c) => c.req.method as string,
  request_uri: (c) => c.req.url as string,
  uri: (c) => percentDecode(c.queryIndex === -1 ? c.req.url as string : (c.req.url as string).slice(0, c.queryIndex)),
  args: argsOf,
  query_string: argsOf,
  is_args: (c) => c.queryIndex === -1 ? '' : '?',
  request_id: (c) => c.requestId,
  content_length: (c) => c.req.headers['content-length'] ?? '',
  content_type: (c) => c.req.headers['content-type'] ?? '',
  proxy_host: (c) => c.route.proxyHost,
  proxy_add_x_forwarded_for: (c) => {
    const address = orEmpty(c.req.socket.remoteAddress)
    const chain = c.req.headers['x-forwarded-for']
    return chain === undefined || chain === '' ? address : `${chain}, ${address}`
  },
  connection_upgrade: (c) => (c.req.headers.upgrade ?? '') === '' ? 'close' : 'upgrade',
  server_protocol: (c) => `HTTP/${c.req.httpVersion}`
}

// Only meaningful once the upstream answered: allowed in response header templates alone.
const RESPONSE_BUILTINS: Record<string, Expr> = {
  upstream_status: (c) => String(c.upstreamStatus),
  upstream_addr: (c) => c.upstreamAddr
}

/** One line per variable, for the variables reference in docs/options.md (a test keeps it in step with the code). */
export const VARIABLE_DOCS: ReadonlyArray<readonly [string, string]> = [
  ['$http_<name>', 'request header `<name>` (case-insensitive, `_` for `-`); repeated headers joined with `, ` (`; ` for Cookie)'],
  ['$arg_<name>', 'query argument `<name>` (first occurrence, case-insensitive name, value as sent, not decoded)'],
  ['$cookie_<name>', 'cookie `<name>` from the `Cookie` header'],
  ['$host', 'the `Host` header (over HTTP/2 without one, `:authority`) lowercased, without port; the machine\'s hostname when absent'],
  ['$hostname', 'the machine\'s hostname'],
  ['$remote_addr', 'client address (`request.ip`: behind trusted proxies, Fastify\'s `trustProxy`, the address they forward)'],
  ['$realip_remote_addr', 'the address of the peer that connected (the last proxy when `trustProxy` applies)'],
  ['$remote_port', 'client port'],
  ['$server_addr', 'address the request arrived on'],
  ['$server_port', 'port the request arrived on'],
  ['$scheme', '`http` or `https`'],
  ['$request_method', 'request method'],
  ['$request_uri', 'the request URI as received, with its query'],
  ['$server_protocol', 'the client\'s protocol: `HTTP/1.1`, `HTTP/1.0` or `HTTP/2.0`'],
  ['$uri', 'the request path, percent-decoded, without the query'],
  ['$args', 'the query string without `?`'],
  ['$query_string', 'the same as `$args`'],
  ['$is_args', '`?` when the request has a query, else empty'],
  ['$request_id', 'Fastify\'s request id (`request.id`)'],
  ['$content_length', 'the `Content-Length` request header'],
  ['$content_type', 'the `Content-Type` request header'],
  ['$proxy_host', 'the upstream\'s host and port as written in `upstream`'],
  ['$proxy_add_x_forwarded_for', 'the client\'s `X-Forwarded-For` with `$remote_addr` appended'],
  ['$connection_upgrade', '`upgrade` when the client sent `Upgrade`, else `close` (nginx\'s `map $http_upgrade` idiom, built in)'],
  ['$upstream_status', 'response templates only: the upstream\'s status code'],
  ['$upstream_addr', 'response templates only: `host:port` (or `unix:/path`) of the server that answered; after retries every server tried, `a, b`'],
  ['$upstream_http_<name>', 'response templates only: response header `<name>` from the upstream'],
  ['$1 … $9, $<group>', 'in the value of a regex map key or rewrite rule: the regex\'s numbered and named captures; elsewhere in a route whose `host` has `~regex` names, that regex\'s captures (nginx `server_name`)'],
  ['$<map name>', 'the value of a map from `maps`']
]

export interface LookupScope {
  /** Response templates may use `$upstream_*`. */
  readonly response: boolean
  /** User maps by name, or null where maps are not visible. */
  readonly map: ((name: string) => Expr | undefined) | null
  /** Capture names of the regex whose value this is, or null outside a map value of a regex key. */
  readonly captures: CaptureNames | null
  /** Capture names over the `~regex` names of the route's `host` (nginx `server_name` captures), in that route's templates. */
  readonly hostCaptures?: CaptureNames | null
}

export interface CaptureNames {
  readonly count: number
  readonly names: readonly string[]
}

/** The getter for `$name` in this scope; throws an Error whose message says why the name is unknown. */
export function lookupVariable (name: string, scope: LookupScope): Expr {
  if (/^[0-9]$/.test(name)) {
    if (scope.captures === null) return hostCapture(name, scope.hostCaptures ?? null)
    if (Number(name) > scope.captures.count) throw new Error(`$${name}: the regex has only ${scope.captures.count} capture group(s)`)
    const index = Number(name)
    // Only evaluated while a match is set; a group that took no part in the match is empty.
    return (c) => (c.captures as RegExpExecArray)[index] ?? ''
  }
  if (scope.captures !== null && scope.captures.names.includes(name)) {
    return (c) => (c.captures as RegExpExecArray & { groups: Record<string, string | undefined> }).groups[name] ?? ''
  }
  if (scope.hostCaptures?.names.includes(name) === true) {
    return (c) => hostMatchOf(c.req)?.groups?.[name] ?? ''
  }
  const mapped = scope.map?.(name)
  if (mapped !== undefined) return mapped
  if (Object.hasOwn(BUILTINS, name)) return BUILTINS[name]
  if (Object.hasOwn(RESPONSE_BUILTINS, name)) {
    if (!scope.response) throw new Error(`$${name} is only available in response header templates`)
    return RESPONSE_BUILTINS[name]
  }
  if (name.startsWith('http_') && name.length > 5) return requestHeader(name.slice(5).replaceAll('_', '-').toLowerCase())
  if (name.startsWith('arg_') && name.length > 4) return queryArgument(name.slice(4).toLowerCase())
  if (name.startsWith('cookie_') && name.length > 7) return cookie(name.slice(7).toLowerCase())
  if (name.startsWith('upstream_http_') && name.length > 14) {
    if (!scope.response) throw new Error(`$${name} is only available in response header templates`)
    return upstreamHeader(name.slice(14).replaceAll('_', '-').toLowerCase())
  }
  throw new Error(`unknown variable $${name}${unknownHint(name)}`)
}

/** `$1`..`$9` outside a map value: a capture of the route's `~regex` host, empty when a name without one chose the route. */
function hostCapture (name: string, captures: CaptureNames | null): Expr {
  if (captures === null) throw new Error(`$${name} is a regex capture, only available in a map value of a "~" key or in a route whose host has a "~regex"`)
  const index = Number(name)
  if (index > captures.count) throw new Error(`$${name}: the route's host regex has only ${captures.count} capture group(s)`)
  return (c) => hostMatchOf(c.req)?.[index] ?? ''
}

/** The closest built-in name, or else how a request header of that name would be written. */
function unknownHint (name: string): string {
  const known = didYouMean(name, [...Object.keys(BUILTINS), ...Object.keys(RESPONSE_BUILTINS)], (n) => `$${n}`)
  if (known !== '') return known
  const header = name.split('_').map((word) => word.charAt(0).toUpperCase() + word.slice(1)).join('-')
  return `; a request header is $http_<name> ($http_${name} for ${header}), a map's name is declared in \`maps\``
}

/** Whether `name` is taken by a built-in variable or a built-in prefix (a map may not shadow it). */
export function isBuiltinName (name: string): boolean {
  return Object.hasOwn(BUILTINS, name) || Object.hasOwn(RESPONSE_BUILTINS, name) ||
    /^(?:http_|arg_|cookie_|upstream_http_)./.test(name)
}

function requestHeader (lower: string): Expr {
  // HTTP/2 names the authority in `:authority`; `$http_host` reads it as nginx does.
  if (lower === 'host') return (c) => requestHost(c.req) ?? ''
  return (c) => {
    const value = c.req.headers[lower]
    return value === undefined ? '' : typeof value === 'string' ? value : value.join(', ')
  }
}

function upstreamHeader (lower: string): Expr {
  return (c) => {
    // Response templates run once the upstream's head is in.
    const raw = c.upstreamHeaders as Buffer[]
    let out: string | null = null
    for (let i = 0; i < raw.length; i += 2) {
      if (raw[i].length === lower.length && raw[i].toString('latin1').toLowerCase() === lower) {
        const value = raw[i + 1].toString('latin1')
        out = out === null ? value : `${out}, ${value}`
      }
    }
    return out ?? ''
  }
}

function queryArgument (lower: string): Expr {
  return (c) => {
    const q = c.queryIndex
    return q === -1 ? '' : findPair(c.req.url as string, q + 1, '&', lower)
  }
}

function cookie (lower: string): Expr {
  return (c) => {
    const header = c.req.headers.cookie
    return header === undefined ? '' : findPair(header, 0, ';', lower)
  }
}

/** The value of the first `name=value` pair (name compared case-insensitively) in a `sep`-separated list. */
function findPair (text: string, from: number, sep: string, lower: string): string {
  let start = from
  while (start <= text.length) {
    let end = text.indexOf(sep, start)
    if (end === -1) end = text.length
    while (text.charCodeAt(start) === 32) start++
    const eq = text.indexOf('=', start)
    if (eq !== -1 && eq < end && eq - start === lower.length && text.slice(start, eq).toLowerCase() === lower) {
      return text.slice(eq + 1, end)
    }
    start = end + 1
  }
  return ''
}

function argsOf (c: VarContext): string {
  return c.queryIndex === -1 ? '' : (c.req.url as string).slice(c.queryIndex + 1)
}

/* c8 ignore next 3: a socket destroyed before the handler ran has no address or port left to show */
function orEmpty (value: string | number | undefined): string {
  return value === undefined ? '' : String(value)
}

/** nginx `$host`: lowercase, port removed (an IPv6 literal keeps its brackets). */
function hostOf (header: string | undefined): string {
  if (header === undefined || header === '') return HOSTNAME
  const end = header.startsWith('[') ? header.indexOf(']') + 1 : header.indexOf(':')
  return (end <= 0 ? header : header.slice(0, end)).toLowerCase()
}

/**
 * Percent-decodes byte by byte into a latin1 string, so every decoded byte is written upstream as that byte
 * (UTF-8 sequences survive as their bytes). A malformed escape would stay as it is, as in nginx, but Fastify's
 * router already refuses such a URL with 400 (FST_ERR_BAD_URL) before any handler runs.
 */
export function percentDecode (text: string): string {
  if (!text.includes('%')) return text
  let out = ''
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i)
    /* c8 ignore next: Fastify lets only well-formed escapes through (see above) */
    if (ch === 37 && i + 2 < text.length && isHex(text.charCodeAt(i + 1)) && isHex(text.charCodeAt(i + 2))) {
      out += String.fromCharCode(parseInt(text.slice(i + 1, i + 3), 16))
      i += 2
    } else {
      out += text[i]
    }
  }
  return out
}

function isHex (c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102)
}
