// @fastify/reply-from's defaults: TLS verification to https: upstreams is off, and a refused or reset upstream
// is a 500 (nginx: 502; a timeout 504). Here verification is on by default, refusals and resets are 502 and
// timeouts 504, for plain requests and upgrades alike. Also node-http-proxy PR #1439: a TLS upstream resetting
// during a WebSocket upgrade crashed the process.
import t from 'tap'
import https from 'node:https'
import net from 'node:net'
import { gateway, listen, portOf } from '../helpers/servers.js'
import { request } from '../helpers/clients.js'
import { closedPort, errorBody, selfSignedCert } from '../helpers/http-faults.js'
import { parseHead, rawClient, wsHandshakeHead } from '../helpers/ws.js'

const cert = selfSignedCert()

t.test('an https upstream with a certificate nobody trusts: 502, nothing sent', { skip: cert === null && 'openssl is not available' }, async (t) => {
  if (cert === null) return
  let requests = 0
  const upstream = await listen(t, https.createServer(cert, (_req, res) => { requests++; res.end('should not be reached') }))
  const { url, port } = await gateway(t, { upstream: `https://localhost:${portOf(upstream)}` })
  const res = await request(`${url}/`)
  t.equal(res.status, 502)
  t.equal(errorBody(res.body).code, 'FST_WS_PROXY_CONNECT_FAILED')
  t.match(errorBody(res.body).message, /SELF_SIGNED|self.signed|certificate/i, 'the reason names the certificate')
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead('/ws'))
  await client.close()
  t.equal(parseHead(client.text).status, 502, 'an upgrade is refused the same way')
  t.equal(requests, 0)
})

t.test('a TLS upstream that resets during the handshake: 502, no crash', async (t) => {
  const upstream = await listen(t, net.createServer((socket) => { socket.once('data', () => socket.resetAndDestroy()) }))
  const { url, port } = await gateway(t, { upstream: `https://127.0.0.1:${portOf(upstream)}` })
  t.equal((await request(`${url}/`)).status, 502)
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead('/ws'))
  await client.close()
  t.equal(parseHead(client.text).status, 502)
})

t.test('refused: 502; reset: 502; silent: 504 (reply-from answers 500 to the first two)', async (t) => {
  const refused = await gateway(t, { upstream: `http://127.0.0.1:${await closedPort()}` })
  t.equal((await request(`${refused.url}/`)).status, 502)
  const resetting = await listen(t, net.createServer((socket) => { socket.once('data', () => socket.resetAndDestroy()) }))
  const reset = await gateway(t, { upstream: `http://127.0.0.1:${portOf(resetting)}` })
  t.equal((await request(`${reset.url}/`)).status, 502)
  const silent = await listen(t, net.createServer(() => {}))
  const slow = await gateway(t, { upstream: `http://127.0.0.1:${portOf(silent)}`, timeouts: { read: 200 } })
  const res = await request(`${slow.url}/`)
  t.equal(res.status, 504)
  t.equal(errorBody(res.body).code, 'FST_WS_PROXY_READ_TIMEOUT')
})
