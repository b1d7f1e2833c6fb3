import { FST_WS_PROXY_TOO_MANY_TUNNELS } from '../errors.js'
import type { TunnelLimitName } from '../telemetry/stats.js'

/** The live tunnels (and handshakes in flight) of one route, and its cap (0: none). */
export class RouteTunnels {
  live = 0
  readonly max: number

  constructor (max: number) {
    this.max = max
  }
}

/**
 * Tunnel caps of one plugin registration: in total, per route, per client address. A slot is taken when an
 * upgrade request is accepted for dispatch (so a burst of handshakes cannot overshoot) and given back when the
 * handshake fails or, after a 101, when the tunnel closes.
 */
export class TunnelLimits {
  readonly max: number
  readonly perClient: number
  /** Seconds for the `Retry-After` of a refusal. */
  readonly retryAfter: number
  total = 0
  readonly #byClient = new Map<string, number>()

  constructor (max: number, perClient: number, retryAfter: number) {
    this.max = max
    this.perClient = perClient
    this.retryAfter = retryAfter
  }

  /** Takes a slot, or returns the refusal (a coded 503) and the cap that refused. */
  acquire (route: RouteTunnels, client: string): { error: Error, limit: TunnelLimitName } | null {
    if (this.max > 0 && this.total >= this.max) return refusal('global', this.max)
    if (route.max > 0 && route.live >= route.max) return refusal('route', route.max)
    if (this.perClient > 0) {
      const mine = this.#byClient.get(client) ?? 0
      if (mine >= this.perClient) return refusal('client', this.perClient)
      this.#byClient.set(client, mine + 1)
    }
    this.total++
    route.live++
    return null
  }

  release (route: RouteTunnels, client: string): void {
    this.total--
    route.live--
    if (this.perClient === 0) return
    const mine = (this.#byClient.get(client) as number) - 1
    if (mine === 0) this.#byClient.delete(client)
    else this.#byClient.set(client, mine)
  }
}

const LIMIT_TEXT: Record<TunnelLimitName, string> = { global: 'limits.tunnels', route: 'route limits.tunnels', client: 'limits.tunnelsPerClient' }

function refusal (limit: TunnelLimitName, max: number): { error: Error, limit: TunnelLimitName } {
  return { error: new FST_WS_PROXY_TOO_MANY_TUNNELS(LIMIT_TEXT[limit], max), limit }
}
