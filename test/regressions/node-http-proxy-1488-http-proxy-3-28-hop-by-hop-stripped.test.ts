// node-http-proxy #1488 "Not HTTP/1.1 compliant" and http-proxy-3 #28: hop-by-hop headers (Keep-Alive, TE,
// Trailer, Proxy-*, Transfer-Encoding, Upgrade) passed through in both directions. RFC 9110 §7.6.1 forbids it.
import t from 'tap'
import { gateway, httpUpstream, origin, type Seen } from '../helpers/servers.js'
import { rawExchange } from '../helpers/clients.js'
import { parseHead } from '../helpers/ws.js'
import { portOf } from '../helpers/servers.js'

t.test('request and response hop-by-hop headers stop at the proxy; end-to-end ones pass', async (t) => {
  const upstream = await httpUpstream(t, (req, res) => {
    res.writeHead(200, [['Keep-Alive', 'timeout=99'], ['Proxy-Connection', 'keep-alive'], ['Trailer', 'X-Checksum'], ['Upgrade', 'h2c'], ['X-End', 'e']])
    res.end(JSON.stringify({ headers: req.headers }))
  })
  const { app } = await gateway(t, { upstream: origin(upstream) })
  const answer = await rawExchange(t, portOf(app.server), ['GET / HTTP/1.1', 'Host: h', 'Keep-Alive: 300', 'Proxy-Connection: keep-alive', 'Trailer: X-Sum',
    'TE: deflate', 'Proxy-Authorization: Basic eA==', 'X-End: e', 'Connection: close', '', ''].join('\r\n'))
  const res = { headers: parseHead(answer).headers }
  // The response is chunked (the upstream sent no length): the JSON sits between its first and last brace.
  const seen = JSON.parse(answer.slice(answer.indexOf('{'), answer.lastIndexOf('}') + 1)) as Pick<Seen, 'headers'>
  for (const name of ['keep-alive', 'proxy-connection', 'trailer', 'te', 'upgrade']) t.equal(seen.headers[name], undefined, `request ${name} dropped`)
  t.equal(seen.headers['proxy-authorization'], 'Basic eA==', 'Proxy-Authorization is end-to-end for a reverse proxy (not in RFC 9110\'s list)')
  t.equal(seen.headers['x-end'], 'e')
  for (const name of ['keep-alive', 'proxy-connection', 'trailer', 'upgrade']) t.equal(res.headers[name], undefined, `response ${name} dropped`)
  t.equal(res.headers['x-end'], 'e')
})
