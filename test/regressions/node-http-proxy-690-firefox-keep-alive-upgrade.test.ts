// node-http-proxy #690 / PR #691: Firefox sends `Connection: keep-alive, Upgrade`; the proxy compared the whole
// value with "upgrade", rewrote it to close, and Firefox could not open WebSockets. Connection is a token list.
import t from 'tap'
import { gateway, origin, wsUpstream } from '../helpers/servers.js'
import { acceptFor, parseHead, rawClient, upgradeHead, WS_KEY } from '../helpers/ws.js'

for (const connection of ['keep-alive, Upgrade', 'Keep-Alive,upgrade', 'upgrade, keep-alive']) {
  t.test(`Connection: ${connection} opens a WebSocket`, async (t) => {
    const { server } = await wsUpstream(t)
    const { port } = await gateway(t, { upstream: origin(server) })
    const client = await rawClient(t, port)
    const head = upgradeHead('/ff', 'websocket', ['Sec-WebSocket-Version: 13', `Sec-WebSocket-Key: ${WS_KEY}`]).replace('Connection: Upgrade', `Connection: ${connection}`)
    client.socket.write(head)
    await client.contains('\r\n\r\n')
    const answer = parseHead(client.text)
    t.equal(answer.status, 101)
    t.equal(answer.headers['sec-websocket-accept'], acceptFor(WS_KEY))
  })
}
