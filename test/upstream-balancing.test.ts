// Load balancing over upstream groups (nginx `upstream name { server ...; }`), through Fastify over real sockets
// on 127.0.0.1: smooth weighted round-robin, least-conn (requests in flight and live tunnels, per weight),
// ip_hash, hash on a request template, consistent (ketama) hashing, backup and down servers, and WebSocket
// upgrades picked exactly like plain requests.
//
// Every upstream answers with (or, for WebSockets, sends on connection) its own name, and the gateway adds
// `x-upstream: $upstream_addr`, so each answer says which server the balancer picked. Requests are sequential
// unless a test holds them open on purpose, so every pick is deterministic given the balancer's state; the only
// loose assertions are about how keys spread over servers, each explained where it is made.
import t from 'tap'
import type { ServerResponse } from 'node:http'
import type { Server as NetServer } from 'node:net'
import type { FastifyInstance } from 'fastify'
import type { WebSocket } from 'ws'
import type { ServerInfo, UpstreamGroupOptions, WsProxyOptions } from '../src/index.js'
import { gateway, httpUpstream, origin, portOf, waitFor, within, wsUpstream, type Teardown } from './helpers/servers.js'
import { request, type Answer } from './helpers/clients.js'
import { messages, openWs, wsClosed, wsUrl } from './helpers/ws.js'

// ---------------------------------------------------------------------------------------------------------------
// Helpers

/** One server of a group: its name, its URL in the group, its `$upstream_addr`, and what reached it. */
interface Member {
  name: string
  url: string
  addr: string
  /** HTTP requests it received (WebSocket handshakes included), and the paths of those from `named`. */
  hits: number
  paths: string[]
  /** HTTP upstreams from `holding`: the responses it holds open, oldest first. */
  held: ServerResponse[]
}

function member (name: string, server: NetServer): Member {
  return { name, url: origin(server), addr: `127.0.0.1:${portOf(server)}`, hits: 0, paths: [], held: [] }
}

/** An HTTP upstream that answers every request with its own name. */
async function named (t: Teardown, name: string): Promise<Member> {
  let self: Member | null = null
  const server = await httpUpstream(t, (req, res) => {
    const m = self as Member
    m.hits++
    m.paths.push(req.url as string)
    req.resume()
    req.on('end', () => res.end(name))
  })
  self = member(name, server)
  return self
}

/** An HTTP upstream that holds every request open until `release()`: load that least-conn must see. */
async function holding (t: Teardown, name: string): Promise<Member> {
  let self: Member | null = null
  const server = await httpUpstream(t, (req, res) => {
    const m = self as Member
    m.hits++
    req.resume()
    m.held.push(res)
  })
  self = member(name, server)
  const m = self
  t.teardown(() => release(m))
  return m
}

/** Answers every request `m` holds, with its name. */
function release (m: Member): void {
  for (const res of m.held.splice(0)) res.end(m.name)
}

/** A WebSocket upstream (echoing) that sends its name first on every connection it accepts. */
async function tagged (t: Teardown, name: string): Promise<Member> {
  const { server, wss } = await wsUpstream(t)
  const self = member(name, server)
  // Handshakes reach 'upgrade', plain requests 'request' (answered by the helper's echo handler).
  server.prependListener('upgrade', () => { self.hits++ })
  server.prependListener('request', () => { self.hits++ })
  wss.on('connection', (peer) => peer.send(name))
  return self
}

/** The plugin options for one group `api` behind `/`, every answer saying which server gave it. */
function proxyTo (group: UpstreamGroupOptions): WsProxyOptions {
  return {
    upstreams: { api: group },
    routes: [{ prefix: '/', upstream: 'http://api' }],
    responseHeaders: { set: { 'x-upstream': '$upstream_addr' } }
  }
}

/** `servers` of a group, in the given order, with extra settings per server. */
function serversOf (members: Member[], extra: Array<{ weight?: number, backup?: boolean, down?: boolean }> = []) {
  return members.map((m, i) => ({ url: m.url, ...extra[i] }))
}

/**
 * One request (bounded: 5 s), and the name of the server that answered; fails loudly unless it is a 200 whose
 * body and `x-upstream` agree on a server of `members`.
 */
async function ask (url: string, members: Member[], headers: Record<string, string> = {}, path = '/'): Promise<string> {
  const res = await within(request(url + path, { headers }), 5000, `the answer to ${path}`)
  return whoAnswered(res, members)
}

function whoAnswered (res: Answer, members: Member[]): string {
  const body = res.body.toString()
  if (res.status !== 200) throw new Error(`expected a 200, got ${res.status}: ${body}`)
  const m = members.find((m) => m.addr === res.headers['x-upstream'])
  // An HTTP upstream answers its name; a WebSocket upstream's HTTP side echoes JSON: $upstream_addr identifies it.
  if (m === undefined || (!body.startsWith('{') && body !== m.name)) {
    throw new Error(`answer ${JSON.stringify(body)} with x-upstream ${String(res.headers['x-upstream'])} names no single member`)
  }
  return m.name
}

/** A WebSocket through the gateway, and the name of the upstream that accepted it (its first message). */
async function tunnel (t: Teardown, url: string, path = '/'): Promise<{ ws: WebSocket, name: string }> {
  const ws = await openWs(t, wsUrl(url, path))
  const [tag] = await messages(ws, 1)
  return { ws, name: tag.data.toString() }
}

/** The gateway's view of one server of group `api`. */
function info (app: FastifyInstance, m: Member): ServerInfo {
  const found = app.wsProxy.group('api').servers().find((s) => s.address === m.addr)
  if (found === undefined) throw new Error(`${m.name} (${m.addr}) is not in group api`)
  return found
}

/** name → how many times it occurs. */
function tally (names: string[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const name of names) counts[name] = (counts[name] ?? 0) + 1
  return counts
}

/** Requests `keys` one at a time with `header: key`; key → name of the server that answered. */
async function mapKeys (url: string, members: Member[], header: string, keys: string[]): Promise<Map<string, string>> {
  const picked = new Map<string, string>()
  for (const key of keys) picked.set(key, await ask(url, members, { [header]: key }))
  return picked
}

const range = (n: number, f: (i: number) => string): string[] => Array.from({ length: n }, (_, i) => f(i))

// ---------------------------------------------------------------------------------------------------------------
// Round-robin (nginx's default: smooth weighted round-robin)

t.test('round-robin: weights 5,1,1 give nginx\'s smooth sequence a a b a c a a in every cycle of 7', async (t) => {
  // ngx_http_upstream_get_peer: each server's current weight grows by its weight, the largest wins and pays the
  // total back. The result interleaves the light servers instead of sending a run of five to `a` first.
  const members = [await named(t, 'a'), await named(t, 'b'), await named(t, 'c')]
  const { url, app } = await gateway(t, proxyTo({ servers: serversOf(members, [{ weight: 5 }, {}, {}]) }))
  const sequence: string[] = []
  for (let i = 0; i < 21; i++) sequence.push(await ask(url, members))
  t.equal(sequence.join(' '), 'a a b a c a a a a b a c a a a a b a c a a', 'three cycles of 7, each a a b a c a a')
  t.same(members.map((m) => m.hits), [15, 3, 3], 'each server received its share of 21 requests, 5:1:1')
  t.same(members.map((m) => info(app, m).requests), [15, 3, 3], 'the API counts the same requests per server')
  const [group] = app.wsProxy.upstreams()
  t.equal(group.name, 'api')
  t.equal(group.balance, 'round-robin', 'round-robin is the default balance')
  t.same(group.servers.map((s) => [s.address, s.weight, s.state, s.backup]), members.map((m, i) => [m.addr, i === 0 ? 5 : 1, 'up', false]))
  t.throws(() => app.wsProxy.group('nope'), { code: 'FST_WS_PROXY_UNKNOWN_GROUP' }, 'an unknown group name throws')
})

t.test('round-robin: equal weights take strict turns in the order the servers are listed', async (t) => {
  // nginx with no weights: a b c a b c ..., ties going to the first server listed.
  const members = [await named(t, 'a'), await named(t, 'b'), await named(t, 'c')]
  const { url } = await gateway(t, proxyTo({ servers: serversOf(members), balance: 'round-robin' }))
  const sequence: string[] = []
  for (let i = 0; i < 12; i++) sequence.push(await ask(url, members))
  t.equal(sequence.join(''), 'abcabcabcabc')
})

t.test('round-robin: requests arriving together still split exactly by weight', async (t) => {
  // The pick is made when the gateway handles the request, from state shared by all of them: whatever order 21
  // concurrent requests arrive in, 21 picks from a fresh group are three full cycles of 5,1,1.
  const members = [await named(t, 'a'), await named(t, 'b'), await named(t, 'c')]
  const { url } = await gateway(t, proxyTo({ servers: serversOf(members, [{ weight: 5 }, {}, {}]) }))
  const answers = await Promise.all(range(21, (i) => `/burst/${i}`).map(async (path) => await ask(url, members, {}, path)))
  t.same(tally(answers), { a: 15, b: 3, c: 3 })
  t.same(members.map((m) => m.hits), [15, 3, 3])
})

t.test('round-robin: routes naming the same group share one rotation, each with its own path', async (t) => {
  // Two nginx locations proxying to one `upstream` block share its round-robin state; `http://api/v2/` maps the
  // matched prefix onto a path as proxy_pass with a URI does.
  const members = [await named(t, 'a'), await named(t, 'b'), await named(t, 'c')]
  const { url } = await gateway(t, {
    upstreams: { api: { servers: serversOf(members) } },
    routes: [{ prefix: '/x/', upstream: 'http://api' }, { prefix: '/y/', upstream: 'http://api/v2/' }],
    responseHeaders: { set: { 'x-upstream': '$upstream_addr' } }
  })
  const sequence: string[] = []
  for (let i = 0; i < 6; i++) sequence.push(await ask(url, members, {}, i % 2 === 0 ? `/x/${i}` : `/y/${i}`))
  t.equal(sequence.join(''), 'abcabc', 'one rotation across both routes')
  t.same(members.map((m) => m.paths), [['/x/0', '/v2/3'], ['/v2/1', '/x/4'], ['/x/2', '/v2/5']], 'each route maps its path')
})

t.test('round-robin: a server added at run time with add() joins the rotation at once', async (t) => {
  // nginx Plus' API (`POST /upstreams/name/servers`): the new server takes its turn from the next request.
  const members = [await named(t, 'a'), await named(t, 'b'), await named(t, 'c')]
  const { url, app } = await gateway(t, proxyTo({ servers: serversOf(members.slice(0, 2)) }))
  const before: string[] = []
  for (let i = 0; i < 4; i++) before.push(await ask(url, members))
  t.equal(before.join(''), 'abab')
  const added = app.wsProxy.group('api').add({ url: members[2].url })
  t.match(added, { address: members[2].addr, state: 'up', weight: 1, requests: 0 })
  t.throws(() => app.wsProxy.group('api').add({ url: members[2].url }), { code: 'FST_WS_PROXY_INVALID_OPTION' }, 'a server is in a group once')
  const after: string[] = []
  for (let i = 0; i < 6; i++) after.push(await ask(url, members))
  t.equal(after.join(''), 'abcabc', 'three servers take turns')
})

t.test('round-robin: a weight changed at run time with update() takes effect at once', async (t) => {
  // nginx Plus' API (`PATCH /upstreams/.../servers/id {"weight": n}`): the new weight applies to the next picks.
  const members = [await named(t, 'a'), await named(t, 'b')]
  const { url, app } = await gateway(t, proxyTo({ servers: serversOf(members) }))
  const before: string[] = []
  for (let i = 0; i < 4; i++) before.push(await ask(url, members))
  t.equal(before.join(''), 'abab', 'equal weights alternate')
  t.equal(app.wsProxy.group('api').update(members[1].url, { weight: 3 }), true)
  t.equal(info(app, members[1]).weight, 3)
  const after: string[] = []
  for (let i = 0; i < 40; i++) after.push(await ask(url, members))
  // Over any 4 consecutive picks smooth WRR gives each server its weight, give or take one pick carried over
  // from the current weights accumulated before the change: 10 and 30 of 40, ± 1.
  const counts = tally(after)
  t.ok(counts.a >= 9 && counts.a <= 11, `a got ${counts.a} of 40 (weight 1 of 4)`)
  t.ok(counts.b >= 29 && counts.b <= 31, `b got ${counts.b} of 40 (weight 3 of 4)`)
  t.notMatch(after.slice(4).join(''), /aa/, 'the light server never gets two in a row')
})

// ---------------------------------------------------------------------------------------------------------------
// least-conn (nginx `least_conn`): fewest requests in flight plus live tunnels, per unit of weight

t.test('least-conn: requests held open steer new ones to the least loaded server, per weight', async (t) => {
  // nginx least_conn compares conns/weight. With weights 2 and 1, six requests held open end up 4 and 2 whatever
  // way ties are broken; once a's are answered, a is the least loaded until it has 4 again.
  const members = [await holding(t, 'a'), await holding(t, 'b')]
  const [a, b] = members
  const { url, app } = await gateway(t, proxyTo({ servers: serversOf(members, [{ weight: 2 }, {}]), balance: 'least-conn' }))
  const pending: Array<Promise<Answer>> = []
  let sent = 0
  const send = async (): Promise<void> => {
    const res = request(url + '/')
    res.catch(() => {}) // awaited below; a failure before then must not be an unhandled rejection
    pending.push(res)
    const total = ++sent
    await waitFor(() => a.hits + b.hits === total, 3000, `request ${total} to reach an upstream`)
  }
  for (let i = 0; i < 6; i++) {
    await send()
    // a (weight 2) may lead b by up to 2 plus one tie-break, never trail it by more than a tie-break.
    t.ok(a.held.length <= 2 * b.held.length + 2 && b.held.length <= a.held.length / 2 + 1,
      `after ${i + 1} held: a ${a.held.length}, b ${b.held.length}`)
  }
  t.same([a.held.length, b.held.length], [4, 2], 'six held requests split 4:2 as the weights 2:1')
  t.same([info(app, a).activeRequests, info(app, b).activeRequests], [4, 2], 'activeRequests shows the same load')

  // a's requests are answered: it is now the least loaded (0/2 < 2/1) for its next four.
  const answered = pending.splice(0, pending.length)
  release(a)
  await waitFor(() => info(app, a).activeRequests === 0, 3000, 'a\'s requests to end')
  for (let i = 0; i < 3; i++) await send()
  t.same([a.held.length, b.held.length], [3, 2], 'the next three all went to a')
  t.same([info(app, a).activeRequests, info(app, b).activeRequests], [3, 2])

  release(a)
  release(b)
  const all = await within(Promise.all([...answered, ...pending]), 5000, 'the held requests\' answers')
  t.same(tally(all.map((res) => whoAnswered(res, members))), { a: 7, b: 2 }, 'every held request got its answer')
  await waitFor(() => info(app, a).activeRequests + info(app, b).activeRequests === 0, 3000, 'no request in flight')
})

t.test('least-conn: live WebSocket tunnels count as load, for tunnels and for plain requests', async (t) => {
  // A server holding open WebSockets is busy even with no request in flight: tunnels opened one after the other
  // balance to within one, and when one server's tunnels close, it takes the new tunnels and requests.
  const members = [await tagged(t, 'a'), await tagged(t, 'b')]
  const [a, b] = members
  const { url, app } = await gateway(t, proxyTo({ servers: serversOf(members), balance: 'least-conn' }))
  const open: Array<{ ws: WebSocket, name: string }> = []
  for (let i = 0; i < 6; i++) {
    open.push(await tunnel(t, url, `/t${i}`))
    const counts = tally(open.map((o) => o.name))
    t.ok(Math.abs((counts.a ?? 0) - (counts.b ?? 0)) <= 1, `after ${i + 1} tunnels: a ${counts.a ?? 0}, b ${counts.b ?? 0}`)
  }
  t.same(tally(open.map((o) => o.name)), { a: 3, b: 3 })
  t.same([info(app, a).liveTunnels, info(app, b).liveTunnels], [3, 3], 'liveTunnels per server')
  t.same([info(app, a).activeRequests, info(app, b).activeRequests], [0, 0], 'a tunnel is no longer a request in flight')

  // Every tunnel on a closes: a is idle, b holds 3 tunnels.
  const onA = open.filter((o) => o.name === 'a')
  await Promise.all(onA.map(async (o) => {
    const closing = wsClosed(o.ws)
    o.ws.close(1000)
    await closing
  }))
  await waitFor(() => info(app, a).liveTunnels === 0, 3000, 'a\'s tunnels to be gone')
  t.equal(info(app, b).liveTunnels, 3)

  // Plain requests (each done before the next) all go to a: 0 < 3.
  const picked: string[] = []
  for (let i = 0; i < 3; i++) picked.push(await ask(url, members))
  t.same(picked, ['a', 'a', 'a'], 'requests avoid the server holding tunnels')
  // So do new tunnels, until a holds as many as b: 0, 1, 2 < 3.
  const more: string[] = []
  for (let i = 0; i < 3; i++) more.push((await tunnel(t, url, `/more${i}`)).name)
  t.same(more, ['a', 'a', 'a'], 'new tunnels fill the idle server first')
  t.same([info(app, a).liveTunnels, info(app, b).liveTunnels], [3, 3])
})

// ---------------------------------------------------------------------------------------------------------------
// ip-hash (nginx `ip_hash`): the key is the first three octets of the client's IPv4 address

t.test('ip-hash: every client of a /24 lands on the same server, and /24s spread over the servers', async (t) => {
  // With trustProxy, request.ip is the X-Forwarded-For client. nginx ip_hash keys on the /24 only, so the fourth
  // octet never changes the server. The hash of a fixed key over fixed weights does not depend on ports or on the
  // run: the spread below is the same every time; the bound (each server ≥ 5 of 45 /24s) only guards the hash's
  // quality, not chance.
  const members = [await named(t, 'a'), await named(t, 'b'), await named(t, 'c')]
  const { url, app } = await gateway(t, proxyTo({ servers: serversOf(members), balance: 'ip-hash' }), { trustProxy: true })
  t.equal(app.wsProxy.group('api').balance, 'ip-hash')
  const bySubnet = new Map<string, string>()
  let mixed = 0
  for (let i = 0; i < 45; i++) {
    const subnet = `10.${i % 7}.${i * 5}`
    const seen = new Set<string>()
    for (const last of [1, 77, 254]) seen.add(await ask(url, members, { 'x-forwarded-for': `${subnet}.${last}` }))
    if (seen.size !== 1) mixed++
    bySubnet.set(subnet, [...seen][0])
  }
  t.equal(mixed, 0, 'no /24 was split between servers')
  const counts = tally([...bySubnet.values()])
  t.same(Object.keys(counts).sort(), ['a', 'b', 'c'], 'every server serves some /24s')
  for (const m of members) t.ok(counts[m.name] >= 5, `${m.name} serves ${counts[m.name]} of 45 /24s`)
  // Asked again later, each /24 still goes where it went.
  let moved = 0
  for (const [subnet, name] of [...bySubnet].slice(0, 15)) if (await ask(url, members, { 'x-forwarded-for': `${subnet}.9` }) !== name) moved++
  t.equal(moved, 0, 'the mapping is stable over time')
})

t.test('ip-hash: without a proxy in front, every request from 127.0.0.1 goes to one server', async (t) => {
  // The key is the socket's address then: one client, one server, whatever round-robin would have done.
  const members = [await named(t, 'a'), await named(t, 'b'), await named(t, 'c')]
  const { url } = await gateway(t, proxyTo({ servers: serversOf(members), balance: 'ip-hash' }))
  const picked: string[] = []
  for (let i = 0; i < 15; i++) picked.push(await ask(url, members))
  t.equal(new Set(picked).size, 1, `always ${picked[0]}`)
})

t.test('ip-hash: a server marked down passes its clients on and every other client keeps its server', async (t) => {
  // nginx docs: "If one of the servers needs to be temporarily removed, it should be marked with the down
  // parameter in order to preserve the current hashing of client IP addresses." Its clients are rehashed onto the
  // other servers; nobody else moves. Back up, it gets exactly its clients back.
  const members = [await named(t, 'a'), await named(t, 'b'), await named(t, 'c')]
  const [, b] = members
  const { url, app } = await gateway(t, proxyTo({ servers: serversOf(members), balance: 'ip-hash' }), { trustProxy: true })
  const subnets = range(40, (i) => `172.16.${i}`)
  const map = async (): Promise<Map<string, string>> => {
    const picked = new Map<string, string>()
    for (const subnet of subnets) picked.set(subnet, await ask(url, members, { 'x-forwarded-for': `${subnet}.10` }))
    return picked
  }
  const before = await map()
  const onB = subnets.filter((s) => before.get(s) === 'b')
  t.ok(onB.length > 0, `b serves ${onB.length} of 40 /24s (a fixed hash: the same every run)`)

  t.equal(app.wsProxy.group('api').update(b.url, { down: true }), true)
  t.equal(info(app, b).state, 'down')
  const hitsOfB = b.hits
  const during = await map()
  t.equal(b.hits, hitsOfB, 'a server marked down gets no request')
  t.same(subnets.filter((s) => before.get(s) !== 'b' && during.get(s) !== before.get(s)), [], 'no client of a or c moved')
  t.ok(onB.every((s) => during.get(s) === 'a' || during.get(s) === 'c'), 'b\'s clients went to a or c')

  app.wsProxy.group('api').update(b.url, { down: false })
  t.same(await map(), before, 'back up, b serves exactly its old clients again')
})

// ---------------------------------------------------------------------------------------------------------------
// hash (nginx `hash $key`) on a request template

t.test('hash $http_x_user: one key always reaches one server, and many keys spread over all of them', async (t) => {
  // nginx `hash $http_x_user;`: the server is a function of the key. The hash is FNV-1a + murmur3's finaliser over
  // fixed keys and fixed weights, so the spread is the same on every run; each server getting ≥ 10% of 200 keys
  // (a third would be fair) checks the keys are really spread, with plenty of room.
  const members = [await named(t, 'a'), await named(t, 'b'), await named(t, 'c')]
  const { url, app } = await gateway(t, proxyTo({ servers: serversOf(members), balance: 'hash', hash: '$http_x_user' }))
  t.equal(app.wsProxy.group('api').balance, 'hash')
  const keys = range(200, (i) => `user-${i}`)
  const first = await mapKeys(url, members, 'x-user', keys)
  const counts = tally([...first.values()])
  for (const m of members) t.ok((counts[m.name] ?? 0) >= 20, `${m.name} got ${counts[m.name] ?? 0} of 200 keys`)
  // The same keys again, in another order, interleaved with other keys: every one goes where it went.
  const again = range(40, (i) => keys[(i * 37) % 200])
  let moved = 0
  for (const key of again) {
    await ask(url, members, { 'x-user': `other-${key}` })
    if (await ask(url, members, { 'x-user': key }) !== first.get(key)) moved++
  }
  t.equal(moved, 0, '40 keys asked again all reached the same server')
  // A request without the header hashes the empty key: all of them share one server.
  const anonymous: string[] = []
  for (let i = 0; i < 5; i++) anonymous.push(await ask(url, members))
  t.equal(new Set(anonymous).size, 1, 'requests without the key all reach one server')
})

t.test('hash on $arg_ and $cookie_ variables, with weights', async (t) => {
  // nginx `hash $arg_tenant$cookie_shard;` with `weight=2` on one server: keys go to servers in proportion to
  // their weight. Fixed keys, so the counts are the same every run; the bounds (a between 35% and 65%, weight
  // 2 of 4) only check the weight is honoured.
  const members = [await named(t, 'a'), await named(t, 'b'), await named(t, 'c')]
  const { url } = await gateway(t, proxyTo({
    servers: serversOf(members, [{ weight: 2 }, {}, {}]),
    balance: 'hash',
    hash: '$arg_tenant/$cookie_shard'
  }))
  const picked = new Map<string, string>()
  for (let i = 0; i < 120; i++) {
    const key = `t${i % 60}/s${Math.floor(i / 60)}`
    picked.set(key, await ask(url, members, { cookie: `theme=dark; shard=s${Math.floor(i / 60)}` }, `/page?tenant=t${i % 60}`))
  }
  const counts = tally([...picked.values()])
  t.ok(counts.a >= 42 && counts.a <= 78, `a (weight 2) got ${counts.a} of 120 keys`)
  t.ok((counts.b ?? 0) >= 12 && (counts.c ?? 0) >= 12, `b got ${counts.b ?? 0}, c got ${counts.c ?? 0}`)
  // Query order and other parameters and cookies do not matter, only the two values.
  let moved = 0
  for (const key of [...picked.keys()].slice(0, 30)) {
    const [tenant, shard] = key.split('/')
    const name = await ask(url, members, { cookie: `shard=${shard}; other=1` }, `/other?x=1&tenant=${tenant}`)
    if (name !== picked.get(key)) moved++
  }
  t.equal(moved, 0, 'the same tenant and shard reach the same server from another path')
})

// ---------------------------------------------------------------------------------------------------------------
// consistent hashing (nginx `hash $key consistent`, ketama)

t.test('consistent: two instances listing the servers in different orders map every key alike', async (t) => {
  // The ketama ring places each server by its URL alone, so two proxies in front of the same servers agree on
  // every key whatever order their configs list the servers in: a cache cluster behind two gateways stays hit.
  const members = [await named(t, 'a'), await named(t, 'b'), await named(t, 'c'), await named(t, 'd')]
  const group = (order: Member[]): WsProxyOptions => proxyTo({ servers: serversOf(order), balance: 'hash', hash: '$http_x_user', consistent: true })
  const one = await gateway(t, group(members))
  const two = await gateway(t, group([members[2], members[0], members[3], members[1]]))
  const keys = range(100, (i) => `key-${i}`)
  const viaOne = await mapKeys(one.url, members, 'x-user', keys)
  const viaTwo = await mapKeys(two.url, members, 'x-user', keys)
  t.same(keys.filter((k) => viaOne.get(k) !== viaTwo.get(k)), [], 'no key differs between the instances')
  // Ring positions depend on the ephemeral ports; with 160 points per server each gets ~25% of the keys, so
  // 100 keys missing a server altogether is beyond chance (0.75^100 < 1e-12).
  t.equal(new Set(viaOne.values()).size, 4, 'the keys use every server')
})

t.test('consistent ip-hash: two instances agree on every /24 whatever the server order', async (t) => {
  // nginx `ip_hash` has no `consistent`; here ip-hash accepts it and keys the ring with the /24.
  const members = [await named(t, 'a'), await named(t, 'b'), await named(t, 'c')]
  const group = (order: Member[]): WsProxyOptions => proxyTo({ servers: serversOf(order), balance: 'ip-hash', consistent: true })
  const one = await gateway(t, group(members), { trustProxy: true })
  const two = await gateway(t, group([...members].reverse()), { trustProxy: true })
  let differ = 0
  let split = 0
  for (let i = 0; i < 40; i++) {
    const x = await ask(one.url, members, { 'x-forwarded-for': `192.168.${i}.1` })
    const y = await ask(two.url, members, { 'x-forwarded-for': `192.168.${i}.200` })
    const z = await ask(one.url, members, { 'x-forwarded-for': `192.168.${i}.99` })
    if (x !== y) differ++
    if (x !== z) split++
  }
  t.equal(differ, 0, 'both instances send each /24 to the same server')
  t.equal(split, 0, 'the fourth octet never matters')
})

t.test('consistent: removing one of 4 servers moves only its own keys, about a quarter of them', async (t) => {
  // What `consistent` is for: taking a server out moves only the keys it held, onto the other servers; every
  // other key stays put. 150 keys (300 requests in all). Ring positions depend on the ephemeral ports, so the
  // removed server's share varies by run: ~25% ± a few points from the ring (160 points per server) and ±3.5
  // points of sampling (binomial, 150 keys); 10%..45% is more than 4 standard deviations either side.
  const members = [await named(t, 'a'), await named(t, 'b'), await named(t, 'c'), await named(t, 'd')]
  const [, b] = members
  const { url, app } = await gateway(t, proxyTo({ servers: serversOf(members), balance: 'hash', hash: '$http_x_user', consistent: true }))
  const keys = range(150, (i) => `session-${i}`)
  const before = await mapKeys(url, members, 'x-user', keys)
  const group = app.wsProxy.group('api')
  t.equal(group.remove('http://127.0.0.1:1'), false, 'removing an unknown server says so')
  t.equal(group.remove(b.url), true)
  t.same(group.servers().map((s) => s.address), [members[0], members[2], members[3]].map((m) => m.addr), 'b left the group')
  const hitsOfB = b.hits
  const after = await mapKeys(url, members, 'x-user', keys)
  t.equal(b.hits, hitsOfB, 'the removed server gets no request')
  const moved = keys.filter((k) => after.get(k) !== before.get(k))
  const wereOnB = keys.filter((k) => before.get(k) === 'b')
  t.same(moved, wereOnB, 'exactly the keys b held moved; every other key kept its server')
  t.ok(moved.length >= 15 && moved.length <= 67, `${moved.length} of 150 keys moved (10%..45%, ~25% expected)`)
  // b's keys went to its successors on the ring: more than one server in general, never b.
  t.ok(moved.every((k) => after.get(k) !== 'b'))
})

t.test('consistent: a server marked down passes its keys to ring neighbours, and gets them all back', async (t) => {
  // `down` on a ketama ring: the key walks clockwise to the next usable server, so only the down server's keys
  // move, and marking it up again restores the original mapping exactly. 100 keys, 300 requests.
  const members = [await named(t, 'a'), await named(t, 'b'), await named(t, 'c'), await named(t, 'd')]
  const [, , c] = members
  const { url, app } = await gateway(t, proxyTo({ servers: serversOf(members), balance: 'hash', hash: '$http_x_user', consistent: true }))
  const keys = range(100, (i) => `cart-${i}`)
  const before = await mapKeys(url, members, 'x-user', keys)
  app.wsProxy.group('api').update(c.url, { down: true })
  const during = await mapKeys(url, members, 'x-user', keys)
  t.same(keys.filter((k) => during.get(k) !== before.get(k)), keys.filter((k) => before.get(k) === 'c'), 'only c\'s keys moved')
  t.ok(keys.every((k) => during.get(k) !== 'c'), 'c, down, got none')
  app.wsProxy.group('api').update(c.url, { down: false })
  t.same(await mapKeys(url, members, 'x-user', keys), before, 'c up again: every key is back where it was')
})

// ---------------------------------------------------------------------------------------------------------------
// backup and down (nginx `server ... backup;` and `server ... down;`)

t.test('backup: used only while no primary is available, and left as soon as one is back', async (t) => {
  const members = [await named(t, 'a'), await named(t, 'b'), await named(t, 'c')]
  const [a, b, c] = members
  const { url, app } = await gateway(t, proxyTo({ servers: serversOf(members, [{}, {}, { backup: true }]) }))
  const group = app.wsProxy.group('api')
  t.equal(info(app, c).backup, true)
  const normal: string[] = []
  for (let i = 0; i < 10; i++) normal.push(await ask(url, members))
  t.equal(normal.join(''), 'ababababab', 'the primaries take turns; the backup waits')
  t.equal(c.hits, 0)

  // One primary down: the other takes everything; still no backup.
  group.update(a.url, { down: true })
  const onePrimary: string[] = []
  for (let i = 0; i < 5; i++) onePrimary.push(await ask(url, members))
  t.equal(onePrimary.join(''), 'bbbbb', 'one primary left is enough to keep the backup out')

  // Every primary down: the backup serves.
  group.update(b.url, { down: true })
  t.same([info(app, a).state, info(app, b).state, info(app, c).state], ['down', 'down', 'up'])
  const noPrimary: string[] = []
  for (let i = 0; i < 5; i++) noPrimary.push(await ask(url, members))
  t.equal(noPrimary.join(''), 'ccccc', 'with no primary available, the backup serves')

  // A primary is back: the backup gets nothing more.
  group.update(a.url, { down: false })
  const back: string[] = []
  for (let i = 0; i < 5; i++) back.push(await ask(url, members))
  t.equal(back.join(''), 'aaaaa', 'a primary back takes over from the backup at once')
  t.same(members.map((m) => m.hits), [10, 10, 5], 'hits per server over the whole test')
})

t.test('down: a server configured down never gets a request, under every balance method', async (t) => {
  // nginx `server ... down;` marks a server permanently unavailable. It is reported `down`, and no method picks
  // it: not round-robin's turn, not least-conn's idleness (it is the least loaded of all), not a hash.
  const members = [await named(t, 'a'), await named(t, 'b'), await named(t, 'x')]
  const x = members[2]
  const extra = [{}, {}, { down: true, weight: 10 }]
  const methods: Array<Pick<UpstreamGroupOptions, 'balance' | 'hash'>> = [
    { balance: 'round-robin' }, { balance: 'least-conn' }, { balance: 'hash', hash: '$http_x_user' }, { balance: 'ip-hash' }
  ]
  for (const method of methods) {
    const { url, app } = await gateway(t, proxyTo({ servers: serversOf(members, extra), ...method }), { trustProxy: true })
    t.equal(info(app, x).state, 'down', `${method.balance}: x is reported down`)
    const seen = new Set<string>()
    for (let i = 0; i < 20; i++) seen.add(await ask(url, members, { 'x-user': `u${i}`, 'x-forwarded-for': `10.9.${i}.1` }))
    t.notOk(seen.has('x'), `${method.balance}: x got nothing (${[...seen].sort().join(', ')} served)`)
  }
  t.equal(x.hits, 0, 'x never received a request')
})

t.test('no server available at all: 502 FST_WS_PROXY_NO_LIVE_UPSTREAM, and nothing reaches any server', async (t) => {
  // nginx answers 502 "no live upstreams" when every server, backups included, is down or failed.
  const members = [await named(t, 'a'), await named(t, 'b')]
  const [a, b] = members
  const { url, app } = await gateway(t, proxyTo({ servers: serversOf(members, [{ down: true }, { backup: true }]) }))
  t.equal(await ask(url, members), 'b', 'with its only primary down, the group runs on its backup')
  app.wsProxy.group('api').update(b.url, { down: true })
  const res = await within(request(url + '/'), 5000, 'the 502')
  t.equal(res.status, 502)
  t.match(JSON.parse(res.body.toString()), { code: 'FST_WS_PROXY_NO_LIVE_UPSTREAM' })
  t.same([a.hits, b.hits], [0, 1])
})

// ---------------------------------------------------------------------------------------------------------------
// WebSocket upgrades are balanced like plain requests

t.test('websocket: upgrades take their round-robin turns with plain requests, in one sequence', async (t) => {
  // An upgrade is a request like any other to the balancer: tunnels and requests alternating on the same group
  // continue one a b c sequence.
  const members = [await tagged(t, 'a'), await tagged(t, 'b'), await tagged(t, 'c')]
  const { url, app } = await gateway(t, proxyTo({ servers: serversOf(members) }))
  const sequence: string[] = []
  const tunnels: WebSocket[] = []
  for (let i = 0; i < 6; i++) {
    const opened = await tunnel(t, url, `/room/${i}`)
    tunnels.push(opened.ws)
    sequence.push(`ws:${opened.name}`)
    sequence.push(`http:${await ask(url, members)}`)
  }
  t.equal(sequence.join(' '), 'ws:a http:b ws:c http:a ws:b http:c ws:a http:b ws:c http:a ws:b http:c')
  t.same(members.map((m) => m.hits), [4, 4, 4], 'each server saw 2 handshakes and 2 requests')
  t.same(members.map((m) => info(app, m).liveTunnels), [2, 2, 2], 'and holds 2 live tunnels')
  // Every tunnel is connected to the server that tagged it, end to end.
  tunnels[4].send('still here')
  const [echo] = await messages(tunnels[4], 1)
  t.equal(echo.data.toString(), 'still here', 'a balanced tunnel carries messages')
})

t.test('websocket: hash $arg_room keeps every member of a room on one server, requests included', async (t) => {
  // Chat-room affinity: `hash $arg_room` sends every WebSocket (and plain request) of a room to the same server,
  // and the 30 rooms (fixed keys: the spread is the same every run) use every server.
  const members = [await tagged(t, 'a'), await tagged(t, 'b'), await tagged(t, 'c')]
  const { url, app } = await gateway(t, proxyTo({ servers: serversOf(members), balance: 'hash', hash: '$arg_room' }))
  const roomServer = new Map<string, string>()
  let split = 0
  for (let i = 0; i < 30; i++) {
    const room = `room-${i}`
    const first = await tunnel(t, url, `/chat?room=${room}`)
    const second = await tunnel(t, url, `/chat?user=u${i}&room=${room}`)
    const plain = await ask(url, members, {}, `/history?room=${room}`)
    if (first.name !== second.name || first.name !== plain) split++
    roomServer.set(room, first.name)
    first.ws.close(1000)
    second.ws.close(1000)
  }
  t.equal(split, 0, 'no room was split between servers')
  t.same(Object.keys(tally([...roomServer.values()])).sort(), ['a', 'b', 'c'], 'the rooms use every server')
  await waitFor(() => app.wsProxy.tunnels === 0, 3000, 'the closed tunnels to be gone')
})

t.test('websocket: with every primary down, new tunnels go to the backup', async (t) => {
  const members = [await tagged(t, 'a'), await tagged(t, 'z')]
  const [a, z] = members
  const { url, app } = await gateway(t, proxyTo({ servers: serversOf(members, [{}, { backup: true }]) }))
  t.equal((await tunnel(t, url)).name, 'a')
  app.wsProxy.group('api').update(a.url, { down: true })
  const onBackup = await tunnel(t, url)
  t.equal(onBackup.name, 'z', 'the backup takes the upgrade')
  t.same([info(app, a).liveTunnels, info(app, z).liveTunnels], [1, 1], 'a keeps the tunnel it had before going down')
})

t.test('websocket: a drained or removed server keeps its tunnels; new ones go elsewhere', async (t) => {
  // nginx Plus `drain`, and a server taken out of the group: no new connections, but those open carry on.
  const members = [await tagged(t, 'a'), await tagged(t, 'b'), await tagged(t, 'c')]
  const [a, b, c] = members
  const { url, app } = await gateway(t, proxyTo({ servers: serversOf(members) }))
  const group = app.wsProxy.group('api')
  const onA = await tunnel(t, url)
  const onB = await tunnel(t, url)
  t.same([onA.name, onB.name], ['a', 'b'])

  t.equal(group.drain(`${a.url}/`), true, 'a server URL is recognised with a trailing slash too')
  t.equal(info(app, a).state, 'draining')
  t.equal(group.remove(b.url), true)
  const next: string[] = []
  for (let i = 0; i < 3; i++) next.push((await tunnel(t, url)).name)
  t.same(next, ['c', 'c', 'c'], 'only c takes new tunnels')
  t.same([a.hits, b.hits, c.hits], [1, 1, 3])

  for (const open of [onA, onB]) {
    open.ws.send(`ping ${open.name}`)
    const [echo] = await messages(open.ws, 1)
    t.equal(echo.data.toString(), `ping ${open.name}`, `the tunnel on ${open.name} still works`)
  }
  t.equal(info(app, a).liveTunnels, 1, 'the draining server still counts its tunnel')
  const closing = wsClosed(onA.ws)
  onA.ws.close(1000)
  await closing
  await waitFor(() => info(app, a).liveTunnels === 0, 3000, 'a\'s tunnel to be gone')
})
