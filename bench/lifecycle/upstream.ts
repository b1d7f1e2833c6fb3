// Raw upgrade upstream for the lifecycle benchmark, in its own process: answers every request with a 101
// switching to the protocol it asked for (no WebSocket library: no parsing, no masking work), then echoes every
// byte back. Prints "READY <port>".
import net from 'node:net'

const server = net.createServer((socket) => {
  let head = ''
  const onData = (chunk: Buffer): void => {
    head += chunk.toString('latin1')
    const end = head.indexOf('\r\n\r\n')
    if (end === -1) return
    socket.off('data', onData)
    const protocol = /\r\nupgrade: *([^\r]*)/i.exec(head)?.[1] ?? 'websocket'
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${protocol}\r\nConnection: Upgrade\r\n\r\n`)
    const rest = Buffer.from(head.slice(end + 4), 'latin1')
    if (rest.length > 0) socket.write(rest)
    socket.pipe(socket)
  }
  socket.on('data', onData)
  socket.on('error', () => socket.destroy())
})
server.maxConnections = 100_000
server.listen(0, '127.0.0.1', 65_535, () => {
  process.stdout.write(`READY ${(server.address() as net.AddressInfo).port}\n`)
})
