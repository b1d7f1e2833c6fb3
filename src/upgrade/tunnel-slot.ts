import { FST_WS_PROXY_TOO_MANY_TUNNELS } from '../errors.js'
import type { TunnelLimitName } from '../telemetry/stats.js'

// A tunnel slot's whole life, in one place. A slot counts against the caps of the registration (in total, per
// client address) and of the route. An upgrade takes one when it is accepted for dispatch (so a burst of handshakes
// cannot overshoot); its handshake holds it until the upstream's 101, when the slot passes to the tunnel, or until it
// fails, when it is given back; a tunnel gives its slot back when it closes. RouteSlots.acquire and .release are the
// only ways in and out; the holders are upgrade/handshake.ts, then upgrade/tunnel-registry.ts.

/** A refused slot: the coded 503 and the cap that refused. */
export interface SlotRefusal {
  readonly error: Error
  readonly limit: TunnelLimitName
}

/**
 * Tunnel caps of one plugin registration: in total and per client address (0: none), and the `Retry-After` of a
 * refusal, in seconds.
 */
export class TunnelLimits {
  readonly max: number
  readonly perClient: number
  readonly retryAfter: number
  total = 0
  readonly #byClient = new Map<string, number>()

  constructor (max: number, perClient: number, retryAfter: number) {
    this.max = max
    this.perClient = perClient
    this.retryAfter = retryAfter
  }

  /** Takes a slot for `route`, or returns the refusal. */
  acquire (route: RouteSlots, client: string): SlotRefusal | null {
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

  release (route: RouteSlots, client: string): void {
    this.total--
    route.live--
    if (this.perClient === 0) return
    const mine = (this.#byClient.get(client) as number) - 1
    if (mine === 0) this.#byClient.delete(client)
    else this.#byClient.set(client, mine)
  }
}

/**
 * The tunnel slots of one route: live tunnels and handshakes in flight, its cap (0: none), and the registration's
 * caps they also count against. A route and its `upgradeUpstream` twin share one: the cap covers its upgrades
 * wherever they go.
 */
export class RouteSlots {
  live = 0
  readonly max: number
  readonly limits: TunnelLimits

  constructor (max: number, limits: TunnelLimits) {
    this.max = max
    this.limits = limits
  }

  /** Takes a slot for `client` (an upgrade accepted for dispatch), or returns the refusal. */
  acquire (client: string): SlotRefusal | null {
    return this.limits.acquire(this, client)
  }

  /** Gives `client`'s slot back: its handshake failed, or its tunnel closed. */
  release (client: string): void {
    this.limits.release(this, client)
  }
}

const LIMIT_TEXT: Record<TunnelLimitName, string> = { global: 'limits.tunnels', route: 'route limits.tunnels', client: 'limits.tunnelsPerClient' }

function refusal (limit: TunnelLimitName, max: number): SlotRefusal {
  return { error: new FST_WS_PROXY_TOO_MANY_TUNNELS(LIMIT_TEXT[limit], max), limit }
}
