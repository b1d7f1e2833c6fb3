// Contender "floor (node)": the least a Node proxy does (floor-parts.ts), in its own process, to the upstream given as
// argv[2]: `http.createServer` with each request dispatched to an undici Pool, upgrades dialled and piped. Not a peer:
// it has none of a proxy's checks, and shows what Node and undici alone cost on each cell.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { relay, tunnel } from './floor-parts.js'

const server = http.createServer(relay)
server.on('upgrade', tunnel)
// A clean exit on SIGTERM, so that `--cpu-prof` writes its profile.
process.on('SIGTERM', () => process.exit(0))
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`READY ${(server.address() as AddressInfo).port}\n`)
})
