// node-http-proxy #624/#627 (fixed by PR #708): when the upstream refused an upgrade with a status other than 101,
// the client hung. Refusals with small bodies are covered next door; here the refusal (or any answer to an upgrade
// request) carries a body larger than the socket's buffers, so relaying it needs the client socket's 'drain'.
import t from 'tap'
import { Readable } from 'node:stream'
import { gateway, httpUpstream, origin, waitFor } from '../helpers/servers.js'
import { parseHead, rawClient, wsHandshakeHead, type Received } from '../helpers/ws.js'

const SIZE = 1024 * 1024

function bodyOf (client: Received): Buffer {
  const bytes = client.bytes
  return bytes.subarray(bytes.indexOf('\r\n\r\n') + 4)
}

/** The payload of a complete chunked body. */
function dechunk (bytes: Buffer): Buffer {
  const parts: Buffer[] = []
  let at = 0
  for (;;) {
    const lineEnd = bytes.indexOf('\r\n', at)
    const size = parseInt(bytes.subarray(at, lineEnd).toString(), 16)
    if (size === 0 || Number.isNaN(size)) return Buffer.concat(parts)
    parts.push(bytes.subarray(lineEnd + 2, lineEnd + 2 + size))
    at = lineEnd + 2 + size + 2
  }
}

// Node's HTTP server removes its 'drain' listener from a socket it hands to 'upgrade' listeners, so a
// ServerResponse bound to that socket never emits 'drain': the first write that fills the buffers stalls forever.

t.test('an upstream 403 with a 1 MiB body to an upgrade reaches the client whole, then the connection closes', async (t) => {
  const upstream = await httpUpstream(t, (_req, res) => {
    res.writeHead(403, { 'content-type': 'text/plain', 'content-length': SIZE })
    res.end(Buffer.alloc(SIZE, 0x78))
  })
  const { app, port } = await gateway(t, { upstream: origin(upstream), pool: { keepAliveTimeout: 200 } })
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead('/refused'))
  await client.close(5000)
  t.equal(parseHead(client.text).status, 403)
  t.equal(bodyOf(client).length, SIZE, 'the whole body')
  await waitFor(() => app.wsProxy.upstreamConnections === 0, 2000, 'the upstream connection to be released')
})

t.test('a route with upgrade: false answers an upgrade request with a 1 MiB body, whole', async (t) => {
  const upstream = await httpUpstream(t, (_req, res) => res.end(Buffer.alloc(SIZE, 0x79)))
  const { port } = await gateway(t, { upstream: origin(upstream), upgrade: false })
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead('/plain'))
  // No route claims upgrades here, so Node itself serves the request as a plain one and keeps the connection.
  await client.until((r) => bodyOf(r).length >= SIZE, 5000, 'the whole body')
  t.equal(parseHead(client.text).status, 200)
  t.equal(bodyOf(client).length, SIZE, 'the whole body')
})

t.test('an auth hook refusing an upgrade with a streamed 1 MiB body: the client gets it whole', async (t) => {
  const upstream = await httpUpstream(t)
  const { port } = await gateway(t, { upstream: origin(upstream) }, {}, (app) => {
    app.addHook('onRequest', async (_request, reply) => {
      const chunks = Array.from({ length: 16 }, () => Buffer.alloc(SIZE / 16, 0x7a))
      return reply.code(401).header('content-type', 'text/plain').send(Readable.from(chunks))
    })
  })
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead('/guarded'))
  await client.close(5000)
  t.equal(parseHead(client.text).status, 401)
  t.equal(dechunk(bodyOf(client)).length, SIZE, 'the whole body')
})
