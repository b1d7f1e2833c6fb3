import t from 'tap'
import { FastifyError } from '@fastify/error'
import * as errors from '../src/errors.js'

// The statuses are API (nginx's mapping): 502 when the upstream refused, reset or answered garbage, 504 when it
// did not answer in time, 400 for a request the proxy refuses. Option errors are TypeErrors thrown at `register`.
const documented: Record<keyof typeof errors, { status: number, base: ErrorConstructor }> = {
  FST_WS_PROXY_INVALID_OPTION: { status: 500, base: TypeError },
  FST_WS_PROXY_CONNECT_FAILED: { status: 502, base: Error },
  FST_WS_PROXY_UPSTREAM_RESET: { status: 502, base: Error },
  FST_WS_PROXY_REQUEST_NOT_SENT: { status: 500, base: Error },
  FST_WS_PROXY_BAD_RESPONSE: { status: 502, base: Error },
  FST_WS_PROXY_RESPONSE_ABORTED: { status: 502, base: Error },
  FST_WS_PROXY_CONNECT_TIMEOUT: { status: 504, base: Error },
  FST_WS_PROXY_READ_TIMEOUT: { status: 504, base: Error },
  FST_WS_PROXY_TUNNEL_READ_TIMEOUT: { status: 504, base: Error },
  FST_WS_PROXY_BAD_PATH: { status: 400, base: Error },
  FST_WS_PROXY_TOO_MANY_HEADERS: { status: 431, base: Error },
  FST_WS_PROXY_BAD_HOST: { status: 400, base: Error },
  FST_WS_PROXY_DUPLICATE_HEADER: { status: 400, base: Error },
  FST_WS_PROXY_METHOD_NOT_ALLOWED: { status: 405, base: Error },
  FST_WS_PROXY_EXTENDED_CONNECT_REFUSED: { status: 501, base: Error },
  FST_WS_PROXY_BAD_HEADER_VALUE: { status: 400, base: Error },
  FST_WS_PROXY_UPGRADE_WITH_BODY: { status: 501, base: Error },
  FST_WS_PROXY_TUNNEL_TIMEOUT: { status: 504, base: Error },
  FST_WS_PROXY_SEND_TIMEOUT: { status: 504, base: Error },
  FST_WS_PROXY_TOO_MANY_TUNNELS: { status: 503, base: Error },
  FST_WS_PROXY_BODY_TOO_LARGE: { status: 413, base: Error },
  FST_WS_PROXY_NO_LIVE_UPSTREAM: { status: 502, base: Error },
  FST_WS_PROXY_ORIGIN_FORBIDDEN: { status: 403, base: Error },
  FST_WS_PROXY_UNKNOWN_GROUP: { status: 500, base: TypeError }
}

t.test('every export is a documented error', async (t) => {
  // A new export without a status in the table above fails here, so its status gets decided on purpose.
  t.same(Object.keys(errors).sort(), Object.keys(documented).sort())
})

for (const [name, Ctor] of Object.entries(errors)) {
  const { status, base } = documented[name as keyof typeof errors]

  t.test(`${name} is a FastifyError constructor named after its code`, async (t) => {
    t.equal(typeof Ctor, 'function')
    const err = new Ctor('http://127.0.0.1:1', 'x')
    t.ok(err instanceof FastifyError, 'an instance of @fastify/error FastifyError')
    t.ok(err instanceof Ctor, 'an instance of its own constructor')
    t.ok(err instanceof base, `an instance of ${base.name}`)
    t.equal(err.name, 'FastifyError')
    t.equal(err.code, name)
    t.match(err.code, /^FST_WS_PROXY_[A-Z_]+$/)
    t.equal(err.statusCode, status)
    t.type(err.message, 'string')
    t.not(err.message, '', 'has a message')
    t.notOk(err.message.includes('%'), 'every placeholder is filled')
    t.equal(err.cause, undefined, 'no cause unless one is given')
  })

  t.test(`${name} keeps the cause it is given`, async (t) => {
    const cause = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' })
    const err = new Ctor('http://127.0.0.1:1', 'x', { cause })
    t.equal(err.cause, cause)
    t.equal(err.code, name, 'the cause does not replace the code')
    t.notOk(err.message.includes('[object Object]'), 'the cause is not formatted into the message')
  })
}

t.test('the messages name the upstream and the reason', async (t) => {
  t.equal(new errors.FST_WS_PROXY_INVALID_OPTION('routes/0/upstream', 'expected string').message,
    'Invalid fastify-ws-proxy option routes/0/upstream: expected string')
  t.equal(new errors.FST_WS_PROXY_CONNECT_FAILED('http://h:81', 'ECONNREFUSED').message,
    'Could not connect to upstream http://h:81: ECONNREFUSED')
  t.equal(new errors.FST_WS_PROXY_CONNECT_TIMEOUT('http://h:81', 1500).message,
    'Connecting to upstream http://h:81 timed out after 1500 ms')
  t.equal(new errors.FST_WS_PROXY_READ_TIMEOUT('http://h:81', 2000).message,
    'Upstream http://h:81 sent no response within 2000 ms')
  t.equal(new errors.FST_WS_PROXY_UPSTREAM_RESET('http://h:81', 'ECONNRESET').message,
    'Upstream http://h:81 closed the connection before responding: ECONNRESET')
  t.equal(new errors.FST_WS_PROXY_BAD_RESPONSE('http://h:81', 'bad upgrade').message,
    'Upstream http://h:81 sent an invalid response: bad upgrade')
  t.equal(new errors.FST_WS_PROXY_RESPONSE_ABORTED('http://h:81', 'other side closed').message,
    'Response from upstream http://h:81 aborted after its head was sent: other side closed')
  t.equal(new errors.FST_WS_PROXY_TUNNEL_READ_TIMEOUT('http://h:81', 30000).message,
    'Tunnel to upstream http://h:81 closed: upstream silent for 30000 ms')
  t.equal(new errors.FST_WS_PROXY_BAD_PATH('encoded dot segment').message, 'Request target refused: encoded dot segment')
  t.equal(new errors.FST_WS_PROXY_TOO_MANY_HEADERS(100).message, 'Request has more than 100 header fields')
  t.equal(new errors.FST_WS_PROXY_BAD_HOST('empty').message, 'Invalid Host header: empty')
  t.equal(new errors.FST_WS_PROXY_DUPLICATE_HEADER('authorization').message, 'Request has more than one authorization header')
  t.equal(new errors.FST_WS_PROXY_METHOD_NOT_ALLOWED('CONNECT').message, 'Method CONNECT is not allowed')
  t.equal(new errors.FST_WS_PROXY_BAD_HEADER_VALUE('X-User').message,
    'Header X-User would carry characters not allowed in an HTTP field value')
  t.equal(new errors.FST_WS_PROXY_UPGRADE_WITH_BODY().message, 'An upgrade request with a body cannot be proxied')
})
