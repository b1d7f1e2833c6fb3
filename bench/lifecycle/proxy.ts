// The plugin for the lifecycle benchmark: every path to the upstream in argv[2]. With argv[3] === 'fast-tick' a
// second route has a 1 s read timeout, so the registration's sweep ticks every 100 ms instead of every second.
// Prints "READY <port>"; on SIGUSR2 collects garbage and prints "GC" (run with --expose-gc).
import Fastify from 'fastify'
import type { AddressInfo } from 'node:net'
import wsProxyPlugin from '../../src/index.js'

const upstream = `http://127.0.0.1:${process.argv[2]}`
const fastTick = process.argv[3] === 'fast-tick'
const app = Fastify({ logger: false })
await app.register(wsProxyPlugin, {
  tunnelLogLevel: 'silent',
  // Every tunnel timer on, at values a production gateway would use.
  timeouts: { read: 3_600_000, send: 60_000, idle: 3_600_000, maxTunnelLifetime: 86_400_000 },
  routes: [
    { prefix: '/', upstream },
    ...(fastTick ? [{ prefix: '/short/', upstream, timeouts: { read: 1000 } }] : [])
  ]
})
await app.listen({ port: 0, host: '127.0.0.1', backlog: 65_535 })
const gc = (globalThis as { gc?: () => void }).gc
process.on('SIGUSR2', () => {
  gc?.()
  gc?.()
  process.stdout.write('GC\n')
})
process.stdout.write(`READY ${(app.server.address() as AddressInfo).port}\n`)
