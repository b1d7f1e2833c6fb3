import type { LogLevel } from './log-levels.js'

/**
 * Why a tunnel ended, as logged, counted in metrics and given to `tunnelClose` listeners. When the proxy ends a
 * WebSocket tunnel itself (a timer, `shutdown`, `reload`), the same string is the reason of its Close 1001 frames.
 */
export const TUNNEL_CLOSE_REASONS = ['client-closed', 'upstream-closed', 'client-error', 'upstream-error',
  'read-timeout', 'send-timeout', 'idle-timeout', 'lifetime', 'ping-timeout', 'shutdown', 'reload'] as const
export type TunnelCloseReason = typeof TUNNEL_CLOSE_REASONS[number]

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
export type TunnelLogLevel = LogLevel
