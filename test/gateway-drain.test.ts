import t from 'tap'
import net from 'node:net'
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { checkGatewayConfig } from '../src/gateway/config.js'
import { drainGateway, startGateway } from '../src/gateway/start.js'
import { httpUpstream, origin, within, type Teardown } from './helpers/servers.js'

// The gateway's drain (a reload's old worker, SIGTERM, Ctrl-C), in this process: it stops accepting, marks
// itself draining, answers what still arrives on open connections with `Connection: close`, and after a quiet
// period closes idle keep-alive connections and connections that never sent a byte (a browser's preconnect), so it
// ends long before the tunnels' grace period when nothing is in flight. Real sockets throughout.

const GRACE = 5000

async function gatewayFor (t: Teardown, upstream: string): Promise<{ app: Awaited<ReturnType<typeof startGateway>>, port: number, drain: () => Promise<void> }> {
  const config = checkGatewayConfig({ listen: { host: '127.0.0.1', port: 0 }, logLevel: 'silent', upstream, closeGracePeriod: GRACE })
  const app = await startGateway(config)
  let drained: Promise<void> | null = null
  const drain = async (): Promise<void> => { await (drained ??= drainGateway(app, config)) }
  t.teardown(drain)
  return { app, port: (app.server.address() as AddressInfo).port, drain }
}

/** A TCP connection to the gateway and a promise of its close. */
async function connect (t: Teardown, port: number): Promise<{ socket: net.Socket, closed: Promise<unknown>, received: () => string }> {
  const socket = net.connect(port, '127.0.0.1')
  t.teardown(() => { socket.destroy() })
  await once(socket, 'connect')
  let text = ''
  socket.on('data', (chunk: Buffer) => { text += chunk.toString('latin1') })
  socket.on('error', () => {})
  return { socket, closed: once(socket, 'close'), received: () => text }
}

t.test('a connection that never sent a byte and an idle keep-alive one do not hold the drain', async (t) => {
  const upstream = await httpUpstream(t, (_req, res) => { res.end('ok') })
  const { app, port, drain } = await gatewayFor(t, origin(upstream))
  const preconnect = await connect(t, port)
  const keepAlive = await connect(t, port)
  keepAlive.socket.write('GET /a HTTP/1.1\r\nHost: x\r\n\r\n')
  await within((async () => { while (!keepAlive.received().endsWith('ok')) await new Promise((resolve) => setTimeout(resolve, 10)) })(), 3000, 'the first answer')
  t.match(keepAlive.received(), /^HTTP\/1\.1 200 OK\r\n/)
  t.match(keepAlive.received(), /\r\nconnection: keep-alive\r\n/i, 'kept alive before the drain')

  const started = Date.now()
  const draining = drain()
  t.equal(app.wsProxy.draining, true, 'marked draining at once (readiness 503)')
  await within(Promise.all([preconnect.closed, keepAlive.closed]), 3000, 'both connections to be closed')
  await within(draining, 3000, 'the drain')
  const took = Date.now() - started
  t.ok(took < GRACE / 2, `the drain ended in ${took} ms, long before the ${GRACE} ms grace period`)
  t.equal(preconnect.received(), '', 'the silent connection got no answer, only its close')
})

t.test('a request already on its way is served, with Connection: close, even one sent after the drain began', async (t) => {
  const upstream = await httpUpstream(t, (req, res) => { res.end(`served ${req.url as string}`) })
  const { port, drain } = await gatewayFor(t, origin(upstream))
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const get = async (path: string): Promise<{ status: number, body: string, connection: string | undefined, reused: boolean }> => {
    const req = http.get({ host: '127.0.0.1', port, path, agent })
    const [res] = await within(once(req, 'response'), 3000, `GET ${path}`) as [http.IncomingMessage]
    let body = ''
    for await (const chunk of res) body += (chunk as Buffer).toString()
    return { status: res.statusCode as number, body, connection: res.headers.connection, reused: req.reusedSocket }
  }
  const first = await get('/first')
  t.same(first, { status: 200, body: 'served /first', connection: 'keep-alive', reused: false })

  // A half-sent request (its head not complete) when the drain begins: it has sent bytes, so it is not "silent".
  const slow = await connect(t, port)
  slow.socket.write('GET /slow HTTP/1.1\r\nHost: x\r\n')
  await new Promise((resolve) => setTimeout(resolve, 100))
  const draining = drain()

  // The keep-alive connection opened before the drain carries one more request: answered, then closed.
  const second = await get('/second')
  t.same(second, { status: 200, body: 'served /second', connection: 'close', reused: true }, 'served on the old connection with Connection: close')

  slow.socket.write('\r\n')
  await within(slow.closed, 3000, 'the slow request\'s connection to close after its answer')
  t.match(slow.received(), /^HTTP\/1\.1 200 OK\r\n/)
  t.match(slow.received(), /\r\nconnection: close\r\n/i)
  t.match(slow.received(), /served \/slow$/)
  await within(draining, 3000, 'the drain')
})

t.test('no new connection is accepted once the drain has begun', async (t) => {
  const upstream = await httpUpstream(t, (_req, res) => { res.end('ok') })
  const { port, drain } = await gatewayFor(t, origin(upstream))
  const held = await connect(t, port)
  held.socket.write('GET / HTTP/1.1\r\nHost: x\r\n')
  const draining = drain()
  const refused = net.connect(port, '127.0.0.1')
  const [err] = await within(once(refused, 'error'), 3000, 'the new connection to be refused') as [NodeJS.ErrnoException]
  t.equal(err.code, 'ECONNREFUSED')
  held.socket.end('\r\n')
  await within(draining, 4000, 'the drain')
})
