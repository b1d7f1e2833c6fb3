// Contender: this plugin, in its own process, proxying every path to the upstream given as argv[2]. argv[3] is the
// compiled plugin to load (bench/run.ts builds the working tree, and the --compare ref, to JavaScript).
import Fastify from 'fastify'
import type { AddressInfo } from 'node:net'
import type wsProxyPluginType from '../../src/index.js'

const entry = process.argv[3]
if (entry === undefined) throw new Error('usage: fastify-ws-proxy.js <upstream port> <path to the compiled plugin>')
const wsProxyPlugin = (await import(entry)).default as typeof wsProxyPluginType
const app = Fastify({ logger: false })
await app.register(wsProxyPlugin, { upstream: `http://127.0.0.1:${process.argv[2]}` })
await app.listen({ port: 0, host: '127.0.0.1' })
// A clean exit on SIGTERM, so that `--cpu-prof` writes its profile.
process.on('SIGTERM', () => process.exit(0))
process.stdout.write(`READY ${(app.server.address() as AddressInfo).port}\n`)
