import t from 'tap'
import Fastify from 'fastify'
import wsProxyPlugin, { type WsProxyOptions } from '../src/index.js'

// Header templates, maps and rewrite rules are compiled at register time: every malformed one fails `ready()`
// with FST_WS_PROXY_INVALID_OPTION naming the option path and saying what is wrong.

interface Invalid { name: string, options: Record<string, unknown>, path: string, reason: RegExp }

const up = 'http://127.0.0.1:1'
const route = (extra: Record<string, unknown>): Record<string, unknown> => ({ routes: [{ prefix: '/a/', upstream: up }, { prefix: '/b/', upstream: up, ...extra }] })

const invalid: Invalid[] = [
  { name: 'an unknown variable', options: { upstream: up, requestHeaders: { set: { 'X-A': '$nope' } } }, path: 'requestHeaders/set/X-A', reason: /^unknown variable \$nope; a request header is \$http_<name> \(\$http_nope for Nope\), a map's name is declared in `maps`$/ },
  { name: 'an unknown variable in a route', options: route({ requestHeaders: { add: { 'X-A': ['ok', 'a ${typo}'] } } }), path: 'routes/1/requestHeaders/add/X-A/1', reason: /^unknown variable \$typo; a request header is \$http_<name>/ },
  { name: 'an unclosed ${', options: { upstream: up, requestHeaders: { set: { 'X-A': 'a ${host' } } }, path: 'requestHeaders/set/X-A', reason: /^malformed "\$\{\.\.\.\}" at character 3 of "a \$\{host"$/ },
  { name: 'a lone $', options: { upstream: up, requestHeaders: { set: { 'X-A': 'costs $5 or $' } } }, path: 'requestHeaders/set/X-A', reason: /^\$5 is a regex capture, only available in a map value of a "~" key or in a route whose host has a "~regex"$/ },
  { name: 'a trailing $', options: { upstream: up, requestHeaders: { set: { 'X-A': 'costs $' } } }, path: 'requestHeaders/set/X-A', reason: /^a "\$" at character 7 of "costs \$" starts no variable .*write "\$\$" for a literal "\$"$/ },
  { name: 'a response variable in a request header', options: { upstream: up, requestHeaders: { set: { 'X-A': '$upstream_status' } } }, path: 'requestHeaders/set/X-A', reason: /^\$upstream_status is only available in response header templates$/ },
  { name: 'an upstream header in a request header', options: { upstream: up, requestHeaders: { set: { 'X-A': '$upstream_http_server' } } }, path: 'requestHeaders/set/X-A', reason: /only available in response header templates$/ },
  { name: 'an invalid header name', options: { upstream: up, requestHeaders: { set: { 'X A': 'x' } } }, path: 'requestHeaders/set/"X A"', reason: /^"X A" is not a valid header name \(RFC 9110 token\)$/ },
  { name: 'an invalid header name to remove', options: { upstream: up, requestHeaders: { remove: ['ok', 'bad:name'] } }, path: 'requestHeaders/remove/1', reason: /not a valid header name/ },
  { name: 'a constant value with CRLF', options: { upstream: up, requestHeaders: { set: { 'X-A': 'a\r\nInjected: 1' } } }, path: 'requestHeaders/set/X-A', reason: /characters not allowed in an HTTP field value/ },
  { name: 'a constant response value with NUL', options: { upstream: up, responseHeaders: { add: { 'X-A': 'a\u0000' } } }, path: 'responseHeaders/add/X-A', reason: /characters not allowed/ },
  { name: 'Content-Length', options: { upstream: up, requestHeaders: { set: { 'Content-Length': '5' } } }, path: 'requestHeaders/set/Content-Length', reason: /^content-length is managed by the proxy/ },
  { name: 'Transfer-Encoding removed', options: { upstream: up, requestHeaders: { remove: ['Transfer-Encoding'] } }, path: 'requestHeaders/remove/0', reason: /^transfer-encoding is managed by the proxy .* cannot be removed$/ },
  { name: 'Expect', options: { upstream: up, requestHeaders: { add: { Expect: '100-continue' } } }, path: 'requestHeaders/add/Expect', reason: /^expect is managed by the proxy/ },
  { name: 'Host added', options: { upstream: up, requestHeaders: { add: { Host: 'x' } } }, path: 'requestHeaders/add/Host', reason: /^host can only be `set`/ },
  { name: 'Upgrade removed', options: { upstream: up, requestHeaders: { remove: ['upgrade'] } }, path: 'requestHeaders/remove/0', reason: /^upgrade can only be `set`/ },
  { name: 'a header set twice', options: { upstream: up, requestHeaders: { set: { 'X-A': '1', 'x-a': '2' } } }, path: 'requestHeaders/set/x-a', reason: /^header x-a is set twice/ },
  { name: 'a header set and removed', options: { upstream: up, requestHeaders: { set: { 'X-A': '1' }, remove: ['x-a'] } }, path: 'requestHeaders/remove/0', reason: /^header x-a is both written and removed$/ },
  { name: 'a Sec-WebSocket-* response header', options: { upstream: up, responseHeaders: { hide: ['Sec-WebSocket-Protocol'] } }, path: 'responseHeaders/hide/0', reason: /^sec-websocket-protocol belongs to the WebSocket handshake and cannot be hidden$/ },
  { name: 'a Sec-WebSocket-* response header written', options: { upstream: up, responseHeaders: { set: { 'Sec-WebSocket-Accept': 'x' } } }, path: 'responseHeaders/set/Sec-WebSocket-Accept', reason: /^sec-websocket-accept belongs to the WebSocket handshake and cannot be written$/ },
  { name: 'Transfer-Encoding hidden', options: { upstream: up, responseHeaders: { hide: ['Transfer-Encoding'] } }, path: 'responseHeaders/hide/0', reason: /^transfer-encoding is managed by the proxy .* cannot be hidden$/ },
  { name: 'a response header set and hidden', options: route({ responseHeaders: { set: { 'X-A': '1' }, hide: ['x-a'] } }), path: 'routes/1/responseHeaders/hide/0', reason: /^header x-a is both written and hidden$/ },
  { name: 'Connection in a response', options: { upstream: up, responseHeaders: { set: { Connection: 'close' } } }, path: 'responseHeaders/set/Connection', reason: /^connection is managed by the proxy/ },
  { name: 'requestHeaders with an unknown key', options: { upstream: up, requestHeaders: { append: {} } }, path: 'requestHeaders/append', reason: /^unexpected property/ },
  { name: 'a set value that is not a string', options: { upstream: up, requestHeaders: { set: { 'X-A': 5 } } }, path: 'requestHeaders/set/X-A', reason: /^expected string, got 5$/ },
  { name: 'a map regex that does not compile', options: { upstream: up, maps: { m: { source: '$uri', cases: { '~^/(a': 'x' } } } }, path: 'maps/m/cases/"~^/(a"', reason: /^the regular expression does not compile: / },
  { name: 'a map value using a capture its regex lacks', options: { upstream: up, maps: { m: { source: '$uri', cases: { '~^/a': '$1' } } } }, path: 'maps/m/cases/"~^/a"', reason: /^\$1: the regex has only 0 capture group\(s\)$/ },
  { name: 'a capture outside a regex key', options: { upstream: up, maps: { m: { source: '$uri', cases: { exact: '$1' } } } }, path: 'maps/m/cases/exact', reason: /regex capture/ },
  { name: 'a map source with an unknown variable', options: { upstream: up, maps: { m: { source: '$nope' } } }, path: 'maps/m/source', reason: /^unknown variable \$nope; a request header/ },
  { name: 'a map default with a response variable', options: { upstream: up, maps: { m: { source: '$uri', default: '$upstream_status' } } }, path: 'maps/m/default', reason: /only available in response header templates/ },
  { name: 'a map shadowing a built-in', options: { upstream: up, maps: { host: { source: '$uri' } } }, path: 'maps/host', reason: /^\$host is a built-in variable; choose another map name$/ },
  { name: 'a map shadowing a built-in family', options: { upstream: up, maps: { http_x: { source: '$uri' } } }, path: 'maps/http_x', reason: /built-in variable/ },
  { name: 'a map name with a dash', options: { upstream: up, maps: { 'my-map': { source: '$uri' } } }, path: 'maps/my-map', reason: /^a map name must be letters, digits and "_"/ },
  { name: 'maps in a cycle', options: { upstream: up, maps: { a: { source: '$b' }, b: { source: '$c' }, c: { source: 'x', default: '$a' } } }, path: 'maps/a', reason: /^maps refer to each other in a cycle: \$a → \$b → \$c → \$a$/ },
  { name: 'a map without a source', options: { upstream: up, maps: { m: { cases: {} } } }, path: 'maps/m/source', reason: /^expected required property/ },
  { name: 'a map on a route', options: route({ maps: {} }), path: 'routes/1/maps', reason: /^unexpected property/ },
  { name: 'a redirect regex that does not compile', options: { upstream: up, redirect: [{ from: '~(', to: '/' }] }, path: 'redirect/0/from', reason: /does not compile/ },
  { name: 'a redirect to with a capture its regex lacks', options: route({ redirect: ['default', { from: '~^http://x/', to: '/$2' }] }), path: 'routes/1/redirect/1/to', reason: /^\$2: the regex has only 0 capture group/ },
  { name: 'a redirect "true"', options: { upstream: up, redirect: true }, path: 'redirect', reason: /^expected union value, got true$/ },
  { name: 'a cookie path rule with an unknown variable', options: route({ cookiePath: [{ from: '/', to: '$nah' }] }), path: 'routes/1/cookiePath/0/to', reason: /^unknown variable \$nah; a request header/ },
  { name: 'a constant redirect target with LF', options: { upstream: up, redirect: [{ from: '/', to: '/a\nb' }] }, path: 'redirect/0/to', reason: /characters not allowed/ },
  { name: 'upgradeUpstream is not a URL', options: route({ upgradeUpstream: 'ws://x' }), path: 'routes/1/upgradeUpstream', reason: /^expected string to match/ },
  { name: 'upgradeUpstream with a path and rewritePrefix', options: route({ upgradeUpstream: 'http://x/ws/', rewritePrefix: '/b/' }), path: 'routes/1/rewritePrefix', reason: /^upgradeUpstream has a path/ },
  { name: 'upgradeUpstream with a query', options: route({ upgradeUpstream: 'http://x/?a=1' }), path: 'routes/1/upgradeUpstream', reason: /must not have a query/ },
  { name: 'a cookie domain without to', options: { upstream: up, cookieDomain: [{ from: 'x' }] }, path: 'cookieDomain/0/to', reason: /^expected required property/ }
]

for (const c of invalid) {
  t.test(`register fails: ${c.name}`, async (t) => {
    const app = Fastify()
    t.teardown(() => app.close())
    app.register(wsProxyPlugin, c.options as WsProxyOptions)
    const err = await app.ready().then(() => null, (e: unknown) => e as Error & { code?: string })
    if (err === null) {
      t.fail('register succeeded')
      return
    }
    t.equal(err.code, 'FST_WS_PROXY_INVALID_OPTION')
    const head = `Invalid fastify-ws-proxy option ${c.path}: `
    t.equal(err.message.slice(0, head.length), head, `names the option path (${err.message})`)
    t.match(err.message.slice(head.length), c.reason)
  })
}

t.test('typed options: a full header configuration type-checks and registers', async (t) => {
  const options: WsProxyOptions = {
    upstream: up,
    maps: { connection_upgrade: { source: '$http_upgrade', default: 'upgrade', cases: { '': 'close' } } },
    requestHeaders: { set: { Upgrade: '$http_upgrade', Connection: '$connection_upgrade', Host: '$host' }, add: { 'X-Ids': ['$request_id'] }, remove: ['cookie'] },
    responseHeaders: { hide: ['server'], set: { 'X-Up': '$upstream_addr' } },
    redirect: ['default', { from: '~^http://(.*)$', to: 'https://$1' }],
    cookieDomain: [{ from: 'internal', to: '$host' }],
    cookiePath: [{ from: '/', to: '/app/' }]
  }
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(wsProxyPlugin, options)
  t.pass('registered')
})
