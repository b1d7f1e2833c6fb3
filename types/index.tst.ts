import Fastify from 'fastify'
import { expect, test } from 'tstyche'
import wsProxyPlugin, {
  FST_WS_PROXY_CONNECT_FAILED,
  FST_WS_PROXY_INVALID_OPTION,
  type PoolOptions,
  type ProxiedMethod,
  type RouteOptions,
  type TimeoutOptions,
  type WsProxyOptions,
  type WsProxyState
} from '../src/index.js'

const app = Fastify()

test('minimal options: the single-route shorthand', () => {
  expect(app.register).type.toBeCallableWith(wsProxyPlugin, { upstream: 'http://127.0.0.1:3000' })
  expect<WsProxyOptions>().type.toBeAssignableFrom({ upstream: 'http://127.0.0.1:3000' })
})

test('full options', () => {
  const options: WsProxyOptions = {
    routes: [
      { prefix: '/chat/', upstream: 'http://127.0.0.1:3000/', timeouts: { read: 120_000 }, methods: ['GET', 'PROPFIND'] },
      { prefix: '/api/', upstream: 'http://127.0.0.1:4000', rewritePrefix: '/v2/', preserveHost: true, xForwarded: false, upgrade: false }
    ],
    timeouts: { connect: 5_000, read: 60_000 },
    pool: { connections: 64, keepAliveTimeout: 10_000 },
    prefix: '/gateway'
  }
  expect(app.register).type.toBeCallableWith(wsProxyPlugin, options)
})

test('unknown keys and wrong types are rejected', () => {
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 1 })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://x', timeouts: { read: '60s' } })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://x', preserveHost: 'yes' })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { routes: [{ prefix: '/a/' }] })
  expect<RouteOptions>().type.not.toBeAssignableFrom({ prefix: '/a/', upstream: 'http://x', proxyPass: 'http://y' })
  expect<WsProxyOptions>().type.not.toBeAssignableFrom({ upstream: 'http://x', readTimeout: 5 })
})

test('the exported option types are what the schema says', () => {
  expect<TimeoutOptions>().type.toBe<{ connect?: number, read?: number, send?: number, idle?: number, maxTunnelLifetime?: number }>()
  expect<PoolOptions>().type.toBe<{ connections?: number, keepAliveTimeout?: number }>()
  expect<RouteOptions['prefix']>().type.toBe<string>()
  expect<RouteOptions['upstream']>().type.toBe<string>()
  expect<RouteOptions['rewritePrefix']>().type.toBe<string | undefined>()
  expect<ProxiedMethod>().type.toBeAssignableFrom('PROPFIND' as const)
  expect<ProxiedMethod>().type.not.toBeAssignableFrom('get' as const)
  expect<ProxiedMethod>().type.not.toBeAssignableFrom('CONNECT' as const)
})

test('the decoration and the errors are typed', () => {
  expect(app.wsProxy).type.toBe<WsProxyState>()
  expect(app.wsProxy.tunnels).type.toBe<number>()
  expect(app.wsProxy.upstreamConnections).type.toBe<number>()
  expect(new FST_WS_PROXY_CONNECT_FAILED('http://x', 'ECONNREFUSED').code).type.toBe<'FST_WS_PROXY_CONNECT_FAILED'>()
  expect(new FST_WS_PROXY_INVALID_OPTION('a', 'b')).type.toBeAssignableTo<Error>()
})
