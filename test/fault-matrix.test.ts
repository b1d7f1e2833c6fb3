// Fault injection matrix. Each row injects one fault, through a scripted raw upstream (net) or a raw client
// socket, and states what the client sees (a complete answer with its status and JSON error code, a body cut
// short, the bytes of a tunnel, or nothing) and what the upstream saw (the request lines it received, and which
// side closed their connection first). After every row the gateway must have left nothing behind: no tunnel,
// no connection on either side (pooled upstream connections included), the same 'upgrade', 'request' and
// 'clientError' listeners on the server, and no more ref'd timers or TCP sockets in
// process.getActiveResourcesInfo() than before the row (after a bounded settle wait).
//
// All rows share one gateway (one route per row, each to its own upstream), so a leak in any row shows up
// against a gateway that keeps serving. The fuzz tests at the end split requests at every byte boundary.
import t, { type Test } from 'tap'
import { once } from 'node:events'
import type { Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import type { RouteOptions } from '../src/index.js'
import { closedPort, gateway, origin, waitFor, within } from './helpers/servers.js'
import {
  headEnd, headUpstream, parseHead, rawClient, switching, upgradeHead, wsHandshakeHead,
  type Received, type ScriptedServer, type UpstreamConnection
} from './helpers/ws.js'

/**
 * The client's head timeout, Node's `headersTimeout` (nginx client_header_timeout; the gateway config's
 * `server.headersTimeout`), given through Fastify's `http` server options. Node enforces it on its
 * `connectionsCheckingInterval` tick (30 s by default), hence the short interval.
 */
const HEADERS_TIMEOUT = 1000
const CHECKING_INTERVAL = 100
/** The slowloris client's pace: one byte every DRIP_MS (slowloris proper is one per second; faster keeps the test short). */
const DRIP_MS = 250
/** Bound of the wait for everything to be released after a row. */
const SETTLE_MS = 3000

// ---------------------------------------------------------------------------------------------------------------
// Outcomes

/** What the client saw, read from its raw socket once the connection ended. */
interface ClientOutcome {
  /** Status of the answer; null when the connection ended without one. */
  status: number | null
  /** `code` of the JSON error body; null when there is none (or the body is not JSON). */
  code: string | null
  /** The connection was cut short: before its body's Content-Length bytes, or (status null) in the middle of a head. */
  cut: boolean
  /** After a 101: the bytes that came through the tunnel (latin1); otherwise null. */
  tunnel: string | null
}

const answer = (status: number, code: string | null = null): ClientOutcome => ({ status, code, cut: false, tunnel: null })
const cutAfterHead = (status: number): ClientOutcome => ({ status, code: null, cut: true, tunnel: null })
const tunnelled = (bytes: string): ClientOutcome => ({ status: 101, code: null, cut: false, tunnel: bytes })
const NO_ANSWER: ClientOutcome = { status: null, code: null, cut: false, tunnel: null }

/** What the upstream saw. */
interface UpstreamOutcome {
  /** The request line of every request head it received, in order ([]: nothing reached it). */
  requests: string[]
  /** Which side first closed (FIN or reset) the connection that carried the request; null when none came. */
  closedFirst: 'gateway' | 'upstream' | null
}

const SAW_NOTHING: UpstreamOutcome = { requests: [], closedFirst: null }
const sawRequest = (closedFirst: 'gateway' | 'upstream', line = 'GET /x HTTP/1.1'): UpstreamOutcome => ({ requests: [line], closedFirst })

function clientOutcome (client: Received): ClientOutcome {
  const bytes = client.bytes
  const end = headEnd(bytes)
  if (end === -1) return bytes.length === 0 ? NO_ANSWER : { ...NO_ANSWER, cut: true }
  const head = parseHead(bytes.toString('latin1'))
  const body = bytes.subarray(end)
  if (head.status === 101) return tunnelled(body.toString('latin1'))
  // Every answer in the matrix has a Content-Length (Fastify's errors, the scripted upstreams' heads).
  if (!(body.length >= Number(head.headers['content-length']))) return cutAfterHead(head.status)
  const json = (head.headers['content-type'] ?? '').startsWith('application/json')
  return answer(head.status, json ? (JSON.parse(body.toString()) as { code?: string }).code ?? null : null)
}

/** The JSON body of a complete answer. */
function jsonBody (client: Received): Record<string, unknown> {
  return JSON.parse(client.bytes.subarray(headEnd(client.bytes)).toString()) as Record<string, unknown>
}

/** Which side closed an upstream connection first, as its upstream socket saw it. */
const closedFirst = new WeakMap<UpstreamConnection, 'gateway' | 'upstream'>()

function watchClose (connection: UpstreamConnection): void {
  const socket = connection.socket
  const record = (): void => {
    // A FIN or reset from the gateway arrives as 'end' or 'error' while this side is still open; a script that
    // resets or destroys its socket gets neither, only 'close'.
    if (!closedFirst.has(connection)) closedFirst.set(connection, socket.writableEnded ? 'upstream' : 'gateway')
  }
  socket.once('end', record)
  socket.once('error', record)
  socket.once('close', () => { if (!closedFirst.has(connection)) closedFirst.set(connection, 'upstream') })
}

function upstreamOutcome (server: ScriptedServer | null): UpstreamOutcome {
  const carried = server?.accepted.filter((c) => c.head !== '') ?? []
  const sides = new Set(carried.map((c) => closedFirst.get(c) ?? null))
  return {
    requests: carried.map((c) => c.head.slice(0, c.head.indexOf('\r\n'))),
    closedFirst: sides.size === 1 ? [...sides][0] : null
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Rows

/** What a scripted upstream does once a connection's request head is complete. */
type Script = (connection: UpstreamConnection) => void

/** One row's run: the client side of the fault, driven by the test (and, for timed faults, the upstream's too). */
class Case {
  readonly clients: Received[] = []
  readonly t: Test
  readonly app: FastifyInstance
  readonly port: number
  /** The row's request path (`/cN/x`); its upstream sees `/x`. */
  readonly path: string
  readonly upstream: ScriptedServer | null

  constructor (t: Test, app: FastifyInstance, port: number, path: string, upstream: ScriptedServer | null) {
    this.t = t
    this.app = app
    this.port = port
    this.path = path
    this.upstream = upstream
  }

  async connect (allowHalfOpen = false): Promise<Received> {
    const client = await rawClient(this.t, this.port, allowHalfOpen)
    this.clients.push(client)
    return client
  }

  async send (bytes: string): Promise<Received> {
    const client = await this.connect()
    client.socket.write(bytes, 'latin1')
    return client
  }

  /** The upstream connection that carried the request, once its head has arrived (bounded). */
  async request (): Promise<UpstreamConnection> {
    const carrying = (): UpstreamConnection | undefined => this.upstream?.accepted.find((c) => c.head !== '')
    await waitFor(() => carrying() !== undefined, 3000, 'the request to reach the upstream')
    return carrying() as UpstreamConnection
  }
}

interface Row {
  name: string
  /** How the upstream meets each request ('refused': nothing listens on its port). */
  upstream: Script | 'refused'
  /** The upstream's sockets stay writable after the gateway's FIN (the script ends them). */
  halfOpen?: boolean
  route?: Pick<RouteOptions, 'timeouts' | 'limits'>
  /** The client's side of the row. */
  client: (c: Case) => Promise<void>
  expect: { client: ClientOutcome, upstream: UpstreamOutcome }
  /** Assertions particular to the row. */
  check?: (t: Test, c: Case) => void | Promise<void>
  /** Set when the row reveals a known problem not fixed yet: the reason. */
  todo?: string
}

/** A plain request the gateway closes the connection after (the client reads the answer to the connection's end). */
const plainGet = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n\r\n`
const GET = async (c: Case): Promise<void> => { await c.send(plainGet(c.path)) }
const HANDSHAKE = async (c: Case): Promise<void> => { await c.send(wsHandshakeHead(c.path)) }

/** The same fault met by a plain GET and by a WebSocket handshake: two rows. */
function both (name: string, row: Omit<Row, 'name' | 'client'>, check?: { plain?: Row['check'], upgrade?: Row['check'] }): Row[] {
  return [
    { ...row, name: `${name} (plain GET)`, client: GET, check: check?.plain },
    { ...row, name: `${name} (WebSocket handshake)`, client: HANDSHAKE, check: check?.upgrade }
  ]
}

const silent: Script = () => {}
const resets: Script = ({ socket }) => { socket.resetAndDestroy() }
const writes = (bytes: string): Script => ({ socket }) => { socket.write(bytes, 'latin1') }
const endsWith = (bytes: string): Script => ({ socket }) => { socket.end(bytes, 'latin1') }

const FORTY = 'x'.repeat(40)
const HEAD_AND_FORTY = `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n${FORTY}`
const OVERSIZED = `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(4096)}\r\nContent-Length: 0\r\n\r\n`
const UPSTREAM_URL_MESSAGE = (c: Case): string => `Upstream ${origin(c.upstream as ScriptedServer)}`

/** The message of the error answer. */
const messageIs = (expected: (c: Case) => string) => (t: Test, c: Case): void => {
  t.equal(jsonBody(c.clients[0]).message, expected(c), 'the error message')
}

/** Node's parser rejects these before any route runs: Fastify's clientError handler answers 400 and closes. */
const FASTIFY_400 = { error: 'Bad Request', message: 'Client Error', statusCode: 400 }
const UPGRADE_LINES = 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'
function malformed (name: string, request: (path: string, upgrade: string) => string): Row[] {
  const row = (variant: string, upgrade: string): Row => ({
    name: `malformed request: ${name} (${variant})`,
    upstream: silent,
    client: async (c) => { await c.send(request(c.path, upgrade)) },
    expect: { client: answer(400), upstream: SAW_NOTHING },
    check: (t, c) => { t.same(jsonBody(c.clients[0]), FASTIFY_400, 'Fastify\'s 400 body') }
  })
  return [row('plain', ''), row('upgrade', UPGRADE_LINES)]
}

const rows: Row[] = [
  // ---- the upstream's faults
  ...both('upstream refuses the connection', {
    upstream: 'refused',
    expect: { client: answer(502, 'FST_WS_PROXY_CONNECT_FAILED'), upstream: SAW_NOTHING }
  }),
  ...both('upstream accepts, reads the request, then hangs', {
    upstream: silent,
    route: { timeouts: { read: 200 } },
    expect: { client: answer(504, 'FST_WS_PROXY_READ_TIMEOUT'), upstream: sawRequest('gateway') }
  }, {
    plain: messageIs((c) => `${UPSTREAM_URL_MESSAGE(c)} sent no response within 200 ms`),
    upgrade: messageIs((c) => `${UPSTREAM_URL_MESSAGE(c)} sent no response within 200 ms`)
  }),
  ...both('upstream resets (RST) before the response head', {
    upstream: resets,
    expect: { client: answer(502, 'FST_WS_PROXY_UPSTREAM_RESET'), upstream: sawRequest('upstream') }
  }),
  ...both('upstream sends a garbage head', {
    upstream: writes('hello\r\n\r\n'),
    expect: { client: answer(502, 'FST_WS_PROXY_BAD_RESPONSE'), upstream: sawRequest('gateway') }
  }),
  ...both('upstream sends an oversized head (limits.responseHead 1024)', {
    upstream: writes(OVERSIZED),
    route: { limits: { responseHead: 1024 } },
    expect: { client: answer(502, 'FST_WS_PROXY_BAD_RESPONSE'), upstream: sawRequest('gateway') }
  }, {
    plain: messageIs((c) => `${UPSTREAM_URL_MESSAGE(c)} sent an invalid response: Headers Overflow Error`),
    upgrade: messageIs((c) => `${UPSTREAM_URL_MESSAGE(c)} sent an invalid response: Headers Overflow Error`)
  }),
  {
    name: 'upstream answers a handshake with an oversized 101 (limits.responseHead 1024): 502, not a tunnel',
    upstream: writes(switching('websocket').replace('\r\n\r\n', `\r\nX-Big: ${'a'.repeat(4096)}\r\n\r\n`)),
    route: { limits: { responseHead: 1024 } },
    client: HANDSHAKE,
    expect: { client: answer(502, 'FST_WS_PROXY_BAD_RESPONSE'), upstream: sawRequest('gateway') },
    check: messageIs((c) => `${UPSTREAM_URL_MESSAGE(c)} sent an invalid response: Headers Overflow Error`)
  },
  {
    name: 'upstream answers 101 to a plain GET that asked for no upgrade: 502, not a tunnel',
    upstream: writes(switching('websocket')),
    client: GET,
    expect: { client: answer(502, 'FST_WS_PROXY_BAD_RESPONSE'), upstream: sawRequest('gateway') },
    check: messageIs((c) => `${UPSTREAM_URL_MESSAGE(c)} sent an invalid response: bad upgrade`)
  },
  {
    name: 'upstream resets (RST) mid-body: the client connection is cut after 40 of 100 bytes',
    upstream: writes(HEAD_AND_FORTY),
    client: async (c) => {
      const client = await c.send(plainGet(c.path))
      await client.contains(FORTY)
      ;(await c.request()).socket.resetAndDestroy()
    },
    expect: { client: cutAfterHead(200), upstream: sawRequest('upstream') },
    check: (t, c) => { t.ok(c.clients[0].text.endsWith(`\r\n\r\n${FORTY}`), 'the 40 bytes sent, nothing after them') }
  },
  {
    name: 'upstream closes (FIN) mid-body: the client connection is cut after 40 of 100 bytes',
    upstream: endsWith(HEAD_AND_FORTY),
    client: GET,
    expect: { client: cutAfterHead(200), upstream: sawRequest('upstream') }
  },
  {
    name: 'upstream resets (RST) mid-tunnel: the client connection is closed',
    upstream: writes(switching() + 'from the upstream'),
    client: async (c) => {
      const client = await c.send(upgradeHead(c.path))
      await client.contains('from the upstream')
      ;(await c.request()).socket.resetAndDestroy()
    },
    expect: { client: tunnelled('from the upstream'), upstream: sawRequest('upstream') }
  },
  {
    name: 'upstream answers 101 and closes (FIN) at once: the tunnel ends',
    upstream: endsWith(switching() + 'last upstream bytes'),
    client: async (c) => { await c.send(upgradeHead(c.path)) },
    expect: { client: tunnelled('last upstream bytes'), upstream: sawRequest('upstream') }
  },

  // ---- the client's faults
  {
    name: 'client resets before its request head is complete: nothing goes upstream',
    upstream: silent,
    client: async (c) => {
      const client = await c.send(`GET ${c.path} HTTP/1.1\r\nHost: gatew`)
      await waitForAsync(async () => await gatewayConnections(c.app) === 1, 2000, 'the gateway to hold the connection')
      client.socket.resetAndDestroy()
    },
    expect: { client: NO_ANSWER, upstream: SAW_NOTHING }
  },
  ...['plain GET', 'WebSocket handshake'].map((variant): Row => ({
    name: `client resets while the upstream has not answered yet (${variant}): the upstream request is aborted`,
    upstream: silent,
    client: async (c) => {
      const client = await c.send(variant === 'plain GET' ? plainGet(c.path) : wsHandshakeHead(c.path))
      await c.request()
      client.socket.resetAndDestroy()
    },
    expect: { client: NO_ANSWER, upstream: sawRequest('gateway') }
  })),
  {
    name: 'client resets mid-upload: the upstream request is aborted',
    upstream: silent,
    client: async (c) => {
      const client = await c.send(`POST ${c.path} HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 100000\r\n\r\n${'u'.repeat(1000)}`)
      const upstream = await c.request()
      await waitFor(() => upstream.afterHead().length >= 1000, 2000, 'the first body bytes upstream')
      client.socket.resetAndDestroy()
    },
    expect: { client: NO_ANSWER, upstream: sawRequest('gateway', 'POST /x HTTP/1.1') },
    check: async (t, c) => { t.equal((await c.request()).afterHead().toString(), 'u'.repeat(1000), 'the upstream got the 1000 bytes sent, no more') }
  },
  {
    name: 'client resets mid-tunnel: the upstream connection is closed',
    upstream: ({ socket }) => {
      socket.write(switching())
      socket.on('data', (chunk: Buffer) => socket.write(chunk))
    },
    client: async (c) => {
      const client = await c.send(upgradeHead(c.path))
      await client.contains('\r\n\r\n')
      client.socket.write('echo me')
      await client.contains('echo me')
      client.socket.resetAndDestroy()
    },
    expect: { client: tunnelled('echo me'), upstream: sawRequest('gateway') }
  },
  {
    name: 'client half-closes a tunnel: the upstream gets its bytes and FIN, and can still answer',
    halfOpen: true,
    upstream: ({ socket }) => {
      socket.write(switching())
      socket.once('end', () => socket.end('answer after the FIN'))
    },
    client: async (c) => {
      const client = await c.connect(true)
      client.socket.write(upgradeHead(c.path))
      await client.contains('\r\n\r\n')
      client.socket.end('last words')
    },
    expect: { client: tunnelled('answer after the FIN'), upstream: sawRequest('gateway') },
    check: async (t, c) => { t.equal((await c.request()).afterHead().toString(), 'last words', 'the client\'s bytes, then its FIN') }
  },
  {
    // Node's HTTP server (httpAllowHalfOpen false) takes a client's FIN as the end of the exchange, as nginx does
    // by default (499, proxy_ignore_client_abort off): the upstream request is released, not left to finish.
    name: 'client half-closes (FIN) while the upstream has not answered yet: an abort, the upstream request is released',
    upstream: silent,
    client: async (c) => {
      const client = await c.connect(true)
      client.socket.write(plainGet(c.path), 'latin1')
      await c.request()
      client.socket.end()
    },
    expect: { client: NO_ANSWER, upstream: sawRequest('gateway') }
  },
  (() => {
    const run = { sent: 0, elapsed: 0, length: 0 }
    return {
      name: `slowloris client (one byte every ${DRIP_MS} ms) is cut off by the head timeout with 408`,
      upstream: silent,
      client: async (c: Case) => {
        const head = `GET ${c.path} HTTP/1.1\r\nHost: gateway.test\r\nX-Slow: ${'s'.repeat(40)}\r\n\r\n`
        run.length = head.length
        const client = await c.connect()
        const started = Date.now()
        const drip = setInterval(() => { if (client.socket.writable) client.socket.write(head[run.sent++]) }, DRIP_MS)
        try {
          await client.close(HEADERS_TIMEOUT * 5)
        } finally {
          clearInterval(drip)
        }
        run.elapsed = Date.now() - started
      },
      expect: { client: answer(408), upstream: SAW_NOTHING },
      check: (t: Test) => {
        t.ok(run.elapsed >= HEADERS_TIMEOUT - 50 && run.elapsed < HEADERS_TIMEOUT * 3, `cut off after ${run.elapsed} ms (headersTimeout ${HEADERS_TIMEOUT})`)
        t.ok(run.sent < run.length / 4, `${run.sent} of ${run.length} head bytes sent`)
      }
    }
  })(),

  // ---- malformed requests: 400 from Node's parser (through Fastify's clientError handler), nothing upstream
  ...malformed('bad HTTP version', (path, upgrade) => `GET ${path} HTTP/1.2\r\nHost: gateway.test\r\n${upgrade}\r\n`),
  ...malformed('a control character in a header value', (path, upgrade) => `GET ${path} HTTP/1.1\r\nHost: gateway.test\r\nX-Bad: a\x01b\r\n${upgrade}\r\n`),
  ...malformed('a space in a header name', (path, upgrade) => `GET ${path} HTTP/1.1\r\nHost: gateway.test\r\nX Bad: b\r\n${upgrade}\r\n`),
  ...malformed('Content-Length and Transfer-Encoding', (path, upgrade) =>
    `POST ${path} HTTP/1.1\r\nHost: gateway.test\r\n${upgrade}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`),
  ...malformed('two differing Content-Length', (path, upgrade) =>
    `POST ${path} HTTP/1.1\r\nHost: gateway.test\r\n${upgrade}Content-Length: 1\r\nContent-Length: 2\r\n\r\nab`)
]

// ---------------------------------------------------------------------------------------------------------------
// Leak check

async function gatewayConnections (app: FastifyInstance): Promise<number> {
  return await new Promise((resolve, reject) => app.server.getConnections((err, count) => { if (err !== null) reject(err); else resolve(count) }))
}

/** `waitFor` for a predicate that needs to await. */
async function waitForAsync (predicate: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  while (!await predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(5)
  }
}

interface Snapshot {
  tunnels: number
  gatewayConnections: number
  poolConnections: number
  upstreamSockets: number
  listeners: { upgrade: number, request: number, clientError: number }
  timeouts: number
  tcpSockets: number
}

async function snapshot (app: FastifyInstance, upstreams: ScriptedServer[]): Promise<Snapshot> {
  const resources = process.getActiveResourcesInfo()
  const server = app.server
  return {
    tunnels: app.wsProxy.tunnels,
    gatewayConnections: await gatewayConnections(app),
    poolConnections: app.wsProxy.upstreamConnections,
    upstreamSockets: upstreams.reduce((n, u) => n + u.accepted.filter((c) => !c.received.closed).length, 0),
    listeners: { upgrade: server.listenerCount('upgrade'), request: server.listenerCount('request'), clientError: server.listenerCount('clientError') },
    timeouts: resources.filter((r) => r === 'Timeout').length,
    tcpSockets: resources.filter((r) => r === 'TCPSocketWrap').length
  }
}

/**
 * What a snapshot must show after a row, given the one taken before it: absolute zeros where the brief is absolute
 * (tunnels, gateway connections, the row's upstream sockets), increases elsewhere, so a leak fails only its own row.
 */
function released (now: Snapshot, before: Snapshot) {
  return {
    tunnels: now.tunnels,
    gatewayConnections: now.gatewayConnections,
    upstreamSockets: now.upstreamSockets,
    extraPoolConnections: Math.max(0, now.poolConnections - before.poolConnections),
    listeners: now.listeners,
    extraTimeouts: Math.max(0, now.timeouts - before.timeouts),
    extraTcpSockets: Math.max(0, now.tcpSockets - before.tcpSockets)
  }
}

/** Waits (bounded) for everything the row used to be released, then asserts it was; `upstreams`: the row's own. */
async function assertNothingLeft (t: Test, app: FastifyInstance, upstreams: ScriptedServer[], before: Snapshot): Promise<void> {
  const clean = { tunnels: 0, gatewayConnections: 0, upstreamSockets: 0, extraPoolConnections: 0, listeners: before.listeners, extraTimeouts: 0, extraTcpSockets: 0 }
  const deadline = Date.now() + SETTLE_MS
  let now = released(await snapshot(app, upstreams), before)
  while (JSON.stringify(now) !== JSON.stringify(clean) && Date.now() < deadline) {
    await sleep(10)
    now = released(await snapshot(app, upstreams), before)
  }
  t.same(now, clean, 'nothing left behind')
}

// ---------------------------------------------------------------------------------------------------------------
// The matrix

const upstreams: Array<ScriptedServer | null> = []
const refusedPort = await closedPort()
for (const row of rows) {
  const script = row.upstream
  upstreams.push(script === 'refused' ? null : await headUpstream(t, (c) => { watchClose(c); script(c) }, row.halfOpen ?? false))
}

/** Fuzz upstreams: what each received, one connection per request (each answer closes its connection). */
const fuzzSeen: Array<{ head: string, body: string }> = []
const fuzzPlain = await headUpstream(t, (c) => {
  const length = Number(/\r\ncontent-length: (\d+)\r\n/i.exec(c.head)?.[1] ?? 0)
  const answerWhenComplete = (): void => {
    if (c.afterHead().length < length) return
    c.socket.removeListener('data', answerWhenComplete)
    fuzzSeen.push({ head: c.head, body: c.afterHead().toString('latin1') })
    c.socket.end('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok')
  }
  c.socket.on('data', answerWhenComplete)
  answerWhenComplete()
})
const fuzzUpgrade = await headUpstream(t, (c) => {
  fuzzSeen.push({ head: c.head, body: c.afterHead().toString('latin1') })
  c.socket.end(switching('websocket'))
})

const listenersBeforeRegister = { upgrade: 0 }
const { app, port } = await gateway(t, {
  routes: [
    ...rows.map((row, i) => ({
      prefix: `/c${i}/`,
      upstream: `${upstreams[i] === null ? `http://127.0.0.1:${refusedPort}` : origin(upstreams[i] as ScriptedServer)}/`,
      ...row.route
    })),
    { prefix: '/fuzz/', upstream: origin(fuzzPlain) + '/' },
    { prefix: '/fuzz-up/', upstream: origin(fuzzUpgrade) + '/' }
  ],
  // Idle pooled connections (and the one undici dials after an aborted request) go quickly.
  pool: { keepAliveTimeout: 100 }
}, {
  // Fastify's `http` server options (FastifyHttpOptions), which the helper's FastifyServerOptions type leaves out.
  http: { headersTimeout: HEADERS_TIMEOUT, connectionsCheckingInterval: CHECKING_INTERVAL }
} as FastifyServerOptions, (app) => { listenersBeforeRegister.upgrade = app.server.listenerCount('upgrade') })

for (const [i, row] of rows.entries()) {
  t.test(row.name, { todo: row.todo ?? false }, async (t) => {
    const own = upstreams[i] === null ? [] : [upstreams[i] as ScriptedServer]
    const before = await snapshot(app, own)
    const c = new Case(t, app, port, `/c${i}/x`, upstreams[i])
    await row.client(c)
    // Every client connection ends, closed by the gateway or by the client's own fault.
    for (const client of c.clients) await client.close(5000)
    t.same(clientOutcome(c.clients[0]), row.expect.client, 'what the client saw')
    await assertNothingLeft(t, app, own, before)
    t.same(upstreamOutcome(upstreams[i]), row.expect.upstream, 'what the upstream saw')
    if (row.expect.upstream.requests.length === 0) t.equal(upstreams[i]?.accepted.length ?? 0, 0, 'the upstream accepted no connection')
    await row.check?.(t, c)
  })
}

// ---------------------------------------------------------------------------------------------------------------
// Chunking fuzz: the same request written in two parts, split at every byte boundary, reaches the upstream exactly
// as the unsplit one does, head (after hop-by-hop processing) and body alike, and the client gets the same answer.
// Client and gateway share this process's event loop, so two writes a setImmediate apart would still land in one
// read: the second part goes only once the gateway's socket has read the first (its bytesRead), then a
// setImmediate later, Nagle off.

/** What the client got, without the Date header (the only part allowed to change). */
function withoutDate (client: Received): string {
  return client.text.replace(/\r\nDate: [^\r]*/i, '')
}

async function fuzz (t: Test, request: string): Promise<void> {
  const own = [fuzzPlain, fuzzUpgrade]
  const before = await snapshot(app, own)
  fuzzSeen.length = 0
  const exchange = async (split: number): Promise<string> => {
    const accepted = split < request.length ? once(app.server, 'connection') as Promise<[Socket]> : null
    const client = await rawClient(t, port)
    client.socket.setNoDelay(true)
    client.socket.write(request.slice(0, split), 'latin1')
    if (accepted !== null) {
      const [gatewaySide] = await within(accepted, 2000, 'the gateway to accept the connection')
      const deadline = Date.now() + 2000
      while (gatewaySide.bytesRead < split) {
        if (Date.now() > deadline) throw new Error(`the gateway read ${gatewaySide.bytesRead} of the first ${split} bytes`)
        await new Promise((resolve) => setImmediate(resolve))
      }
      await new Promise((resolve) => setImmediate(resolve))
      client.socket.write(request.slice(split), 'latin1')
    }
    await client.close(5000)
    return withoutDate(client)
  }
  const baselineAnswer = await exchange(request.length)
  t.equal(fuzzSeen.length, 1, 'the unsplit request reached the upstream')
  const baseline = fuzzSeen[0]
  const differing: string[] = []
  for (let split = 1; split < request.length; split++) {
    const got = await exchange(split)
    const seen = fuzzSeen[split]
    if (got !== baselineAnswer) differing.push(`split at ${split}: the client got ${JSON.stringify(got)}`)
    if (seen === undefined || seen.head !== baseline.head || seen.body !== baseline.body) {
      differing.push(`split at ${split}: the upstream got ${JSON.stringify(seen)}`)
    }
  }
  t.equal(fuzzSeen.length, request.length, `${request.length - 1} split requests and the unsplit one reached the upstream`)
  t.same(differing, [], 'every split request was proxied as the unsplit one')
  await assertNothingLeft(t, app, own, before)
}

t.test('chunking fuzz: a POST with hop-by-hop headers and a body, split at every byte, is proxied identically', async (t) => {
  const request = 'POST /fuzz/p?q=a%20b HTTP/1.1\r\nHost: gateway.test\r\nConnection: close, X-Hop\r\nX-Hop: dropped\r\n' +
    'Keep-Alive: timeout=5\r\nX-Kept: kept value\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world'
  await fuzz(t, request)
  const head = fuzzSeen[0].head
  t.match(head, /^POST \/p\?q=a%20b HTTP\/1\.1\r\n/, 'the request line, prefix mapped')
  t.match(head, /\r\nX-Kept: kept value\r\n/i)
  t.notMatch(head, /x-hop|keep-alive: timeout/i, 'hop-by-hop headers dropped')
  t.equal(fuzzSeen[0].body, 'hello world')
})

t.test('chunking fuzz: a WebSocket handshake split at every byte is proxied identically', async (t) => {
  await fuzz(t, wsHandshakeHead('/fuzz-up/chat?room=1', ['Sec-WebSocket-Protocol: chat, superchat', 'X-Kept: kept']))
  t.match(fuzzSeen[0].head, /^GET \/chat\?room=1 HTTP\/1\.1\r\n/)
  t.match(fuzzSeen[0].head, /\r\nupgrade: websocket\r\n/i)
})

t.test('closing the gateway removes the upgrade listener it added', async (t) => {
  t.equal(app.server.listenerCount('upgrade'), listenersBeforeRegister.upgrade + 1, 'one listener while it runs')
  await app.close()
  t.equal(app.server.listenerCount('upgrade'), listenersBeforeRegister.upgrade, 'gone once closed')
  t.equal(app.wsProxy.tunnels, 0)
  t.equal(app.wsProxy.upstreamConnections, 0)
})
