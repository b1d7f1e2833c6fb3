// Upstream failures during an upgrade handshake are answered like any proxied request (nginx: 502 refused or
// garbage, 504 silent), as a complete HTTP answer after which the connection closes. A client that leaves while
// the upstream is still deciding releases the upstream request without crashing anything.
import t from 'tap'
import { gateway, origin, waitFor } from './helpers/servers.js'
import { closedPort, headUpstream, openWs, parseHead, rawClient, switching, wsHandshakeHead, wsUrl, type Received } from './helpers/ws.js'

function jsonBody (client: Received): unknown {
  const text = client.text
  return JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4))
}

t.test('a refused upstream connection: 502 FST_WS_PROXY_CONNECT_FAILED, then the socket closes', async (t) => {
  const port = await closedPort()
  const upstream = `http://127.0.0.1:${port}`
  const { app, port: gatewayPort } = await gateway(t, { upstream })
  const client = await rawClient(t, gatewayPort)
  client.socket.write(wsHandshakeHead('/refused'))
  await client.close()
  const head = parseHead(client.text)
  t.equal(head.statusLine, 'HTTP/1.1 502 Bad Gateway')
  t.equal(head.headers.connection, 'close')
  t.match(head.headers['content-type'], /^application\/json/)
  t.same(jsonBody(client), {
    statusCode: 502,
    code: 'FST_WS_PROXY_CONNECT_FAILED',
    error: 'Bad Gateway',
    message: `Could not connect to upstream ${upstream}: ECONNREFUSED`
  })
  t.ok(client.ended, 'closed by the gateway after the answer')
  t.equal(app.wsProxy.tunnels, 0)
})

t.test('a ws client sees the 502 as its handshake failure', async (t) => {
  const port = await closedPort()
  const { url } = await gateway(t, { upstream: `http://127.0.0.1:${port}` })
  const error = await openWs(t, wsUrl(url, '/refused')).then(() => null, (err: Error) => err)
  t.match(error?.message, /Unexpected server response: 502/)
})

t.test('an upstream silent past timeouts.read: 504 FST_WS_PROXY_READ_TIMEOUT, and the upstream socket is released', async (t) => {
  const upstream = await headUpstream(t, () => { /* never answers */ })
  const { app, port } = await gateway(t, { upstream: origin(upstream), timeouts: { read: 200 } })
  const client = await rawClient(t, port)
  const started = Date.now()
  client.socket.write(wsHandshakeHead('/silent'))
  await client.close()
  const elapsed = Date.now() - started
  t.ok(elapsed >= 180 && elapsed < 1500, `answered after ~200 ms (${elapsed} ms)`)
  t.equal(parseHead(client.text).statusLine, 'HTTP/1.1 504 Gateway Timeout')
  t.same(jsonBody(client), {
    statusCode: 504,
    code: 'FST_WS_PROXY_READ_TIMEOUT',
    error: 'Gateway Timeout',
    message: `Upstream ${origin(upstream)} sent no response within 200 ms`
  })
  await upstream.accepted[0].received.close()
  t.pass('the gateway closed its upstream connection')
  await waitFor(() => app.wsProxy.upstreamConnections === 0, 2000, 'the pool to be empty')
})

t.test('an upstream that closes without answering: 502 FST_WS_PROXY_UPSTREAM_RESET', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => { socket.end() })
  const { port } = await gateway(t, { upstream: origin(upstream) })
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead('/hangup'))
  await client.close()
  t.equal(parseHead(client.text).status, 502)
  t.match(jsonBody(client), { statusCode: 502, code: 'FST_WS_PROXY_UPSTREAM_RESET' })
})

t.test('a 101 that does not name a protocol is garbage: 502 FST_WS_PROXY_BAD_RESPONSE, no tunnel', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => { socket.write('HTTP/1.1 101 Switching Protocols\r\n\r\n') })
  const { app, port } = await gateway(t, { upstream: origin(upstream) })
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead('/bad-101'))
  await client.close()
  t.equal(parseHead(client.text).status, 502)
  t.match(jsonBody(client), { statusCode: 502, code: 'FST_WS_PROXY_BAD_RESPONSE' })
  t.equal(app.wsProxy.tunnels, 0)
  await upstream.accepted[0].received.close()
})

t.test('a client reset while the upstream decides: no crash, the upstream request is released', async (t) => {
  // The upstream holds '/slow' forever and accepts anything else at once.
  const upstream = await headUpstream(t, ({ socket, head }) => {
    if (!head.startsWith('GET /slow ')) socket.write(switching('websocket'))
  })
  const { app, port } = await gateway(t, { upstream: origin(upstream) })
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead('/slow'))
  await waitFor(() => upstream.accepted.length === 1 && upstream.accepted[0].head !== '', 2000, 'the upgrade request upstream')
  client.socket.resetAndDestroy()
  await upstream.accepted[0].received.close()
  t.pass('the upstream connection of the abandoned handshake was closed')
  await waitFor(() => app.wsProxy.upstreamConnections === 0, 2000, 'the pool to be empty')
  t.equal(app.wsProxy.tunnels, 0)

  // The gateway is still serving: a new handshake on the same route goes through.
  const next = await rawClient(t, port)
  next.socket.write(wsHandshakeHead('/fine'))
  await next.contains('\r\n\r\n')
  t.match(next.text, /^HTTP\/1\.1 101 /)
})

// A client that closes (FIN, no reset) before the 101 is noticed at once, as nginx does (499): the handshake
// socket is read while the upstream decides, so its EOF releases the upstream request and its pool slot.
t.test('a ws client that gives up on a slow handshake (FIN) releases the upstream request at once', async (t) => {
  const upstream = await headUpstream(t, () => { /* never answers */ })
  // timeouts.read bounds how long the abandoned request can be held (and this test's teardown).
  const { app, url } = await gateway(t, { upstream: origin(upstream), timeouts: { read: 1500 } })
  const error = await openWs(t, wsUrl(url, '/slow'), undefined, { handshakeTimeout: 100 }).then(() => null, (err: Error) => err)
  t.match(error?.message, /Opening handshake has timed out/)
  await waitFor(() => upstream.accepted.length === 1, 2000, 'the upstream connection')
  const started = Date.now()
  await upstream.accepted[0].received.close(3000)
  t.ok(Date.now() - started < 1000, `the upstream connection closed ${Date.now() - started} ms after the client left, before the 1.5 s read timeout`)
  await waitFor(() => app.wsProxy.upstreamConnections === 0, 2000, 'the pool to be empty')
})
