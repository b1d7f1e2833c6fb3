// fastify-http-proxy #460 (2026): rapid requests while the upstream refused connections crashed the process with
// ERR_HTTP_HEADERS_SENT. Every request must get its own 502, plain or upgrade, and the process must live on.
import t from 'tap'
import { gateway } from '../helpers/servers.js'
import { request } from '../helpers/clients.js'
import { closedPort, parseHead, rawClient, wsHandshakeHead } from '../helpers/ws.js'

t.test('300 plain requests and 50 upgrades at once to a refusing upstream: 350 clean 502s', async (t) => {
  const port = await closedPort()
  const { url, port: gatewayPort } = await gateway(t, { upstream: `http://127.0.0.1:${port}` })
  const plain = await Promise.all(Array.from({ length: 300 }, async (_v, i) => (await request(`${url}/r${i}`)).status))
  t.same(new Set(plain), new Set([502]))
  const upgrades = await Promise.all(Array.from({ length: 50 }, async () => {
    const client = await rawClient(t, gatewayPort)
    client.socket.write(wsHandshakeHead('/ws'))
    await client.close()
    return parseHead(client.text).status
  }))
  t.same(new Set(upgrades), new Set([502]))
  t.equal((await request(`${url}/after`)).status, 502, 'and the gateway still answers')
})
