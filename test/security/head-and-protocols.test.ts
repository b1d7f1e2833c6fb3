// Unit tests of src/security/request-head.ts (the field cap within Node's limit, headRefusal's answers) and
// src/security/upgrade-protocols.ts (the allow-list, h2c refused by default, malformed values refused).
import t from 'tap'
import type { IncomingMessage } from 'node:http'
import { effectiveHeaderCap, headRefusal, NODE_HEADER_FIELDS } from '../../src/security/request-head.js'
import { UpgradeProtocols } from '../../src/security/upgrade-protocols.js'

t.test('effectiveHeaderCap: limits.headers within what Node keeps in request.headers', async (t) => {
  t.equal(NODE_HEADER_FIELDS, 1000)
  t.equal(effectiveHeaderCap(100, null), 100, 'maxHeadersCount unset (null): Node keeps 1000')
  t.equal(effectiveHeaderCap(100, undefined), 100, 'no server (inject)')
  t.equal(effectiveHeaderCap(5000, null), 1000, 'Node\'s 1000 caps a larger limit')
  t.equal(effectiveHeaderCap(5000, undefined), 1000)
  t.equal(effectiveHeaderCap(100, 20), 20, 'a smaller maxHeadersCount caps it')
  t.equal(effectiveHeaderCap(100, 2000), 100)
  t.equal(effectiveHeaderCap(5000, 2000), 2000)
  t.equal(effectiveHeaderCap(5000, 0), 5000, 'maxHeadersCount 0: Node keeps every field')
  t.equal(effectiveHeaderCap(100, -1), 100, 'a negative count is Node\'s default')
  t.equal(effectiveHeaderCap(5000, -1), 1000)
})

function head (raw: string[], version = '1.1'): IncomingMessage {
  const headers: Record<string, string> = {}
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase()
    // Node keeps the first Host (and every singleton); other fields are joined.
    if (headers[name] === undefined) headers[name] = raw[i + 1]
    else if (name !== 'host') headers[name] += ', ' + raw[i + 1]
  }
  const [major, minor] = version.split('.').map(Number)
  return { rawHeaders: raw, headers, httpVersionMajor: major, httpVersionMinor: minor } as unknown as IncomingMessage
}

function refusal (req: IncomingMessage, cap = 100): { code: string, statusCode: number, message: string } | null {
  return headRefusal(req, cap) as { code: string, statusCode: number, message: string } | null
}

t.test('headRefusal: the field count', async (t) => {
  const fields = (n: number): string[] => ['Host', 'h', ...Array.from({ length: n - 1 }, (_, i) => [`x-${i}`, 'v']).flat()]
  t.equal(refusal(head(fields(10)), 10), null, 'exactly the cap')
  t.match(refusal(head(fields(11)), 10), { code: 'FST_WS_PROXY_TOO_MANY_HEADERS', statusCode: 431, message: 'Request has more than 10 header fields' })
})

t.test('headRefusal: singleton fields and Host', async (t) => {
  t.equal(refusal(head(['Host', 'h', 'Accept', 'a', 'accept', 'b', 'Cookie', 'a', 'Cookie', 'b', 'Authorization', 'x'])), null)
  t.match(refusal(head(['Host', 'h', 'Authorization', 'a', 'AUTHORIZATION', 'b'])), { code: 'FST_WS_PROXY_DUPLICATE_HEADER', statusCode: 400, message: 'Request has more than one authorization header' })
  for (const name of ['age', 'content-type', 'etag', 'expires', 'from', 'if-modified-since', 'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'proxy-authorization', 'referer', 'retry-after', 'server', 'user-agent']) {
    t.match(refusal(head(['Host', 'h', name, '1', name, '2'])), { code: 'FST_WS_PROXY_DUPLICATE_HEADER', message: `Request has more than one ${name} header` }, name)
  }
  t.equal(refusal(head(['Host', 'h', 'User-Agent', 'u', 'Referer', 'r', 'Content-Type', 'c'])), null, 'each once')
  t.match(refusal(head(['Host', 'a', 'Host', 'b'])), { code: 'FST_WS_PROXY_BAD_HOST', statusCode: 400, message: 'Invalid Host header: more than one' })
  t.match(refusal(head(['host', 'a', 'User-Agent', 'u', 'HOST', 'a'])), { message: 'Invalid Host header: more than one' })
  t.match(refusal(head(['Host', ''])), { code: 'FST_WS_PROXY_BAD_HOST', message: 'Invalid Host header: empty' })
  t.match(refusal(head(['Host', 'a b'])), { message: 'Invalid Host header: not a valid host[:port]' })
  t.match(refusal(head([])), { code: 'FST_WS_PROXY_BAD_HOST', message: 'Invalid Host header: missing' }, 'HTTP/1.1 without Host')
  t.match(refusal(head([], '2.0')), { message: 'Invalid Host header: missing' }, 'any other version without Host')
  t.equal(refusal(head([], '1.0')), null, 'HTTP/1.0 may omit Host')
  t.match(refusal(head(['Host', 'a/b'], '1.0')), { message: 'Invalid Host header: not a valid host[:port]' }, 'but not send a bad one')
})

t.test('UpgradeProtocols: default is every well-formed protocol but h2c', async (t) => {
  const all = new UpgradeProtocols(null)
  for (const value of ['websocket', 'WebSocket', 'WEBSOCKET', 'foo', 'foo/1', 'Foo, bar/2', ' foo , bar ', 'TLS/1.0', 'websocketx', 'h2', 'h2cx', 'x-h2c']) t.ok(all.allows(value), JSON.stringify(value))
  for (const value of ['h2c', 'H2C', 'h2c/1', 'websocket, h2c', 'foo, H2C/2', '', ' ', 'web socket', 'foo,', ',foo', 'foo/', '/1', 'foo/1/2', 'foo/1 2', '"foo"', 'foo;v=1', 'föo', 'foo\tbar']) t.notOk(all.allows(value), JSON.stringify(value))
})

t.test('UpgradeProtocols: an allow-list, any case, versions ignored', async (t) => {
  const ws = new UpgradeProtocols(['WebSocket'])
  t.ok(ws.allows('websocket'))
  t.ok(ws.allows('WEBSOCKET'))
  t.ok(ws.allows('websocket/13'), 'a version is allowed with its name')
  t.notOk(ws.allows('foo'))
  t.notOk(ws.allows('websocket, foo'), 'every protocol listed must be allowed')
  t.notOk(ws.allows('h2c'))
  const other = new UpgradeProtocols(['foo', 'h2c'])
  t.notOk(other.allows('websocket'), 'websocket too is refused when not listed')
  t.ok(other.allows('foo, h2c/1'), 'h2c only when listed')
  t.ok(other.allows('FOO'))
  t.notOk(other.allows('foo bar'))
  const none = new UpgradeProtocols([])
  t.notOk(none.allows('websocket'), 'an empty list refuses every upgrade')
  t.notOk(none.allows('foo'))
})
