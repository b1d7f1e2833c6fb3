// fastify-reply-from #449 / PR #450 (fixed 2026-01): headers named in `Connection` (RFC 9110 §7.6.1) were
// forwarded. They must be stripped in both directions.
import t from 'tap'
import { gateway, httpUpstream, origin, type Seen } from '../helpers/servers.js'
import { request } from '../helpers/clients.js'

t.test('Connection: X-Foo strips X-Foo from the request and from the response', async (t) => {
  const upstream = await httpUpstream(t, (req, res) => {
    res.writeHead(200, [['Connection', 'X-Internal-Route'], ['X-Internal-Route', 'pod-7'], ['X-Public', 'yes']])
    res.end(JSON.stringify({ headers: req.headers }))
  })
  const { url } = await gateway(t, { upstream: origin(upstream) })
  const res = await request(`${url}/`, { headers: { connection: 'X-Foo, x-bar', 'x-foo': '1', 'x-bar': '2', 'x-baz': '3' } })
  const seen = JSON.parse(res.body.toString()) as Pick<Seen, 'headers'>
  t.equal(seen.headers['x-foo'], undefined)
  t.equal(seen.headers['x-bar'], undefined)
  t.equal(seen.headers['x-baz'], '3')
  t.equal(res.headers['x-internal-route'], undefined, 'stripped from the response too')
  t.equal(res.headers['x-public'], 'yes')
})
