import { TUNNEL_CLOSE_REASONS, type TunnelCloseReason } from './events.js'

/** The tunnel caps, as refusals are counted in metrics: in total, per route, per client address. */
export const TUNNEL_LIMITS = ['global', 'route', 'client'] as const
/** Which cap refused a tunnel. */
export type TunnelLimitName = typeof TUNNEL_LIMITS[number]

/** What went wrong with an upstream, by the coded error it became. */
export type UpstreamErrorKind = 'connect-failed' | 'connect-timeout' | 'read-timeout' | 'send-timeout' | 'reset' | 'bad-response' | 'aborted' |
  'no-live-upstream'

export const UPSTREAM_ERROR_KINDS: readonly UpstreamErrorKind[] = ['connect-failed', 'connect-timeout', 'read-timeout', 'send-timeout',
  'reset', 'bad-response', 'aborted', 'no-live-upstream']

const KIND_OF_CODE: Record<string, UpstreamErrorKind> = {
  FST_WS_PROXY_CONNECT_FAILED: 'connect-failed',
  FST_WS_PROXY_CONNECT_TIMEOUT: 'connect-timeout',
  FST_WS_PROXY_READ_TIMEOUT: 'read-timeout',
  FST_WS_PROXY_SEND_TIMEOUT: 'send-timeout',
  FST_WS_PROXY_UPSTREAM_RESET: 'reset',
  FST_WS_PROXY_BAD_RESPONSE: 'bad-response',
  FST_WS_PROXY_RESPONSE_ABORTED: 'aborted',
  FST_WS_PROXY_NO_LIVE_UPSTREAM: 'no-live-upstream'
}

export type StatusClass = '1xx' | '2xx' | '3xx' | '4xx' | '5xx'
export const STATUS_CLASSES: readonly StatusClass[] = ['1xx', '2xx', '3xx', '4xx', '5xx']

/** Upper bounds (seconds) of the response-head latency histogram: prom-client's defaults. */
/** Upper bounds (seconds) of the response-head latency histogram, in metrics() and Prometheus alike. */
export const LATENCY_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/** Cumulative histogram counts, as Prometheus has them: `counts[i]` responses took at most `buckets[i]` seconds. */
export interface LatencyHistogram {
  readonly buckets: readonly number[]
  readonly counts: number[]
  count: number
  /** Seconds. */
  sum: number
}

/** The counters of one route toward one upstream or group (a route with `upgradeUpstream` has two). */
export interface RouteMetrics {
  readonly route: string
  readonly upstream: string
  /** Answers sent to clients by status class (101 counts as 1xx; the proxy's own 4xx/5xx included). */
  readonly requests: Record<StatusClass, number>
  /** Answers that failed for good, by kind (attempts retried on another server are not counted here). */
  readonly upstreamErrors: Record<UpstreamErrorKind, number>
  /** Attempts made again on another server of the group (nginx `proxy_next_upstream`). */
  readonly retries: number
  /** Time from dispatch to the upstream's response head (101 included). */
  readonly responseHead: LatencyHistogram
  readonly tunnels: {
    live: number
    opened: number
    readonly closed: Record<TunnelCloseReason, number>
    readonly rejected: Record<TunnelLimitName, number>
    /** Bytes through tunnels each way, live ones included. */
    bytesFromClient: number
    bytesFromUpstream: number
  }
}

/** `fastify.wsProxy.metrics()`: every route of every registration in the context. */
export interface MetricsSnapshot {
  readonly routes: RouteMetrics[]
}

function zeros<K extends string> (keys: readonly K[]): Record<K, number> {
  const record = {} as Record<K, number>
  for (const key of keys) record[key] = 0
  return record
}

/** Per-bucket counts summed upward, as Prometheus has them (the count above every bucket left out). */
function cumulative (counts: readonly number[]): number[] {
  const out = counts.slice(0, -1)
  for (let i = 1; i < out.length; i++) out[i] += out[i - 1]
  return out
}

/**
 * The counters of one route proxy, updated in place on the hot path (plain field increments, no lookups);
 * bytes of live tunnels are added when a snapshot is taken, so a chunk costs nothing here.
 */
export class RouteStats {
  readonly route: string
  readonly upstream: string
  readonly requests = zeros(STATUS_CLASSES)
  readonly upstreamErrors = zeros(UPSTREAM_ERROR_KINDS)
  /**
   * Not cumulative here: `counts[i]` answers fell in bucket i alone, the last entry (one past the buckets) those above
   * every bucket, so an answer costs one increment; snapshot() cumulates.
   */
  readonly latency: LatencyHistogram = { buckets: LATENCY_BUCKETS, counts: [0, ...LATENCY_BUCKETS.map(() => 0)], count: 0, sum: 0 }
  readonly closed = zeros(TUNNEL_CLOSE_REASONS)
  readonly rejected = zeros(TUNNEL_LIMITS)
  opened = 0
  live = 0
  retries = 0
  /** Bytes of closed tunnels; live ones are summed by the owner at snapshot time. */
  bytesFromClient = 0
  bytesFromUpstream = 0
  /** Extra observer of head latencies (prom-client's histogram) when metrics are exported. */
  observeLatency: ((seconds: number) => void) | null = null

  constructor (route: string, upstream: string) {
    this.route = route
    this.upstream = upstream
  }

  answered (status: number): void {
    const index = Math.floor(status / 100) - 1
    if (index >= 0 && index < 5) this.requests[STATUS_CLASSES[index]]++
  }

  upstreamError (err: Error): void {
    const kind = KIND_OF_CODE[(err as Error & { code: string }).code]
    if (kind !== undefined) this.upstreamErrors[kind]++
  }

  head (seconds: number): void {
    const latency = this.latency
    latency.count++
    latency.sum += seconds
    const buckets = latency.buckets
    // From the smallest bucket: a typical answer stops at the first compare.
    let i = 0
    while (i < buckets.length && seconds > buckets[i]) i++
    latency.counts[i]++
    if (this.observeLatency !== null) this.observeLatency(seconds)
  }

  snapshot (liveFromClient: number, liveFromUpstream: number): RouteMetrics {
    return {
      route: this.route,
      upstream: this.upstream,
      requests: { ...this.requests },
      upstreamErrors: { ...this.upstreamErrors },
      retries: this.retries,
      responseHead: { buckets: this.latency.buckets, counts: cumulative(this.latency.counts), count: this.latency.count, sum: this.latency.sum },
      tunnels: {
        live: this.live,
        opened: this.opened,
        closed: { ...this.closed },
        rejected: { ...this.rejected },
        bytesFromClient: this.bytesFromClient + liveFromClient,
        bytesFromUpstream: this.bytesFromUpstream + liveFromUpstream
      }
    }
  }
}
