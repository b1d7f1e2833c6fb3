import t from 'tap'
import Fastify from 'fastify'
import wsProxyPlugin, { resolveOptions, type WsProxyOptions } from '../src/index.js'
import { gateway, httpUpstream, origin, type Seen } from './helpers/servers.js'
import { request } from './helpers/clients.js'

// test/options.test.ts holds the main table (one case per rule). This one adds what a user gets wrong in practice:
// wrong shapes, values computed from the environment (NaN, bigint), options carried over from another proxy plugin
// (functions), and options handed over frozen or with explicit `undefined`. Each case asserts the whole path and
// the reason, so a message naming the wrong option or saying nothing useful fails.

interface Invalid {
  name: string
  options: unknown
  /** The option path, exactly as the message names it. */
  path: string
  /** What follows "<path>: " in the message. */
  reason: RegExp
}

const HOOK = (): void => {}
const SERIALIZE = (value: unknown): string => String(value)

const invalid: Invalid[] = [
  { name: 'routes is an object', options: { routes: { prefix: '/a/', upstream: 'http://x' } }, path: 'routes', reason: /^expected array, got \{"prefix":"\/a\/","upstream":"http:\/\/x"\}$/ },
  { name: 'routes is null', options: { routes: null }, path: 'routes', reason: /^expected array, got null$/ },
  { name: 'a route is a string', options: { routes: [{ prefix: '/a/', upstream: 'http://x' }, 'http://y'] }, path: 'routes/1', reason: /^expected object, got "http:\/\/y"$/ },
  { name: 'a route is null', options: { routes: [null] }, path: 'routes/0', reason: /^expected object, got null$/ },
  { name: 'prefix is a number', options: { routes: [{ prefix: 1, upstream: 'http://x' }] }, path: 'routes/0/prefix', reason: /^expected string, got 1$/ },
  { name: 'upstream is a URL object', options: { routes: [{ prefix: '/a/', upstream: new URL('http://x') }] }, path: 'routes/0/upstream', reason: /^expected string, got "http:\/\/x\/"$/ },
  { name: 'upstream is empty', options: { upstream: '' }, path: 'upstream', reason: /^expected string to match '\^https\?:\/\/', got ""$/ },
  { name: 'upstream has no host', options: { upstream: 'http://' }, path: 'upstream', reason: /^expected an absolute http: or https: URL, got "http:\/\/"$/ },
  { name: 'ws: upstream', options: { upstream: 'ws://x' }, path: 'upstream', reason: /^expected string to match '\^https\?:\/\/', got "ws:\/\/x"$/ },
  { name: 'route rewritePrefix without a leading slash', options: { routes: [{ prefix: '/a/', upstream: 'http://x' }, { prefix: '/b/', upstream: 'http://x', rewritePrefix: 'b/' }] }, path: 'routes/1/rewritePrefix', reason: /^expected string to match '\^\/\[\^\?#\]\*\$', got "b\/"$/ },
  { name: 'routes with the shorthand rewritePrefix', options: { routes: [{ prefix: '/a/', upstream: 'http://x' }], rewritePrefix: '/b/' }, path: 'upstream', reason: /^use either `routes` or the single-route shorthand \(`upstream`, `rewritePrefix`\), not both$/ },
  { name: 'methods is a string', options: { upstream: 'http://x', methods: 'GET' }, path: 'methods', reason: /^expected array, got "GET"$/ },
  { name: 'a lowercase method', options: { upstream: 'http://x', methods: ['get'] }, path: 'methods/0', reason: /^expected one of ACL, .*\bGET, HEAD\b.*, got "get"; did you mean "GET"\?$/ },
  { name: 'an unknown method on a route', options: { routes: [{ prefix: '/a/', upstream: 'http://x', methods: ['GET', 'FETCH'] }] }, path: 'routes/0/methods/1', reason: /^expected one of .*\bPOST\b.*, got "FETCH"$/ },
  { name: 'timeouts is a number', options: { upstream: 'http://x', timeouts: 60_000 }, path: 'timeouts', reason: /^expected object, got 60000$/ },
  { name: 'timeouts is null', options: { upstream: 'http://x', timeouts: null }, path: 'timeouts', reason: /^expected object, got null$/ },
  { name: 'a timeout beyond what a timer can hold', options: { upstream: 'http://x', timeouts: { read: 2 ** 31 } }, path: 'timeouts/read', reason: /^expected integer to be less or equal to 2147483647, got 2147483648$/ },
  { name: 'a timeout that is NaN (Number of a bad env var)', options: { upstream: 'http://x', timeouts: { read: Number('60s') } }, path: 'timeouts/read', reason: /^expected integer, got NaN$/ },
  { name: 'an infinite timeout', options: { routes: [{ prefix: '/a/', upstream: 'http://x', timeouts: { connect: Infinity } }] }, path: 'routes/0/timeouts/connect', reason: /^expected integer, got Infinity$/ },
  { name: 'a bigint timeout', options: { upstream: 'http://x', timeouts: { read: 5n } }, path: 'timeouts/read', reason: /^expected integer, got 5n$/ },
  { name: 'a fractional pool size', options: { upstream: 'http://x', pool: { connections: 1.5 } }, path: 'pool/connections', reason: /^expected integer, got 1\.5$/ },
  { name: 'a zero keep-alive timeout', options: { upstream: 'http://x', pool: { keepAliveTimeout: 0 } }, path: 'pool/keepAliveTimeout', reason: /^expected integer to be greater or equal to 1, got 0$/ },
  { name: 'pool is a number', options: { upstream: 'http://x', pool: 128 }, path: 'pool', reason: /^expected object, got 128$/ },
  { name: 'a route boolean as a string', options: { routes: [{ prefix: '/a/', upstream: 'http://x', preserveHost: 'false' }] }, path: 'routes/0/preserveHost', reason: /^expected boolean, got "false"$/ },
  { name: 'a boolean as a number', options: { upstream: 'http://x', upgrade: 1 }, path: 'upgrade', reason: /^expected boolean, got 1$/ },
  { name: "Fastify's prefix is not a string", options: { upstream: 'http://x', prefix: 5 }, path: 'prefix', reason: /^expected string, got 5$/ },
  // Hooks from @fastify/http-proxy or reply-from are functions: named as unknown options, not a cloning failure.
  { name: 'a hook carried over from another proxy plugin', options: { upstream: 'http://x', rewriteRequestHeaders: HOOK }, path: 'rewriteRequestHeaders', reason: /^unexpected property; did you mean "requestHeaders"\?$/ },
  { name: 'a hook inside a route', options: { routes: [{ prefix: '/a/', upstream: 'http://x', onResponse: HOOK }] }, path: 'routes/0/onResponse', reason: /^unexpected property$/ },
  { name: 'an unknown key holding a bigint', options: { upstream: 'http://x', quota: { body: 1n } }, path: 'quota', reason: /^unexpected property$/ },
  { name: 'a long value is cut', options: { upstream: 'http://x', proxyPass: `http://${'a'.repeat(200)}` }, path: 'proxyPass', reason: /^unexpected property, got "http:\/\/a{69}\.\.\.$/ },
  // allowedOrigins: what an Origin header holds (`scheme://host[:port]`), written the ways people get it wrong.
  { name: 'allowedOrigins is one string', options: { upstream: 'http://x', allowedOrigins: 'https://app.example.com' }, path: 'allowedOrigins', reason: /^expected union value, got "https:\/\/app\.example\.com"$/ },
  { name: 'allowedOrigins is true', options: { upstream: 'http://x', allowedOrigins: true }, path: 'allowedOrigins', reason: /^expected union value, got true$/ },
  { name: 'an origin with a trailing slash', options: { upstream: 'http://x', allowedOrigins: ['https://app.example.com/'] }, path: 'allowedOrigins/0', reason: /^expected scheme:\/\/host\[:port\] without path, query, fragment or credentials, got "https:\/\/app\.example\.com\/"$/ },
  { name: 'an origin with a path', options: { upstream: 'http://x', allowedOrigins: ['https://a.example', 'https://app.example.com/chat'] }, path: 'allowedOrigins/1', reason: /^expected scheme:\/\/host\[:port\] without path/ },
  { name: 'an origin with credentials', options: { upstream: 'http://x', allowedOrigins: ['https://user@app.example.com'] }, path: 'allowedOrigins/0', reason: /without path, query, fragment or credentials/ },
  { name: 'an origin without a scheme', options: { upstream: 'http://x', allowedOrigins: ['app.example.com'] }, path: 'allowedOrigins/0', reason: /^expected scheme:\/\/host\[:port\] .*, got "app\.example\.com"$/ },
  { name: 'a ws: origin', options: { upstream: 'http://x', allowedOrigins: ['wss://app.example.com'] }, path: 'allowedOrigins/0', reason: /^expected an http: or https: origin \(a browser sends the page's origin, not a ws: URL\), got "wss:\/\/app\.example\.com"$/ },
  { name: 'an origin that does not parse', options: { upstream: 'http://x', allowedOrigins: ['https://app.example.com:99999'] }, path: 'allowedOrigins/0', reason: /^expected an origin such as "https:\/\/app\.example\.com", got "https:\/\/app\.example\.com:99999"$/ },
  { name: 'a wildcard inside a host', options: { routes: [{ prefix: '/a/', upstream: 'http://x', allowedOrigins: ['https://app.*.example.com'] }] }, path: 'routes/0/allowedOrigins/0', reason: /^"\*" may only stand for the leftmost labels, followed by a domain name \("https:\/\/\*\.example\.com"\), got "https:\/\/app\.\*\.example\.com"$/ },
  { name: 'a wildcard for everything', options: { upstream: 'http://x', allowedOrigins: ['https://*'] }, path: 'allowedOrigins/0', reason: /^"\*" may only stand for the leftmost labels/ },
  { name: 'a wildcard before an empty label', options: { upstream: 'http://x', allowedOrigins: ['https://*..example.com'] }, path: 'allowedOrigins/0', reason: /^"\*" may only stand for the leftmost labels/ },
  { name: 'a number as an origin', options: { upstream: 'http://x', allowedOrigins: [8080] }, path: 'allowedOrigins', reason: /^expected union value, got \[8080\]$/ },
  // The plugin's list is checked even when every route has its own.
  { name: 'an invalid plugin list that every route overrides', options: { allowedOrigins: ['ws://a'], routes: [{ prefix: '/a/', upstream: 'http://x', allowedOrigins: false }] }, path: 'allowedOrigins/0', reason: /^expected an http: or https: origin/ }
]

for (const c of invalid) {
  t.test(`register fails: ${c.name}`, async (t) => {
    const app = Fastify()
    t.teardown(() => app.close())
    app.register(wsProxyPlugin, c.options as WsProxyOptions)
    const err = await app.ready().then(() => null, (e: unknown) => e as Error & { code?: string, statusCode?: number })
    if (err === null) {
      t.fail('register succeeded')
      return
    }
    t.equal(err.code, 'FST_WS_PROXY_INVALID_OPTION')
    t.ok(err instanceof TypeError, 'a TypeError')
    const head = `Invalid fastify-ws-proxy option ${c.path}: `
    t.equal(err.message.slice(0, head.length), head, 'names the option path')
    t.match(err.message.slice(head.length), c.reason)
  })
}

t.test('register without options names what is missing', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(wsProxyPlugin)
  await t.rejects(async () => { await app.ready() }, {
    code: 'FST_WS_PROXY_INVALID_OPTION',
    message: 'Invalid fastify-ws-proxy option routes: expected `routes` (an array of { prefix, upstream }) or the shorthand `upstream`'
  })
})

t.test('resolveOptions throws the same coded error, synchronously', async (t) => {
  t.throws(() => resolveOptions({ upstream: 'http://x', timeouts: { read: 5n } }), {
    name: 'FastifyError',
    code: 'FST_WS_PROXY_INVALID_OPTION',
    message: 'Invalid fastify-ws-proxy option timeouts/read: expected integer, got 5n'
  })
})

t.test('explicit undefined means "not set": the plugin level and then the defaults apply', async (t) => {
  const [route] = resolveOptions({
    timeouts: { connect: 1000, read: undefined },
    preserveHost: undefined,
    pool: undefined,
    routes: [{ prefix: '/a/', upstream: 'http://x', rewritePrefix: undefined, timeouts: undefined, xForwarded: undefined, methods: undefined }]
  }).routes
  t.match(route, { connectTimeout: 1000, readTimeout: 60_000, preserveHost: false, xForwarded: true, upgrade: true, rewrite: null })
  t.ok(route.methods.includes('GET'))
})

t.test('partial groups keep the defaults of the fields they leave out', async (t) => {
  const resolved = resolveOptions({
    upstream: 'http://x',
    timeouts: { read: 10 },
    pool: { connections: 5 }
  })
  t.equal(resolved.connections, 5)
  t.equal(resolved.keepAliveTimeout, 4000)
  t.equal(resolved.routes[0].connectTimeout, 60_000)
  t.equal(resolved.routes[0].readTimeout, 10)

  const [own] = resolveOptions({
    timeouts: { connect: 1000, read: 2000 },
    routes: [{ prefix: '/a/', upstream: 'http://x', timeouts: { connect: 5 } }]
  }).routes
  t.equal(own.connectTimeout, 5, 'the route sets connect')
  t.equal(own.readTimeout, 2000, 'read still comes from the plugin level')
})

t.test('allowedOrigins: the route\'s list replaces the plugin\'s, `false` and absence mean no check', async (t) => {
  const [inherits, own, off, shorthandLike] = resolveOptions({
    allowedOrigins: ['https://app.example.com'],
    routes: [
      { prefix: '/a/', upstream: 'http://x' },
      { prefix: '/b/', upstream: 'http://x', allowedOrigins: ['https://*.example.org:8443'] },
      { prefix: '/c/', upstream: 'http://x', allowedOrigins: false },
      { prefix: '/d/', upstream: 'http://x', allowedOrigins: [] }
    ]
  }).routes
  t.equal(inherits.allowedOrigins?.allows('https://app.example.com'), true)
  t.equal(own.allowedOrigins?.allows('https://app.example.com'), false, 'replaced, not merged')
  t.equal(own.allowedOrigins?.allows('https://a.example.org:8443'), true)
  t.equal(own.allowedOrigins?.allows('https://a.example.org'), false, 'the pattern\'s port')
  t.equal(off.allowedOrigins, null)
  t.equal(shorthandLike.allowedOrigins?.allows('https://app.example.com'), false, '[] allows no browser origin')
  t.equal(resolveOptions({ upstream: 'http://x' }).routes[0].allowedOrigins, null, 'off by default')
  t.equal(resolveOptions({ upstream: 'http://x', allowedOrigins: ['http://[::1]:8080'] }).routes[0].allowedOrigins?.allows('http://[::1]:8080'), true,
    'the shorthand route takes the plugin\'s list; IPv6 hosts as browsers write them')
  t.equal(resolveOptions({ upstream: 'http://x', allowedOrigins: ['https://bücher.example'] }).routes[0].allowedOrigins?.allows('https://xn--bcher-kva.example'), true,
    'an IDN entry matches the punycode browsers send')
})

t.test('the resolved options are frozen all the way down', async (t) => {
  const resolved = resolveOptions({ routes: [{ prefix: '/a/', upstream: 'http://x', methods: ['GET'] }] })
  t.ok(Object.isFrozen(resolved.routes), 'the routes array')
  t.ok(Object.isFrozen(resolved.routes[0].methods), 'a route\'s methods')
  t.throws(() => { (resolved.routes[0].methods as string[]).push('POST') }, TypeError)
})

t.test('register leaves a deep-frozen options object as it was and proxies with it', async (t) => {
  const upstream = await httpUpstream(t)
  const options = deepFreeze<WsProxyOptions>({
    prefix: '/p',
    timeouts: { read: 5000 },
    pool: { connections: 2 },
    routes: [
      { prefix: '/a/', upstream: `${origin(upstream)}/base/`, methods: ['GET', 'POST'] },
      { prefix: '/b/', upstream: origin(upstream), timeouts: { connect: 1000 } }
    ]
  })
  const before = structuredClone(options)
  const { url } = await gateway(t, options)
  t.strictSame(options, before, 'not a key added, removed or changed')

  const res = await request(`${url}/p/a/x?q=1`)
  t.equal(res.status, 200)
  t.equal((JSON.parse(res.body.toString()) as Seen).url, '/base/x?q=1')
  const bare = await request(`${url}/p/b/y`)
  t.equal((JSON.parse(bare.body.toString()) as Seen).url, '/p/b/y')
})

t.test("Fastify's logLevel and logSerializers (functions) are not taken for plugin options", async (t) => {
  const upstream = await httpUpstream(t)
  const app = Fastify()
  t.teardown(() => app.close())
  const options = Object.freeze({ upstream: origin(upstream), logLevel: 'silent', logSerializers: { req: SERIALIZE } })
  await app.register(wsProxyPlugin, options)
  await app.ready()
  t.ok(app.hasRoute({ method: 'GET', url: '/*' }), 'the shorthand route is registered')
  t.equal(options.logSerializers.req, SERIALIZE, 'left in place')
})

function deepFreeze<T> (value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const inner of Object.values(value)) deepFreeze(inner)
    Object.freeze(value)
  }
  return value
}
