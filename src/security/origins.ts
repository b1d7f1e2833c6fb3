// `allowedOrigins`: the defence against cross-site WebSocket hijacking. A browser sends `Origin` on every
// WebSocket handshake (RFC 6455 §4.1, §10.2) and, unlike fetch, applies no CORS to it: the server must check it.

/**
 * A route's allowed origins, compiled at register time (options/origins.ts): a set of serialized origins (RFC 6454 §6.2: lowercase
 * scheme and host, default port left out) and one anchored regular expression for the `*.` patterns.
 */
export class OriginAllowList {
  readonly #exact: ReadonlySet<string>
  readonly #patterns: RegExp | null

  constructor (exact: ReadonlySet<string>, patterns: RegExp | null) {
    this.#exact = exact
    this.#patterns = patterns
  }

  /** Whether the value of an `Origin` header is allowed. */
  allows (origin: string): boolean {
    // Browsers send the serialized origin: one lookup, no allocation.
    if (this.#exact.has(origin)) return true
    const serialized = serialize(origin)
    return this.#exact.has(serialized) || (this.#patterns !== null && this.#patterns.test(serialized))
  }
}

/** An `Origin` value as browsers serialize it: lowercase, without the scheme's default port. */
function serialize (origin: string): string {
  const lower = origin.toLowerCase()
  if (lower.startsWith('http://') && lower.endsWith(':80')) return lower.slice(0, -3)
  if (lower.startsWith('https://') && lower.endsWith(':443')) return lower.slice(0, -4)
  return lower
}
