#!/usr/bin/env node
// The `fastify-ws-proxy` executable; the logic is in gateway/cli-main.ts, where tests import it.
import { main } from './gateway/cli-main.js'

main(process.argv.slice(2)).then((code) => {
  if (code >= 0) process.exitCode = code
}, (err: unknown) => {
  process.stderr.write(`error: ${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = 1
})
