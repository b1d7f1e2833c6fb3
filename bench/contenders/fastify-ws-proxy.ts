// Contender: this plugin, in its own process, proxying every path to the upstream given as argv[2]. argv[3] is the
// compiled plugin to load (bench/run.ts builds the working tree, and the --compare ref, to JavaScript). With argv[4]
// and argv[5] (certificate and key PEM files, bench/http2.ts), the server is HTTP/2 over TLS with `allowHTTP1`.
import Fastify, { type FastifyInstance } from 'fastify'
import { readFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import type wsProxyPluginType from '../../src/index.js'

const [, , upstreamPort, entry, certFile, keyFile] = process.argv
if (entry === undefined) throw new Error('usage: fastify-ws-proxy.js <upstream port> <path to the compiled plugin> [<cert.pem> <key.pem>]')
const wsProxyPlugin = (await import(entry)).default as typeof wsProxyPluginType
const app = (certFile === undefined
  ? Fastify({ logger: false })
  : Fastify({ logger: false, http2: true, https: { cert: readFileSync(certFile), key: readFileSync(keyFile), allowHTTP1: true }, forceCloseConnections: true })
) as unknown as FastifyInstance
await app.register(wsProxyPlugin, { upstream: `http://127.0.0.1:${upstreamPort}` })
await app.listen({ port: 0, host: '127.0.0.1' })
// A clean exit on SIGTERM, so that `--cpu-prof` writes its profile.
process.on('SIGTERM', () => process.exit(0))
process.stdout.write(`READY ${(app.server.address() as AddressInfo).port}\n`)
