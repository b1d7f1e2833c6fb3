import t from 'tap'
import { createHash } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { gateway, httpUpstream, origin } from './helpers/servers.js'
import { request } from './helpers/clients.js'

// Every method reaches the upstream as the client sent it, bodies included, and the answer comes back as is.

/** Answers with what it saw: method, URL, body length and body digest, so a test can compare exact bytes. */
function mirror (req: IncomingMessage, res: ServerResponse): void {
  const hash = createHash('sha256')
  let length = 0
  req.on('data', (chunk: Buffer) => { length += chunk.length; hash.update(chunk) })
  req.on('end', () => {
    res.setHeader('content-type', 'application/json')
    res.setHeader('x-upstream-method', req.method as string)
    res.end(JSON.stringify({
      method: req.method,
      url: req.url,
      length,
      sha256: hash.digest('hex'),
      contentLength: req.headers['content-length'] ?? null,
      transferEncoding: req.headers['transfer-encoding'] ?? null
    }))
  })
}

interface Mirrored { method: string, url: string, length: number, sha256: string, contentLength: string | null, transferEncoding: string | null }

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex')

t.test('GET is proxied with its query and the upstream body comes back', async (t) => {
  const upstream = await httpUpstream(t, mirror)
  const { url } = await gateway(t, { upstream: origin(upstream) })
  const res = await request(`${url}/things?x=1`)
  t.equal(res.status, 200)
  t.equal(res.headers['content-type'], 'application/json')
  const seen = JSON.parse(res.body.toString()) as Mirrored
  t.same(seen, { method: 'GET', url: '/things?x=1', length: 0, sha256: sha256(''), contentLength: null, transferEncoding: null })
})

t.test('HEAD reaches the upstream as HEAD; no body is relayed and Content-Length is kept', async (t) => {
  let seenMethod = ''
  const upstream = await httpUpstream(t, (req, res) => {
    seenMethod = req.method as string
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1234', etag: '"v1"' })
    res.end()
  })
  const { url } = await gateway(t, { upstream: origin(upstream) })
  const res = await request(`${url}/file.txt`, { method: 'HEAD' })
  t.equal(seenMethod, 'HEAD')
  t.equal(res.status, 200)
  t.equal(res.headers['content-length'], '1234')
  t.equal(res.headers.etag, '"v1"')
  t.equal(res.headers['transfer-encoding'], undefined)
  t.equal(res.body.length, 0)
})

t.test('a HEAD answer, which has no body, does not confuse the exchange that follows', async (t) => {
  const upstream = await httpUpstream(t, (req, res) => {
    res.writeHead(200, { 'content-length': '5' })
    res.end(req.method === 'HEAD' ? undefined : 'hello')
  })
  const { url } = await gateway(t, { upstream: origin(upstream) })
  const first = await request(`${url}/a`, { method: 'HEAD' })
  const second = await request(`${url}/a`)
  t.equal(first.body.length, 0)
  t.equal(first.headers['content-length'], '5')
  t.equal(second.body.toString(), 'hello')
  t.equal(second.headers['content-length'], '5')
})

for (const method of ['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) {
  t.test(`${method} with a body reaches the upstream with the same method and exact bytes`, async (t) => {
    const upstream = await httpUpstream(t, mirror)
    const { url } = await gateway(t, { upstream: origin(upstream) })
    // Every byte value, so a re-encoding anywhere would change the digest.
    const body = Buffer.from(Array.from({ length: 4096 }, (_v, i) => i % 256))
    const res = await request(`${url}/resource/1`, { method, headers: { 'content-type': 'application/octet-stream', 'content-length': String(body.length) }, body })
    t.equal(res.status, 200)
    t.equal(res.headers['x-upstream-method'], method)
    const seen = JSON.parse(res.body.toString()) as Mirrored
    t.same(seen, { method, url: '/resource/1', length: 4096, sha256: sha256(body), contentLength: '4096', transferEncoding: null })
  })
}

t.test('bodies are never parsed: invalid JSON and a body without Content-Type pass through as bytes', async (t) => {
  const upstream = await httpUpstream(t, mirror)
  const { url } = await gateway(t, { upstream: origin(upstream) })
  const json = '{"not": "parsed", "broken": '
  const a = await request(`${url}/j`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: json })
  t.equal(a.status, 200, 'invalid JSON is not rejected by a parser')
  t.equal((JSON.parse(a.body.toString()) as Mirrored).sha256, sha256(json))
  const b = await request(`${url}/n`, { method: 'PUT', headers: { 'content-length': '3' }, body: 'abc' })
  t.equal(b.status, 200)
  t.equal((JSON.parse(b.body.toString()) as Mirrored).sha256, sha256('abc'))
})

t.test('a body larger than Fastify\'s bodyLimit is streamed, not rejected', async (t) => {
  const upstream = await httpUpstream(t, mirror)
  const { url } = await gateway(t, { upstream: origin(upstream) }, { bodyLimit: 1024 })
  const body = Buffer.alloc(64 * 1024, 'z')
  const res = await request(`${url}/big`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
  t.equal(res.status, 200)
  t.equal((JSON.parse(res.body.toString()) as Mirrored).length, body.length)
})

for (const method of ['PROPFIND', 'MKCOL', 'M-SEARCH', 'PURGE']) {
  t.test(`${method}, a method Fastify does not know by default, reaches the upstream as ${method}`, async (t) => {
    const upstream = await httpUpstream(t, mirror)
    const { url } = await gateway(t, { upstream: origin(upstream) })
    const body = method === 'PROPFIND' ? '<?xml version="1.0"?><propfind xmlns="DAV:"><allprop/></propfind>' : undefined
    const headers = body === undefined ? {} : { 'content-type': 'application/xml', depth: '1' }
    const res = await request(`${url}/dav/folder/`, { method, headers, body })
    t.equal(res.status, 200)
    const seen = JSON.parse(res.body.toString()) as Mirrored
    t.equal(seen.method, method)
    t.equal(seen.url, '/dav/folder/')
    t.equal(seen.sha256, sha256(body ?? ''))
  })
}

t.test('`methods` limits what is proxied; other methods get Fastify\'s 404 and never reach the upstream', async (t) => {
  let hits = 0
  const upstream = await httpUpstream(t, (req, res) => { hits++; mirror(req, res) })
  const { url } = await gateway(t, { upstream: origin(upstream), methods: ['GET', 'PROPFIND'] })
  const ok = await request(`${url}/x`, { method: 'PROPFIND' })
  t.equal(ok.status, 200)
  const refused = await request(`${url}/x`, { method: 'POST', body: 'nope' })
  t.equal(refused.status, 404)
  t.equal(JSON.parse(refused.body.toString()).message, 'Route POST:/x not found')
  t.equal(hits, 1)
})
