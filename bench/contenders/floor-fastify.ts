// Contender "floor (fastify)": floor.ts with Fastify in front for plain requests, the least a Fastify plugin can cost.
// One catch-all route, no logger, bodies left unparsed; the handler hijacks the reply and relays to `reply.raw`
// (floor-parts.ts). Upgrades do not go through Fastify: dialled and piped on `app.server`'s 'upgrade' event, as in floor.ts.
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify'
import type { AddressInfo } from 'node:net'
import { relay, tunnel } from './floor-parts.js'

function passThrough (_req: unknown, _payload: unknown, done: (err: null) => void): void {
  done(null)
}

function handler (request: FastifyRequest, reply: FastifyReply): void {
  reply.hijack()
  relay(request.raw, reply.raw)
}

const app = Fastify({ logger: false })
app.removeAllContentTypeParsers()
app.addContentTypeParser('*', passThrough)
app.all('/*', handler)
app.server.on('upgrade', tunnel)
await app.listen({ port: 0, host: '127.0.0.1' })
// A clean exit on SIGTERM, so that `--cpu-prof` writes its profile.
process.on('SIGTERM', () => process.exit(0))
process.stdout.write(`READY ${(app.server.address() as AddressInfo).port}\n`)
