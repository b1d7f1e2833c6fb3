// A soak upstream, in its own process: a `ws` echo server that first tells each connection who it is
// (`hello <name>`), so a client knows which upstream (and which life of it) its tunnel reached.
// Usage: soak-upstream <name> [standby]. It listens on an ephemeral port at once, or, on standby, when told to
// (`listen { port }`): the restarted upstream is started ahead of time, so the restart takes the downtime asked
// for, not the seconds a Node process with a TypeScript loader needs to start. Announces { port } (0 on standby).
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { WebSocketServer } from 'ws'
import { announce, serve } from './soak-rpc.js'

const [name, standby] = process.argv.slice(2)
const server = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain' })
  res.end(`${name}\n`)
})
const wss = new WebSocketServer({ server, perMessageDeflate: false })
const hello = `hello ${name}`
wss.on('connection', (ws) => {
  ws.send(hello)
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
  ws.on('error', () => ws.terminate())
})

async function listen (port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', 4096, resolve)
  })
  return (server.address() as AddressInfo).port
}

serve({
  listen: async (args) => ({ port: await listen(Number(args.port)) }),
  connections: () => wss.clients.size
})
announce({ port: standby === 'standby' ? 0 : await listen(0) })
