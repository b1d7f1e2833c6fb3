import type { IncomingMessage } from 'node:http'
import Fastify from 'fastify'
import { expect, test } from 'tstyche'
import wsProxyPlugin, {
  FST_WS_PROXY_BAD_HOST, FST_WS_PROXY_METHOD_NOT_ALLOWED, FST_WS_PROXY_TOO_MANY_HEADERS, wsProxyRewriteUrl, type RouteOptions, type WsProxyOptions
} from '../src/index.js'

// The security options and the URL normaliser, as a user types them (docs/security.md).
const app = Fastify()

test('wsProxyRewriteUrl is a Fastify rewriteUrl', () => {
  expect(wsProxyRewriteUrl).type.toBe<(req: IncomingMessage) => string>()
  expect(Fastify).type.toBeCallableWith({ rewriteUrl: wsProxyRewriteUrl })
})

test('upgradeProtocols, exposeErrors and limits.headers, derived from the schema', () => {
  expect<WsProxyOptions['upgradeProtocols']>().type.toBe<string[] | undefined>()
  expect<RouteOptions['upgradeProtocols']>().type.toBe<string[] | undefined>()
  expect<WsProxyOptions['exposeErrors']>().type.toBe<boolean | undefined>()
  expect<NonNullable<WsProxyOptions['limits']>['headers']>().type.toBe<number | undefined>()
  expect(app.register).type.toBeCallableWith(wsProxyPlugin, {
    upstream: 'http://x', exposeErrors: true, limits: { headers: 200 }, upgradeProtocols: ['websocket']
  })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://x', upgradeProtocols: 'websocket' })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://x', exposeErrors: 'yes' })
})

test('a route\'s host and config', () => {
  expect<RouteOptions['host']>().type.toBe<string | string[] | undefined>()
  expect<RouteOptions['config']>().type.toBe<Record<string, unknown> | undefined>()
  expect(app.register).type.toBeCallableWith(wsProxyPlugin, {
    routes: [
      { prefix: '/', upstream: 'http://api', host: 'api.example.com', config: { rateLimit: { max: 10 } } },
      { prefix: '/', upstream: 'http://chat', host: ['*.chat.example.com', '~^c\\d+\\.example\\.com$'] }
    ]
  })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { routes: [{ prefix: '/', upstream: 'http://x', host: 8080 }] })
})

test('the refusals before any hook carry their status as literal types', () => {
  expect(new FST_WS_PROXY_TOO_MANY_HEADERS(100).statusCode).type.toBe<431>()
  expect(new FST_WS_PROXY_BAD_HOST('empty').statusCode).type.toBe<400>()
  expect(new FST_WS_PROXY_METHOD_NOT_ALLOWED('CONNECT').statusCode).type.toBe<405>()
})
