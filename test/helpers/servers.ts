import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import net, { type AddressInfo, type Socket } from 'node:net'
import { once } from 'node:events'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { WebSocketServer, type ServerOptions as WsServerOptions } from 'ws'
import wsProxyPlugin, { type WsProxyOptions } from '../../src/index.js'

/** The subset of tap's Test these helpers need. */
export interface Teardown { teardown (fn: () => unknown): void }

export function portOf (server: net.Server): number {
  return (server.address() as AddressInfo).port
}

/** Listens on an ephemeral port on 127.0.0.1 and closes the server (and every connection it has) at teardown. */
export async function listen<T extends net.Server> (t: Teardown, server: T): Promise<T> {
  const sockets = new Set<Socket>()
  server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    if (server.listening) await new Promise((resolve) => server.close(resolve))
  })
  return server
}

/** What the echo upstream saw of a request. */
export interface Seen {
  method: string
  url: string
  headers: IncomingMessage['headers']
  rawHeaders: string[]
  bodyLength: number
}

/** A plain `http` upstream; the default handler echoes what it received as JSON. */
export async function httpUpstream (t: Teardown, handler?: (req: IncomingMessage, res: ServerResponse) => void): Promise<Server> {
  const server = http.createServer(handler ?? echoHandler)
  return listen(t, server)
}

export function echoHandler (req: IncomingMessage, res: ServerResponse): void {
  let bodyLength = 0
  req.on('data', (chunk: Buffer) => { bodyLength += chunk.length })
  req.on('end', () => {
    const seen: Seen = { method: req.method as string, url: req.url as string, headers: req.headers, rawHeaders: req.rawHeaders, bodyLength }
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify(seen))
  })
}

/** An `http` upstream with a `ws` server on it; by default every message is echoed back as it came. */
export async function wsUpstream (t: Teardown, options: WsServerOptions = {}): Promise<{ server: Server, wss: WebSocketServer }> {
  const server = await httpUpstream(t)
  const wss = new WebSocketServer({ server, ...options })
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
  })
  t.teardown(() => new Promise((resolve) => wss.close(resolve)))
  return { server, wss }
}

/** A `net` upstream that runs `onSocket` for each connection: for scripted bytes and faults. */
export async function rawUpstream (t: Teardown, onSocket: (socket: Socket) => void): Promise<net.Server> {
  return listen(t, net.createServer(onSocket))
}

/** A Fastify gateway with the plugin registered, listening on 127.0.0.1, closed at teardown. */
export async function gateway (t: Teardown, options: WsProxyOptions, fastifyOptions: FastifyServerOptions = {}, setup?: (app: FastifyInstance) => void | Promise<void>): Promise<{ app: FastifyInstance, port: number, url: string }> {
  const app = Fastify({ logger: false, ...fastifyOptions })
  t.teardown(() => app.close())
  if (setup !== undefined) await setup(app)
  // The suite pins how each upstream failure maps to its detailed message; test/security/error-bodies pins the
  // default, where bodies leave the details to the log.
  await app.register(wsProxyPlugin, { exposeErrors: true, ...options })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = portOf(app.server)
  return { app, port, url: `http://127.0.0.1:${port}` }
}

export function origin (server: net.Server): string {
  return `http://127.0.0.1:${portOf(server)}`
}

/** Resolves when `predicate` holds, polling every 5 ms; rejects after `ms` (every wait is bounded). */
export async function waitFor (predicate: () => boolean, ms = 2000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** Rejects when `promise` has not settled within `ms` (every wait in a test is bounded). */
export async function within<T> (promise: Promise<T>, ms: number, what: string | (() => string)): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${typeof what === 'string' ? what : what()}`)), ms)
  })
  try {
    return await Promise.race([promise, deadline])
  } finally {
    clearTimeout(timer)
  }
}

/** A port on 127.0.0.1 that nothing listens on: a server listens on port 0, then closes. */
export async function closedPort (): Promise<number> {
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await within(once(server, 'listening'), 2000, 'listening')
  const port = portOf(server)
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** One parsed pino line. */
export interface LogRecord {
  level: number
  msg?: string
  reqId?: string
  err?: { type?: string, code?: string, message?: string, statusCode?: number }
  res?: { statusCode?: number }
  req?: { method?: string, url?: string }
  [key: string]: unknown
}

/** A destination for Fastify's logger (`logger: { level, stream }`) that keeps every record. */
export function logCapture (): { stream: { write: (line: string) => void }, records: LogRecord[] } {
  const records: LogRecord[] = []
  return {
    stream: {
      write (line: string) {
        records.push(JSON.parse(line) as LogRecord)
      }
    },
    records
  }
}

/**
 * Records every uncaught exception and unhandled rejection in this test process until teardown, so a test can
 * assert that none happened (tap would otherwise report them without saying which scenario raised them).
 */
export function recordUnhandled (t: Teardown): unknown[] {
  const unhandled: unknown[] = []
  const record = (err: unknown): void => { unhandled.push(err) }
  process.on('uncaughtException', record)
  process.on('unhandledRejection', record)
  t.teardown(() => {
    process.off('uncaughtException', record)
    process.off('unhandledRejection', record)
  })
  return unhandled
}
