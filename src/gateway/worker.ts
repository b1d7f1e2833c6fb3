import cluster, { type Worker } from 'node:cluster'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import type { CheckedGatewayConfig } from './config.js'
import type { DrainReason } from '../upgrade/tunnel-registry.js'
import { drainGateway, startGateway } from './start.js'

/** What the primary tells a worker. */
export type ToWorker =
  | { type: 'start', config: CheckedGatewayConfig, generation: number }
  | { type: 'drain', reason: DrainReason }

/** What a worker tells the primary. */
export type FromWorker =
  | { type: 'waiting' }
  | { type: 'ready', port: number }
  | { type: 'failed', message: string }

/**
 * A cluster worker: it waits for its config from the primary, serves it, and drains when the primary says so
 * (reload or stop) or when it gets SIGINT/SIGTERM itself (Ctrl-C reaches the whole process group). Its tunnels
 * live and end here. If the primary dies, Node's cluster ends the worker at once.
 */
export function runWorker (): void {
  let started: Promise<{ app: FastifyInstance, config: CheckedGatewayConfig } | null> | null = null
  let draining = false
  // A send fails only when the primary is gone, and then Node's cluster ends this worker anyway.
  const send = (message: FromWorker, then: () => void = ignore): void => { process.send?.(message, undefined, {}, then) }

  // A reload's drain closes tunnels with the reason `reload`; a stop's (or a signal's) with `shutdown`.
  const drain = (reason: DrainReason): void => {
    if (draining) return
    draining = true
    const running = started ?? Promise.resolve(null)
    running.then(async (running) => {
      if (running !== null) await drainGateway(running.app, running.config, reason)
    }).then(leave, drainFailed)
  }
  const drainOnSignal = (): void => { drain('shutdown') }

  process.on('message', (message: ToWorker) => {
    if (message.type === 'drain') {
      drain(message.reason)
    } else if (started === null) {
      started = startGateway(message.config).then((app) => {
        send({ type: 'ready', port: (app.server.address() as AddressInfo).port })
        return { app, config: message.config }
      }, (err: unknown) => {
        // Exit once the primary has the reason (it reports it: start-up fails, a reload is refused, or a restart backs off).
        send({ type: 'failed', message: (err as Error).message }, () => process.exit(1))
        return null
      })
    }
  })
  process.on('SIGINT', drainOnSignal)
  process.on('SIGTERM', drainOnSignal)
  // Reloading is the primary's job; a terminal hangup that reaches the whole group must not kill the worker.
  process.on('SIGHUP', () => {})
  // A message that arrives before the listener above would be lost: the primary sends the config after this.
  send({ type: 'waiting' })
}

/**
 * Exits once the primary can no longer hand this worker a connection. The primary may have sent one (with its
 * socket) just before it learnt that this worker's server closed; exiting with that message unread would leave the
 * client hanging, as Node's cluster neither answers nor re-sends it. Cluster's own disconnect waits for the
 * primary's acknowledgement, which comes after any such message (the channel keeps order), and this worker has
 * declined each of them by then, so the primary passed them on to the other workers.
 */
function leave (): void {
  const self = cluster.worker as Worker
  process.once('disconnect', () => process.exit(0))
  self.disconnect()
}

function ignore (): void {}

/* c8 ignore start: close() rejects only when an onClose hook fails */
function drainFailed (err: unknown): void {
  process.stderr.write(`error: draining failed: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
}
/* c8 ignore stop */
