// The request target in the one spelling that hooks see and that is mapped upstream.
//
// A hook that reads `request.url` and an upstream that decodes, merges and resolves paths must agree on what was
// asked for, or the hook can be bypassed by another spelling (`//admin`, `/%61dmin`, `/x/..%2fadmin`,
// `http://evil/admin`). The canonical form is what an upstream would make of the target anyway, written out:
// origin form, no fragment, `//` merged (nginx `merge_slashes`), percent-encoded unreserved characters decoded and
// other escapes in upper case (RFC 3986 §6.2.2), dot segments resolved (§5.2.4). Whatever could mean a different
// path to different parsers is refused instead: encoded `/` and `\`, encoded dot segments, `..;` segments (Tomcat
// reads them as `..`), a raw `\`, a path above the root, invalid escapes. The query is kept as sent.

/** Why a target is refused; the text goes to the client, so it never echoes the target. */
export type TargetRefusal =
  | 'not in origin or absolute form'
  | 'unsupported scheme'
  | 'invalid authority'
  | 'invalid percent-encoding'
  | 'encoded slash or backslash'
  | 'encoded dot segment'
  | 'dot segment with parameters'
  | 'backslash in path'
  | 'path above the root'

/** The canonical target, and for an absolute-form target its authority (RFC 9112 §3.2.2: it replaces Host). */
export interface CanonicalTarget {
  readonly target: string
  readonly authority: string | null
}

const SLASH = 47
const DOT = 46
const PERCENT = 37
const HASH = 35
const QUESTION = 63
const BACKSLASH = 92

/**
 * True when the target is already canonical, checked in one pass without allocating: the common case.
 * A false answer only means "look closer" (`/.well-known/` is canonical but starts a segment with a dot).
 */
export function looksCanonical (url: string): boolean {
  if (url.charCodeAt(0) !== SLASH) return false
  let inQuery = false
  for (let i = 1; i < url.length; i++) {
    const c = url.charCodeAt(i)
    if (c === HASH) return false
    if (inQuery) continue
    if (c === QUESTION) inQuery = true
    else if (c === PERCENT || c === BACKSLASH) return false
    else if ((c === SLASH || c === DOT) && url.charCodeAt(i - 1) === SLASH) return false
  }
  return true
}

/** Why a target that is not canonical (what `wsProxyRewriteUrl` would change or refuse) is refused, or null. */
export function targetRefusal (url: string): TargetRefusal | 'not in canonical form (see wsProxyRewriteUrl)' | null {
  const result = canonicalTarget(url)
  if (typeof result === 'string') return result
  return result.authority === null && result.target === url ? null : 'not in canonical form (see wsProxyRewriteUrl)'
}

// RFC 3986 §3.1 scheme, then `//` authority: the absolute form of RFC 9112 §3.2.2.
const ABSOLUTE = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)/

/** The canonical form of a request target, or why it is refused. */
export function canonicalTarget (url: string): CanonicalTarget | TargetRefusal {
  const hash = url.indexOf('#')
  let rest = hash === -1 ? url : url.slice(0, hash)
  let authority: string | null = null
  if (rest.charCodeAt(0) !== SLASH) {
    const absolute = ABSOLUTE.exec(rest)
    if (absolute === null) return 'not in origin or absolute form'
    const scheme = absolute[1].toLowerCase()
    if (scheme !== 'http' && scheme !== 'https') return 'unsupported scheme'
    authority = absolute[2]
    if (!isValidAuthority(authority)) return 'invalid authority'
    rest = rest.slice(absolute[0].length)
    if (rest.charCodeAt(0) !== SLASH) rest = '/' + rest
  }
  const question = rest.indexOf('?')
  const path = canonicalPath(question === -1 ? rest : rest.slice(0, question))
  if (path.charCodeAt(0) !== SLASH) return path as TargetRefusal
  return { target: question === -1 ? path : path + rest.slice(question), authority }
}

const HEX = /^[0-9A-Fa-f]{2}$/
// RFC 3986 §2.3: these are the same decoded or encoded, so an upstream may decode them.
const UNRESERVED = /^[A-Za-z0-9\-._~]$/

/** The canonical path (starting with `/`), or a refusal (a string that does not). */
function canonicalPath (path: string): string {
  const segments: string[] = []
  const parts = path.split('/')
  // parts[0] is the empty string before the leading slash.
  for (let i = 1; i < parts.length; i++) {
    const raw = parts[i]
    const last = i === parts.length - 1
    if (raw.includes('\\')) return 'backslash in path'
    const segment = raw.includes('%') ? decodeUnreserved(raw) : raw
    if (segment === null) return 'invalid percent-encoding'
    if (segment === '') {
      // `//` merged; a trailing slash is kept.
      if (last) segments.push('')
      continue
    }
    const name = segment.includes(';') ? segment.slice(0, segment.indexOf(';')) : segment
    if (name === '.' || name === '..') {
      if (raw.includes('%')) return 'encoded dot segment'
      if (name !== segment) return 'dot segment with parameters'
      if (name === '..') {
        if (segments.length === 0) return 'path above the root'
        segments.pop()
      }
      // `/a/.` and `/a/b/..` end in a directory: the slash stays.
      if (last) segments.push('')
      continue
    }
    if (segment.includes('%2F') || segment.includes('%5C')) return 'encoded slash or backslash'
    segments.push(segment)
  }
  return '/' + segments.join('/')
}

/** Decodes escaped unreserved characters and upper-cases the other escapes; null when an escape is invalid. */
function decodeUnreserved (segment: string): string | null {
  let out = ''
  let from = 0
  for (let i = segment.indexOf('%'); i !== -1; i = segment.indexOf('%', from)) {
    const hex = segment.slice(i + 1, i + 3)
    if (!HEX.test(hex)) return null
    const char = String.fromCharCode(parseInt(hex, 16))
    out += segment.slice(from, i) + (UNRESERVED.test(char) ? char : '%' + hex.toUpperCase())
    from = i + 3
  }
  return out + segment.slice(from)
}

// A DNS-style name (labels of letters, digits, `-`, `_`; single dots, one trailing dot allowed), an IPv4 address
// (which that covers), or an IPv6 literal; then an optional port. Stricter than RFC 3986's reg-name, as nginx is:
// no userinfo, path, space, escape or empty label can ride along into `Host`, `X-Forwarded-Host` or `$host`.
const AUTHORITY = /^(?:[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?$/

/** The last value found valid: clients send the same Host on request after request, so most checks are one compare. */
let lastValid = 'localhost'

/** Whether a Host value (or an absolute-form target's authority) is a valid `host[:port]`. */
export function isValidAuthority (value: string): boolean {
  if (value === lastValid) return true
  const match = AUTHORITY.exec(value)
  if (match === null || (match[1] !== undefined && Number(match[1]) > 65535)) return false
  lastValid = value
  return true
}
