import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import type { FastifyBaseLogger } from 'fastify'
import type { ResolvedDiscovery } from '../options/resolve-groups.js'
import type { HostResolver } from '../options/upstream-schema.js'
import type { GroupTask, UpstreamGroup } from './group.js'
import type { UpstreamServer } from './server.js'

/** What a server named by host name stands for: its settings, copied to every address the name resolves to. */
interface NamedServer {
  readonly hostname: string
  readonly port: string
  readonly weight: number
  readonly maxFails: number
  readonly failTimeout: number
  readonly backup: boolean
}

async function dnsLookup (hostname: string, family: 0 | 4 | 6): Promise<string[]> {
  const answers = await lookup(hostname, { all: true, family })
  return answers.map((answer) => answer.address)
}

/**
 * Follows a service registry that publishes through DNS: every `interval` each server given by host name is
 * resolved again (all A/AAAA records), new addresses join the group with that server's settings, and addresses
 * gone from the answer leave it (requests in flight and tunnels on them carry on). A failed or empty answer
 * keeps the members as they are. The first resolution runs at start; until it answers, the name itself is the member.
 */
export class Discovery implements GroupTask {
  readonly #group: UpstreamGroup
  readonly #names: NamedServer[]
  readonly #resolver: HostResolver
  readonly #family: 0 | 4 | 6
  readonly #log: FastifyBaseLogger
  readonly #timer: NodeJS.Timeout
  #running: Promise<void> | null = null
  #stopped = false

  constructor (group: UpstreamGroup, discovery: ResolvedDiscovery, log: FastifyBaseLogger) {
    this.#group = group
    this.#names = []
    for (const server of group.members) {
      if (server.socketPath !== null || isIP(server.hostname) !== 0) continue
      const url = new URL(server.origin)
      this.#names.push({
        hostname: server.hostname,
        port: url.port,
        weight: server.weight,
        maxFails: server.maxFails,
        failTimeout: server.failTimeout,
        backup: server.backup
      })
    }
    this.#resolver = discovery.resolver ?? dnsLookup
    this.#family = discovery.family
    this.#log = log
    this.#timer = setInterval(resolveAll, discovery.interval, this)
    this.#timer.unref()
    resolveAll(this)
  }

  /** Resolves every name now (at most one round at a time). */
  async resolve (): Promise<void> {
    this.#running ??= this.round().finally(() => { this.#running = null })
    return await this.#running
  }

  async round (): Promise<void> {
    for (const named of this.#names) {
      let addresses: string[]
      try {
        addresses = await this.#resolver(named.hostname, this.#family)
      } catch (err) {
        this.#log.warn({ group: this.#group.name, hostname: named.hostname, err }, 'upstream host name did not resolve: members kept')
        continue
      }
      if (this.#stopped) return
      if (!Array.isArray(addresses) || addresses.length === 0 || addresses.some((a) => typeof a !== 'string' || isIP(a) === 0)) {
        this.#log.warn({ group: this.#group.name, hostname: named.hostname, addresses }, 'upstream host name resolved to no usable address: members kept')
        continue
      }
      this.apply(named, addresses)
    }
  }

  /** Makes the group's members for `named` exactly `addresses`. */
  apply (named: NamedServer, addresses: string[]): void {
    const group = this.#group
    const scheme = group.scheme
    const wanted = new Set(addresses.map((address) => {
      const host = address.includes(':') ? `[${address}]` : address
      return new URL(`${scheme}://${host}${named.port === '' ? '' : ':' + named.port}`).origin
    }))
    // The members standing for this name and port: the addresses found for it, or the name itself until then.
    const current: UpstreamServer[] = group.members.filter((server) => server.socketPath === null && server.hostname === named.hostname &&
      (server.resolvedFrom === named.hostname || server.resolvedFrom === null) && new URL(server.origin).port === named.port)
    for (const server of current) {
      if (!wanted.delete(server.url)) group.remove(server.url)
    }
    for (const url of wanted) {
      // Already a member in its own right (e.g. listed by address as well as by name): served once.
      if (group.find(url) !== undefined) continue
      group.add({ url, weight: named.weight, maxFails: named.maxFails, failTimeout: named.failTimeout, backup: named.backup },
        named.hostname, named.hostname)
    }
  }

  stop (): void {
    this.#stopped = true
    clearInterval(this.#timer)
  }
}

function resolveAll (discovery: Discovery): void {
  // round() logs what goes wrong itself and never rejects.
  discovery.resolve().catch(/* c8 ignore next */ () => {})
}
