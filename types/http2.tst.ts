import Fastify from 'fastify'
import { expect, test } from 'tstyche'
import wsProxyPlugin, { type TunnelCloseEvent, type TunnelOpenEvent, type WsProxyOptions } from '../src/index.js'

// HTTP/2 on the client side (docs/http2.md): the RFC 8441 switch and the tunnel events' HTTP version.
const app = Fastify()

test('http2ExtendedConnect is an optional boolean', () => {
  expect<WsProxyOptions['http2ExtendedConnect']>().type.toBe<boolean | undefined>()
  expect(app.register).type.toBeCallableWith(wsProxyPlugin, { upstream: 'http://u', http2ExtendedConnect: false })
  expect(app.register).type.not.toBeCallableWith(wsProxyPlugin, { upstream: 'http://u', http2ExtendedConnect: 'off' })
})

test('tunnel events say which HTTP version the client came over', () => {
  expect<TunnelOpenEvent['httpVersion']>().type.toBe<'1.1' | '2'>()
  expect<TunnelCloseEvent['httpVersion']>().type.toBe<'1.1' | '2'>()
  app.wsProxy.on('tunnelOpen', (event) => {
    expect(event.httpVersion).type.toBe<'1.1' | '2'>()
  })
})
