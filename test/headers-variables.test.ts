import t from 'tap'
import { hostname } from 'node:os'
import { gateway, httpUpstream, origin, portOf, type Seen } from './helpers/servers.js'
import { request, seenOf } from './helpers/clients.js'
import { VARIABLE_DOCS, percentDecode } from '../src/vars/builtins.js'

// Every built-in variable, evaluated through a real gateway and read back from what an echo upstream received.

const VARIABLES = ['host', 'hostname', 'remote_addr', 'realip_remote_addr', 'remote_port', 'server_addr', 'server_port', 'scheme', 'request_method',
  'request_uri', 'uri', 'args', 'query_string', 'is_args', 'request_id', 'content_length', 'content_type', 'proxy_host',
  'proxy_add_x_forwarded_for', 'connection_upgrade', 'http_x_custom_thing', 'http_user_agent', 'arg_token', 'arg_missing',
  'cookie_session', 'cookie_other']

const set = Object.fromEntries(VARIABLES.map((name) => [`x-v-${name.replaceAll('_', '-')}`, `$${name}`]))

t.test('each variable reaches the upstream with nginx\'s meaning', async (t) => {
  const upstream = await httpUpstream(t)
  let requestId = ''
  const { url, port } = await gateway(t, { routes: [{ prefix: '/api/', upstream: `${origin(upstream)}/v1/`, requestHeaders: { set } }] },
    { genReqId: () => 'req-42' }, (app) => { app.addHook('onRequest', async (request) => { requestId = request.id }) })
  const answer = await request(`${url}/api/caf%C3%A9/a%20b?token=s3cret&Token=second&empty=`, {
    method: 'POST',
    headers: {
      host: 'App.Example:8443',
      'x-custom-thing': 'yes',
      'user-agent': 'tester/1',
      cookie: 'a=1; session=abc123; z=9',
      'content-type': 'text/plain',
      'x-forwarded-for': '203.0.113.9'
    },
    body: 'hello'
  })
  t.equal(answer.status, 200)
  const h = seenOf(answer.body).headers
  const v = (name: string): string | string[] | undefined => h[`x-v-${name.replaceAll('_', '-')}`]
  t.equal(v('host'), 'app.example', '$host: lowercase, no port')
  t.equal(v('hostname'), hostname())
  t.equal(v('remote_addr'), '127.0.0.1', 'no trustProxy: the peer, whatever X-Forwarded-For says')
  t.equal(v('realip_remote_addr'), '127.0.0.1')
  t.match(v('remote_port'), /^\d+$/)
  t.equal(v('server_addr'), '127.0.0.1')
  t.equal(v('server_port'), String(port))
  t.equal(v('scheme'), 'http')
  t.equal(v('request_method'), 'POST')
  t.equal(v('request_uri'), '/api/caf%C3%A9/a%20b?token=s3cret&Token=second&empty=', 'as received')
  t.equal(Buffer.from(v('uri') as string, 'latin1').toString('utf8'), '/api/café/a b', '$uri is decoded: its bytes are the UTF-8 of é')
  t.equal(v('args'), 'token=s3cret&Token=second&empty=')
  t.equal(v('query_string'), 'token=s3cret&Token=second&empty=')
  t.equal(v('is_args'), '?')
  t.equal(requestId, 'req-42')
  t.equal(v('request_id'), 'req-42', 'Fastify\'s request id')
  t.equal(v('content_length'), '5')
  t.equal(v('content_type'), 'text/plain')
  t.equal(v('proxy_host'), `127.0.0.1:${portOf(upstream)}`)
  t.equal(v('proxy_add_x_forwarded_for'), '203.0.113.9, 127.0.0.1')
  t.equal(v('connection_upgrade'), 'close', 'no Upgrade from the client')
  t.equal(v('http_x_custom_thing'), 'yes', '`_` stands for `-`')
  t.equal(v('http_user_agent'), 'tester/1')
  t.equal(v('arg_token'), 's3cret', 'the first occurrence, name ignoring case')
  t.equal(v('arg_missing'), undefined, 'an empty value is not sent')
  t.equal(v('cookie_session'), 'abc123')
  t.equal(v('cookie_other'), undefined)
})

t.test('without a query, a Host or a body the variables are empty or fall back as nginx\'s do', async (t) => {
  const upstream = await httpUpstream(t)
  const { port } = await gateway(t, { upstream: origin(upstream), requestHeaders: { set } })
  // http.request always sends Host; a raw HTTP/1.0 request can leave it out.
  const net = await import('node:net')
  const socket = net.connect(port, '127.0.0.1')
  t.teardown(() => { socket.destroy() })
  socket.write('GET /plain HTTP/1.0\r\n\r\n')
  const chunks: Buffer[] = []
  for await (const chunk of socket) chunks.push(chunk as Buffer)
  const text = Buffer.concat(chunks).toString()
  const h = (JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as Seen).headers
  t.equal(h['x-v-host'], hostname(), '$host falls back to the machine\'s hostname')
  t.equal(h['x-v-is-args'], undefined)
  t.equal(h['x-v-args'], undefined)
  t.equal(h['x-v-uri'], '/plain')
  t.equal(h['x-v-content-length'], undefined)
  t.equal(h['x-v-proxy-add-x-forwarded-for'], '127.0.0.1')
})

t.test('${name} joins a variable to following name characters; $$ is a literal dollar', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, {
    upstream: origin(upstream),
    requestHeaders: { set: { 'x-joined': '${request_method}_suffix-$arg_a', 'x-dollar': 'costs $$5', 'x-ipv6-host': '$host' } }
  })
  const h = seenOf((await request(`${url}/?a=1`, { headers: { host: '[::1]:8080' } })).body).headers
  t.equal(h['x-joined'], 'GET_suffix-1')
  t.equal(h['x-dollar'], 'costs $5')
  t.equal(h['x-ipv6-host'], '[::1]', 'an IPv6 literal keeps its brackets')
})

t.test('every variable family is documented for the README', async (t) => {
  const documented = VARIABLE_DOCS.map(([name]) => name).join(' ')
  for (const name of VARIABLES) {
    const family = name.replace(/^(http|arg|cookie)_.*/, '$1_<name>')
    t.ok(documented.includes(`$${family}`), `$${family} is documented`)
  }
})

t.test('edge values: hosts without a port, empty and repeated headers, percent escapes in $uri', async (t) => {
  const upstream = await httpUpstream(t)
  const { port } = await gateway(t, {
    upstream: origin(upstream),
    requestHeaders: { set: { 'X-Host': '$host', 'X-Conn': '$connection_upgrade', 'X-Xff': '$proxy_add_x_forwarded_for', 'X-Cookies': '$http_set_cookie', 'X-Uri': '$uri' } }
  })
  const net = await import('node:net')
  const exchange = async (head: string): Promise<Seen['headers']> => {
    const socket = net.connect(port, '127.0.0.1')
    t.teardown(() => { socket.destroy() })
    socket.write(head)
    const chunks: Buffer[] = []
    for await (const chunk of socket) chunks.push(chunk as Buffer)
    const text = Buffer.concat(chunks).toString()
    return (JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as Seen).headers
  }
  const h = await exchange('GET /%C3%A9%25 HTTP/1.1\r\nHost: Plain.Example\r\nUpgrade:\r\nX-Forwarded-For:\r\n' +
    'Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nConnection: close\r\n\r\n')
  t.equal(h['x-host'], 'plain.example', 'no port to strip')
  t.equal(h['x-conn'], 'close', 'an empty Upgrade is no upgrade')
  t.equal(h['x-xff'], '127.0.0.1', 'an empty chain is not kept')
  t.equal(h['x-cookies'], 'a=1, b=2', 'repeated headers joined')
  t.equal(h['x-uri'], '/\xc3\xa9%', 'escapes decoded, to bytes')
  const bracket = await exchange('GET / HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\n\r\n')
  t.equal(bracket['x-host'], '[::1]', 'an IPv6 literal keeps its brackets, without the port')
})

t.test('captures that took no part in the match are empty', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, {
    upstream: origin(upstream),
    maps: { parts: { source: '$uri', cases: { '~^/(?<first>a)?(b)?(?<rest>.*)$': '[$1|$2|$first|$rest]' } } },
    requestHeaders: { set: { 'X-Parts': '$parts' } }
  })
  t.equal(seenOf((await request(`${url}/bxyz`)).body).headers['x-parts'], '[|b||xyz]')
  t.equal(seenOf((await request(`${url}/ab`)).body).headers['x-parts'], '[a|b|a|]')
})

t.test('with Fastify\'s trustProxy, $remote_addr is the forwarded client (nginx realip) and $realip_remote_addr the peer', async (t) => {
  const upstream = await httpUpstream(t)
  const { url } = await gateway(t, {
    upstream: origin(upstream),
    requestHeaders: { set: { 'X-Client': '$remote_addr', 'X-Peer': '$realip_remote_addr' } }
  }, { trustProxy: '127.0.0.1' })
  const answer = await request(`${url}/x`, { headers: { 'x-forwarded-for': '198.51.100.7, 203.0.113.9' } })
  const h = seenOf(answer.body).headers
  t.equal(h['x-client'], '203.0.113.9', 'the address the trusted hop forwarded')
  t.equal(h['x-peer'], '127.0.0.1')
  t.equal(h['x-forwarded-for'], '198.51.100.7, 203.0.113.9, 127.0.0.1', 'X-Forwarded-For still appends the peer that connected')
})

t.test('percentDecode: escapes of either case to bytes, a malformed escape kept as it is', async (t) => {
  // $uri only ever sees canonical paths (upper-case escapes); the function stays exact for any input.
  t.equal(percentDecode('/caf%c3%A9'), '/caf\xc3\xa9')
  t.equal(percentDecode('/a%zz%2'), '/a%zz%2')
  t.equal(percentDecode('/plain'), '/plain')
})
