import t from 'tap'
import wsProxyPlugin from '../src/index.js'
import { gateway, httpUpstream, origin, type Seen } from './helpers/servers.js'
import type { Answer } from './helpers/clients.js'
import { errorBody, requestPath } from './helpers/http-faults.js'

// The upstream URI follows nginx proxy_pass: without a URI part the request URI goes unchanged, with one it replaces
// the matched prefix. The path and query are never decoded or re-encoded on the way.

const seenUrl = (res: Answer): string => (JSON.parse(res.body.toString()) as Seen).url

t.test('upstream without a path: the request URI is passed unchanged, prefix included', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, { routes: [{ prefix: '/api/', upstream: origin(upstream) }] })
  t.equal(seenUrl(await requestPath(url, '/api/items/7?x=1')), '/api/items/7?x=1')
  t.equal(seenUrl(await requestPath(url, '/api/')), '/api/')
})

t.test('shorthand `upstream` without a path proxies every URI unchanged', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, { upstream: origin(upstream) })
  t.equal(seenUrl(await requestPath(url, '/')), '/')
  t.equal(seenUrl(await requestPath(url, '/deep/path/x.json?y=2')), '/deep/path/x.json?y=2')
})

t.test('upstream with "/" replaces the matched prefix with "/"', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, { routes: [{ prefix: '/api/', upstream: origin(upstream) + '/' }] })
  t.equal(seenUrl(await requestPath(url, '/api/items?q=1')), '/items?q=1')
  t.equal(seenUrl(await requestPath(url, '/api/')), '/')
  t.equal(seenUrl(await requestPath(url, '/api/?q=1')), '/?q=1')
})

t.test('upstream with "/base/" replaces the matched prefix with "/base/"', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, { routes: [{ prefix: '/api/', upstream: origin(upstream) + '/base/' }] })
  t.equal(seenUrl(await requestPath(url, '/api/items/1?q')), '/base/items/1?q')
  t.equal(seenUrl(await requestPath(url, '/api/')), '/base/')
})

t.test('a prefix without a trailing slash is a plain string prefix, as an nginx location', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, { routes: [{ prefix: '/api', upstream: origin(upstream) + '/base' }] })
  t.equal(seenUrl(await requestPath(url, '/api/x')), '/base/x')
  t.equal(seenUrl(await requestPath(url, '/apix')), '/basex')
  t.equal(seenUrl(await requestPath(url, '/api')), '/base')
})

t.test('rewritePrefix replaces the matched prefix, on a route and as shorthand', async (t) => {
  const upstream = await httpUpstream(t)
  const a = await gateway(t, { routes: [{ prefix: '/api/', upstream: origin(upstream), rewritePrefix: '/v2/' }] })
  t.equal(seenUrl(await requestPath(a.url, '/api/users?id=3')), '/v2/users?id=3')
  const b = await gateway(t, { upstream: origin(upstream), rewritePrefix: '/root/' })
  t.equal(seenUrl(await requestPath(b.url, '/users')), '/root/users')
})

t.test('query strings reach the upstream byte for byte', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, { routes: [{ prefix: '/api/', upstream: origin(upstream) + '/' }] })
  for (const query of ['?a=%20&b=&&c=%zz;x', '?', '?a=1&a=2&a', '?next=/../../etc&x=%2e%2e', '?%E2%9C%93=%F0%9F%98%80&+=+', '?q=a%2Fb%3Fc%23d']) {
    t.equal(seenUrl(await requestPath(url, `/api/search${query}`)), `/search${query}`, JSON.stringify(query))
  }
})

t.test('canonical escapes in the path are neither decoded nor re-encoded; an encoded slash is refused', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, { routes: [{ prefix: '/api/', upstream: origin(upstream) + '/' }] })
  t.equal(seenUrl(await requestPath(url, '/api/caf%C3%A9/a%3Fb/%20x;p=1')), '/caf%C3%A9/a%3Fb/%20x;p=1')
  t.equal(seenUrl(await requestPath(url, '/api/..x/y../...')), '/..x/y../...', 'dots that are not whole segments pass')
  // Upstreams disagree on whether `%2F` separates segments: one spelling for hooks and upstream is not possible.
  const slash = await requestPath(url, '/api/a%2Fb')
  t.equal(slash.status, 400)
  t.same(errorBody(slash.body), { statusCode: 400, code: 'FST_WS_PROXY_BAD_PATH', error: 'Bad Request', message: 'Request target refused: encoded slash or backslash' })
})

t.test('the prefix without its slash answers 301 to the prefix, query kept, like nginx', async (t) => {
  let hits = 0
  const upstream = await httpUpstream(t, (_req, res) => { hits++; res.end() })
  const { url } = await gateway(t, { routes: [{ prefix: '/chat/', upstream: origin(upstream) + '/' }] })
  const plain = await requestPath(url, '/chat')
  t.equal(plain.status, 301)
  t.equal(plain.headers.location, '/chat/')
  const withQuery = await requestPath(url, '/chat?room=a%20b&x')
  t.equal(withQuery.status, 301)
  t.equal(withQuery.headers.location, '/chat/?room=a%20b&x')
  const head = await requestPath(url, '/chat?x=1', { method: 'HEAD' })
  t.equal(head.status, 301)
  t.equal(head.headers.location, '/chat/?x=1')
  t.equal(head.body.length, 0)
  t.equal(hits, 0, 'redirects are answered by the gateway')
})

t.test('dot segments are refused with 400 FST_WS_PROXY_BAD_PATH and never reach the upstream', async (t) => {
  let hits = 0
  const upstream = await httpUpstream(t, (_req, res) => { hits++; res.end() })
  const { url } = await gateway(t, { routes: [{ prefix: '/api/', upstream: origin(upstream) + '/internal/' }] })
  // Encoded ones are refused before routing; plain ones are not canonical (wsProxyRewriteUrl would resolve them).
  const encoded = ['/api/%2e%2e/x', '/api/%2E%2E/x', '/api/.%2e/x', '/api/%2e/x']
  const plain = ['/api/../x', '/api/./x', '/api/a/..', '/api/a/.', '/api/a/../../admin?x=1']
  for (const path of [...encoded, ...plain]) {
    const res = await requestPath(url, path, { method: path.endsWith('?x=1') ? 'POST' : 'GET', body: path.endsWith('?x=1') ? 'data' : undefined })
    t.equal(res.status, 400, path)
    t.same(errorBody(res.body), {
      statusCode: 400,
      code: 'FST_WS_PROXY_BAD_PATH',
      error: 'Bad Request',
      message: encoded.includes(path) ? 'Request target refused: encoded dot segment' : 'Request target refused: not in canonical form (see wsProxyRewriteUrl)'
    }, path)
  }
  t.equal(hits, 0)
})

t.test('Fastify\'s register prefix mounts every route below it', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, { prefix: '/gw', routes: [{ prefix: '/api/', upstream: origin(upstream) + '/' }, { prefix: '/raw/', upstream: origin(upstream) }] })
  t.equal(seenUrl(await requestPath(url, '/gw/api/items?z=1')), '/items?z=1', 'the whole matched prefix is replaced')
  t.equal(seenUrl(await requestPath(url, '/gw/raw/items')), '/gw/raw/items', 'without a URI part the full URI goes')
  const redirect = await requestPath(url, '/gw/api?z=1')
  t.equal(redirect.status, 301)
  t.equal(redirect.headers.location, '/gw/api/?z=1')
  t.equal((await requestPath(url, '/api/items')).status, 404, 'nothing is mounted outside the prefix')
})

t.test('shorthand under a register prefix: the prefix is the location, with its 301', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, { prefix: '/gw/', upstream: origin(upstream) + '/' })
  t.equal(seenUrl(await requestPath(url, '/gw/a/b?c')), '/a/b?c')
  t.equal(seenUrl(await requestPath(url, '/gw/')), '/')
  const redirect = await requestPath(url, '/gw')
  t.equal(redirect.status, 301)
  t.equal(redirect.headers.location, '/gw/')
})

t.test('two registrations on one app proxy to their own upstreams', async (t) => {
  const one = await httpUpstream(t, (req, res) => res.end(`one ${req.url as string}`))
  const two = await httpUpstream(t, (req, res) => res.end(`two ${req.url as string}`))
  const { url, app } = await gateway(t, { routes: [{ prefix: '/two/', upstream: origin(two) + '/' }] }, {}, async (app) => {
    await app.register(wsProxyPlugin, { prefix: '/one', upstream: origin(one) })
  })
  t.equal((await requestPath(url, '/one/x?y')).body.toString(), 'one /one/x?y')
  t.equal((await requestPath(url, '/two/x?y')).body.toString(), 'two /x?y')
  t.equal((await requestPath(url, '/three/x')).status, 404)
  t.equal(app.wsProxy.upstreamConnections, 2, 'the state sums both registrations\' pools')
})

t.test('registered inside a parent context whose prefix ends in "/": the prefixes join with one slash', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, { routes: [{ prefix: '/root/', upstream: origin(upstream) + '/' }] }, {}, async (app) => {
    await app.register(async (outer) => {
      await outer.register(wsProxyPlugin, { routes: [{ prefix: '/api/', upstream: origin(upstream) + '/v1/' }] })
    }, { prefix: '/outer/' })
  })
  t.equal(seenUrl(await requestPath(url, '/outer/api/items?x')), '/v1/items?x')
  const redirect = await requestPath(url, '/outer/api?x')
  t.equal(redirect.status, 301)
  t.equal(redirect.headers.location, '/outer/api/?x')
  t.equal(seenUrl(await requestPath(url, '/root/y')), '/y', 'the root registration is unaffected')
})
