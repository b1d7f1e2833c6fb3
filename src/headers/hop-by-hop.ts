// RFC 9110 §7.6.1: a proxy must not forward the connection-specific fields, nor any field that the
// Connection header names. Proxy-Connection is not standard but clients still send it (RFC 9112 appendix C.2.2);
// HTTP2-Settings belongs to an h2c upgrade of this one connection (RFC 7540 §3.2.1), even when Connection omits it.
// The list: connection, keep-alive, proxy-connection, te, trailer, transfer-encoding, upgrade, http2-settings.

/**
 * Whether a (lower-case) field name is hop-by-hop. Asked for every field of every request and response, so by
 * length first: most names are ruled out without hashing a fresh string as a Set lookup would.
 */
export function isHopByHop (lowerName: string): boolean {
  switch (lowerName.length) {
    case 2: return lowerName === 'te'
    case 7: return lowerName === 'upgrade' || lowerName === 'trailer'
    case 10: return lowerName === 'connection' || lowerName === 'keep-alive'
    case 14: return lowerName === 'http2-settings'
    case 16: return lowerName === 'proxy-connection'
    case 17: return lowerName === 'transfer-encoding'
    default: return false
  }
}

const COMMA = 44
const SPACE = 32
const TAB = 9

/**
 * The field names listed in a Connection value (lowercased), e.g. `keep-alive, Upgrade, X-Foo`.
 * Returns null when there are none, so the common case allocates nothing. Parsed by character code: tokens are
 * separated by commas with optional whitespace (RFC 9110 §5.6.1). With `beyondHopByHop`, only the names a proxy must
 * drop besides the hop-by-hop ones: `Connection: keep-alive` or `Upgrade` then gives null (nothing to look up per field).
 */
export function connectionTokens (value: string | undefined, beyondHopByHop = false): string[] | null {
  if (value === undefined || value === '') return null
  // What nearly every keep-alive client and upstream sends: nothing to slice or lower-case.
  if (beyondHopByHop && value === 'keep-alive') return null
  let tokens: string[] | null = null
  let start = -1
  let end = -1
  for (let i = 0; i <= value.length; i++) {
    const c = i === value.length ? COMMA : value.charCodeAt(i)
    if (c === COMMA) {
      if (start !== -1) {
        const token = value.slice(start, end + 1).toLowerCase()
        if (!beyondHopByHop || !isHopByHop(token)) (tokens ??= []).push(token)
        start = -1
      }
    } else if (c !== SPACE && c !== TAB) {
      if (start === -1) start = i
      end = i
    }
  }
  return tokens
}
