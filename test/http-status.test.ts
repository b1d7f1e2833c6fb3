import t from 'tap'
import { gateway, httpUpstream, origin } from './helpers/servers.js'
import { request } from './helpers/clients.js'
import { fixedResponseUpstream, openRequest, readBody, within } from './helpers/http-faults.js'

// The upstream's answer is relayed as it is: status, reason phrase, headers and body. An upstream 404 or 500 is the
// upstream's answer, not a gateway error.

const relayed: Array<[number, string | null]> = [
  [200, 'ok'],
  [201, '{"id":7}'],
  [204, null],
  [299, 'unusual but valid'],
  [304, null],
  [404, 'no such thing'],
  [418, 'teapot'],
  [500, 'upstream broke'],
  [503, 'maintenance'],
  [599, 'last valid code']
]
for (const [status, body] of relayed) {
  t.test(`upstream ${status} is relayed as is${body === null ? ', without a body' : ', with its body'}`, async (t) => {
    const upstream = await httpUpstream(t, (_req, res) => {
      res.writeHead(status, { 'content-type': 'text/plain', 'x-upstream': 'yes', etag: '"e1"' })
      res.end(body ?? undefined)
    })
    const { url } = await gateway(t, { upstream: origin(upstream) })
    const res = await request(`${url}/s`)
    t.equal(res.status, status)
    t.equal(res.body.toString(), body ?? '')
    t.equal(res.headers['x-upstream'], 'yes')
    t.equal(res.headers.etag, '"e1"')
    t.equal(res.headers['content-type'], 'text/plain', 'not Fastify\'s JSON error')
  })
}

t.test('a custom reason phrase is kept; an empty one gets Node\'s standard text', async (t) => {
  const custom = await fixedResponseUpstream(t, 'HTTP/1.1 200 Totally Fine\r\nContent-Length: 2\r\n\r\nok')
  const a = await gateway(t, { upstream: origin(custom) })
  const first = openRequest(t, `${a.url}/r`)
  first.req.end()
  const res = await within(first.response, 2000, 'the response')
  t.equal(res.statusMessage, 'Totally Fine')
  t.equal((await readBody(res)).body.toString(), 'ok')

  const notFound = await fixedResponseUpstream(t, 'HTTP/1.1 404 Nope, Not Here\r\nContent-Length: 0\r\n\r\n')
  const b = await gateway(t, { upstream: origin(notFound) })
  const second = openRequest(t, `${b.url}/r`)
  second.req.end()
  const res2 = await within(second.response, 2000, 'the response')
  t.equal(res2.statusCode, 404)
  t.equal(res2.statusMessage, 'Nope, Not Here')
  res2.resume()

  const bare = await fixedResponseUpstream(t, 'HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n')
  const c = await gateway(t, { upstream: origin(bare) })
  const third = openRequest(t, `${c.url}/r`)
  third.req.end()
  const res3 = await within(third.response, 2000, 'the response')
  t.equal(res3.statusMessage, 'OK')
  res3.resume()
})

t.test('an interim 103 Early Hints is not relayed; the final answer is', async (t) => {
  const upstream = await fixedResponseUpstream(t,
    'HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n' +
    'HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 4\r\n\r\n<p>a')
  const { url } = await gateway(t, { upstream: origin(upstream) })
  const { req, response } = openRequest(t, `${url}/page`)
  let interim = 0
  req.on('information', () => { interim++ })
  req.end()
  const res = await within(response, 2000, 'the response')
  const outcome = await readBody(res)
  t.equal(res.statusCode, 200)
  t.equal(res.headers.link, undefined, 'the 103\'s fields stay with the 103')
  t.equal(outcome.body.toString(), '<p>a')
  t.equal(interim, 0)
})

t.test('response trailers are not relayed, the chunked body before them is', async (t) => {
  const upstream = await fixedResponseUpstream(t,
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Digest\r\n\r\n' +
    '3\r\nabc\r\n3\r\ndef\r\n0\r\nX-Digest: sha-256=xyz\r\n\r\n')
  const { url } = await gateway(t, { upstream: origin(upstream) })
  const { req, response } = openRequest(t, `${url}/t`)
  req.end()
  const res = await within(response, 2000, 'the response')
  const outcome = await readBody(res)
  t.equal(outcome.body.toString(), 'abcdef')
  t.ok(outcome.complete)
  t.same(res.trailers, {})
  t.equal(res.headers.trailer, undefined)
})

t.test('an HTTP/1.0 upstream answer delimited by close is relayed whole', async (t) => {
  const upstream = await fixedResponseUpstream(t, 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end', true)
  const { url } = await gateway(t, { upstream: origin(upstream) })
  const res = await request(`${url}/old`)
  t.equal(res.status, 200)
  t.equal(res.body.toString(), 'until the end')
  t.equal(res.headers['transfer-encoding'], 'chunked', 'Node frames it for the HTTP/1.1 client')
})
