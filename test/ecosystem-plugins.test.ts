// The Fastify ecosystem on proxied routes, WebSocket upgrades included: @fastify/rate-limit and @fastify/basic-auth
// refuse an upgrade with the same status, headers and body as a plain request, before any upstream connection;
// @fastify/cors and @fastify/helmet leave the 101 intact while plain answers get their headers; and `allowedOrigins`
// refuses cross-site WebSocket hijacking with a 403.
import t from 'tap'
import Fastify from 'fastify'
import basicAuth from '@fastify/basic-auth'
import cors from '@fastify/cors'
import helmet from '@fastify/helmet'
import rateLimit from '@fastify/rate-limit'
import wsProxyPlugin, { type WsProxyOptions } from '../src/index.js'
import { gateway, origin, wsUpstream, type Teardown } from './helpers/servers.js'
import { request, values } from './helpers/clients.js'
import {
  acceptFor, headEnd, logCapture, messages, openWs, parseFrames, parseHead, rawClient, unexpectedResponse, WS_KEY, wsHandshakeHead, wsUrl
} from './helpers/ws.js'

/** A `ws` echo upstream that counts what reaches it: TCP connections, plain requests and upgrade requests. */
async function countedUpstream (t: Teardown) {
  const { server } = await wsUpstream(t)
  const seen = { connections: 0, requests: 0, upgrades: 0 }
  server.on('connection', () => { seen.connections++ })
  server.on('request', () => { seen.requests++ })
  server.on('upgrade', () => { seen.upgrades++ })
  return { server, seen }
}

/** A refused handshake as it came on the wire: the parsed head, the JSON body, and whether the gateway closed. */
async function refusedHandshake (t: Teardown, port: number, path: string, extra: string[] = []) {
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead(path, extra))
  await client.close()
  const text = client.text
  return { head: parseHead(text), body: JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as unknown, ended: client.ended }
}

/** One masked client text frame (RFC 6455 §5.3), payload under 126 bytes. */
function maskedText (text: string): Buffer {
  const payload = Buffer.from(text)
  const frame = Buffer.alloc(6 + payload.length)
  frame[0] = 0x81
  frame[1] = 0x80 | payload.length
  const mask = [0x12, 0x34, 0x56, 0x78]
  frame.set(mask, 2)
  for (let i = 0; i < payload.length; i++) frame[6 + i] = payload[i] ^ mask[i & 3]
  return frame
}

/**
 * A raw WebSocket handshake that must succeed: resolves with the 101 head as written (names in order) once a text
 * frame sent through the tunnel has come back from the echo upstream.
 */
async function echoedHandshake (t: Teardown, port: number, path: string, extra: string[] = []) {
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead(path, extra))
  await client.contains('\r\n\r\n')
  const head = parseHead(client.text)
  if (head.status !== 101) throw new Error(`expected a 101, got ${JSON.stringify(client.text.slice(0, 300))}`)
  client.socket.write(maskedText('ping through'))
  await client.until((r) => parseFrames(r.bytes.subarray(headEnd(r.bytes))).length === 1, 3000, 'the echoed frame')
  const [frame] = parseFrames(client.bytes.subarray(headEnd(client.bytes)))
  client.socket.destroy()
  return { head, frame }
}

t.test('@fastify/rate-limit: an upgrade over the limit gets the same 429 as a plain request, and nothing goes upstream', async (t) => {
  const { server, seen } = await countedUpstream(t)
  const { port, url } = await gateway(t, { upstream: origin(server) }, {}, async (app) => {
    await app.register(rateLimit, { global: true, max: 2, timeWindow: 60_000 })
  })
  // Within the limit: one WebSocket (echoed) and one plain request.
  const ws = await openWs(t, wsUrl(url, '/chat'))
  ws.send('hello')
  t.equal((await messages(ws, 1))[0].data.toString(), 'hello')
  const plain = await request(`${url}/api`)
  t.equal(plain.status, 200)
  t.equal(plain.headers['x-ratelimit-remaining'], '0', 'the plain request used the last slot')
  t.same({ upgrades: seen.upgrades, requests: seen.requests }, { upgrades: 1, requests: 1 })
  const connections = seen.connections

  const upgrade = await refusedHandshake(t, port, '/chat')
  t.equal(upgrade.head.statusLine, 'HTTP/1.1 429 Too Many Requests')
  t.equal(upgrade.head.headers['x-ratelimit-limit'], '2')
  t.equal(upgrade.head.headers['x-ratelimit-remaining'], '0')
  t.match(upgrade.head.headers['x-ratelimit-reset'], /^\d+$/)
  t.match(upgrade.head.headers['retry-after'], /^\d+$/)
  t.equal(upgrade.head.headers.connection, 'close')
  t.notOk('upgrade' in upgrade.head.headers, 'no Upgrade on a refusal')
  t.ok(upgrade.ended, 'the gateway closed the connection after the answer')

  const over = await request(`${url}/api`)
  t.equal(over.status, 429)
  t.same(upgrade.body, JSON.parse(over.body.toString()), 'the same body as the plain request\'s 429')
  t.match(upgrade.body, { statusCode: 429, error: 'Too Many Requests', message: /^Rate limit exceeded, retry in / })
  for (const name of ['x-ratelimit-limit', 'x-ratelimit-remaining']) t.equal(over.headers[name], upgrade.head.headers[name], name)

  // A `ws` client sees the 429 as its handshake's unexpected response, headers and body included.
  const client = await unexpectedResponse(t, wsUrl(url, '/chat'))
  t.equal(client.status, 429)
  t.equal(client.headers['x-ratelimit-limit'], '2')
  t.match(JSON.parse(client.body.toString()), { statusCode: 429 })

  t.same(seen, { connections, requests: 1, upgrades: 1 }, 'no refused request reached the upstream, not even as a connection')
})

t.test('@fastify/basic-auth as an onRequest hook: 401 for an upgrade without valid credentials, 101 and echo with them', async (t) => {
  const { server, seen } = await countedUpstream(t)
  const { port, url } = await gateway(t, { upstream: origin(server) }, {}, async (app) => {
    await app.register(basicAuth, {
      authenticate: { realm: 'gateway' },
      async validate (username: string, password: string) {
        if (username !== 'alice' || password !== 's3cret') throw new Error('Unknown user or wrong password')
      }
    })
    app.addHook('onRequest', app.basicAuth)
  })
  const basic = (credentials: string): string => `Basic ${Buffer.from(credentials).toString('base64')}`

  const missing = await refusedHandshake(t, port, '/chat')
  t.equal(missing.head.statusLine, 'HTTP/1.1 401 Unauthorized')
  t.equal(missing.head.headers['www-authenticate'], 'Basic realm="gateway", charset="UTF-8"')
  t.equal(missing.head.headers.connection, 'close')
  t.same(missing.body, {
    statusCode: 401,
    code: 'FST_BASIC_AUTH_MISSING_OR_BAD_AUTHORIZATION_HEADER',
    error: 'Unauthorized',
    message: 'Missing or bad formatted authorization header'
  })
  const wrong = await refusedHandshake(t, port, '/chat', [`Authorization: ${basic('alice:guess')}`])
  t.equal(wrong.head.status, 401)
  t.equal(wrong.head.headers['www-authenticate'], 'Basic realm="gateway", charset="UTF-8"')
  t.same(wrong.body, { statusCode: 401, error: 'Unauthorized', message: 'Unknown user or wrong password' })

  // Plain requests get exactly the same answers.
  const plainMissing = await request(`${url}/chat`)
  t.equal(plainMissing.status, 401)
  t.same(JSON.parse(plainMissing.body.toString()), missing.body)
  t.equal(plainMissing.headers['www-authenticate'], missing.head.headers['www-authenticate'])
  t.same(seen, { connections: 0, requests: 0, upgrades: 0 }, 'nothing refused reached the upstream')

  const ws = await openWs(t, wsUrl(url, '/chat'), undefined, { headers: { authorization: basic('alice:s3cret') } })
  ws.send('authenticated')
  t.equal((await messages(ws, 1))[0].data.toString(), 'authenticated')
  t.same({ upgrades: seen.upgrades, requests: seen.requests, connections: seen.connections }, { upgrades: 1, requests: 0, connections: 1 })
  const plain = await request(`${url}/api`, { headers: { authorization: basic('alice:s3cret') } })
  t.equal(plain.status, 200)
  t.equal(seen.requests, 1)
})

const APP_ORIGIN = 'https://app.example.com'

t.test('@fastify/cors and @fastify/helmet: the 101 is intact and the tunnel echoes; plain answers get their headers', async (t) => {
  const { server, seen } = await countedUpstream(t)
  // @fastify/cors adds `OPTIONS *` and answers preflights in its hook: the `/` route proxies every other method.
  const methods: WsProxyOptions['methods'] = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH']
  const { port, url } = await gateway(t, { upstream: origin(server), methods }, {}, async (app) => {
    await app.register(cors, { origin: APP_ORIGIN, methods: ['GET', 'PUT'] })
    await app.register(helmet)
  })

  const { head, frame } = await echoedHandshake(t, port, '/chat', [`Origin: ${APP_ORIGIN}`])
  t.equal(head.statusLine, 'HTTP/1.1 101 Switching Protocols')
  const count = (name: string) => head.names.filter((n) => n.toLowerCase() === name).length
  for (const name of ['upgrade', 'connection', 'sec-websocket-accept']) t.equal(count(name), 1, `one ${name}`)
  t.equal(head.headers.upgrade, 'websocket')
  t.equal(head.headers.connection, 'Upgrade')
  t.equal(head.headers['sec-websocket-accept'], acceptFor(WS_KEY))
  for (const name of ['content-length', 'transfer-encoding', 'content-type']) t.equal(count(name), 0, `no ${name} on a 101`)
  t.equal(head.headers['access-control-allow-origin'], APP_ORIGIN, 'cors\'s header rides along, harmlessly')
  t.equal(head.headers['x-content-type-options'], 'nosniff', 'so do helmet\'s')
  t.same({ opcode: frame.opcode, fin: frame.fin, masked: frame.masked, text: frame.payload.toString() },
    { opcode: 1, fin: true, masked: false, text: 'ping through' }, 'the echo came back unmasked, as the upstream sent it')

  // A real client, through the same plugins.
  const ws = await openWs(t, wsUrl(url, '/chat'), undefined, { origin: APP_ORIGIN })
  ws.send('through cors and helmet')
  t.equal((await messages(ws, 1))[0].data.toString(), 'through cors and helmet')

  const plain = await request(`${url}/api/items`, { headers: { origin: APP_ORIGIN } })
  t.equal(plain.status, 200)
  t.equal(plain.headers['access-control-allow-origin'], APP_ORIGIN, 'cors\'s reply header on a proxied answer')
  t.equal(plain.headers['x-content-type-options'], 'nosniff')
  t.equal(plain.headers['x-frame-options'], 'SAMEORIGIN')
  t.match(plain.headers['content-security-policy'], /default-src 'self'/)
  t.equal(plain.headers['content-type'], 'application/json', 'the upstream\'s own headers kept')

  const preflight = await request(`${url}/api/items`, {
    method: 'OPTIONS',
    headers: { origin: APP_ORIGIN, 'access-control-request-method': 'PUT' }
  })
  t.equal(preflight.status, 204)
  t.equal(preflight.headers['access-control-allow-origin'], APP_ORIGIN)
  t.equal(preflight.headers['access-control-allow-methods'], 'GET, PUT')
  t.same({ requests: seen.requests, upgrades: seen.upgrades }, { requests: 1, upgrades: 2 }, 'the preflight was answered by cors, not proxied')
})

t.test('an upstream header replaces the same-named header a hook set; the others are added', async (t) => {
  const { server } = await wsUpstream(t)
  server.removeAllListeners('request')
  server.on('request', (_req, res) => {
    res.setHeader('access-control-allow-origin', 'https://upstream.example')
    res.end('ok')
  })
  const { url } = await gateway(t, { upstream: origin(server), methods: ['GET'] }, {}, async (app) => {
    await app.register(cors, { origin: APP_ORIGIN })
    app.addHook('onRequest', async (_request, reply) => { reply.header('x-gateway', 'yes') })
  })
  const res = await request(`${url}/x`, { headers: { origin: APP_ORIGIN } })
  t.equal(res.status, 200)
  t.same(values(res.rawHeaders, 'access-control-allow-origin'), ['https://upstream.example'], 'the upstream\'s value alone')
  t.equal(res.headers['x-gateway'], 'yes')
  t.equal(res.body.toString(), 'ok')
})

t.test('@fastify/cors with a `/` route that proxies OPTIONS: register fails with Fastify\'s duplicate-route error', async (t) => {
  // Before the fix the throw escaped avvio: an uncaught exception, and ready() hung until the plugin timeout.
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(cors)
  app.register(wsProxyPlugin, { upstream: 'http://127.0.0.1:1' })
  const err = await app.ready().then(() => null, (e: unknown) => e as Error & { code?: string })
  t.equal(err?.code, 'FST_ERR_DUPLICATED_ROUTE')
  t.match(err?.message, /OPTIONS.* already declared for route '\/\*'/s)
})

t.test('allowedOrigins', async (t) => {
  const { server, seen } = await countedUpstream(t)
  const logs = logCapture()
  const { port, url } = await gateway(t, {
    allowedOrigins: [APP_ORIGIN, 'http://localhost:3000', 'http://intranet.example', 'https://*.example.org'],
    routes: [
      { prefix: '/ws/', upstream: origin(server) },
      { prefix: '/open/', upstream: origin(server), allowedOrigins: false },
      { prefix: '/admin/', upstream: origin(server), allowedOrigins: ['https://admin.example.com'] },
      { prefix: '/split/', upstream: 'http://127.0.0.1:1', upgradeUpstream: origin(server) }
    ]
  }, { logger: { level: 'warn', stream: logs.stream } })

  const forbidden = {
    statusCode: 403,
    code: 'FST_WS_PROXY_ORIGIN_FORBIDDEN',
    error: 'Forbidden',
    message: 'Upgrade requests from this Origin are not allowed on this route'
  }

  t.test('another origin gets a 403 with the coded body, is logged, and makes no upstream connection', async (t) => {
    const refused = await refusedHandshake(t, port, '/ws/chat', ['Origin: https://evil.example'])
    t.equal(refused.head.statusLine, 'HTTP/1.1 403 Forbidden')
    t.equal(refused.head.headers.connection, 'close')
    t.equal(refused.head.headers['content-type'], 'application/json; charset=utf-8')
    t.same(refused.body, forbidden)
    t.ok(refused.ended)
    t.same(seen, { connections: 0, requests: 0, upgrades: 0 })
    const record = logs.records.find((r) => r.msg === 'upgrade refused: origin not allowed')
    t.match(record, { level: 40, origin: 'https://evil.example', client: '127.0.0.1', err: { code: 'FST_WS_PROXY_ORIGIN_FORBIDDEN' } })
    // A `ws` client from that origin sees the 403 as its handshake failure.
    const client = await unexpectedResponse(t, wsUrl(url, '/ws/chat'), { origin: 'https://evil.example' })
    t.equal(client.status, 403)
    t.same(JSON.parse(client.body.toString()), forbidden)
    t.equal(seen.connections, 0)
  })

  t.test('an allowed origin, and a request without Origin (not a browser), get their tunnel', async (t) => {
    const before = seen.upgrades
    const ws = await openWs(t, wsUrl(url, '/ws/chat'), undefined, { origin: APP_ORIGIN })
    ws.send('from the app')
    t.equal((await messages(ws, 1))[0].data.toString(), 'from the app')
    const bare = await openWs(t, wsUrl(url, '/ws/chat'))
    bare.send('no origin')
    t.equal((await messages(bare, 1))[0].data.toString(), 'no origin')
    t.equal(seen.upgrades, before + 2)
  })

  // Origins as a client may write them: scheme and host compared ignoring case, default ports left out.
  const cases: Array<[string, 101 | 403]> = [
    ['HTTPS://App.Example.COM', 101],
    ['https://app.example.com:443', 101],
    ['http://localhost:3000', 101],
    ['http://LOCALHOST:3000', 101],
    ['http://intranet.example:80', 101],
    ['http://intranet.example:443', 403],
    ['https://chat.example.org', 101],
    ['https://eu.chat.example.org', 101],
    ['https://chat.example.org:443', 101],
    ['http://app.example.com', 403],
    ['https://app.example.com:8443', 403],
    ['http://localhost', 403],
    ['http://localhost:3001', 403],
    ['https://app.example.com.evil.example', 403],
    ['https://example.org', 403],
    ['https://evilexample.org', 403],
    ['http://chat.example.org', 403],
    ['https://chat.example.org:8443', 403],
    ['null', 403],
    [`${APP_ORIGIN}, ${APP_ORIGIN}`, 403]
  ]
  for (const [value, status] of cases) {
    t.test(`Origin ${value} → ${status}`, async (t) => {
      const before = seen.upgrades
      if (status === 101) {
        const { head, frame } = await echoedHandshake(t, port, '/ws/chat', [`Origin: ${value}`])
        t.equal(head.status, 101)
        t.equal(frame.payload.toString(), 'ping through')
        t.equal(seen.upgrades, before + 1)
      } else {
        const refused = await refusedHandshake(t, port, '/ws/chat', [`Origin: ${value}`])
        t.equal(refused.head.status, 403)
        t.same(refused.body, forbidden)
        t.equal(seen.upgrades, before, 'not proxied')
      }
    })
  }

  t.test('a route\'s list replaces the plugin\'s, and `false` turns the check off', async (t) => {
    const open = await echoedHandshake(t, port, '/open/x', ['Origin: https://evil.example'])
    t.equal(open.head.status, 101)
    const admin = await echoedHandshake(t, port, '/admin/x', ['Origin: https://admin.example.com'])
    t.equal(admin.head.status, 101)
    const app = await refusedHandshake(t, port, '/admin/x', [`Origin: ${APP_ORIGIN}`])
    t.equal(app.head.status, 403, 'the plugin\'s origins do not apply to a route with its own')
    t.same(app.body, forbidden)
  })

  t.test('upgrades to an `upgradeUpstream` are checked too', async (t) => {
    const before = seen.upgrades
    const refused = await refusedHandshake(t, port, '/split/x', ['Origin: https://evil.example'])
    t.equal(refused.head.status, 403)
    t.same(refused.body, forbidden)
    const allowed = await echoedHandshake(t, port, '/split/x', [`Origin: ${APP_ORIGIN}`])
    t.equal(allowed.head.status, 101)
    t.equal(seen.upgrades, before + 1)
  })

  t.test('plain requests are not checked (CORS is their defence)', async (t) => {
    const before = seen.requests
    const res = await request(`${url}/ws/data`, { headers: { origin: 'https://evil.example' } })
    t.equal(res.status, 200)
    t.equal(seen.requests, before + 1)
  })
})
