import type { FastifyBaseLogger } from 'fastify'
import { urlGroup, type ResolvedGroup } from '../options/resolve-groups.js'
import { parseUpstream } from '../options/upstream-url.js'
import type { TlsOptions } from '../options/upstream-schema.js'
import { UpstreamGroup } from './group.js'
import type { PoolMaker } from './server.js'

/** Most upstream origins `getUpstream` URLs keep pools for, per plugin registration: the least recently used one goes first. */
export const DYNAMIC_ORIGINS = 64

/** What a string returned by `getUpstream` names: a configured group, or the one-server group of a URL's origin. */
export interface DynamicTarget {
  readonly resolved: ResolvedGroup
  readonly group: UpstreamGroup
  readonly origin: string
  /** nginx `$proxy_host`: host and port as written (the group's name for a group). */
  readonly host: string
  readonly path: string | null
  /** Null for a configured group; for a URL, its cache entry, whose `live` turns false once evicted. */
  readonly entry: DynamicOrigin | null
}

/** One origin in the cache. */
export interface DynamicOrigin {
  live: boolean
  readonly key: string
  readonly resolved: ResolvedGroup
  readonly group: UpstreamGroup
}

/**
 * The upstreams `getUpstream` names at request time, for one plugin registration. A group name resolves to the
 * configured group; a URL gets a one-server group (its keep-alive pools made on first use, as for a route's own URL),
 * kept in a bounded LRU of `DYNAMIC_ORIGINS` origins. An evicted origin's pools close gracefully: requests in flight
 * finish, tunnels keep their own sockets, and the next request for it makes new ones.
 */
export class DynamicUpstreams {
  readonly #named = new Map<string, { resolved: ResolvedGroup, group: UpstreamGroup }>()
  readonly #origins = new Map<string, DynamicOrigin>()
  readonly #maker: PoolMaker
  readonly #log: FastifyBaseLogger
  readonly #size: number

  constructor (groups: ReadonlyMap<ResolvedGroup, UpstreamGroup>, maker: PoolMaker, log: FastifyBaseLogger, size = DYNAMIC_ORIGINS) {
    for (const [resolved, group] of groups) if (resolved.named) this.#named.set(resolved.name, { resolved, group })
    this.#maker = maker
    this.#log = log
    this.#size = size
  }

  /** The target a returned string names; throws an Error saying why it is not one (logged, never sent to the client). */
  resolve (text: string, tls: TlsOptions | null): DynamicTarget {
    if (!/^https?:\/\//.test(text)) throw new Error(`expected an http: or https: URL or group, got ${JSON.stringify(text)}`)
    const { origin, host, path, socketPath } = parseUpstream(text, 'getUpstream')
    const named = socketPath === null ? this.#named.get(host) : undefined
    if (named !== undefined) {
      if (!origin.startsWith(named.resolved.scheme + ':')) {
        throw new Error(`group ${JSON.stringify(host)} has ${named.resolved.scheme}: servers; name it ${named.resolved.scheme}://${host}`)
      }
      return { resolved: named.resolved, group: named.group, origin, host, path, entry: null }
    }
    const key = socketPath ?? origin
    let entry = this.#origins.get(key)
    if (entry === undefined) {
      const resolved = urlGroup(origin, socketPath, tls)
      entry = { live: true, key, resolved, group: new UpstreamGroup(resolved, this.#maker, this.#log) }
      this.#origins.set(key, entry)
      if (this.#origins.size > this.#size) this.#evictOldest()
    } else {
      this.touch(entry)
    }
    return { resolved: entry.resolved, group: entry.group, origin, host, path, entry }
  }

  /** Marks an origin used now (most recently used last: a Map keeps insertion order). */
  touch (entry: DynamicOrigin): void {
    this.#origins.delete(entry.key)
    this.#origins.set(entry.key, entry)
  }

  #evictOldest (): void {
    const [key, entry] = this.#origins.entries().next().value as [string, DynamicOrigin]
    this.#origins.delete(key)
    entry.live = false
    // undici's close lets requests in flight finish; a tunnel already holds its own socket. Settled whatever happens:
    // a pool's close rejects only when it was already destroyed.
    Promise.allSettled(entry.group.members.map(async (server) => await server.closePools()))
  }
}
