import t from 'tap'
import { gateway, httpUpstream, origin, portOf } from './helpers/servers.js'
import { request, values } from './helpers/clients.js'
import { acceptFor, headUpstream, parseHead, rawClient, wsHandshakeHead, WS_KEY } from './helpers/ws.js'

// Response rules (nginx proxy_hide_header / add_header), on normal answers and on 101s, and the rewriting of
// upstream URLs in Location, Refresh and Set-Cookie (nginx proxy_redirect, proxy_cookie_domain/path).

t.test('hide, set and add with request and response variables', async (t) => {
  const upstream = await httpUpstream(t, (_req, res) => {
    res.writeHead(201, [['Server', 'secret/1.2'], ['X-Powered-By', 'php'], ['X-Keep', 'k'], ['X-Version', '7'], ['Cache-Control', 'no-store'], ['X-List', 'upstream']])
    res.end('created')
  })
  const { url } = await gateway(t, {
    upstream: origin(upstream),
    responseHeaders: {
      hide: ['server', 'X-Powered-By'],
      set: { 'Cache-Control': 'private', 'X-Upstream': '$upstream_status from $upstream_addr v$upstream_http_x_version', 'X-Nothing': '$upstream_http_x_absent' },
      add: { 'X-List': ['gateway', 'for $request_method $uri'] }
    }
  })
  const res = await request(`${url}/items`, { method: 'POST', body: 'x' })
  t.equal(res.status, 201)
  t.equal(res.body.toString(), 'created')
  t.same(values(res.rawHeaders, 'server'), [])
  t.same(values(res.rawHeaders, 'x-powered-by'), [])
  t.same(values(res.rawHeaders, 'x-keep'), ['k'])
  t.same(values(res.rawHeaders, 'cache-control'), ['private'], 'set replaces')
  t.same(values(res.rawHeaders, 'x-upstream'), [`201 from 127.0.0.1:${portOf(upstream)} v7`])
  t.same(values(res.rawHeaders, 'x-nothing'), [], 'an empty value is not sent')
  t.same(values(res.rawHeaders, 'x-list'), ['upstream', 'gateway', 'for POST /items'], 'add appends, in order')
})

t.test('response rules apply to a 101 and leave the handshake\'s own headers alone', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${acceptFor(WS_KEY)}\r\nSec-WebSocket-Protocol: chat\r\nServer: internal\r\nSet-Cookie: s=1; Domain=internal.svc; Path=/app/\r\n\r\n`)
  })
  const { port } = await gateway(t, {
    routes: [{ prefix: '/ws/', upstream: `${origin(upstream)}/app/` }],
    responseHeaders: { hide: ['Server'], add: { 'X-Via': 'gateway $upstream_status' } },
    cookieDomain: [{ from: 'internal.svc', to: '$host' }],
    cookiePath: [{ from: '/app/', to: '/ws/' }]
  })
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead('/ws/chat', ['Sec-WebSocket-Protocol: chat']))
  await client.contains('\r\n\r\n')
  const head = parseHead(client.text)
  t.equal(head.status, 101)
  t.equal(head.headers['sec-websocket-accept'], acceptFor(WS_KEY))
  t.equal(head.headers['sec-websocket-protocol'], 'chat')
  t.equal(head.headers.upgrade, 'websocket')
  t.equal(head.headers.server, undefined, 'hidden on the 101 too')
  t.equal(head.headers['x-via'], 'gateway 101')
  t.equal(head.headers['set-cookie'], 's=1; Domain=gateway.test; Path=/ws/', 'cookies set during the handshake are rewritten')
})

t.test('proxy_redirect default: Location and Refresh pointing at the upstream come back under the route\'s prefix', async (t) => {
  const upstream = await httpUpstream(t, (req, res) => {
    const self = `http://127.0.0.1:${portOf(upstream)}`
    res.writeHead(302, {
      location: `${self}/v1/login?next=${req.url ?? ''}`,
      refresh: `3; url=${self}/v1/done`,
      'content-location': `${self}/v1/other`
    })
    res.end()
  })
  const { url } = await gateway(t, {
    prefix: '/gw',
    routes: [
      { prefix: '/api/', upstream: `${origin(upstream)}/v1/` },
      { prefix: '/raw/', upstream: origin(upstream) },
      { prefix: '/off/', upstream: `${origin(upstream)}/v1/`, redirect: false }
    ]
  })
  const api = await request(`${url}/gw/api/page`)
  t.equal(api.status, 302)
  t.equal(api.headers.location, '/gw/api/login?next=/v1/page', 'the upstream URL of the mapped path → the client-facing prefix')
  t.equal(api.headers.refresh, '3; url=/gw/api/done')
  t.equal(api.headers['content-location'], `${origin(upstream)}/v1/other`, 'other headers are not rewritten (nginx)')
  const raw = await request(`${url}/gw/raw/page`)
  t.equal(raw.headers.location, '/v1/login?next=/gw/raw/page', 'without a rewrite the origin maps to /')
  const off = await request(`${url}/gw/off/page`)
  t.equal(off.headers.location, `${origin(upstream)}/v1/login?next=/v1/page`, 'redirect: false leaves it')
})

t.test('explicit redirect rules: prefixes and regexes with captures, tried in order, before or after the default', async (t) => {
  const upstream = await httpUpstream(t, (req, res) => {
    // The target rides in the query: an encoded `/` in the path is refused before any upstream (docs/security.md).
    res.writeHead(301, { location: decodeURIComponent((req.url as string).slice('/to?u='.length)) })
    res.end()
  })
  const { url } = await gateway(t, {
    upstream: origin(upstream),
    redirect: [
      { from: 'http://legacy.internal/', to: '/legacy/' },
      { from: '~*^https?://(?<svc>[a-z]+)\\.svc\\.cluster\\.local(:\\d+)?(/.*)$', to: '$scheme://$host/$svc$3' },
      'default'
    ]
  })
  const location = async (target: string): Promise<string | undefined> =>
    (await request(`${url}/to?u=${encodeURIComponent(target)}`, { headers: { host: 'edge.example' } })).headers.location
  t.equal(await location('http://legacy.internal/a?b=1'), '/legacy/a?b=1')
  t.equal(await location('HTTP://Billing.svc.cluster.local:8080/invoices/7'), 'http://edge.example/Billing/invoices/7')
  t.equal(await location(`${origin(upstream)}/x`), '/x', '"default" keeps its place in the list')
  t.equal(await location('https://elsewhere.example/'), 'https://elsewhere.example/', 'no rule matched: untouched')
})

t.test('proxy_cookie_domain and proxy_cookie_path rewrite only their attribute, in every Set-Cookie', async (t) => {
  const upstream = await httpUpstream(t, (_req, res) => {
    res.setHeader('set-cookie', [
      'a=1; Domain=.Backend.Internal; Path=/v1/; HttpOnly',
      'b=2; path=/v1/deep/x; domain=backend.internal',
      'c=3; Path=/other/; Secure',
      'd=Path=/v1/; Max-Age=60'
    ])
    res.end()
  })
  const { url } = await gateway(t, {
    routes: [{ prefix: '/app/', upstream: `${origin(upstream)}/v1/` }],
    cookieDomain: [{ from: 'backend.internal', to: '$host' }],
    cookiePath: [{ from: '/v1/', to: '/app/' }, { from: '~^/other/(.*)$', to: '/app/other/$1' }]
  })
  const res = await request(`${url}/app/`, { headers: { host: 'www.example.com:8443' } })
  t.same(res.headers['set-cookie'], [
    'a=1; Domain=.www.example.com; Path=/app/; HttpOnly',
    'b=2; path=/app/deep/x; domain=www.example.com',
    'c=3; Path=/app/other/; Secure',
    'd=Path=/v1/; Max-Age=60'
  ], 'a leading dot is kept; a cookie value that looks like an attribute is not touched')
})

t.test('Refresh with a quoted URL and repeated upstream headers in $upstream_http_*', async (t) => {
  const upstream = await httpUpstream(t, (_req, res) => {
    const self = `http://127.0.0.1:${portOf(upstream)}`
    res.writeHead(200, [['Refresh', `0;URL='${self}/v1/next'`], ['X-Tag', 'a'], ['X-Tag', 'b'], ['X-Refresh-Plain', 'x']])
    res.end()
  })
  const { url } = await gateway(t, {
    routes: [{ prefix: '/app/', upstream: `${origin(upstream)}/v1/` }],
    responseHeaders: { set: { 'X-Tags': '$upstream_http_x_tag' } }
  })
  const res = await request(`${url}/app/`)
  t.equal(res.headers.refresh, '0;URL=\'/app/next\'', 'quotes kept')
  t.equal(res.headers['x-tags'], 'a, b')
})

t.test('a Refresh without a URL is left alone; a rewrite that would yield a control byte is refused', async (t) => {
  const upstream = await httpUpstream(t, (req, res) => {
    res.writeHead(302, [['Refresh', '5'], ['Location', `http://old.example${req.url ?? ''}`]])
    res.end()
  })
  const { url, port } = await gateway(t, {
    upstream: origin(upstream),
    redirect: [{ from: 'http://old.example/', to: '/new$uri/' }]
  })
  const ok = await request(`${url}/page`)
  t.equal(ok.headers.refresh, '5')
  t.equal(ok.headers.location, '/new/page/page')
  const { rawExchange } = await import('./helpers/clients.js')
  const answer = await rawExchange(t, port, 'GET /a%0D%0AX:%20y HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n')
  t.equal(parseHead(answer).status, 400)
  t.equal(parseHead(answer).headers.x, undefined)
})

t.test('a response template refused on a 101: the client gets a 400 and the upstream socket is closed', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n')
  })
  const { app, port } = await gateway(t, { upstream: origin(upstream), responseHeaders: { add: { 'X-Path': '$uri' } } })
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead('/a%0D%0AInjected:%20yes'))
  await client.end()
  t.equal(parseHead(client.text).status, 400)
  t.notMatch(client.text, /Injected/)
  const { waitFor } = await import('./helpers/servers.js')
  await waitFor(() => upstream.accepted[0]?.received.closed === true, 2000, 'the upstream socket to close')
  t.equal(app.wsProxy.tunnels, 0)
})
