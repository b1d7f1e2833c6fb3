// An upgrade to a plain-HTTP upstream goes on a connection of its own (src/upgrade/dial.ts): the proxy writes the
// head and reads a 101 with a strict parser; every other answer is read by Node's HTTP client parser
// (src/upgrade/dial-fallback.ts) and relayed whole, as undici's upgrade path did. Pinned here: the head sent, a 101
// arriving in pieces or followed at once by frames, refusals with bodies (chunked, after a 1xx, larger than the
// client's buffers), the read timeout and a cut body after a refusal's head, 101s the strict parser refuses, and
// what the parser and the head builder accept, byte by byte.
import { once } from 'node:events'
import net from 'node:net'
import { Worker } from 'node:worker_threads'
import t from 'tap'
import type { UpstreamServer } from '../src/upstream/server.js'
import { parse101, upgradeHead, type DialRequest } from '../src/upgrade/dial.js'
import type { WsProxyOptions } from '../src/index.js'
import { gateway, origin, portOf, waitFor, type Teardown } from './helpers/servers.js'
import { headUpstream, parseHead, rawClient, switching, timedHandshake, wsHandshakeHead, type ScriptedServer } from './helpers/ws.js'

async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

/** What a raw client reads, up to the connection's end, for a handshake to `path` through a gateway in front of `upstream`. */
async function answerThrough (t: Teardown, upstream: ScriptedServer, path: string, options: Omit<WsProxyOptions, 'upstream'> = {}): Promise<string> {
  const { port } = await gateway(t, { upstream: origin(upstream), ...options })
  return (await timedHandshake(t, port, path)).text
}

t.test('the head sent: Host first, then Connection and Upgrade, then the fields in order', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => { socket.write(switching('websocket')) })
  const { port } = await gateway(t, { upstream: origin(upstream) })
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead('/ws/a?b=1', ['X-Custom: one']))
  await client.contains('\r\n\r\n')
  t.equal(parseHead(client.text).status, 101)
  const lines = upstream.accepted[0].head.split('\r\n')
  t.equal(lines[0], 'GET /ws/a?b=1 HTTP/1.1')
  t.equal(lines[1], `host: ${origin(upstream).slice('http://'.length)}`)
  t.equal(lines[2], 'connection: upgrade')
  t.equal(lines[3], 'upgrade: websocket')
  t.ok(lines.includes('x-custom: one') || lines.includes('X-Custom: one'), 'a client field is passed on')
})

t.test('a 101 in pieces, then frames in the same read as its end: all reach the client, in order', async (t) => {
  const reply = switching('websocket') + 'EARLY'
  const upstream = await headUpstream(t, ({ socket }) => {
    socket.setNoDelay(true)
    socket.write(reply.slice(0, 5))
    setTimeout(() => { socket.write(reply.slice(5, 30)) }, 30)
    setTimeout(() => { socket.write(reply.slice(30)) }, 60)
  })
  const { app, port } = await gateway(t, { upstream: origin(upstream) })
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead('/pieces'))
  await client.contains('EARLY')
  t.equal(parseHead(client.text).status, 101)
  t.ok(client.text.endsWith('\r\n\r\nEARLY'), 'the early bytes follow the 101')
  await waitFor(() => app.wsProxy.tunnels === 1, 2000, 'the tunnel')
  client.socket.write(Buffer.from([0x88, 0x80, 1, 2, 3, 4]))
  await waitFor(() => upstream.accepted[0].afterHead().length === 6, 2000, 'the client frame upstream')
})

t.test('a refusal with a chunked body after a 103: relayed whole, and the connection closes', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => {
    socket.write('HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n')
    setTimeout(() => {
      socket.write('HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nX-Why: no\r\n\r\n5\r\nhello\r\n')
    }, 20)
    setTimeout(() => { socket.end('6\r\n world\r\n0\r\n\r\n') }, 40)
  })
  const { app, port } = await gateway(t, { upstream: origin(upstream) })
  const { text } = await timedHandshake(t, port, '/refused')
  const head = parseHead(text)
  t.equal(head.status, 403)
  t.equal(head.headers['x-why'], 'no')
  t.notOk('link' in head.headers, 'the interim answer is not relayed')
  t.match(text, /\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n$/)
  t.equal(app.wsProxy.tunnels, 0)
})

t.test('a refusal larger than the client reads at once: relayed whole while the client lags', async (t) => {
  const size = 8 * 1024 * 1024
  const upstream = await headUpstream(t, ({ socket }) => {
    socket.write(`HTTP/1.1 400 Bad Request\r\nContent-Length: ${size}\r\n\r\n`)
    socket.end(Buffer.alloc(size, 0x61))
  })
  const { port } = await gateway(t, { upstream: origin(upstream) })
  const client = await rawClient(t, port)
  client.socket.pause()
  client.socket.write(wsHandshakeHead('/big'))
  await sleep(300)
  client.socket.resume()
  await client.close(10_000)
  const text = client.text
  t.equal(parseHead(text).status, 400)
  t.equal(text.length - text.indexOf('\r\n\r\n') - 4, size, 'every body byte')
})

t.test('a refusal whose body stalls past timeouts.read: the client connection is cut after what came', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => { socket.write('HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nhello') })
  const answer = await answerThrough(t, upstream, '/stall', { timeouts: { read: 200 } })
  t.equal(parseHead(answer).status, 404)
  t.ok(answer.endsWith('\r\n\r\nhello'), 'the five bytes sent, no more')
})

t.test('a refusal whose body is cut by the upstream: the client connection is cut too', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => { socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nhello') })
  const answer = await answerThrough(t, upstream, '/cut')
  t.equal(parseHead(answer).status, 404)
  t.ok(answer.endsWith('\r\n\r\nhello'))
})

for (const [name, answer] of [
  ['a 101 with a Content-Length', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n'],
  ['a 101 with an obs-folded field', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-A: b\r\n c\r\n\r\n']
]) {
  t.test(`${name}: 502 FST_WS_PROXY_BAD_RESPONSE, no tunnel`, async (t) => {
    const upstream = await headUpstream(t, ({ socket }) => { socket.write(answer) })
    const { app, port } = await gateway(t, { upstream: origin(upstream) })
    const client = await rawClient(t, port)
    client.socket.write(wsHandshakeHead('/odd'))
    await client.close()
    t.equal(parseHead(client.text).status, 502)
    t.match(client.text, /FST_WS_PROXY_BAD_RESPONSE/)
    t.equal(app.wsProxy.tunnels, 0)
  })
}

t.test('a head that never ends, past limits.responseHead: 502 FST_WS_PROXY_BAD_RESPONSE', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n')
    setTimeout(() => { socket.write(`X-Big: ${'a'.repeat(2048)}\r\n`) }, 20)
  })
  const answer = await answerThrough(t, upstream, '/endless', { limits: { responseHead: 1024 } })
  t.equal(parseHead(answer).status, 502)
  t.match(answer, /Headers Overflow Error/)
})

t.test('parse101: the heads it takes, and those it leaves to Node\'s parser', async (t) => {
  const parse = (head: string): string[] | null => {
    const buf = Buffer.from(head, 'latin1')
    const raw = parse101(buf, buf.indexOf('\r\n\r\n'))
    return raw === null ? null : raw.map((b) => b.toString('latin1'))
  }
  t.same(parse('HTTP/1.1 101 Switching Protocols\r\nUpgrade:  websocket \t\r\nX-Empty:\r\n\r\n'), ['Upgrade', 'websocket', 'X-Empty', ''])
  t.same(parse('HTTP/1.1 101\r\nupgrade: foo\r\n\r\n'), ['upgrade', 'foo'], 'no reason phrase')
  t.same(parse('HTTP/1.1 101 \xe9\r\nUpgrade: foo\xff\r\n\r\n'), ['Upgrade', 'foo\xff'], 'obs-text')
  t.equal(parse('HTTP/1.1 200 OK\r\nUpgrade: foo\r\n\r\n'), null, 'another status')
  t.equal(parse('HTTP/1.0 101 OK\r\nUpgrade: foo\r\n\r\n'), null, 'another version')
  t.equal(parse('HTTP/1.1 1010 OK\r\nUpgrade: foo\r\n\r\n'), null, 'a longer status')
  t.equal(parse('HTTP/1.1 101 O\x01K\r\nUpgrade: foo\r\n\r\n'), null, 'a control byte in the reason')
  t.equal(parse('HTTP/1.1 101 OK\rX\nUpgrade: foo\r\n\r\n'), null, 'a bare CR after the status line')
  t.equal(parse('HTTP/1.1 101 OK\r\n: foo\r\nUpgrade: foo\r\n\r\n'), null, 'an empty name')
  t.equal(parse('HTTP/1.1 101 OK\r\nUp grade: foo\r\n\r\n'), null, 'a name that is no token')
  t.equal(parse('HTTP/1.1 101 OK\r\nUpgrade: f\x00o\r\n\r\n'), null, 'NUL in a value')
  t.equal(parse('HTTP/1.1 101 OK\r\nUpgrade: foo\rX\nA: b\r\n\r\n'), null, 'a bare CR in a value')
  t.equal(parse('HTTP/1.1 101 OK\r\nUpgrade: foo\r\nTransfer-Encoding: chunked\r\n\r\n'), null, 'a framing field')
  t.equal(parse('HTTP/1.1 101 OK\r\nUpgrade: foo\r\nContent-Length: 0\r\n\r\n'), null, 'Content-Length')
  t.same(parse('HTTP/1.1 101 OK\r\nUpgrade: foo\r\nContent-Lengths: 0\r\nX-Transfer-Encoding: a\r\n\r\n'),
    ['Upgrade', 'foo', 'Content-Lengths', '0', 'X-Transfer-Encoding', 'a'], 'names of the same lengths')
  t.equal(parse('HTTP/1.1 101 OK\r\nConnection: upgrade\r\n\r\n'), null, 'no Upgrade field')
  t.equal(parse('HTTP/1.1 101 OK\r\n\r\n'), null, 'no field at all')
  t.equal(parse('HTTP/1.1 10\r\n\r\n'), null, 'too short')
})

t.test('upgradeHead: undici\'s head, or null where undici would refuse or treat the request otherwise', async (t) => {
  const server = { origin: 'http://127.0.0.1:8080', socketPath: null, addr: '127.0.0.1:8080' } as unknown as UpstreamServer
  const unix = { origin: 'http://localhost', socketPath: '/tmp/x.sock', addr: 'unix:/tmp/x.sock' } as unknown as UpstreamServer
  const request = (headers: string[], extra: Partial<DialRequest> = {}): DialRequest =>
    ({ method: 'GET', path: '/p', upgrade: 'websocket', headers, connectTimeout: 1, readTimeout: 1, headLimit: 1, ...extra })
  t.equal(upgradeHead(request(['x-a', '1']), server), 'GET /p HTTP/1.1\r\nhost: 127.0.0.1:8080\r\nconnection: upgrade\r\nupgrade: websocket\r\nx-a: 1\r\n\r\n')
  t.equal(upgradeHead(request(['x-a', '1', 'Host', 'h.test']), unix), 'GET /p HTTP/1.1\r\nhost: h.test\r\nconnection: upgrade\r\nupgrade: websocket\r\nx-a: 1\r\n\r\n')
  t.equal(upgradeHead(request([]), unix), 'GET /p HTTP/1.1\r\nhost: localhost\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n')
  t.equal(upgradeHead(request(['host', 'a', 'host', 'b']), server), null, 'two Host fields')
  t.equal(upgradeHead(request(['x a', '1']), server), null, 'a name that is no token')
  t.equal(upgradeHead(request(['x-a', 'a\r\nb: c']), server), null, 'CR LF in a value')
  for (const name of ['Connection', 'upgrade', 'Keep-Alive', 'transfer-encoding', 'content-length', 'Expect']) {
    t.equal(upgradeHead(request([name, 'x']), server), null, `${name}: undici's to write or refuse`)
  }
  t.equal(upgradeHead(request([], { upgrade: 'a\nb' }), server), null, 'a bad Upgrade value')
  t.equal(upgradeHead(request([], { path: '/a\r\nb' }), server), null, 'a bad path')
  t.equal(upgradeHead(request([], { path: '/a b' }), server), null, 'a space in the path')
})

t.test('a status retried on the next server (nextUpstream http_503): the 503 is dropped unseen, the next server\'s 101 relayed', async (t) => {
  const refusing = await headUpstream(t, ({ socket }) => { socket.write('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy') })
  const switchingOne = await headUpstream(t, ({ socket }) => { socket.write(switching('websocket')) })
  const { app, port } = await gateway(t, {
    upstreams: { api: { servers: [{ url: origin(refusing) }, { url: origin(switchingOne), backup: true }], nextUpstream: { on: ['http_503'] } } },
    routes: [{ prefix: '/', upstream: 'http://api' }]
  })
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead('/retry'))
  await client.contains('\r\n\r\n')
  t.equal(parseHead(client.text).status, 101)
  t.equal(refusing.accepted.length, 1, 'the first server was asked')
  await waitFor(() => app.wsProxy.tunnels === 1, 2000, 'the tunnel')
  await refusing.accepted[0].received.close()
  t.pass('the refused attempt\'s connection was closed')
})

t.test('an IPv6 upstream: dialled at its address', async (t) => {
  let head = ''
  const upstream = net.createServer((socket) => {
    socket.on('data', (chunk: Buffer) => {
      head += chunk.toString('latin1')
      if (head.includes('\r\n\r\n')) socket.write(switching('websocket'))
    })
  })
  upstream.listen(0, '::1')
  await once(upstream, 'listening')
  t.teardown(() => { upstream.close() })
  const { app, port } = await gateway(t, { upstream: `http://[::1]:${portOf(upstream)}` })
  const client = await rawClient(t, port)
  client.socket.write(wsHandshakeHead('/v6'))
  await client.contains('\r\n\r\n')
  t.equal(parseHead(client.text).status, 101)
  t.match(head, /\r\nhost: \[::1\]:\d+\r\n/)
  client.socket.destroy()
  await waitFor(() => app.wsProxy.tunnels === 0, 2000, 'the tunnel to close')
})

t.test('a refusal whose body is cut by a reset: the client connection is cut after what came', async (t) => {
  const upstream = await headUpstream(t, ({ socket }) => {
    socket.write('HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nhello')
    setTimeout(() => { socket.resetAndDestroy() }, 30)
  })
  const answer = await answerThrough(t, upstream, '/rst')
  t.equal(parseHead(answer).status, 404)
  t.ok(answer.endsWith('\r\n\r\nhello'))
})

t.test('connecting takes longer than timeouts.connect: 504 FST_WS_PROXY_CONNECT_TIMEOUT', async (t) => {
  // A listener whose thread never accepts, its accept queue filled: the kernel drops the next SYN, so the
  // gateway's connection stays unanswered (loopback only, nothing leaves the machine).
  const blocked = new Int32Array(new SharedArrayBuffer(4))
  const worker = new Worker(`
    const { parentPort, workerData } = require('node:worker_threads')
    const server = require('node:net').createServer().listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
      parentPort.postMessage(server.address().port)
      Atomics.wait(workerData, 0, 0, 10000)
    })`, { eval: true, workerData: blocked })
  t.teardown(async () => {
    Atomics.store(blocked, 0, 1)
    Atomics.notify(blocked, 0)
    await worker.terminate()
  })
  const silentPort = await new Promise<number>((resolve) => worker.once('message', resolve))
  const fillers = [0, 1, 2].map(() => net.connect(silentPort, '127.0.0.1'))
  t.teardown(() => { for (const socket of fillers) socket.destroy() })
  await sleep(100)
  const upstream = `http://127.0.0.1:${silentPort}`
  const { port } = await gateway(t, { upstream, timeouts: { connect: 200 } })
  const { status, text, elapsed } = await timedHandshake(t, port, '/syn')
  t.equal(status, 504)
  t.match(text, /FST_WS_PROXY_CONNECT_TIMEOUT/)
  t.ok(elapsed >= 180 && elapsed < 1000, `answered after ~200 ms (${elapsed} ms)`)
})

t.test('an answer that cannot be a 101 goes to Node\'s parser from its first bytes', async (t) => {
  t.test('a refusal whose head comes in two writes: relayed', async (t) => {
    const upstream = await headUpstream(t, ({ socket }) => {
      socket.write('HTTP/1.1 403 Forbidden\r\n')
      setTimeout(() => { socket.end('Content-Length: 2\r\n\r\nno') }, 30)
    })
    const answer = await answerThrough(t, upstream, '/split-refusal')
    t.equal(parseHead(answer).status, 403)
    t.ok(answer.endsWith('\r\n\r\nno'))
  })
  t.test('garbage without a line end, the connection left open: 502 at once, not after timeouts.read', async (t) => {
    const upstream = await headUpstream(t, ({ socket }) => { socket.write('hello') })
    const { port } = await gateway(t, { upstream: origin(upstream), timeouts: { read: 10_000 } })
    const client = await rawClient(t, port)
    const started = Date.now()
    client.socket.write(wsHandshakeHead('/garbage'))
    await client.close()
    t.equal(parseHead(client.text).status, 502)
    t.match(client.text, /FST_WS_PROXY_BAD_RESPONSE/)
    t.ok(Date.now() - started < 2000, 'without waiting for the read timeout')
  })
})
