// Opens <count> WebSocket connections to <url>, prints "OPEN" once all are open, then holds them silently
// until killed. Used to measure a proxy's memory per idle tunnel.
import { WebSocket } from 'ws'

const [url, countArg] = process.argv.slice(2)
const count = Number(countArg)
const sockets: WebSocket[] = []
for (let i = 0; i < count; i += 100) {
  // In batches of 100, so the accept queues of the proxy and the upstream never overflow.
  const batch = Array.from({ length: Math.min(100, count - i) }, () => new Promise<void>((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false })
    sockets.push(ws)
    ws.once('open', () => resolve())
    ws.once('error', reject)
  }))
  await Promise.all(batch)
}
process.stdout.write('OPEN\n')
setInterval(() => {}, 60_000)
