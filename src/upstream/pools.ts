import { isIP } from 'node:net'
import type { buildConnector as Connector, Pool } from 'undici'
import type { PoolMaker, PoolSpec, UpstreamServer } from './server.js'
import { buildConnector, UndiciPool } from './undici.js'

/**
 * Requests carry their server's TLS name (UpstreamServer.sni); an IP address there means "no SNI" (RFC 6066 forbids
 * one; Node warns), and the certificate is then checked against the address the connection goes to.
 */
function withoutAddressSni (connect: Connector.connector): Connector.connector {
  return (options, callback) => {
    // Requests always name one (see ProxyExchange.dispatch and the health checks).
    connect(isIP(options.servername as string) === 0 ? options : { ...options, servername: undefined }, callback)
  }
}

/** The undici pool settings shared by every server of one plugin registration. */
export interface PoolSettings {
  readonly connections: number
  readonly keepAliveTimeout: number
}

/**
 * The keep-alive undici Pools of one plugin registration: one per server and connection settings (connect timeout,
 * head size limit), made on first use, closed when a server leaves its group or Fastify closes.
 */
export class UpstreamPools implements PoolMaker {
  readonly #pools = new Set<Pool>()
  readonly #settings: PoolSettings

  constructor (settings: PoolSettings) {
    this.#settings = settings
  }

  create (server: UpstreamServer, spec: PoolSpec): Pool {
    const tls = server.tls
    const pool = new UndiciPool(server.origin, {
      connections: this.#settings.connections,
      pipelining: 1,
      keepAliveTimeout: this.#settings.keepAliveTimeout,
      // limits.responseHead: a longer head is refused by undici (UND_ERR_HEADERS_OVERFLOW), a 502.
      maxHeaderSize: spec.responseHeadLimit,
      // Timeouts are per request (dispatch options); undici's 300 s defaults never apply.
      connect: server.sni === null
        ? { timeout: spec.connectTimeout, socketPath: server.socketPath ?? undefined }
        : withoutAddressSni(buildConnector({
          timeout: spec.connectTimeout,
          socketPath: server.socketPath ?? undefined,
          ca: tls?.ca,
          cert: tls?.cert,
          key: tls?.key,
          rejectUnauthorized: tls?.rejectUnauthorized ?? true
        }))
    })
    this.#pools.add(pool)
    return pool
  }

  async release (pool: Pool): Promise<void> {
    this.#pools.delete(pool)
    await pool.close()
  }

  /** Open upstream connections over all pools (sockets handed to tunnels are no longer counted). */
  get connected (): number {
    let n = 0
    for (const pool of this.#pools) n += pool.stats.connected
    return n
  }

  /** Lets in-flight requests finish, then closes every pooled connection. */
  async close (): Promise<void> {
    const pools = [...this.#pools]
    this.#pools.clear()
    await Promise.all(pools.map((pool) => pool.close()))
  }
}
