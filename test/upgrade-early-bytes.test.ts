// Bytes a client sends after its request head but before the 101 (a protocol that does not wait) are read by
// the gateway while the upstream decides, kept in order, and handed to the tunnel; past 64 KiB the client
// socket is paused and the rest waits in the kernel. Every byte arrives once, in order.
import t from 'tap'
import net from 'node:net'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { gateway, origin, rawUpstream, waitFor } from './helpers/servers.js'

t.test('200 KiB sent before a slow 101 reach the upstream intact after it', async (t) => {
  const early = randomBytes(200 * 1024)
  let received: Buffer = Buffer.alloc(0)
  let headSeen = false
  const upstream = await rawUpstream(t, (socket) => {
    socket.on('data', (chunk: Buffer) => {
      if (!headSeen) {
        const end = chunk.indexOf('\r\n\r\n')
        headSeen = true
        received = chunk.subarray(end + 4)
        // Decide slowly: the client's bytes pile up at the gateway meanwhile.
        setTimeout(() => socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw\r\nConnection: Upgrade\r\n\r\n'), 200)
        return
      }
      received = Buffer.concat([received, chunk])
    })
  })
  const { port } = await gateway(t, { upstream: origin(upstream) })
  const client = net.connect(port, '127.0.0.1')
  t.teardown(() => client.destroy())
  await once(client, 'connect')
  let answer = ''
  client.on('data', (chunk: Buffer) => { answer += chunk.toString('latin1') })
  client.write('GET /early HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: raw\r\n\r\n')
  client.write(early)
  await waitFor(() => answer.includes('\r\n\r\n'), 3000, 'the 101')
  t.match(answer, /^HTTP\/1\.1 101 Switching Protocols\r\n/)
  await waitFor(() => received.length >= early.length, 3000, 'every early byte upstream')
  t.equal(received.length, early.length, 'nothing lost, nothing doubled')
  t.equal(createHash('sha256').update(received).digest('hex'), createHash('sha256').update(early).digest('hex'), 'in order')
})
