import t from 'tap'
import Fastify from 'fastify'
import wsProxyPlugin, { resolveOptions, type WsProxyOptions } from '../src/index.js'

// Every invalid option fails `register` with one FST_WS_PROXY_INVALID_OPTION naming the path and the reason.
const invalid: Array<[string, unknown, RegExp]> = [
  ['not an object', 'http://x', /option \(root\): expected an object/],
  ['an array', [], /option \(root\): expected an object/],
  ['neither routes nor upstream', {}, /option routes: expected `routes` .* or the shorthand `upstream`/],
  ['routes and upstream together', { routes: [{ prefix: '/a/', upstream: 'http://x' }], upstream: 'http://y' }, /option upstream: use either `routes` or the single-route shorthand/],
  ['empty routes', { routes: [] }, /option routes: expected array length to be greater or equal to 1/],
  ['route without upstream', { routes: [{ prefix: '/a/' }] }, /option routes\/0\/upstream: expected required property/],
  ['route without prefix', { routes: [{ upstream: 'http://x' }] }, /option routes\/0\/prefix: expected required property/],
  ['prefix without a leading slash', { routes: [{ prefix: 'a/', upstream: 'http://x' }] }, /option routes\/0\/prefix: expected string to match/],
  ['prefix with a wildcard', { routes: [{ prefix: '/a/*', upstream: 'http://x' }] }, /option routes\/0\/prefix: expected string to match/],
  ['prefix with a parameter', { routes: [{ prefix: '/a/:id', upstream: 'http://x' }] }, /option routes\/0\/prefix: expected string to match/],
  ['prefix with a query', { routes: [{ prefix: '/a?b', upstream: 'http://x' }] }, /option routes\/0\/prefix/],
  ['upstream not a URL', { upstream: 'localhost:3000' }, /option upstream: expected string to match '\^https\?:\/\/', got "localhost:3000"/],
  ['ftp upstream', { routes: [{ prefix: '/a/', upstream: 'ftp://x' }] }, /option routes\/0\/upstream: expected string to match/],
  ['unparseable upstream', { upstream: 'http://exa mple' }, /option upstream: expected an absolute http: or https: URL/],
  ['upstream with a query', { upstream: 'http://x/?a=1' }, /option upstream: the upstream URL must not have a query or fragment/],
  ['upstream with a fragment', { upstream: 'http://x/#f' }, /option upstream: the upstream URL must not have a query or fragment/],
  ['upstream with credentials', { upstream: 'http://u:p@x/' }, /option upstream: credentials in the upstream URL are not supported/],
  ['malformed unix upstream', { upstream: 'http://unix:relative.sock:' }, /option upstream: expected "http:\/\/unix:\/path\/to\.sock:"/],
  ['unix upstream with a bad URI', { upstream: 'http://unix:/tmp/s.sock:base' }, /option upstream: the URI after the socket path must start with "\/"/],
  ['unix upstream with a query', { upstream: 'http://unix:/tmp/s.sock:/?a' }, /option upstream: the upstream URL must not have a query/],
  ['rewritePrefix with an upstream path', { routes: [{ prefix: '/a/', upstream: 'http://x/b/', rewritePrefix: '/c/' }] }, /option routes\/0\/rewritePrefix: the upstream URL already has a path/],
  ['shorthand rewritePrefix with an upstream path', { upstream: 'http://x/', rewritePrefix: '/c/' }, /option rewritePrefix: the upstream URL already has a path/],
  ['rewritePrefix without a leading slash', { upstream: 'http://x', rewritePrefix: 'c/' }, /option rewritePrefix: expected string to match/],
  ['unknown top-level key', { upstream: 'http://x', proxyPass: 'http://y' }, /option proxyPass: unexpected property/],
  ['unknown route key', { routes: [{ prefix: '/a/', upstream: 'http://x', websocket: true }] }, /option routes\/0\/websocket: unexpected property/],
  ['unknown timeouts key', { upstream: 'http://x', timeouts: { write: 1 } }, /option timeouts\/write: unexpected property/],
  ['unknown pool key', { upstream: 'http://x', pool: { pipelining: 10 } }, /option pool\/pipelining: unexpected property/],
  ['negative timeout', { upstream: 'http://x', timeouts: { read: -1 } }, /option timeouts\/read: expected integer to be greater or equal to 1, got -1/],
  ['zero timeout', { routes: [{ prefix: '/a/', upstream: 'http://x', timeouts: { connect: 0 } }] }, /option routes\/0\/timeouts\/connect: expected integer to be greater or equal to 1/],
  ['fractional timeout', { upstream: 'http://x', timeouts: { connect: 1.5 } }, /option timeouts\/connect: expected integer/],
  ['timeout as a string', { upstream: 'http://x', timeouts: { read: '60s' } }, /option timeouts\/read: expected integer, got "60s"/],
  ['zero connections', { upstream: 'http://x', pool: { connections: 0 } }, /option pool\/connections: expected integer to be greater or equal to 1/],
  ['duplicate prefix', { routes: [{ prefix: '/a/', upstream: 'http://x' }, { prefix: '/b/', upstream: 'http://x' }, { prefix: '/a/', upstream: 'http://y' }] }, /option routes\/2\/prefix: duplicate prefix "\/a\/" \(also routes\/0\/prefix\)/],
  ['unknown method', { upstream: 'http://x', methods: ['FETCH'] }, /option methods\/0: expected one of ACL, BIND, .*, UNSUBSCRIBE, got "FETCH"/],
  ['CONNECT is not proxied', { upstream: 'http://x', methods: ['CONNECT'] }, /option methods\/0: expected one of/],
  ['empty methods', { upstream: 'http://x', methods: [] }, /option methods: expected array length to be greater or equal to 1/],
  ['duplicate methods', { upstream: 'http://x', methods: ['GET', 'GET'] }, /option methods: expected array elements to be unique/],
  ['boolean as a string', { upstream: 'http://x', preserveHost: 'yes' }, /option preserveHost: expected boolean, got "yes"/]
]

for (const [name, options, message] of invalid) {
  t.test(`register fails: ${name}`, async (t) => {
    const app = Fastify()
    t.teardown(() => app.close())
    app.register(wsProxyPlugin, options as WsProxyOptions)
    const err = await app.ready().then(() => null, (e: unknown) => e as Error & { code: string })
    t.ok(err, 'register failed')
    t.equal(err?.code, 'FST_WS_PROXY_INVALID_OPTION')
    t.ok(err instanceof TypeError, 'a TypeError')
    t.match(err?.message, message)
  })
}

t.test('defaults follow nginx where nginx has one', async (t) => {
  const resolved = resolveOptions({ upstream: 'http://127.0.0.1:3000' })
  t.equal(resolved.connections, 128)
  t.equal(resolved.keepAliveTimeout, 4000)
  t.equal(resolved.routes.length, 1)
  t.match(resolved.routes[0], {
    prefix: '/',
    origin: 'http://127.0.0.1:3000',
    socketPath: null,
    proxyHost: '127.0.0.1:3000',
    rewrite: null,
    connectTimeout: 60_000,
    readTimeout: 60_000,
    preserveHost: false,
    xForwarded: true,
    upgrade: true
  })
  t.ok(resolved.routes[0].methods.includes('PROPFIND'))
  t.notOk(resolved.routes[0].methods.includes('CONNECT'))
  t.ok(Object.isFrozen(resolved) && Object.isFrozen(resolved.routes[0]), 'the result is frozen')
})

t.test('proxy_pass URI semantics and the unix socket form are parsed once', async (t) => {
  const [bare, root, base, rewrite, unix, unixBare] = resolveOptions({
    routes: [
      { prefix: '/a/', upstream: 'http://h:81' },
      { prefix: '/b/', upstream: 'http://h:81/' },
      { prefix: '/c/', upstream: 'https://h/base/' },
      { prefix: '/d/', upstream: 'http://h', rewritePrefix: '/x' },
      { prefix: '/e/', upstream: 'http://unix:/tmp/s.sock:/u/' },
      { prefix: '/f/', upstream: 'http://unix:/tmp/s.sock:' }
    ]
  }).routes
  t.equal(bare.rewrite, null)
  t.equal(root.rewrite, '/')
  t.equal(base.rewrite, '/base/')
  t.equal(base.origin, 'https://h')
  t.equal(base.proxyHost, 'h')
  t.equal(rewrite.rewrite, '/x')
  t.match(unix, { group: { servers: [{ socketPath: '/tmp/s.sock', addr: 'unix:/tmp/s.sock' }] }, rewrite: '/u/', proxyHost: 'localhost' })
  t.match(unixBare, { group: { servers: [{ socketPath: '/tmp/s.sock' }] }, rewrite: null })
  t.equal(unix.group, unixBare.group, 'routes to one URL share its group')
})

t.test('route settings win over plugin settings, which win over the defaults', async (t) => {
  const [own, inherited] = resolveOptions({
    timeouts: { connect: 1000, read: 2000 },
    preserveHost: true,
    xForwarded: false,
    upgrade: false,
    methods: ['GET'],
    routes: [
      { prefix: '/a/', upstream: 'http://x', timeouts: { read: 5 }, preserveHost: false, xForwarded: true, upgrade: true, methods: ['POST'] },
      { prefix: '/b/', upstream: 'http://x' }
    ]
  }).routes
  t.match(own, { connectTimeout: 1000, readTimeout: 5, preserveHost: false, xForwarded: true, upgrade: true, methods: ['POST'] })
  t.match(inherited, { connectTimeout: 1000, readTimeout: 2000, preserveHost: true, xForwarded: false, upgrade: false, methods: ['GET'] })
})

t.test("the caller's options are never mutated, and frozen options work", async (t) => {
  const options = { routes: [{ prefix: '/a/', upstream: 'http://x' }], timeouts: { read: 5 } }
  const before = structuredClone(options)
  resolveOptions(options)
  t.same(options, before)
  const frozen = Object.freeze({ upstream: 'http://x', timeouts: Object.freeze({ read: 5 }) })
  t.equal(resolveOptions(frozen).routes[0].readTimeout, 5)
})

t.test("Fastify's own register options (logLevel, prefix) are accepted", async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(wsProxyPlugin, { upstream: 'http://127.0.0.1:1', prefix: '/p', logLevel: 'warn' } as WsProxyOptions)
  await app.ready()
  t.ok(app.hasRoute({ method: 'GET', url: '/p/*' }))
})

t.test('the proxied methods are every method Node parses except CONNECT', async (t) => {
  const { METHODS } = await import('node:http')
  const { PROXIED_METHODS } = await import('../src/options/schema.js')
  t.same([...PROXIED_METHODS], METHODS.filter((m) => m !== 'CONNECT'))
})
