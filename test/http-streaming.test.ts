import t, { type Test } from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import type { ClientRequest, ServerResponse } from 'node:http'
import { gateway, httpUpstream, origin } from './helpers/servers.js'
import { openRequest, readBody, within } from './helpers/http-faults.js'

// Bodies stream through the gateway in both directions with backpressure: nothing is buffered whole.
// Two measures, both taken while 256 MiB cross the gateway:
// - in flight: bytes one end has handed over minus bytes the other end has received. Streaming bounds it by the
//   socket buffers of the two hops (about 6 MiB measured on Linux loopback); buffering would let it reach the payload.
// - RSS growth of this process (gateway, client and upstream all run here). Its floor is not 0: every socket read
//   allocates a fresh buffer, and V8 collects these only once ~64 MiB of external memory has piled up, so the growth
//   measured 35-57 MiB whether 64 MiB or 1 GiB went through. Buffering 256 MiB would add the payload on top.

const MiB = 1024 * 1024
const TOTAL = 256 * MiB
const CHUNK = Buffer.alloc(256 * 1024, 0x61)
const MAX_IN_FLIGHT = 32 * MiB
const MAX_RSS_GROWTH = 96 * MiB

/** Tracks the highest RSS seen, sampled every few ms and whenever the test calls `sample()`. */
function rssPeak (t: Test): { sample: () => void, stop: () => number } {
  let peak = process.memoryUsage().rss
  const sample = (): void => {
    const rss = process.memoryUsage().rss
    if (rss > peak) peak = rss
  }
  const timer = setInterval(sample, 5)
  t.teardown(() => clearInterval(timer))
  return { sample, stop: () => { clearInterval(timer); sample(); return peak } }
}

/** Writes `total` bytes of `CHUNK` to `out`, calling `onChunk(n)` before each write and waiting for 'drain' when told to. */
async function pump (out: ClientRequest | ServerResponse, total: number, onChunk: (n: number) => void): Promise<void> {
  let sent = 0
  while (sent < total) {
    const n = Math.min(CHUNK.length, total - sent)
    sent += n
    onChunk(n)
    if (!out.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
      await within(once(out, 'drain'), 5000, 'drain')
    }
  }
}

/** A promise with its resolve function, for "the other side got there" signals. */
function signal (): { promise: Promise<void>, resolve: () => void } {
  let resolve!: () => void
  const promise = new Promise<void>((_resolve) => { resolve = _resolve })
  return { promise, resolve }
}

const mib = (n: number): string => `${(n / MiB).toFixed(1)} MiB`

t.test('a 256 MiB upload streams to the upstream: it sees the first bytes before the client ends, memory stays bounded', async (t) => {
  const firstBytes = signal()
  let received = 0
  const upstream = await httpUpstream(t, (req, res) => {
    req.on('data', (chunk: Buffer) => {
      if (received === 0) firstBytes.resolve()
      received += chunk.length
    })
    req.on('end', () => res.end(String(received)))
  })
  const { url } = await gateway(t, { upstream: origin(upstream) })

  const before = process.memoryUsage().rss
  const peak = rssPeak(t)
  const { req, response } = openRequest(t, `${url}/upload`, {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(TOTAL) }
  })
  req.write(CHUNK)
  // The client has sent 256 KiB of 256 MiB and waits: the upstream must already have bytes.
  await within(firstBytes.promise, 2000, 'the upstream to see the first upload bytes')
  t.ok(received > 0 && received <= CHUNK.length, 'the upstream got bytes while the client was still sending')
  let sent = CHUNK.length
  let inFlight = 0
  await pump(req, TOTAL - CHUNK.length, (n) => {
    inFlight = Math.max(inFlight, sent - received)
    sent += n
    peak.sample()
  })
  req.end()
  const res = await within(response, 10_000, 'the response')
  const outcome = await readBody(res)
  const growth = peak.stop() - before
  t.equal(res.statusCode, 200)
  t.equal(outcome.body.toString(), String(TOTAL), 'the upstream received every byte')
  t.equal(received, TOTAL)
  t.ok(inFlight < MAX_IN_FLIGHT, `at most ${mib(inFlight)} in flight (< ${mib(MAX_IN_FLIGHT)})`)
  t.ok(growth < MAX_RSS_GROWTH, `RSS grew ${mib(growth)} (< ${mib(MAX_RSS_GROWTH)}) for ${mib(TOTAL)}`)
})

t.test('a 256 MiB download streams to the client: it gets the first bytes before the upstream ends, memory stays bounded', async (t) => {
  const clientGotBytes = signal()
  let sent = 0
  let upstreamDone = false
  const upstream = await httpUpstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(TOTAL) })
    sent = CHUNK.length
    res.write(CHUNK)
    // The rest is only sent once the client has seen the first chunk: a buffering proxy would stall here.
    within(clientGotBytes.promise, 2000, 'the client to see the first download bytes')
      .then(() => pump(res, TOTAL - CHUNK.length, (n) => { sent += n }))
      .then(() => { upstreamDone = true; res.end() }, (err: Error) => res.destroy(err))
  })
  const { url } = await gateway(t, { upstream: origin(upstream) })

  const before = process.memoryUsage().rss
  const peak = rssPeak(t)
  const { req, response } = openRequest(t, `${url}/download`)
  req.end()
  const res = await within(response, 2000, 'the response head')
  t.equal(res.headers['content-length'], String(TOTAL))
  let received = 0
  let inFlight = 0
  let doneBeforeFirstByte: boolean | null = null
  res.on('data', (chunk: Buffer) => {
    if (received === 0) {
      doneBeforeFirstByte = upstreamDone
      clientGotBytes.resolve()
    }
    received += chunk.length
    inFlight = Math.max(inFlight, sent - received)
    if ((received & (4 * MiB - 1)) < chunk.length) peak.sample()
  })
  await within(once(res, 'end'), 10_000, 'the end of the download')
  const growth = peak.stop() - before
  t.equal(doneBeforeFirstByte, false, 'the first bytes arrived while the upstream was still sending')
  t.equal(received, TOTAL, 'every byte arrived')
  t.ok(res.complete)
  t.ok(inFlight < MAX_IN_FLIGHT, `at most ${mib(inFlight)} in flight (< ${mib(MAX_IN_FLIGHT)})`)
  t.ok(growth < MAX_RSS_GROWTH, `RSS grew ${mib(growth)} (< ${mib(MAX_RSS_GROWTH)}) for ${mib(TOTAL)}`)
})

t.test('a chunked upload (no Content-Length) arrives intact and still chunked', async (t) => {
  let seen: { te: string | undefined, cl: string | undefined, length: number, sha256: string } | null = null
  const upstream = await httpUpstream(t, (req, res) => {
    const hash = createHash('sha256')
    let length = 0
    req.on('data', (chunk: Buffer) => { length += chunk.length; hash.update(chunk) })
    req.on('end', () => {
      seen = { te: req.headers['transfer-encoding'], cl: req.headers['content-length'], length, sha256: hash.digest('hex') }
      res.end('ok')
    })
  })
  const { url } = await gateway(t, { upstream: origin(upstream) })
  const { req, response } = openRequest(t, `${url}/chunked`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' } })
  const expected = createHash('sha256')
  let length = 0
  // Odd chunk sizes, one of them empty-adjacent, to catch chunk-boundary bugs.
  for (const size of [1, 7, 65_537, 3, 1_000_000, 2]) {
    const chunk = randomBytes(size)
    expected.update(chunk)
    length += size
    req.write(chunk)
  }
  req.end()
  const res = await within(response, 5000, 'the response')
  const outcome = await readBody(res)
  t.equal(res.statusCode, 200)
  t.equal(outcome.body.toString(), 'ok')
  t.same(seen, { te: 'chunked', cl: undefined, length, sha256: expected.digest('hex') })
})

t.test('a chunked download (upstream without Content-Length) reaches the client byte for byte', async (t) => {
  const parts = [randomBytes(10), randomBytes(100_000), randomBytes(1)]
  const upstream = await httpUpstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    for (const part of parts) res.write(part)
    res.end()
  })
  const { url } = await gateway(t, { upstream: origin(upstream) })
  const { req, response } = openRequest(t, `${url}/stream`)
  req.end()
  const res = await within(response, 5000, 'the response')
  const outcome = await readBody(res)
  t.equal(res.headers['transfer-encoding'], 'chunked')
  t.equal(res.headers['content-length'], undefined)
  t.ok(outcome.complete)
  t.ok(outcome.body.equals(Buffer.concat(parts)))
})

t.test('a client that stops reading a download holds the upstream back; reading again resumes it, byte for byte', async (t) => {
  const total = 64 * MiB
  let sent = 0
  const upstream = await httpUpstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) })
    pump(res, total, (n) => { sent += n }).then(() => res.end(), (err: Error) => res.destroy(err))
  })
  const { url } = await gateway(t, { upstream: origin(upstream) })
  const { req, response } = openRequest(t, `${url}/download`)
  req.end()
  const res = await within(response, 2000, 'the response head')
  res.pause()
  // The client reads nothing: once the socket buffers of both hops and the gateway's relay buffer are full, the
  // upstream's writes stop being drained. Waits (at most 5 s) until `sent` holds still for 200 ms.
  let last = -1
  for (let i = 0; i < 50 && sent !== last; i++) {
    last = sent
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  t.equal(sent, last, `the upstream stopped sending (${mib(sent)} sent)`)
  t.ok(sent < MAX_IN_FLIGHT, `at most ${mib(sent)} left the upstream while the client read nothing (< ${mib(MAX_IN_FLIGHT)})`)
  // An explicitly paused stream stays paused when a 'data' listener is added: resumed by hand.
  const body = readBody(res, 10_000)
  res.resume()
  const outcome = await body
  t.ok(outcome.complete, 'the download ended cleanly')
  t.equal(outcome.body.length, total, 'every byte arrived once the client read again')
  t.ok(outcome.body.equals(Buffer.alloc(total, 0x61)), 'byte for byte')
  t.equal(sent, total)
})
