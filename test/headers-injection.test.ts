import t from 'tap'
import { gateway, httpUpstream, logCapture, origin, waitFor } from './helpers/servers.js'
import { rawExchange, request, seenOf } from './helpers/clients.js'
import { errorBody, requestPath } from './helpers/http-faults.js'
import { headUpstream, parseHead, rawClient, upgradeHead } from './helpers/ws.js'

// A template can put client-controlled text into a header. None of it may split the head sent upstream (or the
// one sent back): a value with CR, LF, NUL or another control byte is refused with 400 and logged, and nothing
// is written upstream. Node's parser already refuses those bytes in raw headers and in the request line, so the
// decoded sources ($uri and what maps capture from it) are where they can appear; each source is tried.

const ATTACKS = [
  { what: 'CRLF', path: '/a%0D%0AInjected:%20yes' },
  { what: 'a bare LF', path: '/a%0AInjected:%20yes' },
  { what: 'a bare CR', path: '/a%0DInjected:%20yes' },
  { what: 'NUL', path: '/a%00b' },
  { what: 'a second request', path: '/a%0D%0A%0D%0AGET%20/smuggled%20HTTP/1.1%0D%0AHost:%20x%0D%0A%0D%0A' }
]

for (const source of ['$uri', '$path_copy (a map over $uri)', '${path_capture} (a regex capture of $uri)']) {
  t.test(`${source}: control bytes are refused with 400 before anything reaches the upstream`, async (t) => {
    const upstream = await headUpstream(t, ({ socket }) => { socket.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok') })
    const logs = logCapture()
    const template = source.split(' ')[0]
    const { port } = await gateway(t, {
      upstream: origin(upstream),
      maps: {
        path_copy: { source: '$uri', default: '$uri' },
        path_capture: { source: '$uri', cases: { '~^/([\\s\\S]*)$': '$1' } }
      },
      requestHeaders: { set: { 'X-Original-Path': template } }
    }, { logger: { level: 'info', stream: logs.stream } })
    for (const attack of ATTACKS) {
      const res = await requestPath(`http://127.0.0.1:${port}`, attack.path)
      t.equal(res.status, 400, `${attack.what}: 400`)
      t.equal(errorBody(res.body).code, 'FST_WS_PROXY_BAD_HEADER_VALUE')
      t.match(errorBody(res.body).message, /X-Original-Path/, 'the body names the header')
    }
    t.equal(upstream.accepted.length, 0, 'no connection was even opened upstream')
    await waitFor(() => logs.records.filter((r) => r.level === 40 && r.err?.code === 'FST_WS_PROXY_BAD_HEADER_VALUE').length === ATTACKS.length,
      2000, 'one warning per refused request')
    // The same route still proxies a clean request, decoded bytes and all.
    const clean = await requestPath(`http://127.0.0.1:${port}`, '/caf%C3%A9')
    t.equal(clean.status, 200)
    t.match(upstream.accepted[0].head, /^X-Original-Path: \/?caf\xc3\xa9\r$/m, 'the decoded UTF-8 bytes, as bytes')
  })
}

t.test('raw CR, LF and NUL in client headers, the request line, cookies and arguments never reach a template', async (t) => {
  const upstream = await httpUpstream(t)
  let requests = 0
  upstream.on('request', () => { requests++ })
  const { port, url } = await gateway(t, {
    upstream: origin(upstream),
    requestHeaders: { set: { 'X-In': '$http_x_in', 'X-Cookie': '$cookie_c', 'X-Arg': '$arg_a' } }
  })
  const attacks = [
    'GET / HTTP/1.1\r\nHost: h\r\nX-In: a\rInjected: yes\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: h\r\nX-In: a\nInjected: yes\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: h\r\nX-In: a\x00b\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: h\r\nCookie: c=a\rInjected: yes\r\n\r\n',
    'GET /?a=1\rInjected:%20yes HTTP/1.1\r\nHost: h\r\n\r\n',
    'GET /?a=\x00 HTTP/1.1\r\nHost: h\r\n\r\n'
  ]
  for (const attack of attacks) {
    const answer = await rawExchange(t, port, attack)
    t.equal(parseHead(answer).status, 400, `Node's parser refuses ${JSON.stringify(attack.split('\r\n').find((l) => /[\r\n\0]/.test(l.replace(/\r\n/g, ''))) ?? attack)}`)
  }
  t.equal(requests, 0, 'none reached the upstream')
  // $arg_ is not decoded (nginx): an encoded CRLF travels as its harmless escape.
  const encoded = seenOf((await request(`${url}/?a=1%0D%0AInjected:%20yes`)).body)
  t.equal(encoded.headers['x-arg'], '1%0D%0AInjected:%20yes')
  t.equal(encoded.headers.injected, undefined)
})

t.test('an Upgrade template fed a CRLF refuses the handshake with 400; no upstream connection, no tunnel', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => { socket.destroy() })
  const { app, port } = await gateway(t, { upstream: origin(upstream), requestHeaders: { set: { Upgrade: '$uri' } } })
  const client = await rawClient(t, port)
  client.socket.write(upgradeHead('/x%0D%0AInjected:%20yes', 'websocket'))
  await client.end()
  t.equal(parseHead(client.text).status, 400)
  t.equal(upstream.accepted.length, 0)
  t.equal(app.wsProxy.tunnels, 0)
})

t.test('a response header template fed a CRLF gets a 400, never a split response', async (t) => {
  const upstream = await httpUpstream(t, (_req, res) => { res.end('from upstream') })
  const { port } = await gateway(t, { upstream: origin(upstream), responseHeaders: { set: { 'X-Served-Path': '$uri' } } })
  const answer = await rawExchange(t, port, 'GET /a%0D%0ASet-Cookie:%20evil=1%0D%0A%0D%0Ainjected-body HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n')
  const head = parseHead(answer)
  t.equal(head.status, 400)
  t.equal(head.headers['set-cookie'], undefined)
  t.notMatch(answer, /injected-body|from upstream/)
  const fine = await rawExchange(t, port, 'GET /ok HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n')
  t.equal(parseHead(fine).headers['x-served-path'], '/ok')
})
