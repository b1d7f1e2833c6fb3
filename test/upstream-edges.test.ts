import t, { type Test } from 'tap'
import https from 'node:https'
import type { TLSSocket } from 'node:tls'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify from 'fastify'
import wsProxyPlugin from '../src/index.js'
import { gateway, httpUpstream, listen, logCapture, origin, portOf, waitFor, within } from './helpers/servers.js'
import { request } from './helpers/clients.js'
import { errorBody, selfSignedCert } from './helpers/http-faults.js'

// The corners of upstream groups the other upstream-* files do not reach: hash methods with nothing usable,
// IPv6 and IPv4-mapped clients under ip-hash, concurrent failures of one server, the run-time API's URL forms,
// https health checks, a probe cut short by close, and a name that resolves to an address already listed.

/** An upstream that answers its name. */
async function named (t: Test, name: string, handler?: (req: IncomingMessage, res: ServerResponse) => void) {
  return await httpUpstream(t, handler ?? ((_req, res) => res.end(name)))
}

t.test('hash and consistent hash with every server down: 502 no live upstream at once', async (t) => {
  const a = await named(t, 'a')
  const b = await named(t, 'b')
  const servers = [{ url: origin(a), down: true }, { url: origin(b), down: true }]
  const { url, app } = await gateway(t, {
    upstreams: {
      plain: { servers, balance: 'hash', hash: '$http_x_user' },
      ring: { servers, balance: 'hash', hash: '$http_x_user', consistent: true }
    },
    routes: [{ prefix: '/plain/', upstream: 'http://plain' }, { prefix: '/ring/', upstream: 'http://ring' }]
  })
  for (const path of ['/plain/x', '/ring/x']) {
    const res = await request(`${url}${path}`, { headers: { 'x-user': 'u1' } })
    t.equal(res.status, 502, path)
    t.equal(errorBody(res.body).code, 'FST_WS_PROXY_NO_LIVE_UPSTREAM')
  }
  // Rehashing gives up after 20 tries and round-robin finds the one server left (nginx does the same).
  app.wsProxy.group('plain').update(origin(b), { down: false })
  for (let i = 0; i < 5; i++) t.equal((await request(`${url}/plain/x`, { headers: { 'x-user': `u${i}` } })).body.toString(), 'b')
})

t.test('ip-hash: an IPv4-mapped IPv6 client hashes as its IPv4 /24; an IPv6 client by its whole address', async (t) => {
  const ups = await Promise.all(['a', 'b', 'c', 'd'].map(async (name) => await named(t, name)))
  const { url } = await gateway(t, {
    upstreams: { api: { servers: ups.map((u) => ({ url: origin(u) })), balance: 'ip-hash' } },
    upstream: 'http://api'
  }, { trustProxy: true })
  const via = async (ip: string) => (await request(`${url}/`, { headers: { 'x-forwarded-for': ip } })).body.toString()
  t.equal(await via('::ffff:10.1.2.3'), await via('10.1.2.200'), 'mapped and plain IPv4 of one /24 agree')
  const v6 = await via('2001:db8::1')
  for (let i = 0; i < 3; i++) t.equal(await via('2001:db8::1'), v6, 'an IPv6 client stays on its server')
  const spread = new Set<string>()
  for (let i = 0; i < 40; i++) spread.add(await via(`2001:db8::${(i * 7919).toString(16)}`))
  t.ok(spread.size > 1, 'IPv6 addresses differing in the last group spread over servers')
})

t.test('requests in flight when a server is taken out fail later without taking it out again', async (t) => {
  // Two requests hang on the only primary; the first read timeout takes it out, the second finds it already out.
  const logs = logCapture()
  const hung = await httpUpstream(t, () => {})
  const backup = await named(t, 'backup')
  const { url, app } = await gateway(t, {
    upstreams: { api: { servers: [{ url: origin(hung), failTimeout: 60_000 }, { url: origin(backup), backup: true }] } },
    upstream: 'http://api',
    timeouts: { read: 200 }
  }, { logger: { level: 'info', stream: logs.stream } })
  const answers = await within(Promise.all([request(`${url}/1`), request(`${url}/2`)]), 5000, 'both answers')
  t.same(answers.map((a) => [a.status, a.body.toString()]), [[200, 'backup'], [200, 'backup']], 'both retried on the backup')
  t.equal(logs.records.filter((r) => r.msg === 'upstream server failed: out of the group for failTimeout').length, 1, 'taken out once')
  const [primary] = app.wsProxy.group('api').servers()
  t.match(primary, { state: 'failed', failures: 2 })
})

t.test('the API takes a unix URL with or without its closing colon; update changes maxFails and failTimeout', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fastify-ws-proxy-edges-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const socket = join(dir, 'u.sock')
  const server = http.createServer((_req, res) => res.end('unix'))
  await new Promise<void>((resolve) => server.listen(socket, resolve))
  t.teardown(() => new Promise((resolve) => server.close(resolve)))
  const tcp = await named(t, 'tcp')
  const { url, app } = await gateway(t, {
    upstreams: { api: { servers: [{ url: `http://unix:${socket}:` }, { url: origin(tcp) }] } },
    upstream: 'http://api'
  })
  const api = app.wsProxy.group('api')
  t.equal(api.drain(`http://unix:${socket}`), true, 'found without the colon')
  for (let i = 0; i < 3; i++) t.equal((await request(`${url}/`)).body.toString(), 'tcp')
  t.equal(api.update(`http://unix:${socket}:`, { draining: false, maxFails: 3, failTimeout: 500 }), true)
  t.match(api.servers()[0], { url: `http://unix:${socket}:`, address: `unix:${socket}`, state: 'up', maxFails: 3, failTimeout: 500 })
  t.equal(api.update('not a url', { weight: 2 }), false, 'an unknown (even unparsable) URL is no server')
})

const cert = selfSignedCert()

t.test('health checks reach https servers with the server\'s TLS name', { skip: cert === null ? 'no openssl' : false }, async (t) => {
  if (cert === null) return
  const seen: Array<string | false | null> = []
  const server = https.createServer({ key: cert.key, cert: cert.cert }, (req, res) => {
    seen.push((req.socket as TLSSocket).servername)
    res.end('ok')
  })
  await listen(t, server)
  const port = portOf(server)
  const { app } = await gateway(t, {
    upstreams: {
      // Named unlike the certificate: the probe's TLS name is the server's host, not the group's name.
      secure: { servers: [{ url: `https://localhost:${port}` }], tls: { ca: cert.cert }, healthCheck: { path: '/health', interval: 50 } }
    },
    upstream: 'https://secure'
  })
  await waitFor(() => seen.length >= 2, 3000, 'two probes')
  t.equal(seen[0], 'localhost')
  t.equal(app.wsProxy.group('secure').servers()[0].state, 'up')
})

t.test('a probe still waiting when the app closes is aborted and changes nothing', async (t) => {
  let probes = 0
  const silent = await httpUpstream(t, () => { probes++ })
  const app = Fastify()
  app.register(wsProxyPlugin, {
    upstreams: { api: { servers: [{ url: origin(silent) }], healthCheck: { interval: 60_000, timeout: 60_000 } } },
    upstream: 'http://api'
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  await waitFor(() => probes === 1, 2000, 'the first probe')
  const group = app.wsProxy.group('api')
  await within(app.close(), 3000, 'close with a probe in flight')
  t.equal(group.servers()[0].state, 'up', 'the aborted probe did not count as a failure')
})

t.test('a name that resolves to an address also listed on its own is served once', async (t) => {
  const a = await named(t, 'a')
  const port = portOf(a)
  const { url, app } = await gateway(t, {
    upstreams: {
      api: {
        servers: [{ url: `http://svc.internal:${port}` }, { url: `http://127.0.0.1:${port}` }],
        resolve: { interval: 60_000, resolver: async () => ['127.0.0.1'] }
      }
    },
    upstream: 'http://api'
  })
  const api = app.wsProxy.group('api')
  await api.resolve()
  t.same(api.servers().map((s) => s.url), [`http://127.0.0.1:${port}`])
  await api.resolve()
  t.same(api.servers().map((s) => [s.url, s.resolvedFrom]), [[`http://127.0.0.1:${port}`, null]], 'stable')
  t.equal((await request(`${url}/`)).body.toString(), 'a')
})

t.test('resolve: IPv6 addresses become bracketed members; a round still resolving when the app closes changes nothing', async (t) => {
  const a = await named(t, 'a')
  const port = portOf(a)
  let release: (addresses: string[]) => void = () => {}
  let calls = 0
  const app = Fastify()
  app.register(wsProxyPlugin, {
    upstreams: {
      api: {
        servers: [{ url: `http://svc.internal:${port}` }],
        resolve: {
          interval: 60_000,
          resolver: async () => {
            // The first round (at start) answers an IPv6 address; the second waits until told.
            if (++calls === 1) return ['::1']
            return await new Promise<string[]>((resolve) => { release = resolve })
          }
        }
      }
    },
    upstream: 'http://api'
  })
  await app.ready()
  const api = app.wsProxy.group('api')
  await waitFor(() => api.servers()[0].url !== `http://svc.internal:${port}`, 2000, 'the first round')
  t.same(api.servers().map((s) => [s.url, s.address, s.resolvedFrom]), [[`http://[::1]:${port}`, `[::1]:${port}`, 'svc.internal']])
  const round = api.resolve()
  await waitFor(() => calls === 2, 2000, 'the second round to start')
  await app.close()
  release(['127.0.0.1'])
  await round
  t.same(api.servers().map((s) => s.url), [`http://[::1]:${port}`], 'an answer after close is not applied')
})

t.test('resolve: a server on its scheme\'s default port keeps it for its addresses', async (t) => {
  const { app } = await gateway(t, {
    upstreams: { api: { servers: [{ url: 'http://svc.internal' }], resolve: { interval: 60_000, resolver: async () => ['127.0.0.9'] } } },
    upstream: 'http://api'
  })
  const api = app.wsProxy.group('api')
  await api.resolve()
  await api.resolve()
  t.same(api.servers().map((s) => [s.url, s.address]), [['http://127.0.0.9', '127.0.0.9:80']], 'one member, stable')
})
