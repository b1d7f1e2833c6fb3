import type { BalanceMethod } from '../options/upstream-schema.js'
import { HashRing, mix } from './hashing.js'
import type { UpstreamServer } from './server.js'

// nginx gives up rehashing after 20 tries and falls back to round-robin; so does this.
const REHASH_TRIES = 20

function usable (server: UpstreamServer, tried: readonly UpstreamServer[] | null): boolean {
  return (tried === null || !tried.includes(server)) && server.available()
}

/**
 * The primary or the backup servers of a group and how one is picked among them. Rebuilt (cheaply, at run time
 * only on membership changes) whenever servers join, leave or change weight.
 */
export class Tier {
  readonly servers: readonly UpstreamServer[]
  readonly method: BalanceMethod
  /** consistent hashing: the ring; else for hash methods the running sums of weights. */
  readonly ring: HashRing<UpstreamServer> | null
  readonly sums: Uint32Array
  readonly totalWeight: number
  /** least-conn: where the next scan starts, so that equally loaded servers take turns. */
  #start = 0

  constructor (servers: readonly UpstreamServer[], method: BalanceMethod, consistent: boolean) {
    this.servers = servers
    this.method = method
    const hashing = method === 'hash' || method === 'ip-hash'
    this.ring = hashing && consistent ? new HashRing(servers) : null
    this.sums = new Uint32Array(servers.length)
    let total = 0
    for (let i = 0; i < servers.length; i++) this.sums[i] = (total += servers[i].weight)
    this.totalWeight = total
  }

  /** A server for a request whose key hashes to `hash` (hash methods), not among `tried`; null when none is usable. */
  pick (hash: number, tried: readonly UpstreamServer[] | null): UpstreamServer | null {
    if (this.servers.length === 0) return null
    switch (this.method) {
      case 'least-conn': return this.leastConn(tried)
      case 'round-robin': return this.roundRobin(tried)
      default: return this.ring !== null ? this.onRing(hash, tried) : this.weightedHash(hash, tried)
    }
  }

  /**
   * nginx's smooth weighted round-robin: every usable server's current weight grows by its weight, the largest
   * wins and pays back the total. Weights 5,1,1 give a a b a c a a, not a a a a a b c.
   */
  roundRobin (tried: readonly UpstreamServer[] | null): UpstreamServer | null {
    const servers = this.servers
    let best: UpstreamServer | null = null
    let total = 0
    for (let i = 0; i < servers.length; i++) {
      const server = servers[i]
      if (!usable(server, tried)) continue
      server.current += server.weight
      total += server.weight
      if (best === null || server.current > best.current) best = server
    }
    if (best !== null) best.current -= total
    return best
  }

  /**
   * Fewest requests in flight plus open tunnels per unit of weight (a server holding 1,000 WebSockets is busy
   * even with no request in flight). Compared by cross-multiplying; ties go to the first from a rotating start.
   */
  leastConn (tried: readonly UpstreamServer[] | null): UpstreamServer | null {
    const servers = this.servers
    const n = servers.length
    const start = this.#start
    this.#start = start + 1 === n ? 0 : start + 1
    let best: UpstreamServer | null = null
    for (let k = 0; k < n; k++) {
      const server = servers[(start + k) % n]
      if (!usable(server, tried)) continue
      if (best === null || (server.active + server.tunnels) * best.weight < (best.active + best.tunnels) * server.weight) best = server
    }
    return best
  }

  /** nginx `hash` without `consistent`: the key's share of the total weight, rehashed while that server is unusable. */
  weightedHash (hash: number, tried: readonly UpstreamServer[] | null): UpstreamServer | null {
    const sums = this.sums
    let h = hash
    for (let attempt = 0; attempt < REHASH_TRIES; attempt++) {
      const w = h % this.totalWeight
      // The first server whose running sum exceeds w.
      let lo = 0
      let hi = sums.length - 1
      while (lo < hi) {
        const mid = (lo + hi) >>> 1
        if (sums[mid] > w) hi = mid
        else lo = mid + 1
      }
      const server = this.servers[lo]
      if (usable(server, tried)) return server
      h = mix(h + attempt + 1)
    }
    return this.roundRobin(tried)
  }

  /** Consistent hashing: the first usable server clockwise from the key's position. */
  onRing (hash: number, tried: readonly UpstreamServer[] | null): UpstreamServer | null {
    const ring = this.ring as HashRing<UpstreamServer>
    const owners = ring.owners
    const n = owners.length
    let i = ring.first(hash)
    for (let k = 0; k < n; k++) {
      const server = owners[i]
      if (usable(server, tried)) return server
      if (++i === n) i = 0
    }
    return null
  }
}
