// Load for the lifecycle benchmark, in its own process; raw sockets, no WebSocket library.
//   idle <port> <count>:          opens <count> upgraded connections in batches, prints "OPEN", holds them until killed.
//   bulk <port> <protocol> <sec>: one upgraded connection writing 64 KiB masked binary frames as fast as the
//                                 echo comes back (8 in flight); prints { bytes, seconds } of echoed bytes.
// The protocol decides what the proxy does: `websocket` tunnels track frame boundaries, anything else is a blind pipe.
import net from 'node:net'

const [mode, portArg, third, fourth] = process.argv.slice(2)
const port = Number(portArg)

async function upgraded (protocol: string): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1')
  socket.setNoDelay(true)
  socket.write(`GET /bench HTTP/1.1\r\nHost: bench\r\nConnection: Upgrade\r\nUpgrade: ${protocol}\r\n` +
    'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')
  await new Promise<void>((resolve, reject) => {
    let head = ''
    const onData = (chunk: Buffer): void => {
      head += chunk.toString('latin1')
      if (!head.includes('\r\n\r\n')) return
      socket.off('data', onData)
      if (head.startsWith('HTTP/1.1 101')) resolve()
      else reject(new Error(`no 101: ${head.split('\r\n')[0]}`))
    }
    socket.on('data', onData)
    socket.once('error', reject)
  })
  return socket
}

if (mode === 'idle') {
  const count = Number(third)
  const sockets: net.Socket[] = []
  for (let i = 0; i < count; i += 200) {
    sockets.push(...await Promise.all(Array.from({ length: Math.min(200, count - i) }, async () => await upgraded('websocket'))))
  }
  process.stdout.write('OPEN\n')
  setInterval(() => {}, 60_000)
} else {
  const protocol = third
  const seconds = Number(fourth)
  const payload = Buffer.alloc(64 * 1024, 7)
  const frame = Buffer.concat([Buffer.from([0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4]), payload])
  const socket = await upgraded(protocol)
  let received = 0
  let stopped = false
  let inFlight = 0
  const send = (): void => {
    if (stopped) return
    while (inFlight < 8 * frame.length) {
      inFlight += frame.length
      if (!socket.write(frame)) break
    }
  }
  socket.on('drain', send)
  socket.on('data', (chunk: Buffer) => {
    received += chunk.length
    inFlight -= chunk.length
    send()
  })
  const started = performance.now()
  send()
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000))
  stopped = true
  const elapsed = (performance.now() - started) / 1000
  socket.destroy()
  process.stdout.write(JSON.stringify({ bytes: received, seconds: elapsed }) + '\n')
  process.exit(0)
}
