// node-http-proxy #1468 "Crash on unsuccessful websocket request": when the upstream refused an upgrade, the client
// socket had no 'error' listener while the refusal was relayed, and a client resetting (a browser tab closed, a ws
// client aborting on its unexpected-response) crashed the process with `read ECONNRESET`.
import t, { type Test } from 'tap'
import type { IncomingMessage } from 'node:http'
import { WebSocket } from 'ws'
import { gateway, httpUpstream, origin, recordUnhandled, waitFor, within } from '../helpers/servers.js'
import { parseHead, rawClient, wsHandshakeHead, wsUrl } from '../helpers/ws.js'

const unhandled = recordUnhandled(t)

/** An upstream refusing every upgrade with a 403 and a 4 MiB body, written slowly; it notes each cut response. */
async function refusingUpstream (t: Test) {
  const state = { refused: 0, cut: 0 }
  const server = await httpUpstream(t, (_req, res) => {
    state.refused++
    res.writeHead(403, { 'content-type': 'text/plain', 'content-length': 4 * 1024 * 1024 })
    const chunk = Buffer.alloc(64 * 1024, 0x78)
    let sent = 0
    const timer = setInterval(() => {
      res.write(chunk)
      sent += chunk.length
      if (sent >= 4 * 1024 * 1024) { clearInterval(timer); res.end() }
    }, 5)
    res.on('close', () => { clearInterval(timer); if (!res.writableFinished) state.cut++ })
  })
  server.keepAliveTimeout = 0
  return { server, state }
}

t.test('clients resetting mid-refusal (raw sockets and ws clients aborting): no crash, every upstream response released', async (t) => {
  const { server, state } = await refusingUpstream(t)
  const { app, port, url } = await gateway(t, { upstream: origin(server), pool: { keepAliveTimeout: 200 } })

  // Raw clients: read the refusal's head, then reset.
  await Promise.all(Array.from({ length: 20 }, async (_v, i) => {
    const client = await rawClient(t, port)
    client.socket.write(wsHandshakeHead(`/refused/${i}`))
    await client.contains('\r\n\r\n')
    t.equal(parseHead(client.text).status, 403)
    client.socket.resetAndDestroy()
  }))

  // ws clients: abort on 'unexpected-response' without reading the body, as applications do.
  const statuses = await Promise.all(Array.from({ length: 20 }, async (_v, i) => {
    const ws = new WebSocket(wsUrl(url, `/ws/${i}`))
    ws.on('error', () => {})
    t.teardown(() => ws.terminate())
    return within(new Promise<number>((resolve) => {
      ws.once('unexpected-response', (req, res: IncomingMessage) => {
        req.destroy()
        resolve(res.statusCode as number)
      })
    }), 3000, 'the refusal')
  }))
  t.same(new Set(statuses), new Set([403]), 'every ws client saw the 403')

  await waitFor(() => state.refused === 40 && state.cut === 40, 5000, 'the upstream to see all 40 refusals cut short')
  await waitFor(() => app.wsProxy.upstreamConnections === 0, 3000, 'the pool to be empty')
  t.equal(app.wsProxy.tunnels, 0)

  // Still serving: the next handshake gets its refusal too (the complete large body: see the #624 file).
  const next = await rawClient(t, port)
  next.socket.write(wsHandshakeHead('/next'))
  await next.contains('\r\n\r\n')
  t.equal(parseHead(next.text).status, 403)
  t.same(unhandled, [], 'nothing unhandled')
})
