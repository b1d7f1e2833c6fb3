// routes[].rewriteRequestHeaders (JavaScript API): the upstream request's headers (lower-case names, repeated fields as
// arrays, after the header rules) rewritten by code, for requests and upgrades. Its result is checked as any header
// the proxy writes: a name that is not a token or a value with CR, LF, NUL or another control is a 400
// (FST_WS_PROXY_BAD_REWRITTEN_HEADER) and nothing is sent; Content-Length, Expect and hop-by-hop fields stay the
// proxy's; a throw or a result that is not headers is a 500 (FST_WS_PROXY_REWRITE_HEADERS_FAILED), never a crash.
import t from 'tap'
import type { IncomingMessage } from 'node:http'
import type { RewriteRequestHeaders, UpstreamRequestHeaders } from '../src/index.js'
import { gateway, httpUpstream, logCapture, origin, recordUnhandled, wsUpstream, type Seen } from './helpers/servers.js'
import { request, seenOf, values } from './helpers/clients.js'
import { messages, openWs, unexpectedResponse, wsUrl } from './helpers/ws.js'

t.test('after the header rules: add, change, remove, repeat; framing and hop-by-hop fields stay the proxy\'s', async (t) => {
  const seen: Seen[] = []
  const upstream = await httpUpstream(t, (req, res) => {
    let bodyLength = 0
    req.on('data', (chunk: Buffer) => { bodyLength += chunk.length })
    req.on('end', () => {
      seen.push({ method: req.method as string, url: req.url as string, headers: req.headers, rawHeaders: req.rawHeaders, bodyLength })
      res.end('ok')
    })
  })
  let given: UpstreamRequestHeaders | null = null
  let prototype: unknown
  const rewrite: RewriteRequestHeaders = (request, headers) => {
    given = { ...headers }
    prototype = Object.getPrototypeOf(headers)
    headers['x-user'] = `user-of-${request.headers['x-token'] as string}`
    delete headers['x-token']
    headers['x-multi'] = ['one', 'two']
    headers.host = 'internal.test'
    headers['x-gone'] = undefined as unknown as string
    return { ...headers, 'content-length': '999', 'transfer-encoding': 'chunked', connection: 'close', upgrade: 'h2c', expect: '100-continue', 'keep-alive': 'timeout=1' }
  }
  const { url } = await gateway(t, {
    requestHeaders: { set: { 'x-rule': 'from-rule' } },
    routes: [{ prefix: '/', upstream: origin(upstream), rewriteRequestHeaders: rewrite }]
  })
  const answer = await request(url + '/p', { method: 'POST', headers: { 'x-token': 'abc', 'x-gone': 'bye', 'x-dup': ['1', '2', '3'], 'content-type': 'text/plain' }, body: 'hello' })
  t.equal(answer.status, 200)
  t.match(given, { 'x-rule': 'from-rule', 'x-token': 'abc', 'x-dup': ['1', '2', '3'], 'content-length': '5', host: /^127\.0\.0\.1:\d+$/ }, 'it sees the built headers, the rules applied')
  t.equal(prototype, null, 'a null-prototype object: a client field named __proto__ is a field like any other')
  const [got] = seen
  t.equal(got.bodyLength, 5)
  t.match(got.headers, { 'x-user': 'user-of-abc', 'x-rule': 'from-rule', host: 'internal.test', 'content-length': '5', 'x-dup': '1, 2, 3' })
  t.same(values(got.rawHeaders, 'x-multi'), ['one', 'two'], 'an array is one field per value')
  t.same([got.headers['x-token'], got.headers['x-gone'], got.headers['transfer-encoding'], got.headers.upgrade, got.headers.expect, got.headers['keep-alive']],
    [undefined, undefined, undefined, undefined, undefined, undefined], 'removed, and the proxy\'s fields not taken from it')
  t.not(got.headers.connection, 'close')
})

t.test('header injection through the function: 400, coded, nothing sent, the bytes never echoed', async (t) => {
  const upstream = await httpUpstream(t)
  const hits: string[] = []
  upstream.on('request', (req: IncomingMessage) => { hits.push(req.url as string) })
  const unhandled = recordUnhandled(t)
  const { url } = await gateway(t, {
    exposeErrors: false,
    routes: [{
      prefix: '/',
      upstream: origin(upstream),
      // A value taken from a percent-decoded query: %0d%0a becomes CR LF.
      rewriteRequestHeaders: (request, headers) => {
        const q = request.query as Record<string, string>
        if (q.value !== undefined) headers['x-from-query'] = decodeURIComponent(q.value)
        if (q.name !== undefined) headers[decodeURIComponent(q.name)] = 'v'
        if (q.array !== undefined) headers['x-array'] = ['fine', decodeURIComponent(q.array)]
        return headers
      }
    }]
  })
  const attempts = [
    ['value', 'a%0d%0aX-Injected: 1'],
    ['value', 'a%0aX-Injected: 1'],
    ['value', 'nul%00byte'],
    ['value', 'unicode%E2%80%A8sep'],
    ['array', 'b%0d%0aX-Injected: 1'],
    ['name', 'x-a%0d%0aX-Injected'],
    ['name', 'with space'],
    ['name', '']
  ]
  for (const [key, text] of attempts) {
    const answer = await request(`${url}/x?${key}=${text.replaceAll(' ', '%20')}`)
    t.equal(answer.status, 400, `${key}=${text}`)
    const body = JSON.parse(answer.body.toString()) as { code: string, message: string }
    t.equal(body.code, 'FST_WS_PROXY_BAD_REWRITTEN_HEADER')
    t.match(body.message, key === 'name' ? /returned an invalid header field: a name that is not an RFC 9110 token$/ : /header x-(from-query|array): a value with CR, LF, NUL/)
    t.notMatch(body.message, /Injected|\r|\n|\0/, 'nothing of the bytes is echoed')
  }
  t.same(hits, [], 'nothing reached the upstream')
  t.equal((await request(`${url}/ok?value=plain`)).status, 200, 'a clean value still goes')
  t.same(unhandled, [])
})

t.test('a throw or a result that is not headers: coded 500, logged with the route, nothing upstream', async (t) => {
  const upstream = await httpUpstream(t)
  const hits: string[] = []
  upstream.on('request', (req: IncomingMessage) => { hits.push(req.url as string) })
  const log = logCapture()
  const results: Record<string, () => unknown> = {
    throws: () => { throw new Error(`secret ${origin(upstream)}`) },
    null: () => null,
    array: () => ['x', 'y'],
    string: () => 'x: y',
    number: () => ({ 'x-n': 5 }),
    mixed: () => ({ 'x-n': ['a', 5] }),
    hosts: () => ({ host: ['a.test', 'b.test'] })
  }
  const { url } = await gateway(t, {
    exposeErrors: false,
    routes: [{ prefix: '/', upstream: origin(upstream), rewriteRequestHeaders: (request) => results[request.headers['x-case'] as string]() as UpstreamRequestHeaders }]
  }, { logger: { level: 'info', stream: log.stream } })
  for (const name of Object.keys(results)) {
    const answer = await request(url + '/', { headers: { 'x-case': name } })
    t.equal(answer.status, 500, name)
    const body = JSON.parse(answer.body.toString()) as { code: string, message: string }
    t.equal(body.code, 'FST_WS_PROXY_REWRITE_HEADERS_FAILED', name)
    t.notMatch(body.message, /127\.0\.0\.1|secret/, name)
  }
  const messagesOf = (await Promise.resolve(log.records)).filter((r) => r.route === '/').map((r) => r.err?.message)
  t.match(messagesOf, [
    /secret/,
    /expected it to return a headers object/, /expected it to return a headers object/, /expected it to return a headers object/,
    /header x-n: expected a string or an array of strings/, /header x-n: expected a string or an array of strings/, /header host: expected one string/
  ])
  t.same(hits, [])
})

t.test('exposeErrors names what the function threw', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, { routes: [{ prefix: '/', upstream: origin(upstream), rewriteRequestHeaders: () => { throw new Error('boom') } }] })
  const answer = await request(url + '/')
  t.match(JSON.parse(answer.body.toString()), { statusCode: 500, message: 'rewriteRequestHeaders of route / failed: it threw: boom' })
})

t.test('upgrades: the rewritten handshake goes upstream; an injection refuses it with 400', async (t) => {
  const { server } = await wsUpstream(t)
  const upgrades: Array<string | undefined> = []
  server.on('upgrade', (req: IncomingMessage) => { upgrades.push(req.headers['x-user'] as string | undefined) })
  const { url } = await gateway(t, {
    routes: [{
      prefix: '/ws/',
      upstream: origin(server),
      rewriteRequestHeaders: (request, headers) => ({ ...headers, 'x-user': request.headers['x-bad'] === undefined ? 'alice' : 'a\r\nx: y' })
    }]
  })
  const ws = await openWs(t, wsUrl(url, '/ws/room'))
  ws.send('hi')
  t.equal((await messages(ws, 1))[0].data.toString(), 'hi')
  const refused = await unexpectedResponse(t, wsUrl(url, '/ws/room'), { 'x-bad': '1' })
  t.equal(refused.status, 400)
  t.match(JSON.parse(refused.body.toString()), { code: 'FST_WS_PROXY_BAD_REWRITTEN_HEADER' })
  t.same(upgrades, ['alice'])
})

t.test('getUpstream and rewriteRequestHeaders together, and a seen echo', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, {
    routes: [{
      prefix: '/',
      upstream: 'http://127.0.0.1:1',
      getUpstream: () => origin(upstream),
      rewriteRequestHeaders: (_request, headers) => ({ ...headers, 'x-both': 'yes' })
    }]
  })
  const answer = await request(url + '/both')
  t.match(seenOf(answer.body), { url: '/both', headers: { 'x-both': 'yes' } })
})
