// An upgrade to an https upstream goes on a connection of its own too (src/upgrade/dial.ts, through tls.connect with the
// group's TLS settings), as to a plain-HTTP one. test/upstream-tls-unix.test.ts pins verification, SNI and client
// certificates for upgrades; pinned here: the head written over TLS, the TLS session resumed by the next dial, a
// refusal read over TLS by the fallback parser, and a connect timeout that covers the TLS handshake.
import net from 'node:net'
import tls, { type TLSSocket } from 'node:tls'
import t from 'tap'
import { gateway, portOf, type Teardown } from './helpers/servers.js'
import { selfSignedCert } from './helpers/http-faults.js'
import { parseHead, rawClient, switching, timedHandshake, wsHandshakeHead } from './helpers/ws.js'

const cert = selfSignedCert()
const noCert = cert === null && 'openssl is not available to make a test certificate'

interface TlsConnection {
  head: string
  reused: boolean
  servername: string | false | null
}

/** A raw TLS upstream on 127.0.0.1 with the self-signed certificate: `answer` is written once a request head is in. */
async function tlsHeadUpstream (t: Teardown, answer: string): Promise<{ port: number, connections: TlsConnection[] }> {
  const pair = cert as { key: string, cert: string }
  const connections: TlsConnection[] = []
  const sockets = new Set<TLSSocket>()
  const server = tls.createServer({ key: pair.key, cert: pair.cert }, (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    const connection: TlsConnection = { head: '', reused: socket.isSessionReused(), servername: socket.servername }
    connections.push(connection)
    let text = ''
    socket.on('data', (chunk: Buffer) => {
      if (connection.head !== '') return
      text += chunk.toString('latin1')
      const end = text.indexOf('\r\n\r\n')
      if (end === -1) return
      connection.head = text.slice(0, end + 4)
      socket.write(answer)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise((resolve) => server.close(resolve))
  })
  return { port: portOf(server), connections }
}

t.test('upgrades to an https upstream', { skip: noCert }, async (t) => {
  if (cert === null) return

  t.test('the head goes over TLS as to a plain server; the second dial resumes the first one\'s TLS session', async (t) => {
    const upstream = await tlsHeadUpstream(t, switching('websocket'))
    const { port } = await gateway(t, { upstream: `https://localhost:${upstream.port}`, tls: { ca: cert.cert } })
    for (let i = 0; i < 2; i++) {
      const client = await rawClient(t, port)
      client.socket.write(wsHandshakeHead(`/tls/${i}`, ['X-Custom: one']))
      await client.contains('\r\n\r\n')
      t.equal(parseHead(client.text).status, 101, 'the 101 reaches the client')
      client.socket.destroy()
    }
    t.equal(upstream.connections.length, 2)
    const lines = upstream.connections[0].head.split('\r\n')
    t.equal(lines[0], 'GET /tls/0 HTTP/1.1')
    t.equal(lines[1], `host: localhost:${upstream.port}`)
    t.equal(lines[2], 'connection: upgrade')
    t.equal(lines[3], 'upgrade: websocket')
    t.ok(lines.includes('x-custom: one') || lines.includes('X-Custom: one'), 'a client field is passed on')
    t.equal(upstream.connections[0].servername, 'localhost', 'SNI is the server URL host name')
    t.equal(upstream.connections[0].reused, false, 'the first connection makes a full handshake')
    t.equal(upstream.connections[1].reused, true, 'the next one resumes its session')
  })

  t.test('a refusal with a body is read over TLS and relayed', async (t) => {
    const upstream = await tlsHeadUpstream(t, 'HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\nX-Why: policy\r\n\r\nnope')
    const { port } = await gateway(t, { upstream: `https://localhost:${upstream.port}`, tls: { ca: cert.cert } })
    const { text } = await timedHandshake(t, port, '/refused')
    const head = parseHead(text)
    t.equal(head.status, 403)
    t.equal(head.headers['x-why'], 'policy')
    t.ok(text.endsWith('\r\n\r\nnope'), 'the body follows the head')
  })

  t.test('an upstream that never completes its TLS handshake: 504 FST_WS_PROXY_CONNECT_TIMEOUT after timeouts.connect', async (t) => {
    // Accepts the TCP connection and says nothing: the TCP connect succeeds, the TLS handshake never ends.
    const sockets = new Set<net.Socket>()
    const silent = net.createServer((socket) => {
      sockets.add(socket)
      socket.on('error', () => {})
    })
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    t.teardown(async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => silent.close(resolve))
    })
    const { port } = await gateway(t, {
      upstream: `https://localhost:${portOf(silent)}`,
      tls: { ca: cert.cert },
      timeouts: { connect: 200, read: 10_000 }
    })
    const { status, text, elapsed } = await timedHandshake(t, port, '/silent')
    t.equal(status, 504)
    t.match(text, /FST_WS_PROXY_CONNECT_TIMEOUT/)
    t.ok(elapsed >= 180 && elapsed < 2000, `answered after ~200 ms, not after timeouts.read (${elapsed} ms)`)
    t.equal(sockets.size, 1, 'the TCP connection was made')
  })
})
