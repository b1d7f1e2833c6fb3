// Contender "floor (node)": the least a Node proxy does (floor-parts.ts), in its own process, to the upstream given as
// argv[2] (argv[3]: the compiled plugin, whose tunnel-reads module it reads tunnels with): `http.createServer` with
// each request dispatched to an undici Pool, upgrades dialled and relayed in place. Not a peer:
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
