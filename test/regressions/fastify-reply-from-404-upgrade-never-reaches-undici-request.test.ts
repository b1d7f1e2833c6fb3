// fastify-reply-from #404: an `Upgrade` header copied into undici's request() threw (undici refuses `upgrade`,
// `keep-alive`, `transfer-encoding`, `expect` and non-close `connection` headers). Such client headers must
// never reach undici's request API nor break a request, on routes that upgrade and routes that do not.
import t from 'tap'
import { gateway, httpUpstream, origin, type Seen } from '../helpers/servers.js'
import { rawExchange } from '../helpers/clients.js'
import { parseHead } from '../helpers/ws.js'

function seenIn (answer: string): Seen {
  return JSON.parse(answer.slice(answer.lastIndexOf('\r\n\r\n') + 4)) as Seen
}

t.test('Keep-Alive, Expect, TE, chunked framing and Connection-named headers: dropped, the body proxied', async (t) => {
  const upstream = await httpUpstream(t)
  const { port } = await gateway(t, { upstream: origin(upstream) })
  const answer = await rawExchange(t, port, ['POST /x HTTP/1.1', 'Host: h', 'Keep-Alive: timeout=5', 'Expect: 100-continue',
    'Connection: keep-alive, X-Hop', 'X-Hop: 1', 'TE: gzip', 'Upgrade: websocket', 'Transfer-Encoding: chunked', 'Connection: close', '', '5', 'hello', '0', '', ''].join('\r\n'))
  t.match(answer, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK/)
  const seen = seenIn(answer)
  t.equal(seen.bodyLength, 5, 'the body arrived')
  for (const name of ['upgrade', 'keep-alive', 'expect', 'x-hop', 'te']) t.equal(seen.headers[name], undefined, `no ${name}`)
})

t.test('an Upgrade request on a route that does not upgrade is proxied plain, without its Upgrade', async (t) => {
  const upstream = await httpUpstream(t)
  const { port } = await gateway(t, { upstream: origin(upstream), upgrade: false })
  const answer = await rawExchange(t, port, ['GET /x HTTP/1.1', 'Host: h', 'Upgrade: websocket', 'Connection: keep-alive, Upgrade', 'Keep-Alive: 5', 'Connection: close', '', ''].join('\r\n'))
  t.equal(parseHead(answer).status, 200)
  t.equal(seenIn(answer).headers.upgrade, undefined)
  t.equal(seenIn(answer).headers['keep-alive'], undefined)
})

t.test('an upgrade request with a body is refused with 501, never sent upstream without it', async (t) => {
  const upstream = await httpUpstream(t)
  let requests = 0
  upstream.on('request', () => { requests++ })
  const { port } = await gateway(t, { routes: [{ prefix: '/up/', upstream: origin(upstream) }, { prefix: '/plain/', upstream: origin(upstream), upgrade: false }] })
  for (const path of ['/up/x', '/plain/x']) {
    const answer = await rawExchange(t, port, [`POST ${path} HTTP/1.1`, 'Host: h', 'Upgrade: h2c', 'Connection: Upgrade', 'Content-Length: 5', '', 'hello'].join('\r\n'))
    t.equal(parseHead(answer).status, 501, path)
    t.match(answer, /FST_WS_PROXY_UPGRADE_WITH_BODY/)
  }
  t.equal(requests, 0)
})
