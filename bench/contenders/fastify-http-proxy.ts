// Contender: @fastify/http-proxy (with `websocket: true`), in its own process, to the upstream given as argv[2].
// Its defaults otherwise: reply-from over an undici pool (128 connections), WebSockets re-framed through `ws`.
import Fastify from 'fastify'
import proxy from '@fastify/http-proxy'
import type { AddressInfo } from 'node:net'

const app = Fastify({ logger: false })
await app.register(proxy, { upstream: `http://127.0.0.1:${process.argv[2]}`, websocket: true })
await app.listen({ port: 0, host: '127.0.0.1' })
// A clean exit on SIGTERM, so that `--cpu-prof` writes its profile.
process.on('SIGTERM', () => process.exit(0))
process.stdout.write(`READY ${(app.server.address() as AddressInfo).port}\n`)
