import t from 'tap'
import type { IncomingMessage } from 'node:http'
import { gateway, httpUpstream, origin, portOf, waitFor, wsUpstream } from './helpers/servers.js'
import { request, seenOf, values } from './helpers/clients.js'
import { headUpstream, messages, openWs, parseHead, rawClient, switching, upgradeHead, wsUrl } from './helpers/ws.js'

// Request header rules: set, add, remove, the empty-value rule, plugin/route precedence, Host, and the
// Connection/Upgrade templates that steer the upgrade (nginx's `proxy_set_header Upgrade/Connection`).

t.test('set replaces the client\'s value, add appends after it, remove drops it, an empty value is not sent', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, {
    upstream: origin(upstream),
    requestHeaders: {
      set: { 'X-Replaced': 'ours', 'X-Empty': '$http_x_absent', 'X-Tenant': 'tenant-$arg_t' },
      add: { 'X-Added': 'first', 'X-Many': ['one', 'two-$request_method', '$http_x_absent'], 'x-many': 'three' },
      remove: ['X-Secret', 'cookie']
    }
  })
  const seen = seenOf((await request(`${url}/?t=7`, {
    headers: ['Host', 'gw.test', 'X-Replaced', 'theirs', 'X-Added', 'client', 'X-Secret', 's', 'Cookie', 'a=1', 'X-Empty', 'client-value', 'X-Kept', 'k']
  })).body)
  t.same(values(seen.rawHeaders, 'x-replaced'), ['ours'])
  t.same(values(seen.rawHeaders, 'x-added'), ['client', 'first'], 'appended after the client\'s')
  t.same(values(seen.rawHeaders, 'x-many'), ['one', 'two-GET', 'three'], 'a list; its empty value is not sent; names ignore case')
  t.same(values(seen.rawHeaders, 'x-secret'), [])
  t.same(values(seen.rawHeaders, 'cookie'), [])
  t.same(values(seen.rawHeaders, 'x-empty'), [], 'set to an empty value: the client\'s is dropped and nothing is sent (nginx)')
  t.same(values(seen.rawHeaders, 'x-tenant'), ['tenant-7'])
  t.same(values(seen.rawHeaders, 'x-kept'), ['k'])
})

t.test('a route\'s rules win over the plugin\'s per header name; other routes keep the plugin\'s', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, {
    requestHeaders: { set: { 'X-A': 'plugin-a', 'X-B': 'plugin-b', 'X-C': 'plugin-c' }, add: { 'X-D': 'plugin-d' } },
    routes: [
      { prefix: '/own/', upstream: origin(upstream), requestHeaders: { set: { 'x-a': 'route-a' }, add: { 'X-D': 'route-d' }, remove: ['X-B'] } },
      { prefix: '/inherit/', upstream: origin(upstream) }
    ]
  })
  const own = seenOf((await request(`${url}/own/`)).body).headers
  t.equal(own['x-a'], 'route-a', 'the route\'s set wins (names ignore case)')
  t.equal(own['x-b'], undefined, 'the route removes what the plugin set')
  t.equal(own['x-c'], 'plugin-c', 'names the route does not mention keep the plugin\'s rule')
  t.equal(own['x-d'], 'route-d', 'the route\'s add replaces the plugin\'s add for that name')
  const inherit = seenOf((await request(`${url}/inherit/`)).body).headers
  t.same([inherit['x-a'], inherit['x-b'], inherit['x-c'], inherit['x-d']], ['plugin-a', 'plugin-b', 'plugin-c', 'plugin-d'])
})

t.test('Host: set to $host (nginx\'s most common line), or emptied to fall back to the upstream\'s', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, {
    routes: [
      { prefix: '/host/', upstream: origin(upstream), requestHeaders: { set: { Host: '$host' } } },
      { prefix: '/empty/', upstream: origin(upstream), requestHeaders: { set: { Host: '$http_x_nothing' } } },
      { prefix: '/xff/', upstream: origin(upstream), requestHeaders: { set: { 'X-Forwarded-For': '$remote_addr', 'X-Forwarded-Proto': '' } } }
    ]
  })
  t.same(values(seenOf((await request(`${url}/host/`, { headers: { host: 'App.Example:81' } })).body).rawHeaders, 'host'), ['app.example'])
  t.same(values(seenOf((await request(`${url}/empty/`, { headers: { host: 'app.example' } })).body).rawHeaders, 'host'),
    [`127.0.0.1:${portOf(upstream)}`], 'undici writes the upstream\'s host')
  const xff = seenOf((await request(`${url}/xff/`, { headers: { 'x-forwarded-for': '203.0.113.1' } })).body).rawHeaders
  t.same(values(xff, 'x-forwarded-for'), ['127.0.0.1'], 'a set X-Forwarded-For replaces the proxy\'s own')
  t.same(values(xff, 'x-forwarded-proto'), [], 'and an emptied X-Forwarded-Proto is not sent')
})

t.test('zero configuration: a WebSocket is proxied with no header options at all', async (t) => {
  const { server } = await wsUpstream(t)
  const { url } = await gateway(t, { upstream: origin(server) })
  const ws = await openWs(t, wsUrl(url, '/zero'))
  ws.send('no headers configured')
  t.equal(String((await messages(ws, 1))[0].data), 'no headers configured')
  // The seeds' two lines without their map: $connection_upgrade is built in.
  const lines = await gateway(t, { upstream: origin(server), requestHeaders: { set: { Upgrade: '$http_upgrade', Connection: '$connection_upgrade' } } })
  const viaBuiltin = await openWs(t, wsUrl(lines.url, '/builtin-map'))
  viaBuiltin.send('built-in map')
  t.equal(String((await messages(viaBuiltin, 1))[0].data), 'built-in map')
})

t.test('the seeds\' nginx configuration, line for line, proxies WebSockets; its `close` closes plain upstream connections', async (t) => {
  const { server } = await wsUpstream(t)
  const connections: unknown[] = []
  server.on('connection', (socket) => connections.push(socket))
  const seenConnection: Array<string | undefined> = []
  server.on('request', (req: IncomingMessage) => seenConnection.push(req.headers.connection))
  const { url } = await gateway(t, {
    maps: { connection_upgrade: { source: '$http_upgrade', default: 'upgrade', cases: { '': 'close' } } },
    routes: [{
      prefix: '/chat/',
      upstream: origin(server),
      requestHeaders: { set: { Upgrade: '$http_upgrade', Connection: '$connection_upgrade', Host: '$host' } },
      timeouts: { read: 60_000 }
    }]
  })
  const ws = await openWs(t, wsUrl(url, '/chat/room'))
  ws.send('hello through the nginx idiom')
  t.equal(String((await messages(ws, 1))[0].data), 'hello through the nginx idiom')
  const before = connections.length
  for (let i = 0; i < 2; i++) t.equal((await request(`${url}/chat/plain`)).status, 200)
  t.same(seenConnection, ['close', 'close'], 'plain requests carried Connection: close, as nginx sends them')
  t.equal(connections.length - before, 2, 'so each plain request used a new upstream connection')
})

t.test('Connection and Upgrade templates decide the upgrade', async (t) => {
  const upstream = await headUpstream(t, ({ socket, head }) => {
    if (/^upgrade:/im.test(head)) socket.write(switching(/^upgrade: (.*)$/im.exec(head)?.[1]))
    else socket.end('HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nplain')
  })
  const { port } = await gateway(t, {
    routes: [
      { prefix: '/renamed/', upstream: origin(upstream), requestHeaders: { set: { Upgrade: 'v2.$http_upgrade' } } },
      { prefix: '/refused/', upstream: origin(upstream), requestHeaders: { set: { Connection: 'close' } } },
      { prefix: '/no-protocol/', upstream: origin(upstream), requestHeaders: { set: { Upgrade: '$http_x_none' } } }
    ]
  })
  const renamed = await rawClient(t, port)
  renamed.socket.write(upgradeHead('/renamed/x', 'chat'))
  await renamed.contains('\r\n\r\n')
  t.equal(parseHead(renamed.text).status, 101)
  t.match(upstream.accepted[0].head, /^upgrade: v2\.chat\r$/m, 'the upstream was asked for the templated protocol')
  t.match(upstream.accepted[0].head, /^connection: upgrade\r$/m)
  renamed.socket.write('tunnelled')
  await waitFor(() => upstream.accepted[0].afterHead().toString() === 'tunnelled', 2000, 'the tunnelled bytes upstream')
  for (const path of ['/refused/x', '/no-protocol/x']) {
    const client = await rawClient(t, port)
    client.socket.write(upgradeHead(path, 'chat'))
    await client.end()
    t.equal(parseHead(client.text).status, 200, `${path}: proxied as a plain request`)
    const head = upstream.accepted[upstream.accepted.length - 1].head
    t.notMatch(head, /^upgrade:/im, `${path}: no Upgrade upstream`)
  }
})

t.test('a plain request keeps its pooled connection by default, whatever the client\'s Connection says', async (t) => {
  const connections: unknown[] = []
  const upstream = await httpUpstream(t)
  upstream.on('connection', (socket) => connections.push(socket))
  const { url } = await gateway(t, { upstream: origin(upstream), requestHeaders: { set: { 'X-Any': 'x' } } })
  for (let i = 0; i < 3; i++) {
    const seen = seenOf((await request(`${url}/`, { headers: { connection: 'close' } })).body)
    t.equal(seen.headers.connection, 'keep-alive')
  }
  t.equal(connections.length, 1, 'one upstream connection served all three')
})
