import type { IncomingMessage } from 'node:http'
import type { HostPattern } from '../options/host-patterns.js'
import { kHostMatch, requestHost } from '../vars/request-host.js'

// nginx `server_name` for routes: a request's Host picks one name (exact first, then the longest leading wildcard,
// then regular expressions in the order routes give them), and only the routes listing that name compete on the
// path. Built on Fastify's router constraints, so hooks, 404 handlers and other plugins' routes work as usual.

/** Every host name of the routes of one server, and the choice of one for a request. */
export class HostTable {
  readonly #exact = new Map<string, string>()
  // Longest suffix first: nginx prefers the longest matching wildcard.
  #wildcards: Array<Extract<HostPattern, { kind: 'wildcard' }>> = []
  readonly #regexes: Array<Extract<HostPattern, { kind: 'regex' }>> = []

  add (pattern: HostPattern): void {
    if (pattern.kind === 'exact') {
      this.#exact.set(pattern.name, pattern.key)
    } else if (pattern.kind === 'wildcard') {
      if (this.#wildcards.some((known) => known.key === pattern.key)) return
      this.#wildcards = [...this.#wildcards, pattern].sort((a, b) => b.suffix.length - a.suffix.length)
    } else if (!this.#regexes.some((known) => known.key === pattern.key)) {
      this.#regexes.push(pattern)
    }
  }

  /**
   * The key of the name a Host selects (nginx's precedence), or undefined when none does. A regex that selects it
   * leaves its match on `req` (`kHostMatch`): the captures `$1`..`$9` and `$name` of the chosen route's templates.
   */
  select (host: string, req: IncomingMessage): string | undefined {
    const exact = this.#exact.get(host)
    if (exact !== undefined) return exact
    for (const wildcard of this.#wildcards) {
      if (host.endsWith(wildcard.suffix) || host === wildcard.bare) return wildcard.key
    }
    for (const regex of this.#regexes) {
      const match = regex.re.exec(host)
      if (match !== null) {
        (req as { [kHostMatch]?: RegExpExecArray })[kHostMatch] = match
        return regex.key
      }
    }
    return undefined
  }
}

/** The host a request names (Host, else HTTP/2's `:authority`) as nginx compares it: lower case, without port or trailing dot. */
function hostName (req: IncomingMessage): string {
  const header = requestHost(req) ?? ''
  const end = header.startsWith('[') ? header.indexOf(']') + 1 : header.indexOf(':')
  const host = (end <= 0 ? header : header.slice(0, end)).toLowerCase()
  return host.endsWith('.') ? host.slice(0, -1) : host
}

/**
 * find-my-way's store for the constraint: a host key → the bitmask of the handlers (at one path) listing it. The
 * router builds it by reading a route's value (its list of keys, never stored as such) and writing the handler's bit.
 */
class HostStore {
  readonly #handlers = new Map<string, number>()

  get (value: string | readonly string[]): number | undefined {
    return typeof value === 'string' ? this.#handlers.get(value) : undefined
  }

  set (keys: readonly string[], handlers: number): void {
    for (const key of keys) {
      const known = this.#handlers.get(key) ?? 0
      // Two routes at one path listing one name (two registrations of the plugin: each checks only its own routes):
      // the router would silently pick the later one for that name.
      if ((known & ~handlers) !== 0) throw new Error(`fastify-ws-proxy: host ${JSON.stringify(key)} already has a route at this path`)
      this.#handlers.set(key, known | handlers)
    }
  }
}

/** The router constraint strategy (find-my-way) routes with `host` use, deciding by the server's host table. */
export function hostStrategy (table: HostTable): {
  name: string
  mustMatchWhenDerived: boolean
  storage: () => HostStore
  deriveConstraint: (req: IncomingMessage) => string | undefined
  validate: (value: unknown) => void
} {
  return {
    name: HOST_CONSTRAINT,
    // A Host that selects no name, or a name with no route for the path, may still be served by a route without `host`.
    mustMatchWhenDerived: false,
    storage: () => new HostStore(),
    deriveConstraint: (req) => table.select(hostName(req), req),
    validate (value) {
      if (!Array.isArray(value)) throw new TypeError('fastify-ws-proxy host constraint: expected an array of host keys')
    }
  }
}

/** The constraint's name on the routes. */
export const HOST_CONSTRAINT = 'fastifyWsProxyHost'
