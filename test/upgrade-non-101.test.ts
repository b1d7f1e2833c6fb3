// An upstream that refuses an upgrade (401, 404, 426, 500, ...) is relayed as it answered: the client gets that
// status, those headers and that body, then the connection closes (it has left HTTP parsing: nothing may follow).
// The upstream connection is not kept either: it carried an upgrade request, so it is not reused.
import t from 'tap'
import type { Socket } from 'node:net'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { gateway, httpUpstream, origin, waitFor } from './helpers/servers.js'
import { closed, parseHead, rawClient, unexpectedResponse, wsHandshakeHead, wsUrl } from './helpers/ws.js'

interface Refusal {
  status: number
  reason: string
  headers: Record<string, string>
  body: string
}

const refusals: Refusal[] = [
  { status: 401, reason: 'Unauthorized', headers: { 'WWW-Authenticate': 'Bearer realm="chat", error="invalid_token"', 'X-Request-Id': 'r-401' }, body: '{"error":"who are you?"}' },
  { status: 404, reason: 'Not Found', headers: { 'Content-Type': 'text/plain; charset=utf-8' }, body: 'no such room' },
  // RFC 9110 §15.5.22: a 426 must carry Upgrade, so it is the one answer whose Upgrade header is relayed.
  { status: 426, reason: 'Upgrade Required', headers: { Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Content-Type': 'text/plain' }, body: 'speak version 13' },
  { status: 500, reason: 'Internal Server Error', headers: { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' }, body: '{"error":"boom"}' }
]

/** An upstream answering every request (upgrades included: it has no 'upgrade' listener) with `refusal`. */
async function refusingUpstream (t: Parameters<typeof httpUpstream>[0], refusal: Refusal) {
  const sockets: Socket[] = []
  const seen: IncomingMessage[] = []
  const server = await httpUpstream(t, (req: IncomingMessage, res: ServerResponse) => {
    seen.push(req)
    res.writeHead(refusal.status, { ...refusal.headers, 'Content-Length': Buffer.byteLength(refusal.body) })
    res.end(refusal.body)
  })
  server.on('connection', (socket: Socket) => sockets.push(socket))
  return { server, sockets, seen }
}

for (const refusal of refusals) {
  t.test(`an upstream ${refusal.status} to an upgrade reaches the client as sent, then the connection closes`, async (t) => {
    const { server, sockets, seen } = await refusingUpstream(t, refusal)
    const { app, port } = await gateway(t, { upstream: origin(server) })
    const client = await rawClient(t, port)
    client.socket.write(wsHandshakeHead('/refused'))
    await client.close()
    t.ok(client.ended, 'the gateway ended the connection (FIN) after the answer')

    const text = client.text
    const head = parseHead(text)
    t.equal(head.statusLine, `HTTP/1.1 ${refusal.status} ${refusal.reason}`)
    for (const [name, value] of Object.entries(refusal.headers)) {
      t.equal(head.headers[name.toLowerCase()], value, `${name} relayed`)
    }
    t.equal(head.headers['content-length'], String(Buffer.byteLength(refusal.body)))
    t.equal(head.headers.connection, 'close', 'the answer says the connection ends')
    t.equal(text.slice(text.indexOf('\r\n\r\n') + 4), refusal.body, 'the body, exactly, and nothing after it')

    t.equal(seen.length, 1)
    t.equal(seen[0].headers.upgrade, 'websocket', 'the upstream was asked to upgrade')
    t.equal(app.wsProxy.tunnels, 0, 'no tunnel was opened')
    await waitFor(() => app.wsProxy.upstreamConnections === 0, 2000, 'the upstream connection to leave the pool')
    t.equal(sockets.length, 1)
    await closed(sockets[0], 2000, 'the upstream socket to close')
    t.pass('the upstream socket closed')
  })
}

t.test('a ws client sees the upstream\'s refusal as its unexpected-response, body included', async (t) => {
  const { server } = await refusingUpstream(t, refusals[0])
  const { app, url } = await gateway(t, { upstream: origin(server) })
  const res = await unexpectedResponse(t, wsUrl(url, '/ws-refused'))
  t.equal(res.status, 401)
  t.equal(res.headers['www-authenticate'], refusals[0].headers['WWW-Authenticate'])
  t.equal(res.body.toString(), refusals[0].body)
  await waitFor(() => app.wsProxy.upstreamConnections === 0, 2000, 'the upstream connection to close')
})

t.test('bytes the client sent after its head are not relayed when the upstream refuses', async (t) => {
  const received: Buffer[] = []
  const server = await httpUpstream(t, (req, res) => {
    req.on('data', (chunk: Buffer) => received.push(chunk))
    res.writeHead(403, { 'Content-Type': 'text/plain', 'Content-Length': 9 })
    res.end('forbidden')
  })
  const { port } = await gateway(t, { upstream: origin(server) })
  const client = await rawClient(t, port)
  // Early tunnel bytes in the same write as the head: they belong to a tunnel that never opens.
  client.socket.write(wsHandshakeHead('/early') + 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n')
  await client.close()
  t.match(client.text, /^HTTP\/1\.1 403 Forbidden\r\n/)
  t.ok(client.text.endsWith('\r\n\r\nforbidden'), 'exactly one answer')
  t.equal(Buffer.concat(received).length, 0, 'the upstream got no body')
})
