// Contender: node-http-proxy, in its own process, to the upstream given as argv[2]: plain requests with
// `proxy.web`, upgrades with `proxy.ws`. Given a keep-alive agent (its default, `agent: false`, opens a new
// upstream connection per request, which would measure connection setup rather than proxying).
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import httpProxy from 'http-proxy'

const target = `http://127.0.0.1:${process.argv[2]}`
const agent = new http.Agent({ keepAlive: true, maxSockets: 128 })
const proxy = httpProxy.createProxyServer({ target, agent, xfwd: true })
proxy.on('error', (_err, _req, res) => {
  // For `web` res is a ServerResponse, for `ws` the client socket: answer or drop, never crash.
  if ('writeHead' in res) {
    if (!res.headersSent) res.writeHead(502)
    res.end()
  } else {
    res.destroy()
  }
})
const server = http.createServer((req, res) => { proxy.web(req, res) })
server.on('upgrade', (req, socket, head) => { proxy.ws(req, socket, head) })
// A clean exit on SIGTERM, so that `--cpu-prof` writes its profile.
process.on('SIGTERM', () => process.exit(0))
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`READY ${(server.address() as AddressInfo).port}\n`)
})
