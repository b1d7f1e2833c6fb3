// Shared by the security tests: an upstream that records exactly what reaches it, a gateway with a guarding
// onRequest hook (registered before or after the plugin, with or without wsProxyRewriteUrl), and raw exchanges
// whose bytes are sent exactly as written.
import http, { type IncomingMessage } from 'node:http'
import net, { type Socket } from 'node:net'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import { WebSocketServer } from 'ws'
import wsProxyPlugin, { wsProxyRewriteUrl, type WsProxyOptions } from '../../src/index.js'
import { listen, origin, portOf, within, type Teardown } from '../helpers/servers.js'

/** One request head as the upstream received it. */
export interface Arrival {
  kind: 'http' | 'upgrade'
  /** The request line, byte for byte as Node parsed it: method, target, version. */
  line: string
  url: string
  rawHeaders: string[]
  headers: IncomingMessage['headers']
}

export interface RecordingUpstream {
  server: http.Server
  origin: string
  arrivals: Arrival[]
  /** TCP connections accepted so far. */
  connections: () => number
}

function arrival (kind: Arrival['kind'], req: IncomingMessage): Arrival {
  return { kind, line: `${req.method as string} ${req.url as string} HTTP/${req.httpVersion}`, url: req.url as string, rawHeaders: req.rawHeaders, headers: req.headers }
}

/**
 * An upstream recording every request head it receives. Plain requests get 200 with `{ url }`; a WebSocket
 * upgrade gets a real `ws` handshake (messages echoed); any other upgrade gets a raw 101 naming the asked protocol,
 * then its bytes are echoed.
 */
export async function recordingUpstream (t: Teardown): Promise<RecordingUpstream> {
  const arrivals: Arrival[] = []
  let connections = 0
  const server = http.createServer((req, res) => {
    arrivals.push(arrival('http', req))
    req.resume()
    req.on('end', () => {
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ url: req.url }))
    })
  })
  const wss = new WebSocketServer({ noServer: true })
  t.teardown(() => new Promise((resolve) => wss.close(resolve)))
  server.on('connection', () => { connections++ })
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    arrivals.push(arrival('upgrade', req))
    socket.on('error', () => socket.destroy())
    if (String(req.headers.upgrade).toLowerCase() === 'websocket') {
      wss.handleUpgrade(req, socket, head, (ws) => {
        ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
      })
      return
    }
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${String(req.headers.upgrade)}\r\nConnection: Upgrade\r\n\r\n`)
    socket.on('data', (chunk: Buffer) => socket.write(chunk))
  })
  await listen(t, server)
  return { server, origin: origin(server), arrivals, connections: () => connections }
}

/** The routes of the issue: with a URI (`/api/`, `/static/`, `/public/`) and without one (`/ws/`). */
export function issueRoutes (upstream: string): WsProxyOptions['routes'] {
  return [
    { prefix: '/api/', upstream: upstream + '/' },
    { prefix: '/static/', upstream: upstream + '/base/' },
    { prefix: '/public/', upstream: upstream + '/' },
    { prefix: '/ws/', upstream }
  ]
}

/** The guard every test here must never see bypassed. */
export function isAdmin (url: string): boolean {
  return url.startsWith('/api/admin') || url.startsWith('/ws/admin')
}

export interface GuardedGateway {
  app: FastifyInstance
  port: number
  url: string
  /** `request.url` of every request the onRequest hook saw, in order. */
  hookSeen: string[]
  /** `request.headers` as the hook saw them, in the same order. */
  hookHeaders: Array<FastifyRequest['headers']>
}

export interface GuardOptions {
  rewrite?: boolean
  /** Where the guarding hook is added: before `register`, or after it has loaded. */
  hook?: 'before' | 'after'
  fastify?: FastifyServerOptions
  /** Runs before the plugin is registered (own routes, listeners). */
  setup?: (app: FastifyInstance) => void | Promise<void>
}

/** A gateway whose onRequest hook refuses `isAdmin(request.url)` with 403 and records every URL it sees. */
export async function guardedGateway (t: Teardown, options: WsProxyOptions, guard: GuardOptions = {}): Promise<GuardedGateway> {
  const app = Fastify({ logger: false, ...(guard.rewrite === true ? { rewriteUrl: wsProxyRewriteUrl } : {}), ...guard.fastify })
  t.teardown(() => app.close())
  const hookSeen: string[] = []
  const hookHeaders: Array<FastifyRequest['headers']> = []
  const hook = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    hookSeen.push(request.url)
    hookHeaders.push({ ...request.headers })
    if (isAdmin(request.url)) await reply.code(403).send({ denied: request.url })
  }
  if (guard.setup !== undefined) await guard.setup(app)
  if (guard.hook !== 'after') app.addHook('onRequest', hook)
  await app.register(wsProxyPlugin, options)
  if (guard.hook === 'after') app.addHook('onRequest', hook)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = portOf(app.server)
  return { app, port, url: `http://127.0.0.1:${port}`, hookSeen, hookHeaders }
}

/** What came back on a raw connection. */
export interface RawAnswer {
  status: number
  statusLine: string
  /** Lowercased names; repeated fields joined with ', '. */
  headers: Record<string, string>
  body: string
  /** Everything received, latin1. */
  text: string
  /** Whether the gateway closed the connection (within the wait). */
  closed: boolean
}

export function parseAnswer (text: string, closed: boolean): RawAnswer {
  const end = text.indexOf('\r\n\r\n')
  const head = end === -1 ? text : text.slice(0, end)
  const [statusLine, ...lines] = head.split('\r\n')
  const headers: Record<string, string> = {}
  for (const line of lines) {
    const colon = line.indexOf(':')
    const name = line.slice(0, colon).toLowerCase()
    const value = line.slice(colon + 1).trim()
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`
  }
  return { status: Number(statusLine.split(' ')[1]), statusLine, headers, body: end === -1 ? '' : text.slice(end + 4), text, closed }
}

/** Whether `text` holds one complete response (a 101 head, or a head and its Content-Length body). */
function complete (text: string): boolean {
  const end = text.indexOf('\r\n\r\n')
  if (end === -1) return false
  const answer = parseAnswer(text, false)
  if (answer.status === 101) return true
  const length = answer.headers['content-length']
  return length !== undefined && Buffer.byteLength(answer.body, 'latin1') >= Number(length)
}

/**
 * Sends `bytes` on a new connection and reads one response: until it is complete (then waits `settle` ms for the
 * gateway's close when `waitClose`), or the connection closes. Bounded by `ms`.
 */
export async function exchange (t: Teardown, port: number, bytes: string | Buffer, options: { ms?: number, waitClose?: boolean } = {}): Promise<RawAnswer> {
  const socket = net.connect(port, '127.0.0.1')
  t.teardown(() => { socket.destroy() })
  socket.on('error', () => {})
  const chunks: Buffer[] = []
  let closed = false
  await within(new Promise<void>((resolve) => {
    const check = (): void => {
      const text = Buffer.concat(chunks).toString('latin1')
      if (closed || (options.waitClose !== true && complete(text))) resolve()
    }
    socket.on('data', (chunk: Buffer) => { chunks.push(chunk); check() })
    socket.on('close', () => { closed = true; check() })
    socket.write(bytes)
  }), options.ms ?? 3000, () => `an answer to ${JSON.stringify(bytes.toString().slice(0, 120))}; got ${JSON.stringify(Buffer.concat(chunks).toString('latin1').slice(0, 200))}`)
  socket.destroy()
  return parseAnswer(Buffer.concat(chunks).toString('latin1'), closed)
}

/** A request head: `GET target HTTP/1.1`, the given header lines (Host first unless `host` is null), blank line. */
export function head (target: string, lines: string[] = [], options: { method?: string, host?: string | null, version?: string } = {}): string {
  const host = options.host === undefined ? ['Host: gateway.test'] : options.host === null ? [] : [`Host: ${options.host}`]
  return [`${options.method ?? 'GET'} ${target} HTTP/${options.version ?? '1.1'}`, ...host, ...lines].join('\r\n') + '\r\n\r\n'
}

/** The same head as an upgrade to `protocol` (default `foo`). */
export function upgrade (target: string, lines: string[] = [], options: { protocol?: string, host?: string | null } = {}): string {
  return head(target, ['Connection: Upgrade', `Upgrade: ${options.protocol ?? 'foo'}`, ...lines], options)
}

/** The parsed JSON error body of an answer (Fastify's error shape). */
export function errorOf (answer: RawAnswer): { statusCode: number, code: string, error: string, message: string } {
  return JSON.parse(answer.body) as { statusCode: number, code: string, error: string, message: string }
}

/** `count` distinct filler header lines. */
export function fillers (count: number, name = 'X-Pad'): string[] {
  return Array.from({ length: count }, (_, i) => `${name}-${i}: v`)
}
