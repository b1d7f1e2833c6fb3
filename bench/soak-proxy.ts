// The soak's proxy, in its own process (so its memory and event-loop figures are its own): the plugin in a Fastify
// app, one route to a least-conn group of upstreams A and B. It counts every tunnel's open and close from
// `app.wsProxy` events, by upstream life (warm-up; A; B before the kill, B1; B after it, B2) and by the soak phase the
// close happened in, and measures event-loop delay with perf_hooks.
// Started first, then told where the upstreams are: `listen { a, b, failTimeout }` answers { port }.
import Fastify from 'fastify'
import type { AddressInfo } from 'node:net'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import wsProxyPlugin, { type TunnelCloseReason } from '../src/index.js'
import { TUNNEL_CLOSE_REASONS } from '../src/telemetry/events.js'
import { announce, collectGarbage, serve } from './soak-rpc.js'

const app = Fastify({ logger: false })
let phase = 'warm-up'
let warmedUpAt = Infinity
let killedAt = Infinity
const life = (upstream: string, openedAt: number): string =>
  openedAt < warmedUpAt ? 'warm-up' : upstream === originA ? 'A' : openedAt < killedAt ? 'B1' : 'B2'
const opened: Record<string, number> = {}
// `${phase} ${life} ${reason}` → tunnels closed.
const closed: Record<string, number> = {}
const known = new Set<string>(TUNNEL_CLOSE_REASONS)
let originA = ''

/** Registers the plugin in front of the two upstreams and listens; the process is started before they exist. */
async function listen (urlA: string, urlB: string, failTimeout: number): Promise<number> {
  originA = new URL(urlA).origin
  await app.register(wsProxyPlugin, {
    tunnelLogLevel: 'silent',
    // Timers a production gateway would set; `read` far beyond the soak, since idle tunnels' upstreams say nothing.
    timeouts: { read: 3_600_000, send: 60_000, idle: 3_600_000, maxTunnelLifetime: 86_400_000 },
    // Keep-alive pings to every client during the soak: their pongs must never reach an upstream as data.
    ping: { interval: 15_000, timeout: 10_000 },
    upstreams: {
      soak: {
        servers: [{ url: urlA, failTimeout }, { url: urlB, failTimeout }],
        balance: 'least-conn'
      }
    },
    routes: [{ prefix: '/', upstream: 'http://soak' }]
  })
  app.wsProxy.on('tunnelOpen', (event) => {
    const key = life(event.upstream, event.openedAt)
    opened[key] = (opened[key] ?? 0) + 1
  })
  app.wsProxy.on('tunnelClose', (event) => {
    // A reason outside the documented list (or none) is counted as such, and fails the soak.
    const reason: TunnelCloseReason | 'none' | 'unknown' = event.reason == null ? 'none' : known.has(event.reason) ? event.reason : 'unknown'
    const key = `${phase} ${life(event.upstream, event.openedAt)} ${reason}`
    closed[key] = (closed[key] ?? 0) + 1
  })
  await app.listen({ port: 0, host: '127.0.0.1', backlog: 4096 })
  return (app.server.address() as AddressInfo).port
}

// The histogram holds the time between two ticks of a RESOLUTION ms timer: the delay is what exceeds RESOLUTION.
const RESOLUTION = 10
const delay = monitorEventLoopDelay({ resolution: RESOLUTION })
delay.enable()
const ms = (ns: number): number => Math.max(0, ns / 1e6 - RESOLUTION)

serve({
  listen: async (args) => ({ port: await listen(String(args.a), String(args.b), Number(args.failTimeout)) }),
  /** A new phase; `open` ends the warm-up, `killed` marks the moment B dies (B tunnels opened before it are B1). */
  phase: (args) => {
    phase = String(args.name)
    if (phase === 'open') warmedUpAt = Date.now()
    if (phase === 'killed') killedAt = Date.now()
  },
  resetDelay: () => { delay.reset() },
  stats: (args) => {
    if (args.gc === true) collectGarbage()
    const memory = process.memoryUsage()
    return {
      rss: memory.rss,
      heapUsed: memory.heapUsed,
      live: app.wsProxy.tunnels,
      opened,
      closed,
      delay: { p50: ms(delay.percentile(50)), p99: ms(delay.percentile(99)), max: ms(delay.max), mean: ms(delay.mean), samples: delay.count, resolution: RESOLUTION },
      metrics: app.wsProxy.metrics().routes.map(({ route, upstream, requests, upstreamErrors, retries, tunnels }) =>
        ({ route, upstream, requests, upstreamErrors, retries, tunnels })),
      servers: app.wsProxy.upstreams().flatMap((group) => group.servers.map(({ url, state, liveTunnels, failures }) => ({ url, state, liveTunnels, failures })))
    }
  }
})
announce({})
