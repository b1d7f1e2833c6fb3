import http from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { isHopByHop } from '../src/headers/hop-by-hop.js'
import { fieldSlot, fieldText, lowerOf, textOf } from '../src/headers/raw-fields.js'
import { request } from './helpers/clients.js'
import { gateway } from './helpers/servers.js'

// The upstream's header fields are decoded through a table keyed by their bytes (src/headers/raw-fields.ts): what
// it hands back must always be exactly the bytes' latin1 text, whether decoded now, found in the table, or in a
// slot another field took meanwhile. And the hop-by-hop test every field passes (src/headers/hop-by-hop.ts).

const latin1 = (text: string): Buffer => Buffer.from(text, 'latin1')

t.test('a field decodes to its latin1 text, the same string again from the table', async (t) => {
  const first = fieldText(latin1('Content-Type'))
  t.equal(first, 'Content-Type')
  t.equal(fieldText(latin1('Content-Type')), first)
  const slot = fieldSlot(latin1('X-Caf\xe9'))
  t.not(slot, -1)
  t.equal(textOf(slot, latin1('X-Caf\xe9')), 'X-Caf\xe9', 'bytes over 0x7f are kept as latin1')
  t.equal(lowerOf(slot, latin1('X-Caf\xe9')), 'x-caf\xe9')
})

t.test('fields that share a slot take turns in it and still decode to their own bytes', async (t) => {
  // Same length and same first, middle and last bytes: the same slot.
  const a = latin1('XaaaaaZ')
  const b = latin1('XbaaabZ')
  t.equal(fieldSlot(a), fieldSlot(b))
  for (let round = 0; round < 3; round++) {
    t.equal(fieldText(a), 'XaaaaaZ')
    t.equal(fieldText(b), 'XbaaabZ')
  }
})

t.test('an empty field and one over 64 bytes are decoded every time', async (t) => {
  t.equal(fieldSlot(Buffer.alloc(0)), -1)
  t.equal(fieldText(Buffer.alloc(0)), '')
  const long = latin1(`X-${'Long'.repeat(16)}`)
  t.equal(fieldSlot(long), -1)
  t.equal(textOf(-1, long), `X-${'Long'.repeat(16)}`)
  t.equal(lowerOf(-1, long), `x-${'long'.repeat(16)}`)
})

t.test('relayed responses keep every name and value byte for byte, the first time and from the table', async (t) => {
  const longName = `X-${'Long'.repeat(17)}`
  const longValue = 'v'.repeat(100)
  const upstream = http.createServer((_req, res) => {
    res.writeHead(200, ['Content-Type', 'text/plain', longName, longValue, 'X-Latin', 'Caf\xe9 cr\xe8me', 'X-Empty', '', 'Content-Length', '2',
      'Set-Cookie', 'sid=1', 'X-Custom-1', 'ten'])
    // A Buffer body: with a string one Node would write the head in that string's encoding (UTF-8), not latin1.
    res.end(Buffer.from('ok'))
  })
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => upstream.close(() => resolve())))
  const { url } = await gateway(t, { upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}` })
  for (let round = 0; round < 3; round++) {
    const res = await request(`${url}/r`)
    t.equal(res.status, 200)
    t.equal(res.body.toString(), 'ok')
    const raw = res.rawHeaders
    t.same(raw.slice(0, 14), ['Content-Type', 'text/plain', longName, longValue, 'X-Latin', 'Caf\xe9 cr\xe8me', 'X-Empty', '', 'Content-Length', '2',
      'Set-Cookie', 'sid=1', 'X-Custom-1', 'ten'],
      `round ${round}: the upstream's names, case and values`)
  }
})

t.test('hop-by-hop names are told by length, then by name', async (t) => {
  for (const name of ['te', 'trailer', 'upgrade', 'connection', 'keep-alive', 'http2-settings', 'proxy-connection', 'transfer-encoding']) {
    t.ok(isHopByHop(name), name)
  }
  // Same lengths, end to end.
  for (const name of ['ab', 'referer', 'user-agent', 'content-length', 'content-encoding', 'if-modified-since', 'date', 'content-type']) {
    t.notOk(isHopByHop(name), name)
  }
})
