import t from 'tap'
import https from 'node:https'
import type { FastifyServerOptions } from 'fastify'
import { gateway, httpUpstream, origin, portOf, type Seen } from './helpers/servers.js'
import { rawExchange, request, seenOf, values } from './helpers/clients.js'
import { readBody, selfSignedCert, within } from './helpers/http-faults.js'
import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'

// X-Forwarded-For is extended with the client's address, X-Forwarded-Proto and -Host are stated by the gateway
// (a client's own values are replaced), and Host is the upstream's (nginx `$proxy_host`) unless `preserveHost`.

t.test('defaults: X-Forwarded-For/Proto/Host are set and Host is the upstream\'s host:port', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, { routes: [{ prefix: '/api/', upstream: origin(upstream) + '/base/' }] })
  const seen = seenOf((await request(`${url}/api/x`, { headers: { host: 'app.example:8080' } })).body)
  t.same(values(seen.rawHeaders, 'host'), [`127.0.0.1:${portOf(upstream)}`])
  t.same(values(seen.rawHeaders, 'x-forwarded-for'), ['127.0.0.1'])
  t.same(values(seen.rawHeaders, 'x-forwarded-proto'), ['http'])
  t.same(values(seen.rawHeaders, 'x-forwarded-host'), ['app.example:8080'])
})

t.test('X-Forwarded-For: the client\'s chain is kept and extended, several lines joined in order', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, { upstream: origin(upstream) })
  const one = seenOf((await request(`${url}/`, { headers: { 'x-forwarded-for': '203.0.113.7' } })).body)
  t.same(values(one.rawHeaders, 'x-forwarded-for'), ['203.0.113.7, 127.0.0.1'])
  const many = seenOf((await request(`${url}/`, {
    headers: ['Host', 'h.example', 'X-Forwarded-For', '198.51.100.1, 198.51.100.2', 'x-forwarded-for', '2001:db8::1']
  })).body)
  t.same(values(many.rawHeaders, 'x-forwarded-for'), ['198.51.100.1, 198.51.100.2, 2001:db8::1, 127.0.0.1'], 'one line upstream')
})

t.test('a client\'s X-Forwarded-Proto and X-Forwarded-Host are replaced; other X-Forwarded-* pass', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, { upstream: origin(upstream) })
  const seen = seenOf((await request(`${url}/`, {
    headers: ['Host', 'real.example', 'X-Forwarded-Proto', 'https', 'X-Forwarded-Host', 'evil.example', 'X-Forwarded-Prefix', '/app']
  })).body)
  t.same(values(seen.rawHeaders, 'x-forwarded-proto'), ['http'])
  t.same(values(seen.rawHeaders, 'x-forwarded-host'), ['real.example'])
  t.same(values(seen.rawHeaders, 'x-forwarded-prefix'), ['/app'])
})

t.test('xForwarded: false sends none of ours; what the client sent passes untouched', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, { upstream: origin(upstream), xForwarded: false })
  const bare = seenOf((await request(`${url}/`)).body)
  t.same(Object.keys(bare.headers).filter((h) => h.startsWith('x-forwarded')), [])
  const sent = seenOf((await request(`${url}/`, { headers: { 'x-forwarded-for': '192.0.2.9', 'x-forwarded-proto': 'https' } })).body)
  t.same(values(sent.rawHeaders, 'x-forwarded-for'), ['192.0.2.9'])
  t.same(values(sent.rawHeaders, 'x-forwarded-proto'), ['https'])
  t.equal(sent.headers['x-forwarded-host'], undefined)
})

t.test('preserveHost: true sends the client\'s Host; per-route settings override the plugin\'s', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, {
    preserveHost: true,
    routes: [
      { prefix: '/keep/', upstream: origin(upstream) },
      { prefix: '/proxy-host/', upstream: origin(upstream), preserveHost: false, xForwarded: false }
    ]
  })
  const kept = seenOf((await request(`${url}/keep/`, { headers: { host: 'App.Example:8443' } })).body)
  t.same(values(kept.rawHeaders, 'host'), ['App.Example:8443'])
  t.same(values(kept.rawHeaders, 'x-forwarded-host'), ['App.Example:8443'])
  const rewritten = seenOf((await request(`${url}/proxy-host/`, { headers: { host: 'App.Example:8443' } })).body)
  t.same(values(rewritten.rawHeaders, 'host'), [`127.0.0.1:${portOf(upstream)}`])
  t.equal(rewritten.headers['x-forwarded-for'], undefined)
})

t.test('an HTTP/1.0 request without Host: the upstream gets the proxy host and no X-Forwarded-Host', async (t) => {
  const upstream = await httpUpstream(t)
  const { port } = await gateway(t, { upstream: origin(upstream), preserveHost: true })
  const answer = await rawExchange(t, port, 'GET /old HTTP/1.0\r\n\r\n')
  t.match(answer, /^HTTP\/1\.1 200 OK\r\n/)
  const seen = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as Seen
  t.same(values(seen.rawHeaders, 'host'), [`127.0.0.1:${portOf(upstream)}`])
  t.equal(seen.headers['x-forwarded-host'], undefined)
  t.same(values(seen.rawHeaders, 'x-forwarded-for'), ['127.0.0.1'])
})

const cert = selfSignedCert()
t.test('X-Forwarded-Proto is https when the client came over TLS', { skip: cert === null && 'openssl is not available to make a test certificate' }, async (t) => {
  if (cert === null) return
  const upstream = await httpUpstream(t)
  const { port } = await gateway(t, { upstream: origin(upstream), requestHeaders: { set: { 'X-Scheme': '$scheme' } } }, { https: cert } as unknown as FastifyServerOptions)
  const req = https.request({ host: '127.0.0.1', port, path: '/tls', ca: cert.cert, servername: 'localhost', agent: false })
  t.teardown(() => { req.destroy() })
  req.end()
  const [res] = await within(once(req, 'response'), 5000, 'the TLS response') as [IncomingMessage]
  const seen = seenOf((await readBody(res)).body)
  t.same(values(seen.rawHeaders, 'x-forwarded-proto'), ['https'])
  t.same(values(seen.rawHeaders, 'x-forwarded-host'), [`127.0.0.1:${port}`])
  t.same(values(seen.rawHeaders, 'x-scheme'), ['https'], 'and $scheme says so too')
})
