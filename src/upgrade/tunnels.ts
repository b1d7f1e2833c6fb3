import { FST_WS_PROXY_TUNNEL_READ_TIMEOUT } from '../errors.js'
import type { Tunnel, TunnelOwner } from './tunnel.js'

/**
 * The live tunnels of one plugin registration, and their read timeout (nginx `proxy_read_timeout` on a
 * tunnel: closed when the upstream sends nothing for that long). One coarse sweep serves every tunnel, so a
 * chunk costs a boolean store and never re-arms a timer: the sweep turns `upstreamActive` into
 * "silent since" and closes what has been silent for its timeout. It fires within one tick after the deadline.
 */
export class TunnelSet implements TunnelOwner {
  readonly #live = new Set<Tunnel>()
  readonly #tick: number
  #timer: NodeJS.Timeout | null = null
  #closing = false

  /** @param shortestReadTimeout the smallest tunnel read timeout of any route, which sets the sweep's tick. */
  constructor (shortestReadTimeout: number) {
    this.#tick = Math.min(1000, Math.max(5, Math.floor(shortestReadTimeout / 10)))
  }

  get size (): number {
    return this.#live.size
  }

  add (tunnel: Tunnel): void {
    // A handshake the upstream accepted after the app began closing: its tunnel would keep server.close()
    // (which waits for every connection, upgraded ones included) waiting for as long as it lives.
    if (this.#closing) {
      tunnel.destroy('shutdown')
      return
    }
    this.#live.add(tunnel)
    if (this.#timer === null) {
      this.#timer = setInterval(sweep, this.#tick, this)
      this.#timer.unref()
    }
  }

  tunnelClosed (tunnel: Tunnel): void {
    this.#live.delete(tunnel)
    if (this.#live.size === 0 && this.#timer !== null) {
      clearInterval(this.#timer)
      this.#timer = null
    }
  }

  sweep (now: number): void {
    for (const tunnel of this.#live) {
      if (tunnel.upstreamActive) {
        tunnel.upstreamActive = false
        tunnel.silentSince = now
      } else if (now - tunnel.silentSince >= tunnel.readTimeout) {
        tunnel.log.info({ err: new FST_WS_PROXY_TUNNEL_READ_TIMEOUT(tunnel.origin, tunnel.readTimeout) }, 'tunnel read timeout')
        tunnel.destroy('read-timeout')
      }
    }
  }

  /** Destroys every live tunnel (the plugin is closing). */
  destroyAll (): void {
    this.#closing = true
    for (const tunnel of this.#live) tunnel.destroy('shutdown')
  }
}

function sweep (set: TunnelSet): void {
  set.sweep(Date.now())
}
