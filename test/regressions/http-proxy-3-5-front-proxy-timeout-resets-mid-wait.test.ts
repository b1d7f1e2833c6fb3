// http-proxy-3 #5 "ECONNRESET due to upstream timeout causes crash": behind a front proxy with a timeout, a slow
// upstream made the front proxy reset its connection while http-proxy-3 was still waiting, and the ECONNRESET
// crashed the process despite `proxy.on('error')`. Here the front proxy gives up (FIN or RST) on dozens of
// requests at once, before and during the response body: the gateway releases each upstream request and lives on.
import t from 'tap'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import net from 'node:net'
import { gateway, httpUpstream, listen, origin, portOf, recordUnhandled, type Teardown, waitFor, within } from '../helpers/servers.js'
import { request } from '../helpers/clients.js'
import { parseHead, rawClient, wsHandshakeHead } from '../helpers/ws.js'

const unhandled = recordUnhandled(t)

/** An upstream that answers /fast at once, holds /slow, and sends half a body of /stall then goes quiet. */
async function slowUpstream (t: Teardown) {
  const state = { started: 0, closedUnfinished: 0, finished: 0 }
  const server = await httpUpstream(t, (req: IncomingMessage, res: ServerResponse) => {
    if (req.url === '/fast') { res.end('fast'); return }
    state.started++
    req.resume()
    res.on('finish', () => { state.finished++ })
    res.on('close', () => { if (!res.writableFinished) state.closedUnfinished++ })
    if (req.url?.startsWith('/stall') === true) {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.write('first half of the body, then nothing')
    }
    // Answers only if still asked, long after the test is over.
    const timer = setTimeout(() => res.end('late'), 30_000)
    res.on('close', () => clearTimeout(timer))
  })
  server.keepAliveTimeout = 0
  return { server, state }
}

/**
 * A front proxy (the load balancer of the issue) with keep-alive connections to the gateway and a 150 ms
 * timeout: on timeout it resets (`rst`) or closes its connection to the gateway and answers its own client 504.
 */
async function frontProxy (t: Teardown, target: number, rst: boolean) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 100 })
  t.teardown(() => agent.destroy())
  const server = http.createServer((req, res) => {
    const upstream = http.request({ host: '127.0.0.1', port: target, path: req.url, method: req.method, headers: req.headers, agent })
    upstream.on('error', () => {})
    upstream.setTimeout(150, () => {
      if (rst) upstream.socket?.resetAndDestroy()
      else upstream.destroy()
      if (!res.headersSent) res.writeHead(504).end('front proxy timed out')
      else res.destroy()
    })
    upstream.on('response', (answer) => {
      res.writeHead(answer.statusCode as number, answer.headers)
      answer.on('error', () => {})
      answer.pipe(res)
    })
    req.pipe(upstream)
  })
  return listen(t, server)
}

for (const rst of [true, false]) {
  t.test(`40 requests the front proxy ${rst ? 'resets' : 'closes'} mid-wait and mid-body: each upstream request released, the gateway serves on`, async (t) => {
    const { server: upstream, state } = await slowUpstream(t)
    const { app, port } = await gateway(t, { upstream: origin(upstream), pool: { keepAliveTimeout: 200 } })
    const front = await frontProxy(t, port, rst)
    const frontUrl = `http://127.0.0.1:${portOf(front)}`
    const outcomes = await within(Promise.all(Array.from({ length: 40 }, async (_v, i) => {
      const path = i % 4 === 0 ? `/stall/${i}` : `/slow/${i}`
      try {
        const res = await request(`${frontUrl}${path}`, i % 2 === 1 ? { method: 'POST', body: 'x'.repeat(1000) } : {})
        return { path, outcome: String(res.status) }
      } catch {
        // Mid-body the front proxy can only cut its own client off too.
        return { path, outcome: 'cut' }
      }
    })), 5000, 'every client to get its answer')
    const slow = outcomes.filter((o) => o.path.startsWith('/slow/'))
    const stalled = outcomes.filter((o) => o.path.startsWith('/stall/'))
    t.same(new Set(slow.map((o) => o.outcome)), new Set(['504']), 'the 30 still waiting for a head got the front proxy\'s 504')
    // (On a loaded machine the half body may come after the front proxy's timeout: then it is a 504 too.)
    t.ok(stalled.every((o) => o.outcome === 'cut' || o.outcome === '504'), 'the 10 mid-body ones were cut off')
    t.comment(`mid-body: ${stalled.filter((o) => o.outcome === 'cut').length} cut after the head, the rest before it`)
    await waitFor(() => app.wsProxy.upstreamConnections === 0, 3000, 'the gateway\'s upstream connections to be released')
    // (On a loaded machine the front proxy may give up before the gateway has dispatched a request; such a request
    // must then never reach the upstream. Every one that did must have been dropped.)
    await waitFor(() => state.closedUnfinished === state.started, 2000, 'the upstream to see every request it got dropped')
    t.ok(state.started >= 30, `${state.started} of 40 requests had reached the upstream, and all were dropped`)
    t.equal(state.finished, 0, 'no upstream response completed')
    t.equal((await request(`${frontUrl}/fast`)).status, 200, 'the gateway still serves, through the front proxy')
    t.equal((await request(`http://127.0.0.1:${port}/fast`)).status, 200, 'and directly')
  })
}

t.test('a front TCP proxy resetting a slow WebSocket handshake: the upstream request is released', async (t) => {
  const { server: upstream, state } = await slowUpstream(t)
  const { app, port } = await gateway(t, { upstream: origin(upstream), pool: { keepAliveTimeout: 200 } })
  // An L4 balancer: pipes bytes and resets both sides once its 150 ms idle timeout fires.
  const front = await listen(t, net.createServer((client) => {
    const toGateway = net.connect(port, '127.0.0.1')
    client.on('error', () => {})
    toGateway.on('error', () => {})
    client.pipe(toGateway).pipe(client)
    toGateway.setTimeout(150, () => { toGateway.resetAndDestroy(); client.resetAndDestroy() })
  }))
  const clients = await Promise.all(Array.from({ length: 10 }, async (_v, i) => {
    const client = await rawClient(t, portOf(front))
    client.socket.write(wsHandshakeHead(`/slow/ws${i}`))
    return client
  }))
  for (const client of clients) await client.close(3000)
  t.ok(clients.every((c) => c.text === ''), 'no answer reached the clients: the front proxy reset them')
  await waitFor(() => app.wsProxy.upstreamConnections === 0, 3000, 'the gateway\'s upstream connections to be released')
  await waitFor(() => state.closedUnfinished === state.started, 2000, 'the upstream to see every handshake it got dropped')
  t.ok(state.started >= 8, `${state.started} of 10 handshakes had reached the upstream, and all were dropped`)
  t.equal(app.wsProxy.tunnels, 0)
  const direct = await rawClient(t, port)
  direct.socket.write(wsHandshakeHead('/fast'))
  await direct.close()
  t.equal(parseHead(direct.text).status, 200, 'a later upgrade to a plain route gets the upstream\'s answer')
})

t.test('nothing above raised an unhandled error', async (t) => {
  t.same(unhandled, [])
})
