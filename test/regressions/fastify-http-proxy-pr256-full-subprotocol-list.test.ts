// fastify-http-proxy PR #256: only the client's first subprotocol reached the upstream, so an upstream that
// prefers another (GraphQL: graphql-transport-ws over the legacy graphql-ws) could not choose it.
import t from 'tap'
import type { IncomingMessage } from 'node:http'
import { gateway, origin, wsUpstream } from '../helpers/servers.js'
import { openWs, wsUrl } from '../helpers/ws.js'

t.test('the upstream sees every offered subprotocol and its choice reaches the client', async (t) => {
  const offered: string[][] = []
  const { server } = await wsUpstream(t, {
    handleProtocols: (protocols: Set<string>, req: IncomingMessage) => {
      offered.push([...protocols])
      t.equal(req.headers['sec-websocket-protocol'], 'graphql-ws,graphql-transport-ws', 'the header as the client wrote it')
      return protocols.has('graphql-transport-ws') ? 'graphql-transport-ws' : false
    }
  })
  const { url } = await gateway(t, { upstream: origin(server) })
  const ws = await openWs(t, wsUrl(url, '/graphql'), ['graphql-ws', 'graphql-transport-ws'])
  t.same(offered, [['graphql-ws', 'graphql-transport-ws']])
  t.equal(ws.protocol, 'graphql-transport-ws', 'the upstream\'s pick, not the first offered')
})
