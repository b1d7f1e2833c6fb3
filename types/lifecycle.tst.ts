import Fastify from 'fastify'
import { Registry } from 'prom-client'
import { expect, test } from 'tstyche'
import wsProxyPlugin, {
  type HealthOptions,
  type LimitOptions,
  type MetricsOptions,
  type MetricsSnapshot,
  type PingOptions,
  type Readiness,
  type RouteLimitOptions,
  type TunnelCloseEvent,
  type DrainReason,
  type TunnelCloseReason,
  type TunnelDrainMode,
  type TunnelOpenEvent,
  type WsProxyOptions
} from '../src/index.js'

// The tunnel lifecycle's options, events and metrics, as a user's editor sees them.
const app = Fastify()

test('the lifecycle option types are derived from the schema', () => {
  expect<PingOptions>().type.toBe<{ interval: number, timeout: number }>()
  expect<RouteLimitOptions>().type.toBe<{ tunnels?: number, body?: number, responseHead?: number }>()
  expect<LimitOptions>().type.toBe<{ tunnels?: number, tunnelsPerClient?: number, retryAfter?: number, body?: number, responseHead?: number, headers?: number }>()
  expect<WsProxyOptions['tunnelLogLevel']>().type.toBe<'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent' | undefined>()
  expect<WsProxyOptions['closeGracePeriod']>().type.toBe<number | undefined>()
})

test('tuneMalloc is an optional boolean of the plugin level', () => {
  expect<WsProxyOptions['tuneMalloc']>().type.toBe<boolean | undefined>()
  expect(app.register).type.toBeCallableWith(wsProxyPlugin, { upstream: 'http://u', tuneMalloc: false })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://u', tuneMalloc: 'off' })
})

test('a prom-client Registry is accepted as metrics.registry; anything else is not', () => {
  expect(app.register).type.toBeCallableWith(wsProxyPlugin, { upstream: 'http://u', metrics: { registry: new Registry(), path: '/metrics' } })
  expect<MetricsOptions>().type.toBeAssignableFrom({ path: '/metrics', prefix: 'edge_' })
  expect<MetricsOptions>().type.not.toBeAssignableFrom({ registry: 'default' })
})

test('health endpoints: paths or false; readiness answers are typed', () => {
  expect<HealthOptions>().type.toBe<{ live?: string | false, ready?: string | false }>()
  expect(app.register).type.toBeCallableWith(wsProxyPlugin, { upstream: 'http://u', health: {} })
  expect(app.register).type.toBeCallableWith(wsProxyPlugin, { upstream: 'http://u', health: { live: '/livez', ready: false } })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://u', health: { ready: true } })
  expect<Readiness['status']>().type.toBe<'ready' | 'draining' | 'no-live-upstream'>()
  expect(app.wsProxy.markDraining()).type.toBe<void>()
  expect(app.wsProxy.draining).type.toBe<boolean>()
})

test('tunnelDrain: a mode at the plugin and per route; markDraining takes the drain\'s reason', () => {
  expect<TunnelDrainMode>().type.toBe<'immediate' | 'deadline' | 'spread'>()
  expect<WsProxyOptions['tunnelDrain']>().type.toBe<TunnelDrainMode | undefined>()
  expect(app.register).type.toBeCallableWith(wsProxyPlugin, {
    tunnelDrain: 'deadline',
    routes: [{ prefix: '/ws/', upstream: 'http://u', tunnelDrain: 'spread' }]
  })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://u', tunnelDrain: 'gradual' })
  expect<DrainReason>().type.toBe<'shutdown' | 'reload'>()
  expect(app.wsProxy.markDraining('reload')).type.toBe<void>()
  expect(app.wsProxy.markDraining).type.not.toBeCallableWith('restart')
  expect<Extract<TunnelCloseReason, 'reload' | 'shutdown'>>().type.toBe<'reload' | 'shutdown'>()
})

test('a full lifecycle configuration type-checks', () => {
  expect(app.register).type.toBeCallableWith(wsProxyPlugin, {
    timeouts: { read: 60_000, send: 60_000, idle: 300_000, maxTunnelLifetime: 3_600_000 },
    closeGracePeriod: 10_000,
    limits: { tunnels: 10_000, tunnelsPerClient: 20, retryAfter: 10, body: 10 * 1024 * 1024 },
    routes: [{ prefix: '/ws/', upstream: 'http://u', ping: { interval: 30_000, timeout: 10_000 }, limits: { tunnels: 5_000 } }]
  })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://u', ping: { interval: 1000 } })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://u', tunnelLogLevel: 'verbose' })
})

test('tunnel events are typed', () => {
  app.wsProxy.on('tunnelOpen', (event) => {
    expect(event).type.toBe<TunnelOpenEvent>()
  })
  app.wsProxy.on('tunnelClose', (event) => {
    expect(event).type.toBe<TunnelCloseEvent>()
    expect(event.reason).type.toBe<TunnelCloseReason>()
    expect(event.bytesFromClient).type.toBe<number>()
  })
  expect(app.wsProxy.on).type.not.toBeCallableWith('tunnelOpened', () => {})
})

test('the metrics snapshot is typed', () => {
  const snapshot = app.wsProxy.metrics()
  expect(snapshot).type.toBe<MetricsSnapshot>()
  expect(snapshot.routes[0].requests['2xx']).type.toBe<number>()
  expect(snapshot.routes[0].tunnels.closed['idle-timeout']).type.toBe<number>()
  expect(snapshot.routes[0].upstreamErrors['connect-failed']).type.toBe<number>()
})
