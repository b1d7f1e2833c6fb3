import Fastify from 'fastify'
import { expect, test } from 'tstyche'
import wsProxyPlugin, { FST_WS_PROXY_ORIGIN_FORBIDDEN, resolveOptions, type RouteOptions, type WsProxyOptions } from '../src/index.js'

// `allowedOrigins`: a list of origin strings or `false`, at the plugin level and on a route.
const app = Fastify()

test('the option type is derived from the schema, the same at both levels', () => {
  expect<RouteOptions['allowedOrigins']>().type.toBe<string[] | false | undefined>()
  expect<WsProxyOptions['allowedOrigins']>().type.toBe<string[] | false | undefined>()
})

test('a plugin-wide list, a route\'s own list and a route that turns the check off are accepted', () => {
  expect(app.register).type.toBeCallableWith(wsProxyPlugin, { upstream: 'http://x', allowedOrigins: ['https://app.example.com'] })
  expect(app.register).type.toBeCallableWith(wsProxyPlugin, {
    allowedOrigins: ['https://app.example.com', 'https://*.example.org:8443'],
    routes: [
      { prefix: '/ws/', upstream: 'http://x' },
      { prefix: '/admin/', upstream: 'http://x', allowedOrigins: ['https://admin.example.com'] },
      { prefix: '/public/', upstream: 'http://x', allowedOrigins: false },
      { prefix: '/cli/', upstream: 'http://x', allowedOrigins: [] }
    ]
  })
})

test('other shapes are rejected', () => {
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://x', allowedOrigins: 'https://app.example.com' })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://x', allowedOrigins: true })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://x', allowedOrigins: [new URL('https://app.example.com')] })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { routes: [{ prefix: '/a/', upstream: 'http://x', allowedOrigins: [8080] }] })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://x', allowedOrigin: ['https://app.example.com'] })
})

test('the resolved route holds the compiled list, or null', () => {
  const [route] = resolveOptions({ upstream: 'http://x', allowedOrigins: ['https://app.example.com'] }).routes
  expect(route.allowedOrigins?.allows('https://app.example.com')).type.toBe<boolean | undefined>()
})

test('the refusal is a 403 with its code as literal types', () => {
  expect(new FST_WS_PROXY_ORIGIN_FORBIDDEN().statusCode).type.toBe<403>()
  expect(new FST_WS_PROXY_ORIGIN_FORBIDDEN().code).type.toBe<'FST_WS_PROXY_ORIGIN_FORBIDDEN'>()
})
