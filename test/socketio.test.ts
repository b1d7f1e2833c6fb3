// socket.io 4 through the gateway: a real socket.io server on a plain `node:http` server behind the proxy, the
// socket.io-client of the same version in front, every request over real sockets on 127.0.0.1.
//
// What socket.io needs from a proxy: engine.io opens a session with a long-polling handshake (`GET
// /socket.io/?EIO=4&transport=polling`, answered with a session id `sid`), goes on polling with that sid (a POST
// per batch of packets sent, a long-held GET to receive), and meanwhile probes a WebSocket upgrade carrying the
// same sid. Every one of those requests must reach the server that issued the sid: the session lives in that
// process's memory. With one upstream that is free; with a group of several it takes a sticky balance method.
//
// Each upstream records every engine.io request it receives (method, transport, sid) and every engine.io error it
// answers, so the tests can say which server saw which request of which session.
import t from 'tap'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { Socket as NetSocket } from 'node:net'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { Server as SocketIoServer, type ServerOptions, type Socket as ServerSocket } from 'socket.io'
import { io as connectClient, type ManagerOptions, type Socket as ClientSocket, type SocketOptions } from 'socket.io-client'
import type { WsProxyOptions, UpstreamGroupOptions } from '../src/index.js'
import { gateway, portOf, waitFor, within, type Teardown } from './helpers/servers.js'
import { request } from './helpers/clients.js'

// ---------------------------------------------------------------------------------------------------------------
// Helpers

/** One engine.io request as an upstream saw it; `upgrade` is a WebSocket handshake. */
interface EngineRequest {
  method: string
  transport: string | null
  eio: string | null
  sid: string | null
  cookie: string | undefined
  query: URLSearchParams
}

/** An engine.io error the upstream answered (`connection_error`): code 1 is "Session ID unknown". */
interface EngineError { code: number, message: string, sid: string | null }

/** A socket.io upstream: its own `http` server (answering its name outside /socket.io/) and socket.io server. */
interface SocketIoUpstream {
  name: string
  url: string
  port: number
  io: SocketIoServer
  requests: EngineRequest[]
  /** The sids of the engine.io sessions it opened (one per handshake it answered), oldest first. */
  sids: string[]
  errors: EngineError[]
  /** socket.io connections it accepted (default namespace), oldest first. */
  sockets: ServerSocket[]
  /** Reasons its sockets gave on 'disconnect', in order. */
  disconnects: string[]
  /** Ends the process's part abruptly, as a crash would: the listener closes and every connection is destroyed. */
  crash: () => Promise<void>
}

/**
 * A socket.io 4 server on a plain `node:http` server on 127.0.0.1 (`port` 0: an ephemeral one), closed at
 * teardown. Its sockets answer `echo` with an ack of what they got.
 */
async function socketIoUpstream (t: Teardown, name: string, options: Partial<ServerOptions> = {}, port = 0): Promise<SocketIoUpstream> {
  const server = http.createServer((req: IncomingMessage, res: ServerResponse) => { res.end(name) })
  const connections = new Set<NetSocket>()
  server.on('connection', (socket: NetSocket) => {
    connections.add(socket)
    socket.on('close', () => connections.delete(socket))
  })
  const io = new SocketIoServer(server, options)
  const requests: EngineRequest[] = []
  const errors: EngineError[] = []
  const sids: string[] = []
  const sockets: ServerSocket[] = []
  const disconnects: string[] = []
  // engine.io wraps the 'request' listeners it finds when it attaches; listeners prepended after it run first.
  const record = (req: IncomingMessage, upgrade: boolean): void => {
    const url = new URL(req.url as string, 'http://upstream')
    if (!url.pathname.startsWith('/socket.io/')) return
    const q = url.searchParams
    requests.push({ method: upgrade ? 'upgrade' : req.method as string, transport: q.get('transport'), eio: q.get('EIO'), sid: q.get('sid'), cookie: req.headers.cookie, query: q })
  }
  server.prependListener('request', (req: IncomingMessage) => record(req, false))
  server.prependListener('upgrade', (req: IncomingMessage) => record(req, true))
  io.engine.on('connection_error', (err: { req: IncomingMessage, code: number, message: string }) => {
    errors.push({ code: err.code, message: err.message, sid: new URL(err.req.url as string, 'http://upstream').searchParams.get('sid') })
  })
  io.engine.on('connection', (conn: { id: string }) => sids.push(conn.id))
  io.on('connection', (socket) => {
    sockets.push(socket)
    socket.on('echo', (payload: unknown, ack: (answer: unknown) => void) => ack(payload))
    socket.on('disconnect', (reason) => disconnects.push(reason))
  })
  server.listen(port, '127.0.0.1')
  await within(once(server, 'listening'), 2000, `${name} to listen`)
  const crash = async (): Promise<void> => {
    const closed = new Promise((resolve) => server.close(resolve))
    for (const socket of connections) socket.destroy()
    await within(closed, 2000, `${name} to close`)
    // Clears engine.io's timers; its clients' sockets are already gone.
    io.close()
  }
  t.teardown(async () => {
    io.close()
    for (const socket of connections) socket.destroy()
    if (server.listening) await new Promise((resolve) => server.close(resolve))
  })
  const bound = portOf(server)
  return { name, url: `http://127.0.0.1:${bound}`, port: bound, io, requests, sids, errors, sockets, disconnects, crash }
}

type ClientOptions = Partial<ManagerOptions & SocketOptions>

/**
 * A socket.io client (its own Manager: `forceNew`, so no two tests or sessions share an engine), closed at
 * teardown. Reconnection is off unless a test turns it on, with bounded attempts.
 */
function client (t: Teardown, url: string, options: ClientOptions = {}): ClientSocket {
  const socket = connectClient(url, { forceNew: true, reconnection: false, timeout: 3000, ...options })
  t.teardown(() => { socket.close() })
  return socket
}

/** What a client went through: its connects (with the transport), connect errors, disconnect reasons, upgrades. */
interface ClientLog {
  connects: string[]
  connectErrors: Array<{ message: string, type: unknown, description: unknown }>
  disconnects: string[]
  upgrades: string[]
}

function watch (socket: ClientSocket): ClientLog {
  const log: ClientLog = { connects: [], connectErrors: [], disconnects: [], upgrades: [] }
  socket.on('connect', () => log.connects.push(socket.io.engine.transport.name))
  socket.on('connect_error', (err: Error & { type?: unknown, description?: unknown }) => {
    log.connectErrors.push({ message: err.message, type: err.type, description: err.description })
  })
  socket.on('disconnect', (reason) => log.disconnects.push(reason))
  // The Manager makes a new engine per (re)connection and says 'open' once its handshake succeeded.
  socket.io.on('open', () => {
    socket.io.engine.on('upgrade', (transport: { name: string }) => log.upgrades.push(transport.name))
  })
  return log
}

/** Resolves once `socket` is connected (bounded). */
async function connected (socket: ClientSocket, ms = 3000): Promise<void> {
  if (socket.connected) return
  await within(new Promise<void>((resolve) => socket.once('connect', () => resolve())), ms, 'the socket.io client to connect')
}

/** Resolves once the client's engine runs over WebSocket (after its 'upgrade' event; bounded). */
async function upgraded (socket: ClientSocket, ms = 3000): Promise<void> {
  await waitFor(() => socket.io.engine?.transport.name === 'websocket', ms, 'the transport to upgrade to websocket')
}

/** The first argument of the next `event` on `socket` (bounded): a disconnect's reason, a message. */
async function next<T> (socket: ClientSocket | ServerSocket, event: string, ms = 3000): Promise<T> {
  return within(new Promise<T>((resolve) => {
    socket.once(event, (first: T) => resolve(first))
  }), ms, `'${event}'`)
}

/**
 * How many engine.io requests of session `sid` each upstream saw: its handshake (which carries no sid yet: it
 * counts where the sid was issued), then its polls and upgrade (which carry it).
 */
function spread (upstreams: SocketIoUpstream[], sid: string): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const u of upstreams) counts[u.name] = (u.sids.includes(sid) ? 1 : 0) + u.requests.filter((r) => r.sid === sid).length
  return counts
}

/** The names of the upstreams that saw any request of session `sid`. */
function serversOf (upstreams: SocketIoUpstream[], sid: string): string[] {
  return Object.entries(spread(upstreams, sid)).filter(([, n]) => n > 0).map(([name]) => name)
}

/** The plugin options for one group `sio` behind `/` (socket.io's path, /socket.io/, is below it). */
function proxyTo (upstreams: SocketIoUpstream[], group: Omit<UpstreamGroupOptions, 'servers'> = {}): WsProxyOptions {
  return {
    upstreams: { sio: { servers: upstreams.map((u) => ({ url: u.url })), ...group } },
    routes: [{ prefix: '/', upstream: 'http://sio' }]
  }
}

/** Which upstream a plain request through the gateway reaches with these headers (upstreams answer their name). */
async function whoServes (url: string, headers: Record<string, string> = {}): Promise<string> {
  const res = await within(request(`${url}/whoami`, { headers }), 3000, 'the answer to /whoami')
  if (res.status !== 200) throw new Error(`expected a 200 from /whoami, got ${res.status}`)
  return res.body.toString()
}

/** An emit with ack from the client (bounded), answered by the upstream's `echo` handler. */
async function echo (socket: ClientSocket, payload: unknown): Promise<unknown> {
  return await socket.timeout(3000).emitWithAck('echo', payload)
}

/** One session, start to upgrade, and its sid; fails unless it connects and upgrades. */
async function session (t: Teardown, url: string, options: ClientOptions = {}): Promise<{ socket: ClientSocket, sid: string }> {
  const socket = client(t, url, options)
  await connected(socket)
  await upgraded(socket)
  return { socket, sid: socket.io.engine.id as string }
}

// ---------------------------------------------------------------------------------------------------------------
// One upstream: the handshake, the upgrade, events both ways

t.test('default transports: long-polling handshake, then the upgrade to WebSocket, through the gateway', async (t) => {
  const upstream = await socketIoUpstream(t, 'a')
  const { url, app } = await gateway(t, { routes: [{ prefix: '/socket.io/', upstream: upstream.url }] })
  const socket = client(t, url)
  const log = watch(socket)
  await connected(socket)
  t.equal(log.connects[0], 'polling', 'the session connects over long-polling first')
  await upgraded(socket)
  t.same(log.upgrades, ['websocket'], "then the client's 'upgrade' event: its engine now runs over WebSocket")

  const sid = socket.io.engine.id as string
  const [handshake, ...rest] = upstream.requests
  t.match(handshake, { method: 'GET', transport: 'polling', eio: '4', sid: null }, 'first request: the polling handshake, EIO=4&transport=polling, no sid')
  t.ok(rest.length > 0 && rest.every((r) => r.sid === sid && r.eio === '4'), 'every later request carries the sid the handshake issued')
  t.ok(rest.some((r) => r.method === 'POST' && r.transport === 'polling'), 'packets were sent with polling POSTs (the CONNECT packet)')
  t.ok(rest.some((r) => r.method === 'GET' && r.transport === 'polling'), 'and received with polling GETs')
  t.same(rest.filter((r) => r.method === 'upgrade').map((r) => r.transport), ['websocket'], 'one WebSocket upgrade, with the same sid')
  t.equal(app.wsProxy.tunnels, 1, 'the gateway holds the WebSocket as one tunnel')

  const [serverSocket] = upstream.sockets
  t.equal(serverSocket.id, socket.id, 'the server sees the same socket.io connection')
  // The server switches when the client's upgrade packet arrives, just after the client's 'upgrade' event.
  await waitFor(() => serverSocket.conn.transport.name === 'websocket', 3000, 'the server side to upgrade')

  // Emit/ack both ways over the upgraded transport, JSON and binary (70,000 bytes: a frame with a 64-bit length).
  t.same(await echo(socket, { text: 'héllo', n: 42 }), { text: 'héllo', n: 42 }, 'client → server with ack (JSON)')
  const bytes = randomBytes(70_000)
  const echoed = await echo(socket, bytes) as Buffer
  t.ok(Buffer.isBuffer(echoed) && echoed.equals(bytes), 'client → server with ack (binary): the same 70,000 bytes back')
  socket.on('ask', (payload: Buffer, ack: (answer: unknown) => void) => ack({ length: payload.length, head: payload.subarray(0, 4).toString('hex') }))
  const asked = randomBytes(1024)
  const answer: unknown = await serverSocket.timeout(3000).emitWithAck('ask', asked)
  t.same(answer, { length: 1024, head: asked.subarray(0, 4).toString('hex') }, 'server → client with ack (binary)')
  t.equal(upstream.requests.length, 1 + rest.length, 'no request after the upgrade: the round trips went over the tunnel')

  // A second client, then a broadcast from the server reaches both.
  const other = client(t, url)
  await connected(other)
  const news = randomBytes(16)
  const received = Promise.all([next<Buffer>(socket, 'news'), next<Buffer>(other, 'news')])
  upstream.io.emit('news', news)
  for (const data of await received) t.ok(Buffer.from(data).equals(news), 'the broadcast (binary) reached a client')

  // The client disconnects: the server sees why.
  const serverGone = next<string>(serverSocket, 'disconnect')
  socket.disconnect()
  t.equal(await serverGone, 'client namespace disconnect', "client disconnect: the server's reason is 'client namespace disconnect'")

  // The server disconnects the other client: the client sees why.
  const otherServerSocket = upstream.sockets[1]
  const clientGone = next<string>(other, 'disconnect')
  otherServerSocket.disconnect(true)
  t.equal(await clientGone, 'io server disconnect', "server disconnect: the client's reason is 'io server disconnect'")
  await waitFor(() => app.wsProxy.tunnels === 0, 3000, 'every tunnel to close')
  t.pass('no tunnel left once both sessions ended')
})

t.test("websocket-only transport (transports: ['websocket']): one upgrade, no polling", async (t) => {
  const upstream = await socketIoUpstream(t, 'a')
  const { url, app } = await gateway(t, { routes: [{ prefix: '/socket.io/', upstream: upstream.url }] })
  const socket = client(t, url, { transports: ['websocket'] })
  await connected(socket)
  t.equal(socket.io.engine.transport.name, 'websocket')
  t.same(upstream.requests.map((r) => [r.method, r.transport, r.eio, r.sid]), [['upgrade', 'websocket', '4', null]], 'the only request is the WebSocket handshake, without a sid (it opens the session)')
  t.same(await echo(socket, ['x', 1]), ['x', 1])
  const bytes = randomBytes(4096)
  t.ok(Buffer.from(await echo(socket, bytes) as Buffer).equals(bytes), 'binary round trip')
  t.equal(app.wsProxy.tunnels, 1)
  socket.disconnect()
  await waitFor(() => app.wsProxy.tunnels === 0, 3000, 'the tunnel to close')
  await waitFor(() => upstream.disconnects.length === 1, 3000, 'the server to see the disconnect')
  t.same(upstream.disconnects, ['client namespace disconnect'])
})

// ---------------------------------------------------------------------------------------------------------------
// Two upstreams in one group: what fails without stickiness, and the sticky setups

t.test('websocket-only through a round-robin group: one request per session, so no stickiness is needed', async (t) => {
  // The trade-off: no long-polling fallback for clients whose network refuses WebSockets.
  const a = await socketIoUpstream(t, 'a')
  const b = await socketIoUpstream(t, 'b')
  const { url } = await gateway(t, proxyTo([a, b]))
  const sockets = [client(t, url, { transports: ['websocket'] }), client(t, url, { transports: ['websocket'] })]
  for (const socket of sockets) await connected(socket)
  t.same([a.sockets.length, b.sockets.length], [1, 1], 'the two sessions went one to each server')
  for (const [i, socket] of sockets.entries()) t.same(await echo(socket, i), i, `session ${i} works`)
  t.same([...a.errors, ...b.errors], [])
})

t.test('two upstreams, round-robin: the session breaks on the other server ("Session ID unknown", 400)', async (t) => {
  // The handshake goes to one server, the next request of the session to the other, which has never heard of the
  // sid: engine.io answers 400 {"code":1,"message":"Session ID unknown"} and the client drops the session. Every
  // retry opens a new session that breaks the same way. socket.io counts `reconnectionAttempts` only until a
  // handshake succeeds, and here every handshake does: the attempts never run out, the client loops.
  const a = await socketIoUpstream(t, 'a')
  const b = await socketIoUpstream(t, 'b')
  const { url } = await gateway(t, proxyTo([a, b]))
  const socket = client(t, url, { reconnection: true, reconnectionAttempts: 2, reconnectionDelay: 50, reconnectionDelayMax: 100, randomizationFactor: 0 })
  const log = watch(socket)
  await waitFor(() => a.sids.length + b.sids.length >= 5, 5000, 'five handshakes')
  socket.close()

  t.ok(a.sids.length >= 2 && b.sids.length >= 2, `sessions open on both servers in turn (a ${a.sids.length}, b ${b.sids.length})`)
  t.ok(a.sids.length + b.sids.length > 1 + 2, 'more sessions than 1 + reconnectionAttempts: the attempts never run out')
  const unknown = [...a.errors, ...b.errors]
  t.ok(unknown.length >= 4, `the servers refused requests (${unknown.length})`)
  t.ok(unknown.every((e) => e.code === 1 && e.message === 'Session ID unknown'), 'every refusal is engine.io\'s "Session ID unknown"')
  t.ok(a.errors.every((e) => b.sids.includes(e.sid as string)) && b.errors.every((e) => a.sids.includes(e.sid as string)), 'each refused sid is one the other server issued')
  t.ok(log.connectErrors.length + log.disconnects.length >= 4, 'the client saw the sessions fail')
  t.ok(log.connectErrors.every((e) => e.type === 'TransportError' && e.description === 400), 'as transport errors, HTTP 400 relayed by the gateway')
  t.ok(log.disconnects.every((r) => r === 'transport error' || r === 'io client disconnect'), `disconnects: ${log.disconnects.join(', ')}`)
  t.same(log.upgrades, [], 'no session ever reached WebSocket')
  const answer = await request(`${url}/socket.io/?EIO=4&transport=polling&sid=nope`)
  t.equal(answer.status, 400, 'a request with an unknown sid, as the client sends it, gets 400 through the gateway')
  t.same(JSON.parse(answer.body.toString()), { code: 1, message: 'Session ID unknown' })
})

t.test('two upstreams, hash on a client key ($arg_): every request of a session on one server, sessions spread', async (t) => {
  // The README's recommended setup. The client sends a key of its own in `query` (socket.io adds it to every
  // request: handshake, polls, upgrade), and the group hashes on it; a client without the key falls back to its
  // address (a map), so an old client still gets a sticky session. Keys here are fixed, so placement is deterministic.
  const a = await socketIoUpstream(t, 'a')
  const b = await socketIoUpstream(t, 'b')
  const { url, app } = await gateway(t, {
    ...proxyTo([a, b], { balance: 'hash', hash: '$socketio_key', consistent: true }),
    maps: { socketio_key: { source: '$arg_sticky', cases: { '': '$remote_addr' }, default: '$arg_sticky' } }
  })
  const keys = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank']
  const sessions = await Promise.all(keys.map(async (key) => ({ key, ...await session(t, url, { query: { sticky: key } }) })))
  for (const { key, socket, sid } of sessions) {
    t.same(await echo(socket, { key }), { key }, `${key}: emit/ack over WebSocket`)
    const where = serversOf([a, b], sid)
    t.equal(where.length, 1, `${key}: handshake, polls and upgrade of its session all on ${where.join(' and ')} (${JSON.stringify(spread([a, b], sid))})`)
    const server = where[0] === 'a' ? a : b
    t.equal(spread([a, b], sid)[where[0]], server.requests.filter((r) => r.query.get('sticky') === key).length, `${key}: and every request with its key went there`)
  }
  t.ok(a.sockets.length > 0 && b.sockets.length > 0, `sessions spread over both servers (a ${a.sockets.length}, b ${b.sockets.length})`)
  t.equal(a.sockets.length + b.sockets.length, keys.length, 'one socket.io connection per client, none retried')

  const keyless = await session(t, url)
  t.equal(serversOf([a, b], keyless.sid).length, 1, 'a client without the key: sticky by its address')
  t.same(await echo(keyless.socket, 'no key'), 'no key')
  t.same([...a.errors, ...b.errors], [], 'no "Session ID unknown" anywhere')
  t.equal(app.wsProxy.tunnels, keys.length + 1, 'one tunnel per session')
})

t.test('two upstreams, ip-hash: sticky by client address; behind another proxy only with trustProxy', async (t) => {
  // socket.io's docs use nginx `ip_hash`. The gateway's ip-hash keys on `request.ip`: every loopback client here
  // is 127.0.0.1, as every client is the front balancer's address to a gateway behind one. With Fastify's
  // `trustProxy`, `request.ip` is the client's `X-Forwarded-For`, and (as nginx) the first three octets count.
  const a = await socketIoUpstream(t, 'a')
  const b = await socketIoUpstream(t, 'b')
  const addresses = ['10.0.1.7', '10.0.2.7', '10.0.3.7', '10.0.4.7', '10.0.5.7', '10.0.6.7']
  const forwarded = (ip: string): ClientOptions => ({ extraHeaders: { 'x-forwarded-for': ip } })

  await t.test('without trustProxy: every session on one server (all clients share an address)', async (t) => {
    const { url } = await gateway(t, proxyTo([a, b], { balance: 'ip-hash' }))
    const sessions = await Promise.all(addresses.map(async (ip) => await session(t, url, forwarded(ip))))
    const servers = new Set(sessions.map(({ sid }) => serversOf([a, b], sid).join(' and ')))
    t.equal(servers.size, 1, `sticky, but all on ${[...servers].join()}`)
    for (const { socket } of sessions) socket.disconnect()
  })

  await t.test('with trustProxy: the forwarded address decides, sessions spread, each one whole', async (t) => {
    const { url } = await gateway(t, proxyTo([a, b], { balance: 'ip-hash' }), { trustProxy: true })
    const before = { a: a.sockets.length, b: b.sockets.length }
    const sessions = await Promise.all(addresses.map(async (ip) => ({ ip, ...await session(t, url, forwarded(ip)) })))
    const serverOf = new Map<string, string>()
    for (const { ip, socket, sid } of sessions) {
      const where = serversOf([a, b], sid)
      t.equal(where.length, 1, `${ip}: every request of its session on ${where.join(' and ')}`)
      serverOf.set(ip, where[0])
      t.same(await echo(socket, ip), ip)
    }
    t.ok(a.sockets.length > before.a && b.sockets.length > before.b, `sessions spread over both servers: ${JSON.stringify(Object.fromEntries(serverOf))}`)
    // Another client in the same /24 lands where its neighbour did.
    const neighbour = await session(t, url, forwarded('10.0.1.200'))
    t.same(serversOf([a, b], neighbour.sid), [serverOf.get('10.0.1.7')], 'an address in the same /24 goes to the same server')
    t.same([...a.errors, ...b.errors], [], 'no "Session ID unknown" anywhere')
  })
})

t.test("two upstreams, hash on socket.io's own cookie ($cookie_io): the handshake cannot be sticky", async (t) => {
  // With `cookie: true` engine.io answers the handshake with `Set-Cookie: io=<sid>`, and a client that keeps
  // cookies (`withCredentials` in Node, any browser) sends it from then on. But the handshake itself has no cookie
  // yet: it goes to a server picked without the key, which then draws a random sid; later requests go where that
  // sid hashes. The session survives only when the two agree: 1 in N with N servers. Sids are made deterministic
  // here (engine.io's `generateId`), so the test shows both outcomes whichever server takes the handshake.
  const a = await socketIoUpstream(t, 'a', { cookie: true })
  const b = await socketIoUpstream(t, 'b', { cookie: true })
  const { url } = await gateway(t, proxyTo([a, b], { balance: 'hash', hash: '$cookie_io' }))

  // Where each candidate sid hashes, asked of the gateway itself (the upstreams answer their name off /socket.io/).
  const hashesTo: Record<string, string[]> = { a: [], b: [] }
  for (let i = 0; i < 16; i++) hashesTo[await whoServes(url, { cookie: `io=sid-${i}` })].push(`sid-${i}`)
  t.ok(hashesTo.a.length >= 2 && hashesTo.b.length >= 2, `16 sids hash to both servers (a: ${hashesTo.a.join(' ')})`)
  // Each server issues either a sid that hashes to the other server, or one that hashes back to itself.
  let plan: 'elsewhere' | 'home' = 'elsewhere'
  for (const [self, other] of [[a, b], [b, a]]) {
    self.io.engine.generateId = () => (plan === 'home' ? hashesTo[self.name] : hashesTo[other.name]).shift() as string
  }

  const unlucky = client(t, url, { withCredentials: true })
  const log = watch(unlucky)
  await waitFor(() => log.connectErrors.length > 0, 3000, 'the first session to fail')
  const [issuer, other] = a.sids.length === 1 ? [a, b] : [b, a]
  const sid = issuer.sids[0]
  t.same([...a.sids, ...b.sids], [sid], `the handshake (no cookie yet) went to ${issuer.name}, which issued ${sid}`)
  t.ok(other.requests.length > 0 && other.requests.every((r) => r.sid === sid && r.cookie === `io=${sid}`), `the client sent the cookie io=${sid}, which took the rest of the session to ${other.name}`)
  t.ok(other.errors.length > 0 && other.errors.every((e) => e.code === 1 && e.sid === sid), 'where it is "Session ID unknown"')
  t.match(log.connectErrors[0], { type: 'TransportError', description: 400 }, 'the client got the 400: no connection')
  t.equal(unlucky.connected, false)
  unlucky.close()

  plan = 'home'
  const lucky = client(t, url, { withCredentials: true })
  await connected(lucky)
  await upgraded(lucky)
  const luckySid = lucky.io.engine.id as string
  t.same(await echo(lucky, 'ok'), 'ok', `a sid that hashes back to the server that drew it (${luckySid}) works end to end`)
  t.same(serversOf([a, b], luckySid).length, 1, 'every request of that session on one server')
})

// ---------------------------------------------------------------------------------------------------------------
// An upstream that goes away

t.test('the upstream crashes: the client sees the disconnect and reconnects through the gateway once it is back', async (t) => {
  const first = await socketIoUpstream(t, 'a')
  const { url, app } = await gateway(t, { routes: [{ prefix: '/socket.io/', upstream: first.url }] })
  const socket = client(t, url, { reconnection: true, reconnectionAttempts: 40, reconnectionDelay: 50, reconnectionDelayMax: 100, randomizationFactor: 0 })
  const log = watch(socket)
  await connected(socket)
  await upgraded(socket)
  const oldId = socket.id

  const gone = next<string>(socket, 'disconnect')
  await first.crash()
  t.equal(await gone, 'transport close', "the client's reason: 'transport close' (the tunnel closed under it)")
  await waitFor(() => app.wsProxy.tunnels === 0, 3000, 'the tunnel to close')
  await waitFor(() => log.connectErrors.length >= 2, 3000, 'two failed reconnection attempts')
  t.ok(log.connectErrors.every((e) => e.type === 'TransportError' && e.description === 502), 'attempts while it is down: 502 from the gateway (connection refused)')

  const second = await socketIoUpstream(t, 'a again', {}, first.port)
  const reconnected = within(new Promise<number>((resolve) => socket.io.once('reconnect', resolve)), 5000, "the Manager's 'reconnect'")
  await connected(socket, 5000)
  const attempts = await reconnected
  t.ok(attempts >= 2, `reconnected at attempt ${attempts} of at most 40`)
  t.not(socket.id, oldId, 'a new session')
  t.equal(second.sockets.length, 1, 'on the restarted server')
  t.same(await echo(socket, 'back'), 'back')
  await upgraded(socket)
  t.equal(app.wsProxy.tunnels, 1)
})

t.test('a sticky group: the server holding the session crashes, the client reconnects to the other one', async (t) => {
  const a = await socketIoUpstream(t, 'a')
  const b = await socketIoUpstream(t, 'b')
  const { url, app } = await gateway(t, proxyTo([a, b], { balance: 'hash', hash: '$arg_sticky', consistent: true }))
  const socket = client(t, url, { query: { sticky: 'room-1' }, reconnection: true, reconnectionAttempts: 10, reconnectionDelay: 50, reconnectionDelayMax: 100, randomizationFactor: 0 })
  const log = watch(socket)
  await connected(socket)
  await upgraded(socket)
  const [holder, survivor] = a.sockets.length === 1 ? [a, b] : [b, a]
  t.same([holder.sockets.length, survivor.sockets.length], [1, 0], `the key room-1 maps to ${holder.name}`)

  const gone = next<string>(socket, 'disconnect')
  await holder.crash()
  t.equal(await gone, 'transport close')
  await connected(socket, 5000)
  await upgraded(socket)
  t.equal(survivor.sockets.length, 1, `reconnected on ${survivor.name}`)
  t.same(log.connectErrors, [], 'at the first attempt: the refused handshake was retried on the other server (nextUpstream)')
  t.equal(app.wsProxy.group('sio').servers().find((s) => s.address === `127.0.0.1:${holder.port}`)?.state, 'failed', `${holder.name} is out for failTimeout, so the key's later requests skip it too`)
  const sid = socket.io.engine.id as string
  t.same(serversOf([a, b], sid), [survivor.name], 'every request of the new session on the survivor')
  t.same(await echo(socket, 'still here'), 'still here')
})

// ---------------------------------------------------------------------------------------------------------------
// Timeouts

t.test('timeouts.read must be longer than pingInterval: a silent upstream is a healthy one', async (t) => {
  // engine.io holds a polling GET until it has something to send, at the latest the next ping (pingInterval,
  // 25 s by default); over WebSocket the server is as silent between pings. `timeouts.read` (nginx
  // proxy_read_timeout, 60 s by default) measures exactly that silence, so it must be longer.
  await t.test('shorter: the long poll gets a 504, the WebSocket tunnel is closed', async (t) => {
    const upstream = await socketIoUpstream(t, 'a', { pingInterval: 3000, pingTimeout: 1000 })
    const { url } = await gateway(t, { routes: [{ prefix: '/socket.io/', upstream: upstream.url }], timeouts: { read: 300 } })

    const polling = client(t, url, { transports: ['polling'] })
    const errors: unknown[] = []
    polling.io.on('error', (err: Error & { description?: unknown }) => errors.push(err.description))
    await connected(polling)
    const started = Date.now()
    t.equal(await next<string>(polling, 'disconnect', 2500), 'transport error', `polling: the session ended after ${Date.now() - started} ms, before the first ping (3000 ms)`)
    t.same(errors, [504], 'the long poll got the gateway\'s 504')

    const upgrading = client(t, url)
    await connected(upgrading)
    await upgraded(upgrading)
    const since = Date.now()
    t.equal(await next<string>(upgrading, 'disconnect', 2500), 'transport close', `websocket: the tunnel was closed after ${Date.now() - since} ms of upstream silence`)
  })

  await t.test('longer: sessions stay up across several read timeouts of silence between pings', async (t) => {
    const upstream = await socketIoUpstream(t, 'a', { pingInterval: 100, pingTimeout: 1000 })
    const { url } = await gateway(t, { routes: [{ prefix: '/socket.io/', upstream: upstream.url }], timeouts: { read: 400 } })
    const polling = client(t, url, { transports: ['polling'] })
    const upgrading = client(t, url)
    const logs = [watch(polling), watch(upgrading)]
    // Pings the server sent on each session: the silences between them are what `read` measures.
    const pings = new Map<string, number>()
    upstream.io.on('connection', (socket) => {
      socket.conn.on('packetCreate', (packet: { type: string }) => {
        if (packet.type === 'ping') pings.set(socket.id, (pings.get(socket.id) ?? 0) + 1)
      })
    })
    await connected(polling)
    await connected(upgrading)
    await upgraded(upgrading)
    await waitFor(() => pings.size === 2 && [...pings.values()].every((n) => n >= 10), 4000, 'ten pings on each session')
    t.same(logs.map((log) => log.disconnects), [[], []], 'neither session ended over ten ping intervals (1 s: 2.5 read timeouts)')
    const bytes = randomBytes(200_000)
    t.ok(Buffer.from(await echo(polling, bytes) as Buffer).equals(bytes), 'polling: 200,000 binary bytes each way (base64 in POST and GET bodies)')
    t.same(await echo(upgrading, 2), 2)
  })
})
