import { closest } from '../suggest.js'
import { fail } from './problems.js'
import { urlGroup, type ResolvedGroup } from './resolve-groups.js'
import type { TlsOptions } from './upstream-schema.js'
import { parseUpstream } from './upstream-url.js'

/** What a route's `upstream` (or `upgradeUpstream`) names: a group, or a URL (one one-server group per origin). */
export class Targets {
  readonly groups: ReadonlyMap<string, ResolvedGroup>
  readonly urls = new Map<string, ResolvedGroup>()
  readonly #tls: TlsOptions | null

  constructor (groups: ReadonlyMap<string, ResolvedGroup>, tls: TlsOptions | null) {
    this.groups = groups
    this.#tls = tls
  }

  resolve (text: string, at: string): { group: ResolvedGroup, origin: string, host: string, path: string | null } {
    const { origin, host, path, socketPath } = parseUpstream(text, at)
    // nginx: a proxy_pass host that names an upstream block means the group.
    const group = socketPath === null ? this.groups.get(host) : undefined
    if (group !== undefined) {
      if (!origin.startsWith(group.scheme + ':')) {
        fail(at, `group ${JSON.stringify(host)} has ${group.scheme}: servers; name it ${group.scheme}://${host}`)
      }
      return { group, origin, host, path }
    }
    if (socketPath === null) this.#nearMiss(text, host, at)
    const key = socketPath ?? origin
    let url = this.urls.get(key)
    if (url === undefined) {
      url = urlGroup(origin, socketPath, this.#tls)
      this.urls.set(key, url)
    }
    return { group: url, origin, host, path }
  }

  /**
   * A host without a port or a dot that is one typo away from a group's name (`http://chatt` beside `chat`) is
   * taken for a misspelt group, not a host: as a host it would fail every request with 502 ENOTFOUND.
   */
  #nearMiss (text: string, host: string, at: string): void {
    if (host.length < 3 || host.includes('.') || host.includes(':') || !/^https?:\/\/[^/:]+(\/|$)/.test(text)) return
    const group = closest(host, this.groups.keys())
    if (group === null) return
    const scheme = text.slice(0, text.indexOf(':'))
    fail(at, `no upstream group is named ${JSON.stringify(host)}; did you mean ${JSON.stringify(group)} (${scheme}://${group})? ` +
      `For a host of that name, give its port (${scheme}://${host}:${scheme === 'https' ? 443 : 80})`)
  }
}
