import t from 'tap'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { checkGatewayConfig } from '../../src/gateway/config.js'
import { drainGateway, startGateway } from '../../src/gateway/start.js'
import { httpUpstream, origin, within, type Seen } from '../helpers/servers.js'

// The gateway CLI installs wsProxyRewriteUrl: what a client spells differently reaches the upstream in the one
// canonical form, mapped by the route, and an absolute-form target's authority becomes the Host (RFC 9112 §3.2.2).

async function raw (port: number, head: string): Promise<string> {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  // Written, not ended: the answer comes back before the client's FIN (`Connection: close` ends the exchange).
  socket.write(head)
  let text = ''
  for await (const chunk of socket) text += (chunk as Buffer).toString('latin1')
  return text
}

t.test('the gateway serves the canonical target of every spelling, and refuses what cannot be canonical', async (t) => {
  const upstream = await httpUpstream(t)
  const config = checkGatewayConfig({
    listen: { host: '127.0.0.1', port: 0 },
    logLevel: 'silent',
    routes: [{ prefix: '/api/', upstream: origin(upstream) + '/', preserveHost: true }]
  })
  const app = await startGateway(config)
  t.teardown(() => drainGateway(app, config))
  const port = (app.server.address() as AddressInfo).port
  const seen = async (target: string, host = 'gw.example'): Promise<Seen> => {
    const text = await within(raw(port, `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`), 5000, target)
    t.match(text, /^HTTP\/1\.1 200 /, target)
    return JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as Seen
  }
  t.equal((await seen('/api//items/./a/../b')).url, '/items/b', 'slashes merged, dot segments resolved')
  t.equal((await seen('/api/%69tems?q=%2f#frag')).url, '/items?q=%2f', 'unreserved escapes decoded, query kept, fragment dropped')
  const absolute = await seen('HTTP://Other.Example:8080/api/x', 'ignored.example')
  t.equal(absolute.url, '/x', 'absolute form mapped like origin form')
  t.equal(absolute.headers.host, 'Other.Example:8080', 'its authority is the Host')
  t.equal(absolute.headers['x-forwarded-host'], 'Other.Example:8080')
  const refused = await within(raw(port, 'GET /api/..%2fadmin HTTP/1.1\r\nHost: gw.example\r\nConnection: close\r\n\r\n'), 5000, 'refusal')
  t.match(refused, /^HTTP\/1\.1 400 /)
  t.match(refused, /"code":"FST_WS_PROXY_BAD_PATH"/)
})
