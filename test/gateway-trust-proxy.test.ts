import t from 'tap'
import type { AddressInfo } from 'node:net'
import { checkGatewayConfig } from '../src/gateway/config.js'
import { drainGateway, startGateway } from '../src/gateway/start.js'
import { request } from './helpers/clients.js'
import { httpUpstream, origin, type Seen, type Teardown } from './helpers/servers.js'

// The gateway config's `server.trustProxy` is Fastify's: behind a load balancer, `$remote_addr`, ip-hash and
// per-client limits see the client the trusted hops forwarded, not the balancer.

async function clientSeen (t: Teardown, trustProxy: boolean | string | string[] | undefined): Promise<string> {
  const upstream = await httpUpstream(t)
  const config = checkGatewayConfig({
    listen: { host: '127.0.0.1', port: 0 },
    logLevel: 'silent',
    server: trustProxy === undefined ? {} : { trustProxy },
    upstream: origin(upstream),
    requestHeaders: { set: { 'X-Client': '$remote_addr' } }
  })
  const app = await startGateway(config)
  t.teardown(() => drainGateway(app, config))
  const port = (app.server.address() as AddressInfo).port
  const answer = await request(`http://127.0.0.1:${port}/x`, { headers: { 'x-forwarded-for': '198.51.100.7, 203.0.113.9' } })
  return (JSON.parse(answer.body.toString()) as Seen).headers['x-client'] as string
}

t.test('trustProxy: an address, a list of CIDRs, true, or unset', async (t) => {
  t.equal(await clientSeen(t, '127.0.0.1'), '203.0.113.9', 'the loopback balancer is trusted: its forwarded client')
  t.equal(await clientSeen(t, ['10.0.0.0/8', '127.0.0.0/8']), '203.0.113.9', 'a list of CIDRs')
  t.equal(await clientSeen(t, true), '198.51.100.7', 'every hop trusted: the first address')
  t.equal(await clientSeen(t, undefined), '127.0.0.1', 'unset: the peer')
})

// Fastify trusts nothing for a bare hop count (it cannot check the immediate peer), so the config does not take one.
t.test('a hop count is refused by the config check, with its path', async (t) => {
  t.throws(() => checkGatewayConfig({ upstream: 'http://127.0.0.1:1', server: { trustProxy: 2 } }), { code: 'FST_WS_PROXY_INVALID_OPTION', message: /server\/trustProxy/ })
})
