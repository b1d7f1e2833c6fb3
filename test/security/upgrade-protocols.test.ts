// `upgradeProtocols`: which protocols a client may switch to through `Upgrade`. By default every protocol but h2c
// (the h2c-smuggling vector); a refused or malformed Upgrade is proxied as a plain request without its Upgrade
// intent (HTTP2-Settings is hop-by-hop, never forwarded), so an upstream that answers 101 anyway gets a 502, and
// request-header templates cannot put the upgrade back.
import t from 'tap'
import Fastify from 'fastify'
import wsProxyPlugin, { type WsProxyOptions } from '../../src/index.js'
import { headUpstream, messages, openWs, switchingUpstream, wsHandshakeHead, wsUrl } from '../helpers/ws.js'
import { errorOf, exchange, head, recordingUpstream, upgrade } from './support.js'
import { gateway, portOf } from '../helpers/servers.js'

const SETTINGS = 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA'

/** The h2c offer curl sends, and the same without Connection naming HTTP2-Settings. */
const H2C_OFFERS: Array<[string, string]> = [
  ['h2c with Connection: Upgrade, HTTP2-Settings', head('/api/x', ['Connection: Upgrade, HTTP2-Settings', 'Upgrade: h2c', SETTINGS])],
  ['h2c with Connection: Upgrade only', head('/api/x', ['Connection: Upgrade', 'Upgrade: h2c', SETTINGS])],
  ['h2c, upper case', head('/api/x', ['Connection: upgrade', 'Upgrade: H2C', SETTINGS])]
]

t.test('h2c is proxied as a plain request: no Upgrade, no HTTP2-Settings, no upgrade Connection upstream', async (t) => {
  const upstream = await recordingUpstream(t)
  const { port } = await gateway(t, { routes: [{ prefix: '/api/', upstream: upstream.origin + '/' }] })
  for (const [name, bytes] of H2C_OFFERS) {
    const answer = await exchange(t, port, bytes, { waitClose: true })
    t.equal(answer.status, 200, name)
    t.same(JSON.parse(answer.body), { url: '/x' }, name)
    const got = upstream.arrivals[upstream.arrivals.length - 1]
    t.equal(got.kind, 'http', `${name}: not an upgrade upstream`)
    t.equal(got.headers.upgrade, undefined, name)
    t.equal(got.headers['http2-settings'], undefined, `${name}: HTTP2-Settings is hop-by-hop`)
    t.notMatch(String(got.headers.connection), /upgrade|http2-settings/i, name)
  }
  t.equal(upstream.arrivals.length, H2C_OFFERS.length)
})

t.test('HTTP2-Settings is never forwarded, even on a request that is no upgrade', async (t) => {
  const upstream = await recordingUpstream(t)
  const { port } = await gateway(t, { routes: [{ prefix: '/api/', upstream: upstream.origin + '/' }] })
  await exchange(t, port, head('/api/x', [SETTINGS, 'Connection: close']))
  t.equal(upstream.arrivals[0].headers['http2-settings'], undefined)
})

t.test('an upstream answering 101 to the de-upgraded h2c request gets a 502, no tunnel', async (t) => {
  const upstream = await switchingUpstream(t)
  const { port, app } = await gateway(t, { routes: [{ prefix: '/api/', upstream: `http://127.0.0.1:${(upstream.address() as { port: number }).port}/` }] }, {}, undefined)
  const answer = await exchange(t, port, H2C_OFFERS[0][1], { waitClose: true })
  t.equal(answer.status, 502)
  t.equal(errorOf(answer).code, 'FST_WS_PROXY_BAD_RESPONSE')
  t.equal(upstream.accepted.length, 1)
  t.notMatch(upstream.accepted[0].head, /upgrade|http2-settings/i, 'the upstream got no upgrade')
  t.equal(app.wsProxy.tunnels, 0)
})

t.test('by default any other protocol tunnels (foo), and WebSockets still echo', async (t) => {
  const upstream = await recordingUpstream(t)
  const { port, url } = await gateway(t, { routes: [{ prefix: '/api/', upstream: upstream.origin + '/' }] })
  for (const protocol of ['foo', 'foo/2', 'Foo, bar/1.1', 'h2', 'TLS/1.0']) {
    const answer = await exchange(t, port, upgrade('/api/t', [], { protocol }))
    t.equal(answer.status, 101, protocol)
    t.equal(upstream.arrivals[upstream.arrivals.length - 1].headers.upgrade, protocol, `${protocol}: forwarded as sent`)
  }
  const ws = await openWs(t, wsUrl(url, '/api/echo'))
  ws.send('ping through')
  t.equal((await messages(ws, 1))[0].data.toString(), 'ping through')
  ws.terminate()
})

t.test('odd or partly refused Upgrade values are proxied as plain requests', async (t) => {
  const upstream = await recordingUpstream(t)
  const { port } = await gateway(t, { routes: [{ prefix: '/api/', upstream: upstream.origin + '/' }] })
  for (const protocol of ['websocket, h2c', 'h2c/1', 'foo, H2C/2.0', 'web socket', 'foo,', ',foo', 'foo/', 'foo/1/2', '"foo"', 'foo;v=1', 'föo']) {
    const before = upstream.arrivals.length
    const answer = await exchange(t, port, upgrade('/api/t', [], { protocol }), { waitClose: true })
    t.equal(answer.status, 200, JSON.stringify(protocol))
    t.equal(upstream.arrivals.length, before + 1)
    const got = upstream.arrivals[before]
    t.equal(got.kind, 'http', `${JSON.stringify(protocol)}: no upgrade upstream`)
    t.equal(got.headers.upgrade, undefined)
  }
})

t.test('an allow-list on the plugin, replaced by a route\'s own', async (t) => {
  const upstream = await recordingUpstream(t)
  const options: WsProxyOptions = {
    upgradeProtocols: ['websocket'],
    routes: [
      { prefix: '/ws-only/', upstream: upstream.origin + '/' },
      { prefix: '/foo-only/', upstream: upstream.origin + '/', upgradeProtocols: ['FOO'] },
      { prefix: '/h2c/', upstream: upstream.origin + '/', upgradeProtocols: ['h2c'] }
    ]
  }
  const { port, url } = await gateway(t, options)
  const cases: Array<[string, string, number]> = [
    ['/ws-only/x', 'foo', 200],
    ['/ws-only/x', 'websocket, foo', 200],
    ['/foo-only/x', 'foo', 101],
    ['/foo-only/x', 'Foo/1.0', 101],
    ['/foo-only/x', 'foo, bar', 200],
    ['/foo-only/x', 'websocket', 200],
    ['/h2c/x', 'h2c', 101],
    ['/h2c/x', 'foo', 200]
  ]
  for (const [path, protocol, status] of cases) {
    const before = upstream.arrivals.length
    const answer = await exchange(t, port, upgrade(path, [], { protocol }), { waitClose: status !== 101 })
    t.equal(answer.status, status, `${path} ${protocol}`)
    t.equal(upstream.arrivals[before].kind, status === 101 ? 'upgrade' : 'http', `${path} ${protocol}`)
  }
  const ws = await openWs(t, wsUrl(url, '/ws-only/echo'))
  ws.send('allowed')
  t.equal((await messages(ws, 1))[0].data.toString(), 'allowed')
  ws.terminate()
  const refused = await exchange(t, port, wsHandshakeHead('/foo-only/x'), { waitClose: true })
  t.equal(refused.status, 200, 'a WebSocket handshake where only foo is allowed is a plain request')
})

t.test('request-header templates cannot smuggle an h2c upgrade', async (t) => {
  const upstream = await recordingUpstream(t)
  const { port } = await gateway(t, {
    routes: [
      { prefix: '/relay/', upstream: upstream.origin + '/', requestHeaders: { set: { Upgrade: '$http_upgrade', Connection: 'upgrade' } } },
      { prefix: '/forced/', upstream: upstream.origin + '/', requestHeaders: { set: { Upgrade: 'h2c', Connection: 'upgrade' } } }
    ]
  })
  const relayed = await exchange(t, port, head('/relay/x', ['Connection: Upgrade, HTTP2-Settings', 'Upgrade: h2c', SETTINGS]), { waitClose: true })
  t.equal(relayed.status, 200)
  const forced = await exchange(t, port, wsHandshakeHead('/forced/x'), { waitClose: true })
  t.equal(forced.status, 200, 'a WebSocket upgrade templated into h2c goes plain')
  const plain = await exchange(t, port, head('/forced/x', ['Connection: close']))
  t.equal(plain.status, 200, 'a plain request stays plain')
  t.equal(upstream.arrivals.length, 3)
  for (const got of upstream.arrivals) {
    t.equal(got.kind, 'http', got.line)
    t.notMatch(String(got.headers.upgrade), /h2c/i, `${got.line}: no h2c upstream`)
    t.equal(got.headers['http2-settings'], undefined)
  }
  // A template relaying an allowed protocol still upgrades.
  t.equal((await exchange(t, port, upgrade('/relay/x'))).status, 101)
})

t.test('upgradeProtocols is validated at register, naming the option path', async (t) => {
  const cases: Array<[WsProxyOptions, string]> = [
    [{ upstream: 'http://127.0.0.1:1', upgradeProtocols: ['bad token'] }, 'upgradeProtocols/0'],
    [{ routes: [{ prefix: '/a/', upstream: 'http://127.0.0.1:1', upgradeProtocols: ['websocket', 'foo/1'] }] }, 'routes/0/upgradeProtocols/1'],
    [{ upstream: 'http://127.0.0.1:1', upgradeProtocols: [''] }, 'upgradeProtocols/0'],
    [{ upstream: 'http://127.0.0.1:1', upgradeProtocols: ['foo', 'foo'] }, 'upgradeProtocols']
  ]
  for (const [options, path] of cases) {
    const app = Fastify()
    t.teardown(() => app.close())
    app.register(wsProxyPlugin, options)
    const err = await app.ready().then(() => null, (e: unknown) => e as Error & { code?: string })
    t.equal(err?.code, 'FST_WS_PROXY_INVALID_OPTION', path)
    t.equal(err?.message.startsWith(`Invalid fastify-ws-proxy option ${path}: `), true, `${path}: ${err?.message ?? ''}`)
  }
})

// RFC 9110 §7.8: a server must not switch to a protocol the client did not offer; an upstream that answers
// `Upgrade: foo` with `101 Upgrade: h2c` would otherwise get an h2c tunnel past the allow-list.
t.test('a 101 switching to a protocol the client did not offer (h2c) is a 502, never a tunnel', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n')
  })
  const { port } = await gateway(t, { routes: [{ prefix: '/api/', upstream: `http://127.0.0.1:${portOf(upstream)}/`, upgradeProtocols: ['foo'] }] })
  const answer = await exchange(t, port, upgrade('/api/x'))
  t.not(answer.status, 101, 'no h2c tunnel')
  t.equal(answer.status, 502, 'a bad response')
})

t.test('a 101 naming an offered protocol in its own case, or one protocol of a list offered, is a tunnel', async (t) => {
  const answers = ['FOO', 'bar/2']
  const upstream = await headUpstream(t, ({ socket }) => {
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${answers.shift() ?? ''}\r\nConnection: Upgrade\r\n\r\n`)
  })
  const { port } = await gateway(t, { routes: [{ prefix: '/api/', upstream: `http://127.0.0.1:${portOf(upstream)}/` }] })
  const cased = await exchange(t, port, upgrade('/api/x'))
  t.equal(cased.status, 101, 'foo offered, FOO answered')
  t.equal(cased.headers.upgrade, 'FOO', 'the upstream\'s Upgrade is relayed')
  const listed = await exchange(t, port, upgrade('/api/x', [], { protocol: 'foo, bar/2' }))
  t.equal(listed.status, 101, 'foo, bar/2 offered, bar/2 answered')
  t.equal(listed.headers.upgrade, 'bar/2')
})
