// Contender: this plugin, in its own process, proxying every path to the upstream given as argv[2].
import Fastify from 'fastify'
import type { AddressInfo } from 'node:net'
import wsProxyPlugin from '../../src/index.js'

const app = Fastify({ logger: false })
await app.register(wsProxyPlugin, { upstream: `http://127.0.0.1:${process.argv[2]}` })
await app.listen({ port: 0, host: '127.0.0.1' })
process.stdout.write(`READY ${(app.server.address() as AddressInfo).port}\n`)
