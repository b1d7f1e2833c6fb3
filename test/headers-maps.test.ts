import t from 'tap'
import { gateway, httpUpstream, origin, type Seen } from './helpers/servers.js'
import { request, seenOf } from './helpers/clients.js'

// User maps (nginx `map`): exact keys ignoring case, regex keys in order with their captures, defaults,
// maps built on maps, and values that are templates themselves.

t.test('a map picks exact keys (ignoring case) before regex keys, regexes in order, then the default', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, {
    upstream: origin(upstream),
    maps: {
      client_kind: {
        source: '$http_user_agent',
        cases: {
          'Probe/1': 'probe',
          '~^curl/(\\d+)\\.(\\d+)': 'curl major $1 minor $2',
          '~*^(?<engine>gecko|webkit)/': 'browser:$engine',
          '~^curl': 'never reached: the first regex that matches wins',
          '\\~literal': 'an escaped tilde is an exact key'
        },
        default: 'other-${http_x_tag}'
      }
    },
    requestHeaders: { set: { 'X-Kind': '$client_kind' } }
  })
  const kind = async (agent: string, extra: Record<string, string> = {}): Promise<unknown> =>
    seenOf((await request(`${url}/`, { headers: { 'user-agent': agent, ...extra } })).body).headers['x-kind']
  t.equal(await kind('PROBE/1'), 'probe', 'exact keys ignore case (nginx)')
  t.equal(await kind('curl/8.5.0'), 'curl major 8 minor 5', 'positional captures')
  t.equal(await kind('WebKit/605'), 'browser:WebKit', '~* ignores case; a named capture')
  t.equal(await kind('~literal'), 'an escaped tilde is an exact key')
  t.equal(await kind('wget', { 'x-tag': 'tagged' }), 'other-tagged', 'the default is a template too')
  t.equal(await kind('wget'), 'other-', 'a variable without a value is empty')
})

t.test('a map can use another map and request variables; an unused map costs nothing', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, {
    upstream: origin(upstream),
    maps: {
      tier: { source: '$arg_plan', cases: { gold: 'premium', silver: 'premium' }, default: 'basic' },
      backend_pool: { source: '$tier-$request_method', cases: { 'premium-GET': 'fast-read', '~^premium-': 'fast-write' }, default: 'shared' },
      unused: { source: '$http_x_never', cases: { a: 'b' } }
    },
    requestHeaders: { set: { 'X-Pool': '$backend_pool', 'X-Tier': '${tier}' } }
  })
  const h = async (query: string, method = 'GET'): Promise<Seen['headers']> =>
    seenOf((await request(`${url}/${query}`, { method })).body).headers
  t.same([(await h('?plan=GOLD'))['x-pool'], (await h('?plan=GOLD'))['x-tier']], ['fast-read', 'premium'])
  t.equal((await h('?plan=silver', 'DELETE'))['x-pool'], 'fast-write')
  t.equal((await h(''))['x-pool'], 'shared')
})

t.test('the built-in $connection_upgrade is the seeds\' map; redefining it the nginx way is accepted', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, {
    routes: [
      { prefix: '/builtin/', upstream: origin(upstream), requestHeaders: { set: { 'X-Conn': '$connection_upgrade' } } }
    ]
  })
  t.equal(seenOf((await request(`${url}/builtin/`)).body).headers['x-conn'], 'close')
  const own = await gateway(t, {
    maps: { connection_upgrade: { source: '$http_upgrade', default: 'upgrade', cases: { '': 'close' } } },
    upstream: origin(upstream),
    requestHeaders: { set: { 'X-Conn': '$connection_upgrade' } }
  })
  t.equal(seenOf((await request(`${own.url}/`)).body).headers['x-conn'], 'close', 'the user\'s map, same answer')
})
