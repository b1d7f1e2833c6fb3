import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Http2Server, Http2Session } from 'node:http2'
import net, { type Socket } from 'node:net'
import Fastify, { type FastifyHttpOptions, type FastifyInstance } from 'fastify'
import wsProxyPlugin, { wsProxyRewriteUrl, type DrainReason } from '../index.js'
import { H2C_WARNING, gracePeriod, type CheckedGatewayConfig } from './config.js'

/** How often a drain closes keep-alive connections that have gone idle since it began (their last response ended). */
const IDLE_SWEEP_MS = 50
/** How long a drain lets keep-alive connections end by themselves before idle ones are closed. */
const QUIET_MS = 1000
const POLL_MS = 20

/** Installed when a drain begins, before Fastify's handler: every response from then on closes its connection. */
function closeAfterResponse (_req: IncomingMessage, res: ServerResponse): void {
  res.shouldKeepAlive = false
}

/**
 * Each server's open connections, for the drain to find those that never sent a byte. Browsers open such
 * connections ahead of need (preconnect); Node's closeIdleConnections() does not count them as idle, so without
 * this a drain would wait the whole grace period for them. (Node's HTTP parser reads sockets natively, so
 * `bytesRead` tells, not 'data' events.)
 */
const connections = new WeakMap<net.Server, Set<Socket>>()

function track (this: net.Server, socket: Socket): void {
  (connections.get(this) as Set<Socket>).add(socket)
  socket.once('close', forget)
}

function forget (this: Socket): void {
  connections.get((this as Socket & { server: net.Server }).server)?.delete(this)
}

/** The HTTP/2 sessions of each server (`listen.http2`), for a drain to send them GOAWAY. */
const sessions = new WeakMap<net.Server, Set<Http2Session>>()

function trackSession (this: net.Server, session: Http2Session): void {
  const open = sessions.get(this) as Set<Http2Session>
  open.add(session)
  session.once('close', () => open.delete(session))
}

/**
 * The drain's sweep: idle keep-alive connections, connections that never sent a request, and HTTP/2 sessions,
 * which get GOAWAY (their streams in flight finish, new requests go to a new connection, as for nginx's http2).
 * A server with `listen.http2` and no TLS (h2c) has no HTTP/1.1 connections.
 */
function closeIdle (server: Server): void {
  (server as Partial<Server>).closeIdleConnections?.()
  for (const socket of connections.get(server) as Set<Socket>) {
    if (socket.bytesRead === 0) socket.destroy()
  }
  for (const session of sessions.get(server) as Set<Http2Session>) session.close()
}

/** The drain's deadline: every connection is cut (HTTP/2 servers have no closeAllConnections(); their sockets are tracked). */
function closeAll (server: Server): void {
  if (typeof (server as Partial<Server>).closeAllConnections === 'function') {
    server.closeAllConnections()
    return
  }
  for (const socket of connections.get(server) as Set<Socket>) socket.destroy()
}

/**
 * Fastify's server options for `listen`: HTTP/1.1, HTTPS (`tls`), HTTP/2 with TLS (ALPN h2, and http/1.1 for
 * HTTP/1.1 clients and their WebSockets) or h2c (`http2` without `tls`). The client limits of `server` apply to
 * HTTP/1.1 connections.
 */
function serverOptions (config: CheckedGatewayConfig, http: HttpLimits): Record<string, unknown> {
  const tls = config.credentials
  // A config from checkGatewayConfig() alone has `tls` but not its files' contents: never serve it in clear text.
  if (tls === null && config.tls !== null) throw new Error('listen.tls: the certificate files were not loaded (loadTls)')
  if (tls === null) return config.http2 ? { http2: true } : { http }
  // Node's HTTP/2 server takes the HTTP/1.1 limits as properties (startGateway sets them).
  return config.http2 ? { http2: true, https: { ...tls, allowHTTP1: true } } : { https: { ...tls, ...http } }
}

interface HttpLimits { maxHeaderSize: number, headersTimeout: number, connectionsCheckingInterval: number }

function httpLimits ({ maxHeaderSize, headersTimeout }: CheckedGatewayConfig['server']): HttpLimits {
  // Node checks headersTimeout only every connectionsCheckingInterval (30 s by default): a tenth of it keeps it honest.
  return { maxHeaderSize, headersTimeout, connectionsCheckingInterval: Math.min(30_000, Math.max(50, Math.floor(headersTimeout / 10))) }
}

/** Starts a gateway: a Fastify server with the plugin registered from a checked config. */
export async function startGateway (config: CheckedGatewayConfig): Promise<FastifyInstance> {
  const { trustProxy } = config.server
  const limits = httpLimits(config.server)
  const app = Fastify({
    logger: { level: config.logLevel },
    ...(trustProxy === undefined ? {} : { trustProxy }),
    ...serverOptions(config, limits),
    // While draining, a request that still arrives on an open keep-alive connection is served (with
    // `Connection: close`) rather than refused: new connections already go elsewhere.
    return503OnClosing: false,
    // Every hook and route sees the canonical target, the one mapped upstream (docs/security.md).
    rewriteUrl: wsProxyRewriteUrl
  } as FastifyHttpOptions<Server>) as unknown as FastifyInstance
  if (config.http2 && config.credentials !== null) Object.assign(app.server, limits)
  if (config.http2 && config.credentials === null) app.log.warn(H2C_WARNING)
  await app.register(wsProxyPlugin, config.proxy)
  connections.set(app.server, new Set())
  sessions.set(app.server, new Set())
  app.server.on('connection', track)
  // Over TLS, the TLS socket too: its bytesRead counts what came after the handshake (a preconnect that did one).
  app.server.on('secureConnection', track)
  ;(app.server as unknown as Http2Server).on('session', trackSession)
  try {
    await app.listen({ host: config.host, port: config.port })
  } catch (err) {
    // A port in use: nothing may keep running (health checks, DNS, the sweep) in a process that reports failure.
    await app.close()
    throw err
  }
  return app
}

/**
 * Drains a gateway, as an nginx worker does on reload or quit: it stops accepting at once (in a cluster the
 * primary then hands new connections to the other workers) and readiness turns 503; every response from then
 * on closes its connection after it, so busy keep-alive connections end cleanly at their next response.
 * After a quiet period, idle ones are closed, requests in flight finish, tunnels get `closeGracePeriod` to close
 * with 1001 and `reason` as their `tunnelDrain` says; what is still open at that deadline is cut (nginx `worker_shutdown_timeout`).
 */
export async function drainGateway (app: FastifyInstance, config: CheckedGatewayConfig, reason: DrainReason = 'shutdown'): Promise<void> {
  const server = app.server
  server.prependListener('request', closeAfterResponse)
  app.wsProxy.markDraining(reason)
  for (const session of sessions.get(server) as Set<Http2Session>) session.close()
  // net's close, not http's: http's also closes idle keep-alive connections at once, and under load a connection
  // is "idle" for the instant between a response and the request the client is already sending on it.
  const stopped = new Promise<void>((resolve) => { net.Server.prototype.close.call(server, () => resolve()) })
  const grace = gracePeriod(config)
  const deadline = setTimeout(closeAll, grace, server)
  let sweep: NodeJS.Timeout | null = null
  try {
    await quiet(server, app, Math.min(QUIET_MS, grace))
    closeIdle(server)
    sweep = setInterval(closeIdle, IDLE_SWEEP_MS, server)
    await app.close()
    await stopped
  } finally {
    if (sweep !== null) clearInterval(sweep)
    clearTimeout(deadline)
  }
}

/** Resolves once no connection is left but tunnels, or after `ms`. */
async function quiet (server: Server, app: FastifyInstance, ms: number): Promise<void> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    const open = await new Promise<number>((resolve) => { server.getConnections((_err, count) => resolve(count)) })
    if (open <= app.wsProxy.tunnels) return
    await new Promise((resolve) => setTimeout(resolve, POLL_MS))
  }
}

/**
 * Drains the gateway on SIGINT/SIGTERM, then exits 0 (1 if closing failed). The handlers go after the first
 * signal, so a second one (Ctrl-C again) ends the process at once, as users expect.
 */
export function drainOnSignals (app: FastifyInstance, config: CheckedGatewayConfig, extra?: () => Promise<void>): void {
  const stop = (signal: string): void => {
    process.removeListener('SIGINT', stop)
    process.removeListener('SIGTERM', stop)
    app.log.info({ signal }, 'closing the gateway')
    drainGateway(app, config)
      .then(async () => { await extra?.() })
      /* c8 ignore start: close() rejects only when an onClose hook fails */
      .then(() => process.exit(0), (err: unknown) => {
        app.log.error({ err }, 'closing failed')
        process.exit(1)
      })
    /* c8 ignore stop */
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
}
