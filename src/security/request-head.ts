import type { IncomingMessage } from 'node:http'
import { FST_WS_PROXY_BAD_HOST, FST_WS_PROXY_DUPLICATE_HEADER, FST_WS_PROXY_TOO_MANY_HEADERS } from '../errors.js'
import { isValidAuthority } from './target.js'

// The fields Node keeps once in `request.headers`, dropping later copies (Node's docs, `message.headers`): a hook
// reads the first, while an upstream handed both might read the other. Content-Length is llhttp's to refuse.
// Each has a bit, so a request's check allocates nothing.
const SINGLETONS = new Map(['age', 'authorization', 'content-type', 'etag', 'expires', 'from', 'host', 'if-modified-since',
  'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'proxy-authorization', 'referer', 'retry-after',
  'server', 'user-agent'].map((name, i) => [name, 1 << i]))

/** Node's own field limit when `server.maxHeadersCount` is not set: beyond it `request.headers` silently stops. */
export const NODE_HEADER_FIELDS = 1000

/**
 * The most fields a request may have so that `request.headers` (what hooks read) holds every field of `rawHeaders`
 * (what is forwarded): the configured cap, within Node's own limit.
 */
export function effectiveHeaderCap (cap: number, maxHeadersCount: number | null | undefined): number {
  if (maxHeadersCount === 0) return cap
  return Math.min(cap, typeof maxHeadersCount === 'number' && maxHeadersCount > 0 ? maxHeadersCount : NODE_HEADER_FIELDS)
}

/**
 * Why a request head is refused before any hook runs, or null: more fields than `cap`, a repeated singleton field,
 * or a Host that is missing (HTTP/1.1), empty, repeated or not a valid `host[:port]` (RFC 9110 §7.2).
 */
export function headRefusal (req: IncomingMessage, cap: number): Error | null {
  if (req.httpVersionMajor === 2) return h2HeadRefusal(req, cap)
  const raw = req.rawHeaders
  if (raw.length > cap * 2) return new FST_WS_PROXY_TOO_MANY_HEADERS(cap)
  let seen = 0
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i].toLowerCase()
    const bit = SINGLETONS.get(lower)
    if (bit === undefined) continue
    if ((seen & bit) !== 0) return lower === 'host' ? new FST_WS_PROXY_BAD_HOST('more than one') : new FST_WS_PROXY_DUPLICATE_HEADER(lower)
    seen |= bit
  }
  const host = req.headers.host
  if (host === undefined) {
    // HTTP/1.0 may omit it (Node already refuses an HTTP/1.1 request without one, unless told not to).
    return req.httpVersionMajor === 1 && req.httpVersionMinor === 0 ? null : new FST_WS_PROXY_BAD_HOST('missing')
  }
  return isValidAuthority(host) ? null : new FST_WS_PROXY_BAD_HOST(host === '' ? 'empty' : 'not a valid host[:port]')
}

/**
 * The same checks for an HTTP/2 request, whose head also holds pseudo-header fields (not counted) and names its
 * authority in `:authority`, with or without a Host field (RFC 9113 §8.3.1; nghttp2 resets a stream with neither). Node keeps the first copy of a repeated
 * singleton field in `request.headers` as it does for HTTP/1.1, so repeats are refused the same way. A Host that
 * names another authority than `:authority` is refused: hooks read Host first (Fastify's `request.host`).
 */
function h2HeadRefusal (req: IncomingMessage, cap: number): Error | null {
  const raw = req.rawHeaders
  let fields = 0
  let seen = 0
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]
    if (name.charCodeAt(0) === 58 /* : */) continue
    fields++
    const bit = SINGLETONS.get(name)
    if (bit === undefined) continue
    // (A repeated Host never gets here: nghttp2 resets such a stream, as one with an empty Host or none at all.)
    if ((seen & bit) !== 0) return new FST_WS_PROXY_DUPLICATE_HEADER(name)
    seen |= bit
  }
  if (fields > cap) return new FST_WS_PROXY_TOO_MANY_HEADERS(cap)
  const authority = req.headers[':authority'] as string | undefined
  const host = (req.headers.host ?? authority) as string | undefined
  // Neither (nghttp2 resets such a stream first, but an authority is never assumed).
  if (host === undefined) return new FST_WS_PROXY_BAD_HOST('missing')
  if (authority !== undefined && host !== authority) return new FST_WS_PROXY_BAD_HOST('differs from :authority')
  // nghttp2 checks only the characters: `a:b` or `[x]` pass it.
  return isValidAuthority(host) ? null : new FST_WS_PROXY_BAD_HOST('not a valid host[:port]')
}
