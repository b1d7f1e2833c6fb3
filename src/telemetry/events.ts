import type { TunnelCloseReason } from '../upgrade/tunnel.js'

/** A tunnel opened: the upstream answered 101 and bytes flow both ways. */
export interface TunnelOpenEvent {
  /** The route's full prefix. */
  readonly route: string
  /** The upstream origin (`unix:/path` for a unix socket). */
  readonly upstream: string
  /** The client address as Fastify sees it (`request.ip`, so `trustProxy` applies). */
  readonly client: string
  /** The protocol switched to (the upstream's `Upgrade`), e.g. `websocket`. */
  readonly protocol: string
  /** The client's HTTP version: `2` for a WebSocket over HTTP/2 (RFC 8441), else `1.1`. */
  readonly httpVersion: '1.1' | '2'
  /** Epoch milliseconds. */
  readonly openedAt: number
}

/** A tunnel closed, with why and how much it carried. */
export interface TunnelCloseEvent extends TunnelOpenEvent {
  readonly reason: TunnelCloseReason
  readonly durationMs: number
  readonly bytesFromClient: number
  readonly bytesFromUpstream: number
}

/** The events of `fastify.wsProxy` (a typed Node EventEmitter). Listeners run synchronously: keep them short. */
export interface WsProxyEvents {
  tunnelOpen: [TunnelOpenEvent]
  tunnelClose: [TunnelCloseEvent]
}

/** Levels for the one line logged per closed tunnel; `silent` logs nothing. */
export const TUNNEL_LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const
export type TunnelLogLevel = typeof TUNNEL_LOG_LEVELS[number]
