// WebSocket load generator, in its own process. Usage: ws-load <url> <mode> <clients> <bytes> <seconds>
//   rtt:  each client sends one message and waits for its echo, repeatedly (round trips per second)
//   bulk: one client keeps 8 messages in flight (echo throughput, MB/s each way)
//   handshake: each client loops: connect, send one message, wait for its echo, close (handshakes per second)
// Prints one JSON line: { messages, bytes, seconds } (`messages`: handshakes in handshake mode).
import { WebSocket } from 'ws'

const [url, mode, clientsArg, bytesArg, secondsArg] = process.argv.slice(2)
const clients = Number(clientsArg)
const payload = Buffer.alloc(Number(bytesArg), 7)
const seconds = Number(secondsArg)
let messages = 0
let stopped = false

async function client (): Promise<WebSocket> {
  const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 })
  await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject) })
  return ws
}

if (mode === 'handshake') {
  const deadline = performance.now() + seconds * 1000
  const started = performance.now()
  let failed = 0
  const loop = async (): Promise<void> => {
    while (performance.now() < deadline) {
      try {
        const ws = await client()
        await new Promise<void>((resolve, reject) => {
          ws.once('message', () => { ws.close(1000); ws.once('close', () => resolve()) })
          ws.once('error', reject)
          ws.send(payload)
        })
        messages++
      } catch {
        failed++
      }
    }
  }
  await Promise.all(Array.from({ length: clients }, loop))
  const elapsed = (performance.now() - started) / 1000
  process.stdout.write(JSON.stringify({ messages, bytes: messages * payload.length, seconds: elapsed, failed }) + '\n')
  process.exit(0)
}

const sockets = await Promise.all(Array.from({ length: clients }, client))
const started = performance.now()
const inFlight = mode === 'bulk' ? 8 : 1
for (const ws of sockets) {
  ws.on('message', () => {
    messages++
    if (!stopped) ws.send(payload)
  })
  for (let i = 0; i < inFlight; i++) ws.send(payload)
}
await new Promise((resolve) => setTimeout(resolve, seconds * 1000))
stopped = true
const elapsed = (performance.now() - started) / 1000
for (const ws of sockets) ws.terminate()
process.stdout.write(JSON.stringify({ messages, bytes: messages * payload.length, seconds: elapsed }) + '\n')
process.exit(0)
