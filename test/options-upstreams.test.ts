import t from 'tap'
import { resolveOptions } from '../src/index.js'

// Upstream groups in the options: every mistake is refused at register with the option path and a reason,
// and what is accepted resolves to the settings nginx would have (its defaults where the options say nothing).

const group = (extra: Record<string, unknown> = {}, servers: unknown[] = [{ url: 'http://10.0.0.1:8080' }]) =>
  ({ upstreams: { api: { servers, ...extra } }, routes: [{ prefix: '/', upstream: 'http://api' }] })

interface Invalid { name: string, options: unknown, path: string, reason: RegExp }

const invalid: Invalid[] = [
  { name: 'a group without servers', options: group({}, []), path: 'upstreams/api/servers', reason: /^expected array length to be greater or equal to 1, got \[\]$/ },
  { name: 'a server without url', options: group({}, [{ weight: 2 }]), path: 'upstreams/api/servers/0/url', reason: /^expected required property$/ },
  { name: 'a server URL of another scheme', options: group({}, [{ url: 'ws://x:1' }]), path: 'upstreams/api/servers/0/url', reason: /^expected string to match/ },
  { name: 'a server URL with a path', options: group({}, [{ url: 'http://x:1/base/' }]), path: 'upstreams/api/servers/0/url', reason: /^a server URL has no path/ },
  { name: 'a zero weight', options: group({}, [{ url: 'http://x:1', weight: 0 }]), path: 'upstreams/api/servers/0/weight', reason: /^expected integer to be greater or equal to 1, got 0$/ },
  { name: 'a negative maxFails', options: group({}, [{ url: 'http://x:1', maxFails: -1 }]), path: 'upstreams/api/servers/0/maxFails', reason: /greater or equal to 0/ },
  { name: 'an unknown server key (nginx spelling)', options: group({}, [{ url: 'http://x:1', max_fails: 3 }]), path: 'upstreams/api/servers/0/max_fails', reason: /^unexpected property, got 3; did you mean "maxFails"\?$/ },
  { name: 'a duplicate server', options: group({}, [{ url: 'http://x:1' }, { url: 'http://x:1/' }]), path: 'upstreams/api/servers/1/url', reason: /^duplicate server "http:\/\/x:1" \(also upstreams\/api\/servers\/0\/url\)$/ },
  { name: 'http and https servers mixed', options: group({}, [{ url: 'http://x:1' }, { url: 'https://y:2' }]), path: 'upstreams/api/servers/1/url', reason: /^every server of a group uses the same scheme \(http:\)/ },
  { name: 'an unknown balance method', options: group({ balance: 'random' }), path: 'upstreams/api/balance', reason: /^expected one of round-robin, least-conn, ip-hash, hash, got "random"$/ },
  { name: 'hash without a key', options: group({ balance: 'hash' }), path: 'upstreams/api/hash', reason: /^balance "hash" needs a key template/ },
  { name: 'a key without hash', options: group({ hash: '$remote_addr' }), path: 'upstreams/api/hash', reason: /^a hash key is only used with balance "hash", not "round-robin"$/ },
  { name: 'consistent with round-robin', options: group({ consistent: true }), path: 'upstreams/api/consistent', reason: /^consistent hashing needs balance "hash" or "ip-hash"$/ },
  { name: 'a hash key with an unknown variable', options: group({ balance: 'hash', hash: '$nope' }), path: 'upstreams/api/hash', reason: /nope/ },
  { name: 'an unknown failure kind', options: group({ failOn: ['http_501'] }), path: 'upstreams/api/failOn/0', reason: /^expected one of error, timeout, invalid_header, http_500/ },
  { name: 'nextUpstream tries below zero', options: group({ nextUpstream: { tries: -1 } }), path: 'upstreams/api/nextUpstream/tries', reason: /greater or equal to 0/ },
  { name: 'a health check path without a slash', options: group({ healthCheck: { path: 'health' } }), path: 'upstreams/api/healthCheck/path', reason: /^expected string to match '\^\/'/ },
  { name: 'a health check status range of one number', options: group({ healthCheck: { status: [200] } }), path: 'upstreams/api/healthCheck/status', reason: /2/ },
  { name: 'resolve without interval', options: group({ resolve: {} }), path: 'upstreams/api/resolve/interval', reason: /^expected required property$/ },
  { name: 'resolve with only addresses', options: group({ resolve: { interval: 1000 } }), path: 'upstreams/api/resolve', reason: /^no server of the group has a host name to resolve$/ },
  { name: 'a resolver that is not a function', options: group({ resolve: { interval: 1000, resolver: 'dns' } }, [{ url: 'http://svc:1' }]), path: 'upstreams/api/resolve/resolver', reason: /^expected a function/ },
  { name: 'an upper-case group name', options: { upstreams: { Api: { servers: [{ url: 'http://x:1' }] } }, upstream: 'http://x' }, path: 'upstreams/"Api"', reason: /^a group name is lower case letters/ },
  { name: 'an https route naming an http group', options: { upstreams: { api: { servers: [{ url: 'http://x:1' }] } }, upstream: 'https://api' }, path: 'upstream', reason: /^group "api" has http: servers; name it http:\/\/api$/ },
  { name: 'a TLS option of the wrong type', options: { upstream: 'https://x', tls: { rejectUnauthorized: 'no' } }, path: 'tls/rejectUnauthorized', reason: /^expected boolean, got "no"$/ },
  { name: 'an unknown TLS option', options: { upstream: 'https://x', tls: { insecure: true } }, path: 'tls/insecure', reason: /^unexpected property, got true$/ }
]

for (const c of invalid) {
  t.test(`refused: ${c.name}`, async (t) => {
    const err = (() => {
      try {
        resolveOptions(c.options)
        return null
      } catch (e) {
        return e as Error & { code?: string }
      }
    })()
    if (err === null) {
      t.fail('accepted')
      return
    }
    t.equal(err.code, 'FST_WS_PROXY_INVALID_OPTION')
    const head = `Invalid fastify-ws-proxy option ${c.path}: `
    t.equal(err.message.slice(0, head.length), head, `names ${c.path}`)
    t.match(err.message.slice(head.length), c.reason)
  })
}

t.test('a group gets nginx defaults; a route names it as the URL host, with or without a path', async (t) => {
  const resolved = resolveOptions({
    upstreams: { api: { servers: [{ url: 'http://10.0.0.1:8080' }, { url: 'http://10.0.0.2:8080', weight: 3, backup: true }] } },
    routes: [{ prefix: '/a/', upstream: 'http://api' }, { prefix: '/b/', upstream: 'http://api/v2/' }]
  })
  const [a, b] = resolved.routes
  t.equal(a.group, b.group, 'both routes share the group')
  t.match(a.group, {
    name: 'api',
    named: true,
    scheme: 'http',
    balance: 'round-robin',
    hash: null,
    consistent: false,
    tries: 0,
    retryTimeout: 0,
    nonIdempotent: false,
    healthCheck: null,
    discovery: null
  })
  t.same([...a.group.failOn], ['error', 'timeout'], 'nginx max_fails counts errors and timeouts')
  t.same([...a.group.retryOn], ['error', 'timeout'], 'nginx proxy_next_upstream error timeout')
  t.match(a.group.servers, [
    { url: 'http://10.0.0.1:8080', addr: '10.0.0.1:8080', weight: 1, maxFails: 1, failTimeout: 10_000, backup: false, down: false },
    { url: 'http://10.0.0.2:8080', weight: 3, backup: true }
  ])
  // nginx: $proxy_host (and so Host) is the group's name.
  t.equal(a.proxyHost, 'api')
  t.equal(a.rewrite, null)
  t.equal(b.rewrite, '/v2/')
  t.equal(resolved.groups.length, 1)
})

t.test('a group of https servers is named https://; TLS settings come from the group, else the plugin', async (t) => {
  const ca = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'
  const resolved = resolveOptions({
    tls: { ca, rejectUnauthorized: true },
    upstreams: {
      own: { servers: [{ url: 'https://a:443' }], tls: { servername: 'svc.internal' } },
      inherited: { servers: [{ url: 'https://b:443' }] }
    },
    routes: [{ prefix: '/own/', upstream: 'https://own' }, { prefix: '/inh/', upstream: 'https://inherited' }, { prefix: '/url/', upstream: 'https://c' }]
  })
  const [own, inherited, url] = resolved.routes
  t.same(own.group.tls, { servername: 'svc.internal' })
  t.same(inherited.group.tls, { ca, rejectUnauthorized: true })
  t.same(url.group.tls, { ca, rejectUnauthorized: true }, 'a URL route uses the plugin TLS settings')
  t.equal(url.group.named, false)
})

t.test('a URL that is not a group name is a one-server group, shared by the routes that name it', async (t) => {
  const resolved = resolveOptions({
    upstreams: { api: { servers: [{ url: 'http://10.0.0.1:1' }] } },
    routes: [{ prefix: '/a/', upstream: 'http://api:8080' }, { prefix: '/b/', upstream: 'http://api:8080/x/' }, { prefix: '/c/', upstream: 'http://other' }]
  })
  const [a, b, c] = resolved.routes
  // With a port it is a host, not the group (nginx reads it the same way).
  t.equal(a.group.named, false)
  t.equal(a.group.name, 'http://api:8080')
  t.equal(a.group, b.group)
  t.not(a.group, c.group)
  t.equal(a.group.servers[0].maxFails, 0, 'one server is never marked failed')
  t.same([...a.group.retryOn], [], 'nothing else to try')
  t.equal(resolved.groups.length, 3, 'the named group (unused) and two URLs')
})

t.test('hash, consistent, retries, health checks and resolve are resolved as given', async (t) => {
  const resolver = async (): Promise<string[]> => ['127.0.0.1']
  const options = {
    maps: { tenant: { source: '$http_x_tenant', cases: { acme: 'a' }, default: 'z' } },
    upstreams: {
      api: {
        servers: [{ url: 'http://svc:8080' }],
        balance: 'hash' as const,
        hash: '$tenant:$cookie_session',
        consistent: true,
        failOn: ['error' as const, 'http_500' as const],
        nextUpstream: { on: ['error' as const, 'http_502' as const], tries: 2, timeout: 5000, nonIdempotent: true },
        healthCheck: { path: '/health', interval: 1000 },
        resolve: { interval: 30_000, family: 4 as const, resolver }
      }
    },
    routes: [{ prefix: '/', upstream: 'http://api' }]
  }
  const resolved = resolveOptions(options)
  const route = resolved.routes[0]
  t.equal(route.needsVars, true, 'the hash key is a request template')
  t.match(route.group, { balance: 'hash', consistent: true, tries: 2, retryTimeout: 5000, nonIdempotent: true })
  t.equal(route.group.hash?.constant, null)
  t.same([...route.group.failOn], ['error', 'http_500'])
  t.same(route.group.healthCheck, { path: '/health', interval: 1000, timeout: 2000, status: [200, 399], passes: 1, fails: 1, headers: {} })
  t.same(route.group.discovery, { interval: 30_000, family: 4, resolver })
  t.equal(options.upstreams.api.resolve.resolver, resolver, 'the caller\'s options are left as they were')
})

t.test('what the options leave out takes its default; an explicit undefined resolver is no resolver', async (t) => {
  const resolved = resolveOptions({
    upstreams: {
      api: { servers: [{ url: 'http://svc:1' }], healthCheck: {}, resolve: { interval: 1000, resolver: undefined } },
      keyed: { servers: [{ url: 'http://10.0.0.1:1' }], balance: 'hash', hash: '$http_x_room' }
    },
    routes: [
      { prefix: '/a/', upstream: 'http://api' },
      // Upgrades go to a hash group: the upgrade route needs the request's variables, the route itself does not.
      { prefix: '/b/', upstream: 'http://api', upgradeUpstream: 'http://keyed' },
      { prefix: '/c/', upstream: 'http://[::1]:8080' }
    ]
  })
  const [a, b, c] = resolved.routes
  t.same(a.group.healthCheck, { path: '/', interval: 5000, timeout: 2000, status: [200, 399], passes: 1, fails: 1, headers: {} })
  t.same(a.group.discovery, { interval: 1000, family: 0, resolver: null })
  t.equal(b.needsVars, false)
  t.equal(b.upgradeRoute?.needsVars, true)
  t.equal(b.upgradeRoute?.group.name, 'keyed')
  t.match(c.group.servers[0], { hostname: '::1', addr: '[::1]:8080', url: 'http://[::1]:8080' }, 'an IPv6 host name loses its brackets')
})
