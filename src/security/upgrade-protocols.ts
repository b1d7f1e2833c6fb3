// Which protocols a route lets a client switch to. `h2c` is refused unless listed: RFC 9113 §3.1 deprecates the
// upgrade, and a tunnelled h2c connection carries HTTP/2 requests (any path, any method) that no hook ever sees
// ("h2c smuggling"). A refused upgrade is proxied as a plain request, as nginx does without the `map` idiom.

// RFC 9110 §5.6.2 token, with an optional `/version` (RFC 9110 §7.8 protocol).
const PROTOCOL = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:\/[!#$%&'*+\-.^_`|~0-9A-Za-z]+)?$/

/** The protocols a route accepts in `Upgrade`: a lowercase allow-list, or null for every protocol but `h2c`. */
export class UpgradeProtocols {
  readonly #allowed: ReadonlySet<string> | null

  constructor (allowed: readonly string[] | null) {
    this.#allowed = allowed === null ? null : new Set(allowed.map((name) => name.toLowerCase()))
  }

  /** Whether every protocol of an `Upgrade` value is well-formed and allowed (there is at least one). */
  allows (value: string): boolean {
    // The common case: one token, `websocket`.
    if (value.length === 9 && value.toLowerCase() === 'websocket') return this.#allowed === null || this.#allowed.has('websocket')
    const protocols = value.split(',')
    for (const entry of protocols) {
      const protocol = entry.trim()
      if (!PROTOCOL.test(protocol)) return false
      const name = protocol.toLowerCase().split('/', 1)[0]
      if (this.#allowed === null ? name === 'h2c' : !this.#allowed.has(name)) return false
    }
    return true
  }
}

/** Whether every protocol a 101 names (its `Upgrade`) is among those the request offered, by name, ignoring case. */
export function wasOffered (offered: string, answered: string): boolean {
  // The common case (`websocket` offered and answered), without building a Set: the same list names the same protocols.
  if (offered === answered) return true
  const names = new Set(offered.split(',').map(protocolName))
  for (const protocol of answered.split(',')) {
    if (!names.has(protocolName(protocol))) return false
  }
  return true
}

function protocolName (protocol: string): string {
  return protocol.trim().toLowerCase().split('/', 1)[0]
}
