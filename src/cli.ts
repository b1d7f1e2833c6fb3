#!/usr/bin/env node
// The `fastify-ws-proxy` executable; the logic is in gateway/, where tests import it. In a cluster the same
// file runs the primary (the CLI) and every worker.
import cluster from 'node:cluster'
import { main } from './gateway/cli-main.js'
import { runWorker } from './gateway/worker.js'

if (cluster.isWorker) {
  runWorker()
} else {
  main(process.argv.slice(2)).then((code) => {
    if (code >= 0) process.exitCode = code
  }, /* c8 ignore next 3: main() reports every failure as an exit code; this is the last resort */ (err: unknown) => {
    process.stderr.write(`error: ${(err as Error).stack ?? String(err)}\n`)
    process.exitCode = 1
  })
}
