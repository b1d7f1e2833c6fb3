// fastify-reply-from #441: `TE: trailers` was always deleted, which breaks gRPC-style upstreams that only send
// trailers to clients that asked for them. `TE: trailers` is kept; other TE values are hop-by-hop and dropped.
import t from 'tap'
import { gateway, httpUpstream, origin, type Seen } from '../helpers/servers.js'
import { request } from '../helpers/clients.js'

t.test('TE: trailers reaches the upstream; TE: gzip does not', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, { upstream: origin(upstream) })
  const kept = JSON.parse((await request(`${url}/grpc.Service/Call`, { method: 'POST', headers: { te: 'trailers', 'content-type': 'application/grpc' }, body: 'x' })).body.toString()) as Seen
  t.equal(kept.headers.te, 'trailers')
  const dropped = JSON.parse((await request(`${url}/`, { headers: { te: 'gzip' } })).body.toString()) as Seen
  t.equal(dropped.headers.te, undefined)
})
