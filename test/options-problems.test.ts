// Validation that helps: every problem of the options in one error, sorted by path and capped, with the closest
// valid name for a misspelt key, value, variable or group; warnings for what is valid but likely a mistake.
import t from 'tap'
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import wsProxyPlugin, { resolveOptions, type WsProxyOptions } from '../src/index.js'
import { ProblemList, MOST_SHOWN } from '../src/options/problems.js'
import { schemaProblems } from '../src/options/schema-problems.js'
import { closest, didYouMean, editDistance } from '../src/suggest.js'
import { logCapture } from './helpers/servers.js'
import { problemsOf } from './helpers/options.js'

const server = (port: number) => ({ servers: [{ url: `http://127.0.0.1:${port}` }] })

t.test('schema problems: all of them, one per path, sorted by path (numbers in order)', async (t) => {
  const routes = Array.from({ length: 11 }, (_, i) => ({ prefix: `/r${i}/`, upstream: 'http://x' }))
  Object.assign(routes[10], { timeouts: { read: '60s' } })
  Object.assign(routes[2], { upstrem: 'http://y' })
  const err = problemsOf({ routes, tmeouts: {}, upstreams: { chat: { ...server(1), balance: 'round_robin' } } })
  t.equal(err.code, 'FST_WS_PROXY_INVALID_OPTION')
  t.ok(err instanceof TypeError)
  t.same(err.problems.map((p) => p.path), ['routes/2/upstrem', 'routes/10/timeouts/read', 'tmeouts', 'upstreams/chat/balance'])
  t.equal(err.message, [
    'Invalid fastify-ws-proxy option routes/2/upstrem: unexpected property, got "http://y"; did you mean "upstream"?',
    '  routes/10/timeouts/read: expected integer, got "60s"',
    '  tmeouts: unexpected property, got {}; did you mean "timeouts"?',
    '  upstreams/chat/balance: expected one of round-robin, least-conn, ip-hash, hash, got "round_robin"; did you mean "round-robin"?'
  ].join('\n'))
})

t.test('a key missing and a key misspelt are both named', async (t) => {
  const err = problemsOf({ routes: [{ prefix: '/a/', upstrem: 'http://x' }] })
  t.same(err.problems, [
    { path: 'routes/0/upstream', reason: 'expected required property' },
    { path: 'routes/0/upstrem', reason: 'unexpected property, got "http://x"; did you mean "upstream"?' }
  ])
})

t.test('no suggestion when nothing is close, or for a value that is not a string', async (t) => {
  const err = problemsOf({ upstream: 'http://x', zzz: 1, upstreams: { a: { ...server(1), balance: 5 } } })
  t.same(err.problems.map((p) => p.reason), ['expected one of round-robin, least-conn, ip-hash, hash, got 5', 'unexpected property, got 1'])
})

t.test('the message lists the first 20 problems; the error has them all', async (t) => {
  const options: Record<string, unknown> = { upstream: 'http://x' }
  for (let i = 0; i < 25; i++) options[`unknown${String(i).padStart(2, '0')}`] = i
  const err = problemsOf(options)
  t.equal(err.problems.length, 25)
  const lines = err.message.split('\n')
  t.equal(lines.length, MOST_SHOWN + 1)
  t.match(lines[0], /option unknown00: unexpected property, got 0$/)
  t.equal(lines[MOST_SHOWN - 1], '  unknown19: unexpected property, got 19')
  t.equal(lines[MOST_SHOWN], '  ... and 5 more')
})

t.test('cross-field problems of several routes and groups come together', async (t) => {
  const err = problemsOf({
    allowedOrigins: ['ws://a'],
    upstreams: { 'Bad Name': server(1), api: { ...server(2), hash: '$remote_addr' }, ok: server(3) },
    routes: [
      { prefix: '/a/', upstream: 'http://x/', rewritePrefix: '/b/' },
      { prefix: '/a/', upstream: 'http://ok' },
      { prefix: '/c/', upstream: 'http://x', requestHeaders: { set: { 'X-A': '$hots' } } }
    ]
  })
  t.same(err.problems.map((p) => p.path), [
    'allowedOrigins/0', 'routes/0/rewritePrefix', 'routes/1/prefix', 'routes/2/requestHeaders/set/X-A', 'upstreams/"Bad Name"', 'upstreams/api/hash'
  ])
  t.match(err.problems[3].reason, /^unknown variable \$hots; did you mean \$host\?$/)
})

t.test('a route naming a near miss of a group: an error with the group, at register too', async (t) => {
  const options = { upstreams: { chat: server(1), api: server(2) }, routes: [{ prefix: '/c/', upstream: 'http://chatt/' }, { prefix: '/a/', upstream: 'http://api' }] }
  const err = problemsOf(options)
  t.same(err.problems, [{
    path: 'routes/0/upstream',
    reason: 'no upstream group is named "chatt"; did you mean "chat" (http://chat)? For a host of that name, give its port (http://chatt:80)'
  }])
  const https = problemsOf({ upstreams: { chat: { servers: [{ url: 'https://127.0.0.1:1' }] } }, routes: [{ prefix: '/c/', upstream: 'https://chta' }] })
  t.match(https.problems[0].reason, /did you mean "chat" \(https:\/\/chat\)\? For a host of that name, give its port \(https:\/\/chta:443\)$/)

  const app = Fastify()
  t.teardown(() => app.close())
  app.register(wsProxyPlugin, options as WsProxyOptions)
  await t.rejects(async () => { await app.ready() }, { code: 'FST_WS_PROXY_INVALID_OPTION', message: `Invalid fastify-ws-proxy option routes/0/upstream: ${err.problems[0].reason}` })
})

t.test('what is not taken for a misspelt group: a port, a dot, a short name, a far name, no groups', async (t) => {
  const groups = { chat: server(1), ab: server(2) }
  for (const upstream of ['http://chatt:80', 'http://chatt.internal', 'http://ac', 'http://billing', 'http://unix:/tmp/chat.sock:']) {
    const resolved = resolveOptions({ upstreams: groups, routes: [{ prefix: '/x/', upstream }, { prefix: '/c/', upstream: 'http://chat' }, { prefix: '/b/', upstream: 'http://ab' }] })
    t.equal(resolved.routes[0].group.named, false, upstream)
  }
  t.equal(resolveOptions({ upstream: 'http://chatt' }).routes[0].group.name, 'http://chatt')
})

t.test('a group no route names is a warning, in the resolved options and in the log', async (t) => {
  const options = {
    upstreams: { chat: server(1), api: server(2), spare: server(3) },
    routes: [{ prefix: '/c/', upstream: 'http://chat' }, { prefix: '/a/', upstream: 'http://x', upgradeUpstream: 'http://api' }]
  }
  t.same(resolveOptions(options).warnings, ['upstreams/spare: no route names this group (as http://spare)'])
  const logs = logCapture()
  const app = Fastify({ logger: { level: 'warn', stream: logs.stream } })
  t.teardown(() => app.close())
  await app.register(wsProxyPlugin, options)
  t.same(logs.records.map((r) => [r.level, r.msg]), [[40, 'fastify-ws-proxy: upstreams/spare: no route names this group (as http://spare)']])
})

t.test('suggestions: edit distance, the closeness bound, case, exact names', async (t) => {
  t.equal(editDistance('kitten', 'sitting'), 3)
  t.equal(editDistance('', 'abc'), 3)
  t.equal(editDistance('hots', 'host'), 1, 'two neighbours swapped')
  t.equal(closest('timout', ['timeouts', 'timeout']), 'timeout')
  t.equal(closest('get', ['GET', 'PUT']), 'GET', 'case is ignored')
  t.equal(closest('abcdef', ['uvwxyz']), null, 'too far')
  t.equal(closest('GET', ['GET', 'GOT']), null, 'a valid name needs no suggestion')
  t.equal(didYouMean('hots', ['host'], (n) => `$${n}`), '; did you mean $host?')
  t.equal(didYouMean('zzz', ['host']), '')
})

t.test('schema problems at the root, keys with "/" and "~", and a bug that is not an option error', async (t) => {
  t.same(schemaProblems(TypeCompiler.Compile(Type.Object({})).Errors(5)), [{ path: '(root)', reason: 'expected object, got 5' }])
  t.same(schemaProblems(TypeCompiler.Compile(Type.Object({ 'a/b~c': Type.String() }, { additionalProperties: false })).Errors({ 'a/b~d': 'x' })), [
    { path: 'a/b~c', reason: 'expected required property' },
    { path: 'a/b~d', reason: 'unexpected property, got "x"; did you mean "a/b~c"?' }
  ])
  const list = new ProblemList()
  t.throws(() => list.attempt(() => { throw new RangeError('a bug') }), RangeError, 'rethrown as it is')
  t.equal(list.attempt(() => 1), 1)
  list.throwIfAny()
})
