import Fastify from 'fastify'
import { expect, test } from 'tstyche'
import wsProxyPlugin, {
  type AttemptFailure,
  type BalanceMethod,
  type HostResolver,
  type ServerInfo,
  type ServerOptions,
  type ServerState,
  type ServerUpdate,
  type TlsOptions,
  type UpstreamGroupApi,
  type UpstreamGroupInfo,
  type UpstreamGroupOptions
} from '../src/index.js'

// Upstream groups as a user's editor sees them: options derived from the schema, and the run-time API.
const app = Fastify()

test('server and group option types are derived from the schema', () => {
  expect<ServerOptions>().type.toBe<{ url: string, weight?: number, maxFails?: number, failTimeout?: number, backup?: boolean, down?: boolean }>()
  expect<BalanceMethod>().type.toBe<'round-robin' | 'least-conn' | 'ip-hash' | 'hash'>()
  expect<AttemptFailure>().type.toBe<'error' | 'timeout' | 'invalid_header' | 'http_500' | 'http_502' | 'http_503' | 'http_504' | 'http_403' | 'http_404' | 'http_429'>()
  expect<TlsOptions>().type.toBe<{ ca?: string | string[], cert?: string, key?: string, servername?: string, rejectUnauthorized?: boolean }>()
  expect<UpstreamGroupOptions['resolve']>().type.toBe<{ interval: number, family?: 0 | 4 | 6, resolver?: HostResolver } | undefined>()
  expect<UpstreamGroupOptions['healthCheck']>().type.toBeAssignableFrom({ path: '/health', status: [200, 299] as [number, number] })
})

test('a full group configuration type-checks; mistakes do not', () => {
  expect(app.register).type.toBeCallableWith(wsProxyPlugin, {
    tls: { ca: 'PEM' },
    upstreams: {
      chat: {
        servers: [{ url: 'https://10.0.0.1:8443', weight: 2 }, { url: 'https://10.0.0.9:8443', backup: true }],
        balance: 'hash',
        hash: '$cookie_session',
        consistent: true,
        failOn: ['error', 'timeout', 'http_502'],
        nextUpstream: { on: ['error', 'timeout'], tries: 2, timeout: 3000 },
        healthCheck: { path: '/health', interval: 5000 },
        tls: { servername: 'chat.internal' },
        resolve: { interval: 30_000, resolver: async (hostname: string) => [hostname] }
      }
    },
    routes: [{ prefix: '/chat/', upstream: 'https://chat' }]
  })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://u', upstreams: { a: { servers: [{ url: 'http://x', weight: '2' }] } } })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://u', upstreams: { a: { servers: [{ url: 'http://x' }], balance: 'random' } } })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://u', upstreams: { a: { servers: [{ url: 'http://x' }], failOn: ['http_501'] } } })
})

test('the run-time API: introspection and membership changes', () => {
  expect(app.wsProxy.upstreams()).type.toBe<UpstreamGroupInfo[]>()
  expect(app.wsProxy.group('chat')).type.toBe<UpstreamGroupApi>()
  const group = app.wsProxy.group('chat')
  expect(group.servers()).type.toBe<ServerInfo[]>()
  expect<ServerInfo['state']>().type.toBe<ServerState>()
  expect<ServerState>().type.toBe<'up' | 'down' | 'failed' | 'unhealthy' | 'draining'>()
  expect(group.add({ url: 'http://10.0.0.3:8080', weight: 2 })).type.toBe<ServerInfo>()
  expect(group.add).type.not.toBeCallableWith({ weight: 2 })
  expect(group.remove('http://10.0.0.3:8080')).type.toBe<boolean>()
  expect(group.drain('http://10.0.0.3:8080')).type.toBe<boolean>()
  expect(group.update('http://10.0.0.3:8080', { weight: 5, draining: false })).type.toBe<boolean>()
  expect<ServerUpdate>().type.not.toBeAssignableFrom({ url: 'http://elsewhere' })
  expect(group.resolve()).type.toBe<Promise<void>>()
})
