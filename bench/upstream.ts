// The benchmark's upstream, in its own process: GET /small (a short body), POST /echo (body streamed back), POST /upload
// (body read whole, answered with its size),
// and a `ws` echo server on every path. Prints "READY <port>".
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { WebSocketServer } from 'ws'

const SMALL = Buffer.from('hello from the upstream\n')

const server = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/upload') {
    // An upload: the body is read whole, then answered with its size (what a file upload endpoint does).
    let size = 0
    req.on('data', (chunk: Buffer) => { size += chunk.length })
    req.on('end', () => {
      const body = Buffer.from(`${size}\n`)
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length })
      res.end(body)
    })
    return
  }
  if (req.method === 'POST') {
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    req.pipe(res)
    return
  }
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': SMALL.length })
  res.end(SMALL)
})
server.keepAliveTimeout = 60_000
const wss = new WebSocketServer({ server, perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 })
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
})
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`READY ${(server.address() as AddressInfo).port}\n`)
})
