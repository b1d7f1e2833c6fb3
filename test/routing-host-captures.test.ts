// nginx `server_name ~regex` captures in the route's templates: `$1`..`$9` and `(?<name>...)` as `$name`, from the
// `~regex` host name that selected the route (matched on the lower-cased Host without port), in request and response
// header templates and redirect/cookie rewrites, for plain requests and upgrades. A route chosen by an exact or
// wildcard name sees them empty; a `$N` beyond the route's regexes, or in a route without one, fails register.
import t from 'tap'
import type { IncomingMessage } from 'node:http'
import { gateway, httpUpstream, origin, wsUpstream } from './helpers/servers.js'
import { request, seenOf } from './helpers/clients.js'
import { messages, openWs, wsUrl } from './helpers/ws.js'
import { problemsOf } from './helpers/options.js'

const TENANT = '~^(?<tenant>[a-z]+)\\.(eu|us)\\.example\\.com$'

t.test('numbered and named captures of the host regex reach request and response headers', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, {
    routes: [{
      prefix: '/',
      host: [TENANT, 'static.example.com'],
      upstream: origin(upstream),
      requestHeaders: { set: { 'x-tenant': '$tenant', 'x-region': '$2', 'x-both': '${1}-$2' } },
      responseHeaders: { set: { 'x-served-for': '$tenant' } }
    }]
  })
  const answer = await request(url + '/a', { headers: { host: 'Acme.EU.example.com:8080' } })
  t.equal(answer.status, 200)
  const seen = seenOf(answer.body)
  t.match(seen.headers, { 'x-tenant': 'acme', 'x-region': 'eu', 'x-both': 'acme-eu' }, 'matched on the lower-cased Host without port')
  t.equal(answer.headers['x-served-for'], 'acme', 'response templates see them too')

  const exact = await request(url + '/a', { headers: { host: 'static.example.com' } })
  const plain = seenOf(exact.body)
  t.equal(plain.headers['x-tenant'], undefined, 'chosen by its exact name: captures are empty, and an empty header is not sent')
  t.equal(plain.headers['x-both'], '-')
  t.equal(exact.headers['x-served-for'], undefined)
})

t.test('a regex rewrite keeps its own $1; the host\'s named captures stay visible in it', async (t) => {
  const upstream = await httpUpstream(t, (_req, res) => {
    res.statusCode = 302
    res.setHeader('location', 'http://internal.test/page/7')
    res.end()
  })
  const { url } = await gateway(t, {
    routes: [{
      prefix: '/',
      host: TENANT,
      upstream: origin(upstream),
      redirect: [{ from: '~^http://internal\\.test/(.*)$', to: '/$tenant/$1' }]
    }]
  })
  const answer = await request(url + '/x', { headers: { host: 'beta.us.example.com' } })
  t.equal(answer.status, 302)
  t.equal(answer.headers.location, '/beta/page/7')
})

t.test('several regex names: the one that matched gives the captures, a group it lacks is empty', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, {
    routes: [{
      prefix: '/',
      host: ['~^(one)\\.test$', '~^(t)(w)(?<last>o)\\.test$'],
      upstream: origin(upstream),
      requestHeaders: { set: { 'x-caps': '[$1|$2|$3|$last]' } }
    }]
  })
  t.equal(seenOf((await request(url + '/', { headers: { host: 'one.test' } })).body).headers['x-caps'], '[one|||]', 'a name the matching regex lacks is empty too')
  t.equal(seenOf((await request(url + '/', { headers: { host: 'two.test' } })).body).headers['x-caps'], '[t|w|o|o]')
})

t.test('a WebSocket upgrade carries the captures upstream', async (t) => {
  const { server } = await wsUpstream(t)
  const seen: Array<string | undefined> = []
  server.on('upgrade', (req: IncomingMessage) => { seen.push(req.headers['x-tenant'] as string | undefined) })
  const { url } = await gateway(t, {
    routes: [{ prefix: '/ws/', host: TENANT, upstream: origin(server), requestHeaders: { set: { 'x-tenant': '$tenant' } } }]
  })
  const ws = await openWs(t, wsUrl(url, '/ws/room'), undefined, { headers: { host: 'gamma.eu.example.com' } })
  ws.send('hi')
  t.equal((await messages(ws, 1))[0].data.toString(), 'hi')
  t.same(seen, ['gamma'])
})

t.test('a capture the route cannot have fails register at its option path', async (t) => {
  const beyond = problemsOf({ routes: [{ prefix: '/', host: TENANT, upstream: 'http://127.0.0.1:1', requestHeaders: { set: { 'x-a': '$3' } } }] })
  t.match(beyond.problems, [{ path: 'routes/0/requestHeaders/set/x-a', reason: /\$3: the route's host regex has only 2 capture group\(s\)/ }])
  const none = problemsOf({ routes: [{ prefix: '/', host: '*.example.com', upstream: 'http://127.0.0.1:1', responseHeaders: { add: { 'x-a': '$1' } } }] })
  t.match(none.problems, [{ path: 'routes/0/responseHeaders/add/x-a', reason: /only available in a map value of a "~" key or in a route whose host has a "~regex"/ }])
  const plugin = problemsOf({
    requestHeaders: { set: { 'x-a': '$1' } },
    routes: [{ prefix: '/', host: TENANT, upstream: 'http://127.0.0.1:1' }, { prefix: '/', host: 'b.test', upstream: 'http://127.0.0.1:1' }]
  })
  t.match(plugin.problems, [{ path: 'requestHeaders/set/x-a', reason: /\$1 is a regex capture/ }], 'plugin-level rules are compiled per route: one without a regex host refuses them')
  const unknownName = problemsOf({ routes: [{ prefix: '/', host: TENANT, upstream: 'http://127.0.0.1:1', requestHeaders: { set: { 'x-a': '$tenat' } } }] })
  t.match(unknownName.problems, [{ path: 'routes/0/requestHeaders/set/x-a', reason: /unknown variable \$tenat/ }])
})
