// Client request heads are limited by Node's HTTP server, before any route (or this plugin) sees them: the gateway
// config's `server.maxHeaderSize` (nginx large_client_header_buffers) and `server.headersTimeout` (nginx
// client_header_timeout) become Fastify's `http` server options. A head too large gets 431, a head too slow
// (slowloris) gets 408, and neither reaches the upstream; plain and upgrade requests alike.
import t from 'tap'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { checkGatewayConfig } from '../src/gateway/config.js'
import { startGateway } from '../src/gateway/start.js'
import { httpUpstream, origin, within } from './helpers/servers.js'
import { rawExchange, request } from './helpers/clients.js'

async function limitedGateway (t: Parameters<typeof httpUpstream>[0]) {
  const seen: string[] = []
  const upstream = await httpUpstream(t, (req, res) => {
    seen.push(req.url as string)
    res.end('ok')
  })
  const config = checkGatewayConfig({
    upstream: origin(upstream),
    listen: { host: '127.0.0.1', port: 0 },
    server: { maxHeaderSize: 2048, headersTimeout: 400 },
    logLevel: 'silent'
  })
  const app = await startGateway(config)
  t.teardown(async () => await app.close())
  return { port: (app.server.address() as AddressInfo).port, seen }
}

t.test('the gateway config fills the server limits with their defaults', async (t) => {
  t.same(checkGatewayConfig({ upstream: 'http://x' }).server, { maxHeaderSize: 16_384, headersTimeout: 60_000 })
  t.throws(() => checkGatewayConfig({ upstream: 'http://x', server: { maxHeaderSize: 10 } }), { code: 'FST_WS_PROXY_INVALID_OPTION', message: /server\/maxHeaderSize/ })
})

t.test('a request head over server.maxHeaderSize gets 431 and never reaches the upstream', async (t) => {
  const { port, seen } = await limitedGateway(t)
  t.equal((await request(`http://127.0.0.1:${port}/small`, { headers: { 'x-pad': 'a'.repeat(500) } })).status, 200)
  const big = 'x-pad: ' + 'a'.repeat(4000)
  const plain = await rawExchange(t, port, `GET /big HTTP/1.1\r\nHost: x\r\n${big}\r\n\r\n`)
  t.match(plain, /^HTTP\/1\.1 431 /)
  const upgrade = await rawExchange(t, port, `GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n${big}\r\n\r\n`)
  t.match(upgrade, /^HTTP\/1\.1 431 /, 'an upgrade request too')
  t.same(seen, ['/small'])
})

t.test('a head sent byte by byte (slowloris) is cut off with 408 after server.headersTimeout', async (t) => {
  const { port, seen } = await limitedGateway(t)
  const socket = net.connect(port, '127.0.0.1')
  t.teardown(() => { socket.destroy() })
  const head = 'GET /slow HTTP/1.1\r\nHost: x\r\nX-A: ' + 'b'.repeat(100) + '\r\n\r\n'
  let sent = 0
  const drip = setInterval(() => { if (sent < head.length && socket.writable) socket.write(head[sent++]) }, 50)
  t.teardown(() => clearInterval(drip))
  const started = Date.now()
  let answer = ''
  socket.on('data', (chunk: Buffer) => { answer += chunk.toString() })
  await within(new Promise((resolve) => socket.once('close', resolve)), 5000, 'the slow client to be cut off')
  clearInterval(drip)
  const took = Date.now() - started
  t.match(answer, /^HTTP\/1\.1 408 /)
  t.ok(took >= 350 && took < 2000, `cut off after ${took} ms (headersTimeout 400)`)
  t.ok(sent < head.length, `only ${sent} of ${head.length} bytes were sent`)
  t.same(seen, [], 'nothing reached the upstream')
})
