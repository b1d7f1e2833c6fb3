import type { FastifyBaseLogger } from 'fastify'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { Type, type Static } from '@sinclair/typebox'
import { fail } from '../options/problems.js'
import { invalidOption } from '../options/schema-problems.js'
import { resolveServer, type ResolvedGroup, type ResolvedServer } from '../options/resolve-groups.js'
import { ServerSchema, type AttemptFailure, type BalanceMethod, type ServerOptions, type TlsOptions } from '../options/upstream-schema.js'
import type { VarContext } from '../vars/context.js'
import type { Template } from '../vars/template.js'
import { Tier } from './balancers.js'
import { hashKey, ipHashKey } from './hashing.js'
import { UpstreamServer, type PoolMaker, type ServerInfo } from './server.js'

/** What `update()` may change on a server. */
export const ServerUpdateSchema = Type.Object({
  weight: ServerSchema.properties.weight,
  maxFails: ServerSchema.properties.maxFails,
  failTimeout: ServerSchema.properties.failTimeout,
  backup: ServerSchema.properties.backup,
  down: ServerSchema.properties.down,
  draining: Type.Optional(Type.Boolean({ description: 'No new requests; requests in flight and tunnels carry on.' }))
}, { additionalProperties: false })

/** Changes to a server of a group at run time. */
export type ServerUpdate = Static<typeof ServerUpdateSchema>

const serverChecker = TypeCompiler.Compile(ServerSchema)
const updateChecker = TypeCompiler.Compile(ServerUpdateSchema)

/** A group of the running proxy, as `fastify.wsProxy.group(name)` exposes it. */
export interface UpstreamGroupApi {
  readonly name: string
  readonly balance: BalanceMethod
  /** Every server with its state, load and last error. */
  servers (): ServerInfo[]
  /** Adds a server (validated like the options); throws FST_WS_PROXY_INVALID_OPTION. */
  add (server: ServerOptions): ServerInfo
  /** Takes a server out: no new requests, its pools close once idle; its live tunnels carry on. False if unknown. */
  remove (url: string): boolean
  /** No new requests for a server; what it has in flight, tunnels included, carries on. False if unknown. */
  drain (url: string): boolean
  /** Changes a server's settings (weight, maxFails, failTimeout, backup, down, draining). False if unknown. */
  update (url: string, changes: ServerUpdate): boolean
  /** With `resolve`: resolves the server host names now instead of at the next interval. */
  resolve (): Promise<void>
}

/** A group's checks and discovery, stopped when the app closes. */
export interface GroupTask {
  stop (): void
}

/** DNS re-resolution: also resolves on demand (`wsProxy.group(name).resolve()`). */
export interface ResolvingTask extends GroupTask {
  resolve (): Promise<void>
}

/**
 * An upstream group at run time: its servers split into primary and backup tiers, the per-request pick, passive
 * health (what counts as a failure, when a server is out and back), and the membership API.
 */
export class UpstreamGroup implements UpstreamGroupApi {
  readonly name: string
  readonly named: boolean
  readonly balance: BalanceMethod
  readonly hash: Template | null
  readonly failOn: ReadonlySet<AttemptFailure>
  readonly retryOn: ReadonlySet<AttemptFailure>
  readonly tries: number
  readonly retryTimeout: number
  readonly nonIdempotent: boolean
  readonly consistent: boolean
  readonly tls: TlsOptions | null
  readonly scheme: 'http' | 'https'
  readonly members: UpstreamServer[]
  primary!: Tier
  backup: Tier | null = null
  /** The group's only server when it has one and no backup: picked without a scan. */
  single: UpstreamServer | null = null
  /** Its active health checks and DNS re-resolution, once started; stopped when the app closes. */
  readonly #tasks: GroupTask[] = []
  /** DNS re-resolution, when the group has `resolve` (also one of its tasks). */
  #discovery: ResolvingTask | null = null
  readonly #maker: PoolMaker
  readonly #log: FastifyBaseLogger

  constructor (group: ResolvedGroup, maker: PoolMaker, log: FastifyBaseLogger) {
    this.name = group.name
    this.named = group.named
    this.balance = group.balance
    this.hash = group.hash
    this.failOn = group.failOn
    this.retryOn = group.retryOn
    this.tries = group.tries
    this.retryTimeout = group.retryTimeout
    this.nonIdempotent = group.nonIdempotent
    this.consistent = group.consistent
    this.tls = group.tls
    this.scheme = group.scheme
    this.#maker = maker
    this.#log = log
    this.members = group.servers.map((server) => new UpstreamServer(server, group.tls, maker, null))
    this.rebuild()
  }

  /** Re-splits the tiers after a membership or weight change (rings are rebuilt here, never per request). */
  rebuild (): void {
    const primary = this.members.filter((server) => !server.backup)
    const backup = this.members.filter((server) => server.backup)
    this.primary = new Tier(primary, this.balance, this.consistent)
    this.backup = backup.length === 0 ? null : new Tier(backup, this.balance, this.consistent)
    this.single = this.members.length === 1 ? this.members[0] : null
  }

  /** The hash of the request's key for hash methods (0 otherwise), computed once per request. */
  keyHash (vars: VarContext | null, ip: string): number {
    if (this.hash !== null) return hashKey(this.hash.expr(vars as VarContext))
    return this.balance === 'ip-hash' ? hashKey(ipHashKey(ip)) : 0
  }

  /** The server for an attempt, not among `tried`: a primary, else a backup; null when none is usable. */
  pick (hash: number, tried: readonly UpstreamServer[] | null): UpstreamServer | null {
    const single = this.single
    if (single !== null) return single.available() && tried === null ? single : null
    const server = this.primary.pick(hash, tried)
    if (server !== null || this.backup === null) return server
    return this.backup.pick(hash, tried)
  }

  /** An attempt on `server` failed with `kind` (null: not the server's fault, e.g. a body too large). */
  attemptFailed (server: UpstreamServer, err: Error, kind: AttemptFailure | null): void {
    // nginx: a group of one server is never marked failed (there is nothing else to try).
    const counted = kind !== null && this.failOn.has(kind) && this.members.length > 1
    if (server.failed(err, counted, Date.now())) {
      this.#log.warn({ group: this.name, upstream: server.addr, err, retryIn: server.failTimeout }, 'upstream server failed: out of the group for failTimeout')
    }
  }

  attemptSucceeded (server: UpstreamServer): void {
    if (server.succeeded()) this.#log.info({ group: this.name, upstream: server.addr }, 'upstream server back in the group')
  }

  servers (): ServerInfo[] {
    return this.members.map((server) => server.info())
  }

  find (url: string): UpstreamServer | undefined {
    const wanted = normalise(url)
    return this.members.find((server) => server.url === wanted)
  }

  add (options: ServerOptions, resolvedFrom: string | null = null, hostname?: string): ServerInfo {
    const at = `upstreams/${this.name}/servers/+/`
    const first = serverChecker.Errors(options).First()
    if (first !== undefined) throw invalidOption({ ...first, path: `/${at}${first.path.slice(1)}` })
    let resolved: ResolvedServer = resolveServer(options, at, this.scheme)
    if (hostname !== undefined) resolved = { ...resolved, hostname }
    if (this.members.some((server) => server.url === resolved.url)) fail(`${at}url`, `${resolved.url} is already in the group`)
    const server = new UpstreamServer(resolved, this.tls, this.#maker, resolvedFrom)
    this.members.push(server)
    this.rebuild()
    this.#log.info({ group: this.name, upstream: server.addr, resolvedFrom }, 'upstream server added')
    return server.info()
  }

  remove (url: string): boolean {
    const server = this.find(url)
    if (server === undefined) return false
    this.members.splice(this.members.indexOf(server), 1)
    server.removed = true
    server.draining = true
    this.rebuild()
    this.#log.info({ group: this.name, upstream: server.addr, activeRequests: server.active, liveTunnels: server.tunnels }, 'upstream server removed')
    // Requests in flight finish first (undici's close waits for them); tunnels hold their own sockets.
    server.closePools().catch(/* c8 ignore next: Pool.close rejects only when already destroyed */ () => {})
    return true
  }

  drain (url: string): boolean {
    return this.update(url, { draining: true })
  }

  update (url: string, changes: ServerUpdate): boolean {
    const first = updateChecker.Errors(changes).First()
    if (first !== undefined) throw invalidOption({ ...first, path: `/upstreams/${this.name}/servers/${url}${first.path}` })
    const server = this.find(url)
    if (server === undefined) return false
    if (changes.weight !== undefined) server.weight = changes.weight
    if (changes.maxFails !== undefined) server.maxFails = changes.maxFails
    if (changes.failTimeout !== undefined) server.failTimeout = changes.failTimeout
    if (changes.backup !== undefined) server.backup = changes.backup
    if (changes.down !== undefined) server.down = changes.down
    if (changes.draining !== undefined) server.draining = changes.draining
    this.rebuild()
    this.#log.info({ group: this.name, upstream: server.addr, changes, state: server.state }, 'upstream server updated')
    return true
  }

  /**
   * Starts what the group runs in the background, with the server (`onReady`): its active health checks and its DNS
   * re-resolution, when it has them. The caller makes them: they read the group, so the group importing them would close a circle.
   */
  start (healthChecks: GroupTask | null, discovery: ResolvingTask | null): void {
    if (healthChecks !== null) this.#tasks.push(healthChecks)
    if (discovery !== null) {
      this.#tasks.push(discovery)
      this.#discovery = discovery
    }
  }

  async resolve (): Promise<void> {
    if (this.#discovery !== null) await this.#discovery.resolve()
  }

  stop (): void {
    for (const task of this.#tasks) task.stop()
  }
}

/** A server URL as the group keys it (`http://h:80/` and `http://h` are the same server). */
function normalise (url: string): string {
  if (url.startsWith('http://unix:')) return url.endsWith(':') ? url : `${url}:`
  try {
    return new URL(url).origin
  } catch {
    return url
  }
}
