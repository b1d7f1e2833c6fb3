// A small, seeded fuzz of request targets and header sets, sent as raw bytes over a few keep-alive connections:
// for every request that reaches the upstream, the path the onRequest hook saw, mapped by its route, is exactly the
// path the upstream got, and the hook's refusal (`/api/admin`, `/ws/admin`) is never bypassed; for every refused
// request the upstream got nothing. Without the normaliser only canonical targets get through; with it, hooks only
// ever see canonical ones. Bounded: a fixed count per setting and a time budget.
import t, { type Test } from 'tap'
import net from 'node:net'
import { canonicalTarget } from '../../src/security/target.js'
import { within } from '../helpers/servers.js'
import { fillers, guardedGateway, isAdmin, issueRoutes, parseAnswer, recordingUpstream } from './support.js'

const SEED = 0x5eed2023
const REQUESTS = 1250
const SOCKETS = 4
const BUDGET_MS = 8_000

/** mulberry32: a small seeded PRNG, so a failure replays exactly. */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const STARTS = ['/', '/api/', '/ws/', '/static/', '/public/', '//', '/api', 'http://h', 'HTTP://h', 'http://h/api/', 'https://h:8443/ws/', '', '/x/../']
const PIECES = ['/', '//', '.', '..', '%2e', '%2E', '%2f', '%2F', '%5c', '%5C', '\\', '%61', '%7e', '%7E', ';', '..;', ';x', '#frag', '?q=..%2f', '?a=/../admin',
  'http://h', 'HTTP://h', 'admin', 'Admin', 'api', 'ws', 'static', 'public', 'x', '%41', '%zz', '%', '%2', ':', '@', '*', '~', '-', '%25', '%3B', '%2e%2e', '.%2e', 'a.b', '...']

function target (random: () => number): string {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]
  let out = pick(STARTS)
  const count = 1 + Math.floor(random() * 7)
  for (let i = 0; i < count; i++) out += pick(PIECES)
  return out
}

/** Mostly a plain head; sometimes a hostile header set or an upgrade. */
function headerSet (random: () => number): { lines: string[], upgrade: boolean } {
  const roll = random()
  if (roll < 0.04) return { lines: ['Host: gateway.test', 'Host: evil.example'], upgrade: false }
  if (roll < 0.07) return { lines: ['Host: gateway.test', ...fillers(100)], upgrade: false }
  if (roll < 0.09) return { lines: ['Host: evil example'], upgrade: false }
  if (roll < 0.11) return { lines: ['Host: gateway.test', 'Authorization: a', 'Authorization: b'], upgrade: false }
  if (roll < 0.2) return { lines: ['Host: gateway.test', 'Connection: Upgrade', 'Upgrade: foo'], upgrade: true }
  return { lines: ['Host: gateway.test'], upgrade: false }
}

/** The route mapping of the path (and query) a hook saw. */
function mapped (url: string): string {
  for (const [prefix, to] of [['/api/', '/'], ['/static/', '/base/'], ['/public/', '/']]) {
    if (url.startsWith(prefix)) return to + url.slice(prefix.length)
  }
  return url
}

/** One keep-alive raw connection that sends a head and reads exactly one response. */
class Connection {
  socket: net.Socket | null = null
  buffer = Buffer.alloc(0)
  closed = false
  wake: (() => void) | null = null
  constructor (readonly t: Test, readonly port: number) {}

  open (): net.Socket {
    const socket = net.connect(this.port, '127.0.0.1')
    this.t.teardown(() => { socket.destroy() })
    socket.on('error', () => {})
    socket.on('data', (chunk: Buffer) => { this.buffer = Buffer.concat([this.buffer, chunk]); this.wake?.() })
    socket.on('close', () => { if (this.socket === socket) { this.closed = true; this.wake?.() } })
    this.socket = socket
    this.buffer = Buffer.alloc(0)
    this.closed = false
    return socket
  }

  /** The status of the one response to `bytes`; the connection is replaced when the gateway closed it. */
  async send (bytes: string): Promise<number> {
    const socket = this.socket === null || this.closed ? this.open() : this.socket
    socket.write(bytes)
    const status = await within(new Promise<number>((resolve) => {
      this.wake = () => {
        const text = this.buffer.toString('latin1')
        const end = text.indexOf('\r\n\r\n')
        if (end !== -1) {
          const answer = parseAnswer(text, false)
          const length = Number(answer.headers['content-length'] ?? 'NaN')
          if (answer.status === 101) {
            // A tunnel: this connection is done.
            socket.destroy()
            this.closed = true
            resolve(101)
            return
          }
          if (Number.isFinite(length) && this.buffer.length >= end + 4 + length) {
            this.buffer = this.buffer.subarray(end + 4 + length)
            resolve(answer.status)
            return
          }
        }
        if (this.closed) resolve(end === -1 ? 0 : parseAnswer(text, true).status)
      }
      this.wake()
    }), 3000, () => `an answer to ${JSON.stringify(bytes.slice(0, 200))}`)
    this.wake = null
    if (this.closed) this.socket?.destroy()
    return status
  }
}

for (const rewrite of [false, true]) {
  t.test(`fuzz (seed ${SEED}), ${rewrite ? 'with' : 'without'} wsProxyRewriteUrl: hook path mapped = upstream path; refused = nothing upstream`, async (t) => {
    const upstream = await recordingUpstream(t)
    const gw = await guardedGateway(t, { routes: issueRoutes(upstream.origin) }, { rewrite })
    const random = prng(SEED + (rewrite ? 1 : 0))
    const connections = Array.from({ length: SOCKETS }, () => new Connection(t, gw.port))
    const sent = new Map<string, { target: string, status: number, upgrade: boolean }>()
    const started = Date.now()
    let n = 0
    for (; n < REQUESTS && Date.now() - started < BUDGET_MS; n++) {
      const id = String(n)
      const path = target(random)
      const { lines, upgrade } = headerSet(random)
      const bytes = `GET ${path} HTTP/1.1\r\n${[...lines, `X-Fuzz-Id: ${id}`].join('\r\n')}\r\n\r\n`
      const status = await connections[n % SOCKETS].send(bytes)
      sent.set(id, { target: path, status, upgrade })
    }
    t.ok(n >= 500, `${n} requests within the budget`)

    const hooks = new Map<string, string>()
    gw.hookHeaders.forEach((headers, i) => { if (typeof headers['x-fuzz-id'] === 'string') hooks.set(headers['x-fuzz-id'], gw.hookSeen[i]) })
    const arrived = new Map<string, string>()
    let problems = 0
    const fail = (message: string): void => {
      if (++problems <= 20) t.fail(message)
    }
    for (const got of upstream.arrivals) {
      const id = String(got.headers['x-fuzz-id'])
      if (arrived.has(id)) fail(`request ${id} reached the upstream twice`)
      arrived.set(id, got.url)
      const request = sent.get(id)
      const seen = hooks.get(id)
      if (request === undefined || seen === undefined) {
        fail(`request ${id} reached the upstream without a hook seeing it`)
        continue
      }
      const label = `${JSON.stringify(request.target)} (hook saw ${JSON.stringify(seen)}, upstream got ${JSON.stringify(got.url)})`
      if (mapped(seen) !== got.url) fail(`the upstream path is not the mapping of the hook's: ${label}`)
      if (isAdmin(seen)) fail(`the hook's refusal was bypassed: ${label}`)
      if (got.kind !== (request.upgrade ? 'upgrade' : 'http')) fail(`wrong kind upstream: ${label}`)
      if (request.status !== (request.upgrade ? 101 : 200)) fail(`the client got ${request.status}: ${label}`)
      const canonical = canonicalTarget(seen)
      if (typeof canonical === 'string' || canonical.target !== seen || canonical.authority !== null) fail(`the hook saw a target that is not canonical: ${label}`)
      if (!rewrite && seen !== request.target) fail(`without the normaliser a target went through changed: ${label}`)
    }
    for (const [id, request] of sent) {
      const accepted = request.status === 200 || request.status === 101
      if (accepted !== arrived.has(id)) fail(`request ${id} ${JSON.stringify(request.target)} answered ${request.status} but ${arrived.has(id) ? 'reached' : 'did not reach'} the upstream`)
    }
    t.equal(problems, 0, `${sent.size} requests, ${arrived.size} reached the upstream, ${problems} problems`)
    // The fuzz must exercise both sides.
    t.ok(arrived.size > 20, 'some requests were accepted')
    t.ok(sent.size - arrived.size > 200, 'many were refused')
    t.ok([...sent.values()].some((r) => r.status === 403), 'the hook refused some')
  })
}
