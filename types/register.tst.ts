import Fastify from 'fastify'
import { expect, test } from 'tstyche'
import wsProxyPlugin, {
  FST_WS_PROXY_BAD_PATH,
  FST_WS_PROXY_BAD_RESPONSE,
  FST_WS_PROXY_CONNECT_FAILED,
  FST_WS_PROXY_CONNECT_TIMEOUT,
  FST_WS_PROXY_INVALID_OPTION,
  FST_WS_PROXY_READ_TIMEOUT,
  FST_WS_PROXY_RESPONSE_ABORTED,
  FST_WS_PROXY_TUNNEL_READ_TIMEOUT,
  FST_WS_PROXY_UPSTREAM_RESET,
  resolveOptions,
  type ResolvedOptions
} from '../src/index.js'

// Complements index.tst.ts: what `register` itself accepts, level by level, and the error constructors' types.
const app = Fastify()

test("register accepts Fastify's own register options beside the plugin's", () => {
  expect(app.register).type.toBeCallableWith(wsProxyPlugin, { upstream: 'http://x', prefix: '/p', logLevel: 'warn' })
  expect(app.register).type.toBeCallableWith(wsProxyPlugin, { routes: [{ prefix: '/a/', upstream: 'http://x' }], logLevel: 'debug' })
})

test('register rejects an unknown key at every level', () => {
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://x', proxyPass: 'http://y' })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { routes: [{ prefix: '/a/', upstream: 'http://x', websocket: true }] })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://x', timeouts: { write: 1 } })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://x', pool: { pipelining: 10 } })
})

test('register rejects wrong types at every level', () => {
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { routes: { prefix: '/a/', upstream: 'http://x' } })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { routes: [{ prefix: '/a/', upstream: 'http://x', upgrade: 'false' }] })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { routes: [{ prefix: 1, upstream: 'http://x' }] })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://x', methods: 'GET' })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://x', timeouts: 60_000 })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://x', pool: { connections: '128' } })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: new URL('http://x') })
})

test('resolveOptions takes anything (it validates) and returns the resolved options', () => {
  // The CLI hands it a parsed JSON file.
  expect(resolveOptions).type.toBeCallableWith(JSON.parse('{}') as unknown)
  expect(resolveOptions({ upstream: 'http://x' })).type.toBe<ResolvedOptions>()
  expect(resolveOptions({ upstream: 'http://x' }).routes[0].readTimeout).type.toBe<number>()
})

test('every error constructor is exported with its code and status as literal types', () => {
  expect(new FST_WS_PROXY_INVALID_OPTION('routes/0/prefix', 'expected string').code).type.toBe<'FST_WS_PROXY_INVALID_OPTION'>()
  expect(new FST_WS_PROXY_CONNECT_FAILED('http://x', 'ECONNREFUSED').statusCode).type.toBe<502>()
  expect(new FST_WS_PROXY_UPSTREAM_RESET('http://x', 'ECONNRESET').statusCode).type.toBe<502>()
  expect(new FST_WS_PROXY_BAD_RESPONSE('http://x', 'bad upgrade').statusCode).type.toBe<502>()
  expect(new FST_WS_PROXY_RESPONSE_ABORTED('http://x', 'other side closed').statusCode).type.toBe<502>()
  expect(new FST_WS_PROXY_CONNECT_TIMEOUT('http://x', 1000).statusCode).type.toBe<504>()
  expect(new FST_WS_PROXY_READ_TIMEOUT('http://x', 1000).statusCode).type.toBe<504>()
  expect(new FST_WS_PROXY_TUNNEL_READ_TIMEOUT('http://x', 1000).statusCode).type.toBe<504>()
  expect(new FST_WS_PROXY_BAD_PATH().code).type.toBe<'FST_WS_PROXY_BAD_PATH'>()
  expect(new FST_WS_PROXY_BAD_PATH().statusCode).type.toBe<400>()
  expect(new FST_WS_PROXY_CONNECT_FAILED('http://x', 'ECONNREFUSED', { cause: new Error('refused') })).type.toBeAssignableTo<Error>()
})
