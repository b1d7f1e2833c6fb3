import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import { once } from 'node:events'
import type { AddressInfo, Socket } from 'node:net'
import { DEMO_PAGE } from './page.js'
import { websocketEcho, type EchoHandlers } from './websocket-echo.js'

/**
 * The built-in demo upstream: the demo page, a small JSON API, and a WebSocket echo on every path. The text message
 * `close CODE [REASON]` (CODE 3000-4999, REASON printable ASCII) makes the upstream close with that code and reason.
 */
export interface DemoUpstream {
  readonly url: string
  close (): Promise<void>
}

function demoRequest (req: IncomingMessage, res: ServerResponse): void {
  if (req.method === 'GET' && (req.url === '/' || req.url === '/index.html')) {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(DEMO_PAGE)
    return
  }
  let bytes = 0
  req.on('data', (chunk: Buffer) => { bytes += chunk.length })
  req.on('end', () => {
    const body = (req.url as string).startsWith('/api/hello')
      ? { hello: 'world', from: 'the demo upstream', forwardedFor: req.headers['x-forwarded-for'] }
      : { method: req.method, url: req.url, headers: req.headers, bodyBytes: bytes }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body) + '\n')
  })
}

/** The subprotocols the demo speaks, preferred first. */
const PROTOCOLS = ['echo.v1', 'chat']
// ASCII only, so 123 characters fit the 123 bytes a Close frame's reason may take (RFC 6455 §5.5).
const CLOSE_COMMAND = /^close ([34]\d{3})(?: ([ -~]{1,123}))?$/

const echo: EchoHandlers = {
  // The upstream (not the proxy) chooses the subprotocol: `echo.v1` when offered, else `chat`. A handshake offering
  // subprotocols, none of them the demo's, is refused with 400, as a strict server would.
  pickProtocol (offered) {
    if (offered.length === 0) return { protocol: null }
    const protocol = PROTOCOLS.find((p) => offered.includes(p))
    return protocol === undefined ? { refusal: `unsupported subprotocol; this upstream speaks ${PROTOCOLS.join(', ')}` } : { protocol }
  },
  open (ws) {
    ws.send('welcome: everything you send is echoed; send "close 4321 why" and the upstream closes with that code')
  },
  message (ws, data, isBinary) {
    const command = isBinary ? null : CLOSE_COMMAND.exec(data.toString())
    if (command === null) ws.send(data, isBinary)
    else ws.close(Number(command[1]), command[2])
  }
}

export async function startDemoUpstream (): Promise<DemoUpstream> {
  const server = http.createServer(demoRequest)
  const sockets = new Set<Socket>()
  server.on('upgrade', websocketEcho(echo))
  // Upgraded sockets leave the server's bookkeeping: closeAllConnections() does not see them.
  server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    async close () {
      // The gateway's graceful shutdown has usually closed every WebSocket by now (Close 1001 both ways); any
      // left (the gateway was killed) are cut.
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}
