// fastify-reply-from #374 (PR #386): an upstream answering an invalid status code (888) crashed Fastify.
// Any status outside 100-599, or a garbage status line, is a 502; the gateway keeps serving.
import t from 'tap'
import { gateway, origin } from '../helpers/servers.js'
import { request } from '../helpers/clients.js'
import { errorBody, fixedResponseUpstream } from '../helpers/http-faults.js'

for (const status of ['888', '600', '1000', '20', 'OK']) {
  t.test(`upstream status ${status}: 502 FST_WS_PROXY_BAD_RESPONSE`, async (t) => {
    const upstream = await fixedResponseUpstream(t, `HTTP/1.1 ${status} Weird\r\ncontent-length: 2\r\n\r\nhi`)
    const { url } = await gateway(t, { upstream: origin(upstream) })
    const res = await request(`${url}/`)
    t.equal(res.status, 502)
    t.equal(errorBody(res.body).code, 'FST_WS_PROXY_BAD_RESPONSE')
    t.equal((await request(`${url}/again`)).status, 502, 'the gateway still answers')
  })
}
