import Fastify, { type FastifyInstance } from 'fastify'
import wsProxyPlugin from '../index.js'
import { gracePeriod, type CheckedGatewayConfig } from './config.js'

/** How often a drain closes keep-alive connections that have gone idle since it began (their last response ended). */
const IDLE_SWEEP_MS = 50

/** Starts a gateway: a Fastify server with the plugin registered from a checked config. */
export async function startGateway (config: CheckedGatewayConfig): Promise<FastifyInstance> {
  const { maxHeaderSize, headersTimeout } = config.server
  const app = Fastify({
    logger: { level: config.logLevel },
    // Node checks headersTimeout only every connectionsCheckingInterval (30 s by default): a tenth of it keeps it honest.
    http: { maxHeaderSize, headersTimeout, connectionsCheckingInterval: Math.min(30_000, Math.max(50, Math.floor(headersTimeout / 10))) },
    // While draining, a request that still arrives on an open keep-alive connection is served (with
    // `Connection: close`) rather than refused: new connections already go elsewhere.
    return503OnClosing: false
  })
  await app.register(wsProxyPlugin, config.proxy)
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
 * primary then hands new connections to the other workers), keep-alive connections are closed as soon as they
 * are idle, requests in flight finish, tunnels get `closeGracePeriod` to close with 1001; what is still open
 * at that deadline is cut (nginx `worker_shutdown_timeout`).
 */
export async function drainGateway (app: FastifyInstance, config: CheckedGatewayConfig): Promise<void> {
  const server = app.server
  const stopped = new Promise<void>((resolve) => { server.close(() => resolve()) })
  const sweep = setInterval(() => server.closeIdleConnections(), IDLE_SWEEP_MS)
  const deadline = setTimeout(() => server.closeAllConnections(), gracePeriod(config))
  try {
    await app.close()
    await stopped
  } finally {
    clearInterval(sweep)
    clearTimeout(deadline)
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
