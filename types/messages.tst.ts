import Fastify from 'fastify'
import { expect, test } from 'tstyche'
import wsProxyPlugin, { type RouteOptions, type TunnelCloseEvent, type UpstreamGroupOptions, type WsProxyEventName, type WsProxyOptions } from '../src/index.js'

// What tsc says to a user who gets it wrong: the named types, not their 25 keys spelt out. tstyche checks that
// each @ts-expect-error below suppresses an error whose message contains the text after the directive.
const app = Fastify()

test('a misspelt plugin key is named with WsProxyOptions', () => {
  // @ts-expect-error 'tmeouts' does not exist in type 'FastifyRegisterOptions<WsProxyOptions>'
  app.register(wsProxyPlugin, { upstream: 'http://u', tmeouts: { read: 1 } })
})

test('a misspelt route key is named with RouteOptions, with the key it meant', () => {
  // @ts-expect-error 'tmeouts' does not exist in type 'RouteOptions'. Did you mean to write 'timeouts'?
  app.register(wsProxyPlugin, { routes: [{ prefix: '/a/', upstream: 'http://u', tmeouts: {} }] })
})

test('the option types are named interfaces', () => {
  expect<WsProxyOptions['routes']>().type.toBe<RouteOptions[] | undefined>()
  expect<WsProxyOptions['upstreams']>().type.toBe<Record<string, UpstreamGroupOptions> | undefined>()
  expect<RouteOptions>().type.toBeAssignableFrom({ prefix: '/a/', upstream: 'http://u' })
  expect<RouteOptions>().type.not.toBeAssignableFrom({ prefix: '/a/' })
})

test('event names are typed: listeners get their event, a misspelt name is refused by name', () => {
  expect<WsProxyEventName>().type.toBe<'tunnelOpen' | 'tunnelClose'>()
  app.wsProxy.on('tunnelClose', (event) => {
    expect(event).type.toBe<TunnelCloseEvent>()
  })
  expect(app.wsProxy.once('tunnelOpen', (event) => event.route)).type.toBe(app.wsProxy)
  // @ts-expect-error Argument of type '"tunnelClos"' is not assignable to parameter of type 'keyof WsProxyEvents'
  app.wsProxy.on('tunnelClos', () => {})
})
