import type { FastifyInstance } from 'fastify'
import { LATENCY_BUCKETS, type RouteStats, type MetricsSnapshot } from './stats.js'

/** What the plugin needs of a prom-client `Registry` (any prom-client version from 13 on has it). */
export interface MetricsRegistry {
  registerMetric: (metric: never) => void
  getSingleMetric: (name: string) => unknown
}

interface Labelled { reset (): void }
interface CounterLike extends Labelled { inc (labels: Record<string, string>, value: number): void }
interface GaugeLike extends Labelled { set (labels: Record<string, string>, value: number): void }
interface HistogramLike { labels (...values: string[]): { observe (value: number): void } }
interface PromClient {
  Counter: new (config: object) => CounterLike
  Gauge: new (config: object) => GaugeLike
  Histogram: new (config: object) => HistogramLike
  register: MetricsRegistry & { metrics (): Promise<string>, contentType: string }
}

const ROUTE = ['route', 'upstream']

/**
 * Exports the counters through prom-client, loaded only when `metrics` is set (it is an optional peer dependency).
 * Counters and gauges are filled from a snapshot at scrape time (their `collect`), so the hot path only ever
 * increments plain fields; only the latency histogram observes per response.
 */
export async function exportMetrics (fastify: FastifyInstance, snapshot: () => MetricsSnapshot,
  options: { registry: MetricsRegistry | null, path: string | null, prefix: string }): Promise<((route: RouteStats) => void) | null> {
  let prom: PromClient
  try {
    prom = await import('prom-client') as unknown as PromClient
  /* c8 ignore next 3: prom-client is installed wherever the tests run; users without it get this message */
  } catch (err) {
    throw new Error('fastify-ws-proxy: `metrics` needs prom-client: npm install prom-client', { cause: err })
  }
  const registry = (options.registry ?? prom.register) as PromClient['register']
  const name = (suffix: string): string => options.prefix + suffix
  if (options.path !== null) {
    fastify.get(options.path, async (_request, reply) => {
      reply.type(registry.contentType)
      return await registry.metrics()
    })
  }
  // Several registrations on one Fastify instance share one set of totals: the first one exports them.
  if (registry.getSingleMetric(name('tunnels')) !== undefined) return null
  const registers = [registry]
  const fill = (metric: Labelled, each: (route: MetricsSnapshot['routes'][number], labels: Record<string, string>) => void): void => {
    metric.reset()
    for (const route of snapshot().routes) each(route, { route: route.route, upstream: route.upstream })
  }
  const gauge = (suffix: string, help: string, each: (r: MetricsSnapshot['routes'][number], l: Record<string, string>, m: GaugeLike) => void): void => {
    const metric: GaugeLike = new prom.Gauge({ name: name(suffix), help, labelNames: ROUTE, registers, collect () { fill(metric, (r, l) => each(r, l, metric)) } })
  }
  const counter = (suffix: string, help: string, extra: string[], each: (r: MetricsSnapshot['routes'][number], l: Record<string, string>, m: CounterLike) => void): void => {
    const metric: CounterLike = new prom.Counter({ name: name(suffix), help, labelNames: [...ROUTE, ...extra], registers, collect () { fill(metric, (r, l) => each(r, l, metric)) } })
  }
  gauge('tunnels', 'Live tunnels.', (r, l, m) => m.set(l, r.tunnels.live))
  counter('tunnels_opened_total', 'Tunnels opened (upstream answered 101).', [], (r, l, m) => m.inc(l, r.tunnels.opened))
  counter('tunnels_closed_total', 'Tunnels closed, by reason.', ['reason'], (r, l, m) => {
    for (const [reason, n] of Object.entries(r.tunnels.closed)) m.inc({ ...l, reason }, n)
  })
  counter('tunnels_rejected_total', 'Upgrades refused by a tunnel limit (503), by limit.', ['limit'], (r, l, m) => {
    for (const [limit, n] of Object.entries(r.tunnels.rejected)) m.inc({ ...l, limit }, n)
  })
  counter('tunnel_bytes_total', 'Bytes through tunnels, by direction (live tunnels included).', ['direction'], (r, l, m) => {
    m.inc({ ...l, direction: 'from_client' }, r.tunnels.bytesFromClient)
    m.inc({ ...l, direction: 'from_upstream' }, r.tunnels.bytesFromUpstream)
  })
  counter('requests_total', 'Answers to clients, by status class (the proxy\'s own refusals included).', ['status_class'], (r, l, m) => {
    for (const [statusClass, n] of Object.entries(r.requests)) m.inc({ ...l, status_class: statusClass }, n)
  })
  counter('upstream_errors_total', 'Upstream failures, by kind.', ['kind'], (r, l, m) => {
    for (const [kind, n] of Object.entries(r.upstreamErrors)) m.inc({ ...l, kind }, n)
  })
  counter('upstream_retries_total', 'Attempts made again on another server of the group.', [], (r, l, m) => m.inc(l, r.retries))
  const latency = new prom.Histogram({
    name: name('response_head_seconds'),
    help: 'Time from dispatch to the upstream response head (101 included).',
    labelNames: ROUTE,
    buckets: [...LATENCY_BUCKETS],
    registers
  })
  // One bound child per route: a response costs one observe, not a label lookup.
  return (route: RouteStats): void => {
    const child = latency.labels(route.route, route.upstream)
    route.observeLatency = (seconds) => child.observe(seconds)
  }
}
