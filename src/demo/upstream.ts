import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { WebSocketServer } from 'ws'
import { DEMO_PAGE } from './page.js'

/** The built-in demo upstream: the demo page, a small JSON API, and a WebSocket echo on every path. */
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

export async function startDemoUpstream (): Promise<DemoUpstream> {
  const server = http.createServer(demoRequest)
  const wss = new WebSocketServer({
    server,
    perMessageDeflate: true,
    // Picks `echo.v1` when offered, else the first offered: the upstream (not the proxy) chooses the subprotocol.
    handleProtocols: (protocols) => protocols.has('echo.v1') ? 'echo.v1' : [...protocols][0]
  })
  wss.on('connection', (ws) => {
    ws.send('welcome: everything you send is echoed')
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    async close () {
      // The gateway's graceful shutdown has usually closed every WebSocket by now (Close 1001 both ways); any
      // left (the gateway was killed) are cut, which may or may not happen in a given run.
      /* c8 ignore next */
      for (const client of wss.clients) client.terminate()
      await new Promise<void>((resolve) => wss.close(() => resolve()))
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}
