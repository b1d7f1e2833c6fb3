import Fastify, { type FastifyInstance } from 'fastify'
import wsProxyPlugin from '../index.js'
import type { CheckedGatewayConfig } from './config.js'

/** Starts a gateway: a Fastify server with the plugin registered from a checked config. */
export async function startGateway (config: CheckedGatewayConfig): Promise<FastifyInstance> {
  const { maxHeaderSize, headersTimeout } = config.server
  const app = Fastify({
    logger: { level: config.logLevel },
    // Node checks headersTimeout only every connectionsCheckingInterval (30 s by default): a tenth of it keeps it honest.
    http: { maxHeaderSize, headersTimeout, connectionsCheckingInterval: Math.min(30_000, Math.max(50, Math.floor(headersTimeout / 10))) }
  })
  await app.register(wsProxyPlugin, config.proxy)
  await app.listen({ host: config.host, port: config.port })
  return app
}

/**
 * Closes the app on SIGINT/SIGTERM, then exits 0 (1 if closing failed). The handlers go after the first
 * signal, so a second one (Ctrl-C again) ends the process at once, as users expect.
 */
export function closeOnSignals (app: FastifyInstance, extra?: () => Promise<void>): void {
  const stop = (signal: string): void => {
    process.removeListener('SIGINT', stop)
    process.removeListener('SIGTERM', stop)
    app.log.info({ signal }, 'closing the gateway')
    app.close()
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
