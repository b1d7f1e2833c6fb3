import { Pool } from 'undici'

/** The undici pool settings shared by every origin of one plugin registration. */
export interface PoolSettings {
  readonly connections: number
  readonly keepAliveTimeout: number
}

/**
 * One keep-alive undici Pool per upstream origin (and connect timeout, unix socket and head size limit: connection settings).
 * Created at register time, closed when Fastify closes.
 */
export class UpstreamPools {
  readonly #pools = new Map<string, Pool>()
  readonly #settings: PoolSettings

  constructor (settings: PoolSettings) {
    this.#settings = settings
  }

  get (origin: string, connectTimeout: number, socketPath: string | null, maxHeaderSize: number): Pool {
    const key = `${origin} ${connectTimeout} ${socketPath ?? ''} ${maxHeaderSize}`
    let pool = this.#pools.get(key)
    if (pool === undefined) {
      pool = new Pool(origin, {
        connections: this.#settings.connections,
        pipelining: 1,
        keepAliveTimeout: this.#settings.keepAliveTimeout,
        // limits.responseHead: a longer head is refused by undici (UND_ERR_HEADERS_OVERFLOW), a 502.
        maxHeaderSize,
        // Timeouts are per request (dispatch options); undici's 300 s defaults never apply.
        connect: { timeout: connectTimeout, socketPath: socketPath ?? undefined }
      })
      this.#pools.set(key, pool)
    }
    return pool
  }

  /** Open upstream connections over all pools (sockets handed to tunnels are no longer counted). */
  get connected (): number {
    let n = 0
    for (const pool of this.#pools.values()) n += pool.stats.connected
    return n
  }

  /** Lets in-flight requests finish, then closes every pooled connection. */
  async close (): Promise<void> {
    const pools = [...this.#pools.values()]
    this.#pools.clear()
    await Promise.all(pools.map((pool) => pool.close()))
  }
}
