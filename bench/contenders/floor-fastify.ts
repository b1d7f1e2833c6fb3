// Contender "floor (fastify)": floor.ts with Fastify in front, the least a Fastify plugin can cost. One catch-all
// route, no logger, bodies left unparsed; the handler hijacks the reply and relays to `reply.raw` (floor-parts.ts).
// Upgrades go through Fastify's router too, as a plugin's must for its hooks to run on them: `app.server`'s 'upgrade'
// event hands the request to `app.routing` with a `ServerResponse` on the socket (what Node's server does for a plain
// request), and the same route dials and relays it as floor.ts does. argv[3]: as floor.ts.
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify'
import { type IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { relay, tunnel } from './floor-parts.js'

const kHead = Symbol('floor upgrade head')
interface UpgradeRequest extends IncomingMessage { [kHead]?: Buffer }

function passThrough (_req: unknown, _payload: unknown, done: (err: null) => void): void {
  done(null)
}

function handler (request: FastifyRequest, reply: FastifyReply): void {
  reply.hijack()
  const req = request.raw as UpgradeRequest
  const head = req[kHead]
  if (head === undefined) {
    relay(req, reply.raw)
    return
  }
  reply.raw.detachSocket(req.socket)
  tunnel(req, req.socket, head)
}

const app = Fastify({ logger: false })
app.removeAllContentTypeParsers()
app.addContentTypeParser('*', passThrough)
app.all('/*', handler)
app.server.on('upgrade', (req: UpgradeRequest, socket: Socket, head: Buffer) => {
  req[kHead] = head
  const res = new ServerResponse(req)
  res.shouldKeepAlive = false
  res.assignSocket(socket)
  app.routing(req, res)
})
await app.listen({ port: 0, host: '127.0.0.1' })
// A clean exit on SIGTERM, so that `--cpu-prof` writes its profile.
process.on('SIGTERM', () => process.exit(0))
process.stdout.write(`READY ${(app.server.address() as AddressInfo).port}\n`)
