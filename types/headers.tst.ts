import Fastify from 'fastify'
import { expect, test } from 'tstyche'
import wsProxyPlugin, {
  type MapOptions,
  type RequestHeaderOptions,
  type ResponseHeaderOptions,
  type RewriteRuleOptions,
  type RouteOptions,
  type WsProxyOptions
} from '../src/index.js'

// The header options: templates are strings, lists are string arrays, maps are plugin-level only.
const app = Fastify()

test('the header option types are derived from the schema', () => {
  expect<RequestHeaderOptions>().type.toBe<{ set?: Record<string, string>, add?: Record<string, string | string[]>, remove?: string[] }>()
  expect<ResponseHeaderOptions>().type.toBe<{ set?: Record<string, string>, add?: Record<string, string | string[]>, hide?: string[] }>()
  expect<RewriteRuleOptions>().type.toBe<{ from: string, to: string }>()
  expect<MapOptions>().type.toBe<{ source: string, cases?: Record<string, string>, default?: string }>()
  expect<RouteOptions['redirect']>().type.toBe<false | Array<'default' | { from: string, to: string }> | undefined>()
})

test('the seeds\' configuration type-checks as options', () => {
  expect(app.register).type.toBeCallableWith(wsProxyPlugin, {
    maps: { connection_upgrade: { source: '$http_upgrade', default: 'upgrade', cases: { '': 'close' } } },
    routes: [{
      prefix: '/chat/',
      upstream: 'http://backend',
      requestHeaders: { set: { Upgrade: '$http_upgrade', Connection: '$connection_upgrade', Host: '$host' } },
      responseHeaders: { hide: ['server'] },
      redirect: ['default', { from: '~^http://(.*)$', to: 'https://$1' }],
      cookiePath: [{ from: '/', to: '/chat/' }]
    }]
  })
})

test('wrong shapes are rejected', () => {
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://x', requestHeaders: { set: { 'X-A': 1 } } })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://x', requestHeaders: { remove: 'cookie' } })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://x', responseHeaders: { remove: ['server'] } })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://x', redirect: true })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://x', redirect: ['off'] })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://x', maps: { m: { cases: {} } } })
  expect<RouteOptions>().type.not.toBeAssignableFrom({ prefix: '/a/', upstream: 'http://x', maps: {} })
  expect<WsProxyOptions>().type.not.toBeAssignableFrom({ upstream: 'http://x', cookieDomain: [{ from: 'a' }] })
})

test('a route may send its upgrades to another upstream', () => {
  expect<RouteOptions['upgradeUpstream']>().type.toBe<string | undefined>()
  expect<WsProxyOptions>().type.not.toBeAssignableFrom({ upstream: 'http://x', upgradeUpstream: 'http://y' })
})
