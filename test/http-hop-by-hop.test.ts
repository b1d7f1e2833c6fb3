import t from 'tap'
import { gateway, httpUpstream, origin, waitFor, type Seen } from './helpers/servers.js'
import { request, values } from './helpers/clients.js'
import { fixedResponseUpstream, within } from './helpers/http-faults.js'

// RFC 9110 §7.6.1: connection-specific fields, and every field the Connection header names, are not forwarded,
// in either direction. End-to-end fields are, with duplicates and the sender's name case. `http.request` is the
// client because undici refuses to send most of these headers.

/** The header names of a raw [name, value, ...] list, lowercased, in order. */
const names = (raw: string[]): string[] => raw.filter((_v, i) => i % 2 === 0).map((n) => n.toLowerCase())

t.test('request: hop-by-hop fields and those named by Connection are not sent upstream; end-to-end ones are', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, { upstream: origin(upstream) })
  const res = await request(`${url}/h`, {
    method: 'POST',
    // A header array makes Node send no Host of its own.
    headers: [
      'Host', 'gateway.test',
      'Connection', 'keep-alive, X-Foo, x-other',
      'X-Foo', 'named by Connection',
      'X-OTHER', 'named in another case',
      'Keep-Alive', 'timeout=5, max=100',
      'Proxy-Connection', 'keep-alive',
      'TE', 'gzip',
      'Trailer', 'X-Checksum',
      'Upgrade', 'foo',
      'X-MiXeD-Case', 'kept',
      'Accept', 'text/html',
      'Accept', 'application/json',
      'Content-Type', 'text/plain',
      'Transfer-Encoding', 'chunked'
    ],
    body: 'body'
  })
  t.equal(res.status, 200)
  const seen = JSON.parse(res.body.toString()) as Seen
  const got = names(seen.rawHeaders)
  for (const dropped of ['x-foo', 'x-other', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'transfer-encoding']) {
    t.notOk(got.includes(dropped), `${dropped} is not sent upstream`)
  }
  // undici states its own connection management; none of the client's tokens survive.
  t.same(values(seen.rawHeaders, 'connection'), ['keep-alive'])
  t.same(values(seen.rawHeaders, 'x-mixed-case'), ['kept'])
  t.ok(seen.rawHeaders.includes('X-MiXeD-Case'), 'the client\'s header-name case is kept')
  t.same(values(seen.rawHeaders, 'accept'), ['text/html', 'application/json'], 'duplicates are kept, in order')
  t.equal(seen.headers['content-type'], 'text/plain')
  // The client's chunked framing is not forwarded: undici frames the body itself (here with Content-Length, as the
  // small body had fully arrived when it was dispatched; see http-streaming for a chunked one).
  t.equal(seen.bodyLength, 4)
  t.equal(seen.method, 'POST')
})

t.test('request: `Upgrade` without `Connection: upgrade` is a plain request; the Upgrade field is dropped', async (t) => {
  const upstream = await httpUpstream(t)
  const { url, app } = await gateway(t, { upstream: origin(upstream) })
  const res = await request(`${url}/plain`, { headers: { upgrade: 'websocket', connection: 'keep-alive' } })
  t.equal(res.status, 200)
  const seen = JSON.parse(res.body.toString()) as Seen
  t.equal(seen.headers.upgrade, undefined)
  t.equal(seen.headers.connection, 'keep-alive')
  t.equal(seen.url, '/plain')
  t.equal(app.wsProxy.tunnels, 0)
})

t.test('request: `TE: trailers` is kept (gRPC-style upstreams), `TE: gzip` and `TE: gzip, trailers` are dropped', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, { upstream: origin(upstream) })
  const trailers = JSON.parse((await request(`${url}/te`, { headers: { te: ' Trailers ' } })).body.toString()) as Seen
  t.equal(trailers.headers.te, 'trailers')
  const gzip = JSON.parse((await request(`${url}/te`, { headers: { te: 'gzip' } })).body.toString()) as Seen
  t.equal(gzip.headers.te, undefined)
  const both = JSON.parse((await request(`${url}/te`, { headers: { te: 'gzip, trailers' } })).body.toString()) as Seen
  t.equal(both.headers.te, undefined)
})

t.test('request: `Expect: 100-continue` is answered by the gateway and not sent upstream; the body still arrives', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, { upstream: origin(upstream) })
  const res = await request(`${url}/expect`, { method: 'PUT', headers: { expect: '100-continue', 'content-length': '11' }, body: 'hello world' })
  t.equal(res.status, 200)
  const seen = JSON.parse(res.body.toString()) as Seen
  t.equal(seen.headers.expect, undefined)
  t.equal(seen.bodyLength, 11)
})

t.test('request: two Connection lines both count, and an empty Connection value names nothing', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, { upstream: origin(upstream) })
  const res = await request(`${url}/c`, {
    headers: ['Host', 'gateway.test', 'Connection', 'X-One', 'Connection', ' , X-Two ,', 'X-One', '1', 'X-Two', '2', 'X-Three', '3']
  })
  const seen = JSON.parse(res.body.toString()) as Seen
  t.same(names(seen.rawHeaders).filter((n) => n.startsWith('x-') && !n.startsWith('x-forwarded')), ['x-three'])
  const empty = await request(`${url}/c`, { headers: ['Host', 'gateway.test', 'Connection', '', 'X-One', '1'] })
  t.same(values((JSON.parse(empty.body.toString()) as Seen).rawHeaders, 'x-one'), ['1'])
})

// A response carrying every hop-by-hop field, written byte for byte by a `net` upstream.
const HOP_RESPONSE =
  'HTTP/1.1 200 OK\r\n' +
  'Connection: close, X-Bar\r\n' +
  'X-Bar: named by Connection\r\n' +
  'Keep-Alive: timeout=5\r\n' +
  'Proxy-Connection: keep-alive\r\n' +
  'Transfer-Encoding: chunked\r\n' +
  'Trailer: X-Checksum\r\n' +
  'Upgrade: h2c\r\n' +
  'X-MiXeD-Case: Yes\r\n' +
  'Set-Cookie: a=1; Path=/\r\n' +
  'Set-Cookie: b=2; HttpOnly\r\n' +
  'content-type: text/plain; charset=latin1\r\n' +
  'X-Latin1: caf\xe9\r\n' +
  '\r\n' +
  '5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n'

t.test('response: hop-by-hop fields and those named by Connection do not reach the client; end-to-end ones do, as sent', async (t) => {
  const upstream = await fixedResponseUpstream(t, HOP_RESPONSE, true)
  const { url, app } = await gateway(t, { upstream: origin(upstream) })
  const res = await request(`${url}/r`)
  t.equal(res.status, 200)
  t.equal(res.body.toString(), 'hello world')
  const got = names(res.rawHeaders)
  for (const dropped of ['x-bar', 'keep-alive', 'proxy-connection', 'trailer', 'upgrade']) {
    t.notOk(got.includes(dropped), `${dropped} does not reach the client`)
  }
  // Node frames the relayed body itself: one chunked Transfer-Encoding, and its own Connection for the client.
  t.same(values(res.rawHeaders, 'transfer-encoding'), ['chunked'])
  t.same(values(res.rawHeaders, 'connection'), ['close'], 'the client asked for close (agent: false); the upstream\'s tokens are gone')
  t.same(values(res.rawHeaders, 'set-cookie'), ['a=1; Path=/', 'b=2; HttpOnly'], 'both Set-Cookie lines, in order')
  t.ok(res.rawHeaders.includes('X-MiXeD-Case'), 'the upstream\'s header-name case is kept')
  t.ok(res.rawHeaders.includes('content-type'), 'lowercase stays lowercase')
  t.same(values(res.rawHeaders, 'x-latin1'), ['caf\xe9'], 'a non-ASCII byte (0xE9) passes unchanged')
  t.same(res.headers['set-cookie'], ['a=1; Path=/', 'b=2; HttpOnly'])
  t.equal(res.headers['x-mixed-case'], 'Yes')
  // `Connection: close` from the upstream: undici drops the socket after the response.
  await waitFor(() => app.wsProxy.upstreamConnections === 0, 2000, 'the closed upstream connection to be dropped')
})

t.test('response: several Connection lines all count; a keep-alive upstream connection is reused', async (t) => {
  const upstream = await fixedResponseUpstream(t,
    'HTTP/1.1 200 OK\r\n' +
    'Connection: keep-alive\r\n' +
    'Connection: X-Baz\r\n' +
    'Connection: , \r\n' +
    'Connection: Keep-Alive, X-Zed\r\n' +
    'Keep-Alive: timeout=30\r\n' +
    'X-Baz: hidden\r\n' +
    'X-Zed: hidden too\r\n' +
    'X-Qux: shown\r\n' +
    'Content-Length: 2\r\n' +
    '\r\n' +
    'ok')
  const { url, app } = await gateway(t, { upstream: origin(upstream) })
  for (let i = 0; i < 2; i++) {
    const res = await request(`${url}/k`)
    t.equal(res.body.toString(), 'ok')
    t.equal(res.headers['content-length'], '2', 'Content-Length is end-to-end and kept')
    t.equal(res.headers['x-baz'], undefined)
    t.equal(res.headers['x-zed'], undefined, 'named by a later Connection line')
    t.equal(res.headers['x-qux'], 'shown')
    t.equal(res.headers['keep-alive'], undefined, 'the client asked for close, so Node sends no Keep-Alive of its own')
  }
  t.equal(upstream.accepted.length, 1, 'both requests went over one pooled connection')
  t.equal(app.wsProxy.upstreamConnections, 1)
  // Closing the gateway closes its idle pooled connections too.
  let upstreamSawClose = false
  upstream.accepted[0].on('close', () => { upstreamSawClose = true })
  await within(app.close(), 2000, 'the gateway to close')
  t.equal(app.wsProxy.upstreamConnections, 0)
  await waitFor(() => upstreamSawClose, 2000, 'the upstream to see the pooled connection close')
})
