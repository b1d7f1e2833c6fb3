import Fastify, { type FastifyRequest } from 'fastify'
import { expect, test } from 'tstyche'
import wsProxyPlugin, {
  DYNAMIC_ORIGINS,
  FST_WS_PROXY_BAD_REWRITTEN_HEADER,
  FST_WS_PROXY_GET_UPSTREAM_FAILED,
  FST_WS_PROXY_REWRITE_HEADERS_FAILED,
  type GetUpstream,
  type ResolvedRoute,
  type RewriteRequestHeaders,
  type RouteOptions,
  type UpstreamRequestHeaders
} from '../src/index.js'

// routes[].getUpstream and routes[].rewriteRequestHeaders: typed, the request a FastifyRequest.
const app = Fastify()

test('the escape hatches are typed functions of a FastifyRequest', () => {
  expect<GetUpstream>().type.toBe<(request: FastifyRequest) => string | undefined>()
  expect<UpstreamRequestHeaders>().type.toBe<Record<string, string | string[]>>()
  expect<Parameters<RewriteRequestHeaders>>().type.toBe<[request: FastifyRequest, headers: UpstreamRequestHeaders]>()
  expect<ReturnType<RewriteRequestHeaders>>().type.toBe<Record<string, string | readonly string[] | undefined>>()
  expect<RouteOptions['getUpstream']>().type.toBe<GetUpstream | undefined>()
  expect<RouteOptions['rewriteRequestHeaders']>().type.toBe<RewriteRequestHeaders | undefined>()
  expect<ResolvedRoute['getUpstream']>().type.toBe<GetUpstream | null>()
  expect(DYNAMIC_ORIGINS).type.toBe<64>()
})

test('register accepts them on a route; wrong shapes do not type-check', () => {
  expect(app.register).type.toBeCallableWith(wsProxyPlugin, {
    routes: [{
      prefix: '/api/',
      upstream: 'http://api',
      getUpstream: (request: FastifyRequest) => request.headers['x-tenant'] === 'b' ? 'http://127.0.0.1:3001' : undefined,
      rewriteRequestHeaders: (request: FastifyRequest, headers: UpstreamRequestHeaders) => ({ ...headers, 'x-user': request.id })
    }]
  })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { routes: [{ prefix: '/', upstream: 'http://x', getUpstream: () => 42 }] })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { routes: [{ prefix: '/', upstream: 'http://x', getUpstream: 'http://y' }] })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { routes: [{ prefix: '/', upstream: 'http://x', rewriteRequestHeaders: () => ({ 'x-n': 5 }) }] })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://x', getUpstream: () => undefined })
})

test('their errors: literal codes and statuses', () => {
  expect(new FST_WS_PROXY_GET_UPSTREAM_FAILED('/', 'x').code).type.toBe<'FST_WS_PROXY_GET_UPSTREAM_FAILED'>()
  expect(new FST_WS_PROXY_GET_UPSTREAM_FAILED('/', 'x').statusCode).type.toBe<500>()
  expect(new FST_WS_PROXY_REWRITE_HEADERS_FAILED('/', 'x').statusCode).type.toBe<500>()
  expect(new FST_WS_PROXY_BAD_REWRITTEN_HEADER('/', 'x').statusCode).type.toBe<400>()
})
