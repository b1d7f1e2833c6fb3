import type { Pool } from 'undici'
import type { ResolvedServer } from '../options/resolve-groups.js'
import type { TlsOptions } from '../options/upstream-schema.js'

/** A server as the API reports it. `failed`: out after `maxFails` (back after `failTimeout`); `unhealthy`: failing its active checks. */
export type ServerState = 'up' | 'down' | 'failed' | 'unhealthy' | 'draining'

/** Introspection of one server of a group (`fastify.wsProxy.group(name).servers()`). */
export interface ServerInfo {
  readonly url: string
  /** nginx `$upstream_addr`. */
  readonly address: string
  readonly state: ServerState
  readonly weight: number
  readonly backup: boolean
  readonly maxFails: number
  readonly failTimeout: number
  /** Requests in flight (handshakes included) and open tunnels: what `least-conn` counts. */
  readonly activeRequests: number
  readonly liveTunnels: number
  /** Requests sent to it, and failed attempts (any kind), since it joined. */
  readonly requests: number
  readonly failures: number
  /** Failures counted toward `maxFails` in the current window. */
  readonly fails: number
  /** When a `failed` server is tried again (ms since the epoch), else null. */
  readonly retryAt: number | null
  readonly lastError: { readonly message: string, readonly code: string | null, readonly at: number } | null
  /** The host name it was resolved from (`resolve`), else null. */
  readonly resolvedFrom: string | null
}

/** The connection settings a pool depends on (one pool per server and distinct settings). */
export interface PoolSpec {
  /** Identifies the settings among a server's pools. */
  readonly poolKey: string
  readonly connectTimeout: number
  readonly responseHeadLimit: number
}

/** Makes the pools of a server (see UpstreamPools). */
export interface PoolMaker {
  create (server: UpstreamServer, spec: PoolSpec): Pool
  release (pool: Pool): Promise<void>
}

/**
 * One server of a group at run time: its settings (the API may change them), its load, its passive and active
 * health, and its keep-alive pools. Hot-path reads are plain fields.
 */
export class UpstreamServer {
  readonly url: string
  readonly origin: string
  readonly socketPath: string | null
  readonly hostname: string
  readonly addr: string
  /** How errors and logs name it: the origin, or `unix:/path`. */
  readonly label: string
  readonly resolvedFrom: string | null
  /** The group's TLS settings (https servers). */
  readonly tls: TlsOptions | null
  /**
   * https: the TLS server name (SNI, and the name the certificate must carry), set on every request: undici would
   * otherwise take it from the request's Host, which is the group's name or the client's host, not the server's.
   * An IP address here means no SNI (the certificate is checked against the address). Null for http.
   */
  readonly sni: string | null
  weight: number
  maxFails: number
  failTimeout: number
  backup: boolean
  down: boolean
  draining = false
  /** Taken out of its group: no new requests; its pools close once idle. */
  removed = false
  /** Active health: false after `fails` bad probes in a row, until `passes` good ones. */
  healthy = true
  probes = 0
  probing = false
  /** Passive health (nginx max_fails / fail_timeout): failures in the window, and until when the server is out. */
  fails = 0
  lastFailAt = 0
  retryAt = 0
  /** Load, as least-conn counts it. */
  active = 0
  tunnels = 0
  /** Smooth weighted round-robin state (nginx `current_weight`). */
  current = 0
  requests = 0
  failures = 0
  lastError: ServerInfo['lastError'] = null
  readonly #pools = new Map<string, Pool>()
  readonly #maker: PoolMaker

  constructor (server: ResolvedServer, tls: TlsOptions | null, maker: PoolMaker, resolvedFrom: string | null) {
    this.url = server.url
    this.origin = server.origin
    this.socketPath = server.socketPath
    this.hostname = server.hostname
    this.addr = server.addr
    this.label = server.socketPath === null ? server.origin : `unix:${server.socketPath}`
    this.resolvedFrom = resolvedFrom
    this.tls = tls
    this.sni = server.origin.startsWith('https:') ? tls?.servername ?? server.hostname : null
    this.weight = server.weight
    this.maxFails = server.maxFails
    this.failTimeout = server.failTimeout
    this.backup = server.backup
    this.down = server.down
    this.#maker = maker
  }

  /** Whether it may take a new request now. */
  available (): boolean {
    return !this.down && !this.draining && this.healthy && (this.retryAt === 0 || Date.now() >= this.retryAt)
  }

  get state (): ServerState {
    if (this.down) return 'down'
    if (this.draining || this.removed) return 'draining'
    if (!this.healthy) return 'unhealthy'
    return this.retryAt !== 0 && Date.now() < this.retryAt ? 'failed' : 'up'
  }

  /** The keep-alive pool for a route's connection settings, made on first use. */
  pool (spec: PoolSpec): Pool {
    const pool = this.#pools.get(spec.poolKey)
    if (pool !== undefined) return pool
    const made = this.#maker.create(this, spec)
    this.#pools.set(spec.poolKey, made)
    return made
  }

  /** Closes its pools once their requests are done (it left its group). */
  async closePools (): Promise<void> {
    const pools = [...this.#pools.values()]
    this.#pools.clear()
    await Promise.all(pools.map((pool) => this.#maker.release(pool)))
  }

  /** An attempt failed; `counted` when the failure kind is one of the group's `failOn`. Returns true when this took it out. */
  failed (err: Error, counted: boolean, now: number): boolean {
    this.failures++
    this.lastError = { message: err.message, code: (err as { code?: string }).code ?? null, at: now }
    if (!counted || this.maxFails === 0) return false
    if (this.retryAt !== 0) {
      // Already out (a request sent before it was taken out failed too): nothing changes.
      if (now < this.retryAt) return false
      // Tried again after failTimeout and failed again: out for another failTimeout at once (nginx does the same).
      this.retryAt = now + this.failTimeout
      return true
    }
    if (this.fails > 0 && now - this.lastFailAt > this.failTimeout) this.fails = 0
    this.fails++
    this.lastFailAt = now
    if (this.fails < this.maxFails) return false
    this.fails = 0
    this.retryAt = now + this.failTimeout
    return true
  }

  /** An attempt got an acceptable answer: failures are forgotten. Returns true when this brought it back. */
  succeeded (): boolean {
    this.fails = 0
    if (this.retryAt === 0) return false
    this.retryAt = 0
    return true
  }

  info (): ServerInfo {
    return {
      url: this.url,
      address: this.addr,
      state: this.state,
      weight: this.weight,
      backup: this.backup,
      maxFails: this.maxFails,
      failTimeout: this.failTimeout,
      activeRequests: this.active,
      liveTunnels: this.tunnels,
      requests: this.requests,
      failures: this.failures,
      fails: this.fails,
      retryAt: this.retryAt === 0 || Date.now() >= this.retryAt ? null : this.retryAt,
      lastError: this.lastError,
      resolvedFrom: this.resolvedFrom
    }
  }
}
