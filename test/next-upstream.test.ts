import t from 'tap'
import type { AttemptFailure } from '../src/index.js'
import { nextServer, statusFailure, type AttemptState, type NextUpstreamPolicy } from '../src/upstream/next-upstream.js'
import type { UpstreamServer } from '../src/upstream/server.js'

// nginx's `proxy_next_upstream` policy on its own, as plain functions of a group's settings and one request's attempts
// (the failover suites check the same rules end to end over real sockets, in test/upstream-failover.test.ts).

const [a, b, c] = ['a', 'b', 'c'].map((addr) => ({ addr }) as unknown as UpstreamServer)

/** A group of a, b and c picking the first server not tried, with `nextUpstream.on` and `failOn` as given. */
function policy (settings: Partial<Omit<NextUpstreamPolicy, 'pick'>> = {}): NextUpstreamPolicy {
  return {
    failOn: new Set<AttemptFailure>(['error', 'timeout']),
    retryOn: new Set<AttemptFailure>(['error', 'timeout']),
    nonIdempotent: false,
    tries: 0,
    retryTimeout: 0,
    ...settings,
    pick: (_hash, tried) => [a, b, c].find((server) => !(tried ?? []).includes(server)) ?? null
  }
}

function attempt (settings: Partial<AttemptState> = {}): AttemptState {
  return { method: 'GET', resendable: true, server: a, tried: null, hash: 0, startedAt: performance.now(), ...settings }
}

t.test('a failure the group retries goes to the next server not tried, until none is left', async (t) => {
  const group = policy()
  const state = attempt()
  t.equal(nextServer(group, state, 'error', false), b)
  t.same(state.tried, [a, b])
  t.equal(nextServer(group, { ...state, server: b }, 'timeout', true), c)
  t.equal(nextServer(group, state, 'error', true), null, 'every server tried')
  t.same(state.tried, [a, b, c])
})

t.test('a failure the group does not retry ends the request', async (t) => {
  const state = attempt()
  t.equal(nextServer(policy(), state, 'http_502', true), null)
  t.equal(state.tried, null, 'nothing tried beyond the first server')
})

t.test('POST, LOCK and PATCH are tried again only while the request had not reached a server, or with non_idempotent', async (t) => {
  for (const method of ['POST', 'LOCK', 'PATCH']) {
    t.equal(nextServer(policy(), attempt({ method }), 'error', true), null, `${method} sent`)
    t.equal(nextServer(policy(), attempt({ method }), 'error', false), b, `${method} not sent`)
    t.equal(nextServer(policy({ nonIdempotent: true }), attempt({ method }), 'timeout', true), b, `${method} with non_idempotent`)
  }
  t.equal(nextServer(policy(), attempt({ method: 'PUT' }), 'error', true), b, 'PUT is idempotent')
})

t.test('a body undici has begun to read cannot be sent again', async (t) => {
  t.equal(nextServer(policy(), attempt({ resendable: false }), 'error', false), null)
})

t.test('tries and the retry time budget bound the attempts', async (t) => {
  const state = attempt()
  t.equal(nextServer(policy({ tries: 2 }), state, 'error', false), b)
  t.equal(nextServer(policy({ tries: 2 }), state, 'error', false), null, 'two tries made')
  t.equal(nextServer(policy({ retryTimeout: 50 }), attempt({ startedAt: performance.now() - 60 }), 'error', false), null, 'out of time')
  t.equal(nextServer(policy({ retryTimeout: 50_000 }), attempt(), 'error', false), b, 'in time')
})

t.test('an answer is a failure when its status is one the group counts or retries', async (t) => {
  const group = policy({ failOn: new Set(['http_503']), retryOn: new Set(['http_502', 'http_429']) })
  t.equal(statusFailure(group, 502), 'http_502')
  t.equal(statusFailure(group, 503), 'http_503')
  t.equal(statusFailure(group, 429), 'http_429')
  t.equal(statusFailure(group, 504), undefined, 'not configured')
  t.equal(statusFailure(group, 500), undefined, 'not configured')
  t.equal(statusFailure(group, 200), undefined)
  t.equal(statusFailure(group, 401), undefined, 'never a failure')
})
