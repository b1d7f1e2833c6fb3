import t from 'tap'
import { errors as undiciErrors } from 'undici'
import { upstreamError } from '../src/http/error-map.js'
import * as errors from '../src/errors.js'

// upstreamError is a pure mapping from what undici or the OS raised to what the client gets, so each branch is
// checked here directly; test/http-upstream-errors.test.ts checks that real faults reach these branches.

const ORIGIN = 'http://127.0.0.1:8081'
const CONNECT_TIMEOUT = 1500
const READ_TIMEOUT = 2500

// undici's typings give HTTPParserError Error's constructor; the class takes llhttp's error name and the data too.
const HTTPParserError = undiciErrors.HTTPParserError as unknown as new (message: string, code?: string, data?: Buffer) => Error

interface Mapped extends Error { code?: string, statusCode?: number }

function map (err: Error): Mapped {
  return upstreamError(err, ORIGIN, CONNECT_TIMEOUT, READ_TIMEOUT) as Mapped
}

/** An error shaped as Node raises it for a failed socket call (`connect ECONNREFUSED 127.0.0.1:8081`). */
function systemError (code: string, syscall = 'connect'): Error {
  return Object.assign(new Error(`${syscall} ${code} 127.0.0.1:8081`), { code, errno: -1, syscall })
}

interface Case {
  name: string
  err: Error
  code: keyof typeof errors
  status: number
  message: string
}

const cases: Case[] = [
  {
    name: 'connect timeout',
    err: new undiciErrors.ConnectTimeoutError('Connect Timeout Error'),
    code: 'FST_WS_PROXY_CONNECT_TIMEOUT',
    status: 504,
    message: `Connecting to upstream ${ORIGIN} timed out after ${CONNECT_TIMEOUT} ms`
  },
  {
    name: 'headers timeout',
    err: new undiciErrors.HeadersTimeoutError('Headers Timeout Error'),
    code: 'FST_WS_PROXY_READ_TIMEOUT',
    status: 504,
    message: `Upstream ${ORIGIN} sent no response within ${READ_TIMEOUT} ms`
  },
  {
    name: 'body timeout',
    err: new undiciErrors.BodyTimeoutError('Body Timeout Error'),
    code: 'FST_WS_PROXY_READ_TIMEOUT',
    status: 504,
    message: `Upstream ${ORIGIN} sent no response within ${READ_TIMEOUT} ms`
  },
  ...['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ENOENT'].map((code): Case => ({
    name: `connect error ${code}`,
    err: systemError(code, code === 'ENOTFOUND' || code === 'EAI_AGAIN' ? 'getaddrinfo' : 'connect'),
    code: 'FST_WS_PROXY_CONNECT_FAILED',
    status: 502,
    message: `Could not connect to upstream ${ORIGIN}: ${code}`
  })),
  {
    name: 'an upstream certificate refused by TLS verification',
    err: Object.assign(new Error('self-signed certificate'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }),
    code: 'FST_WS_PROXY_CONNECT_FAILED',
    status: 502,
    message: `Could not connect to upstream ${ORIGIN}: DEPTH_ZERO_SELF_SIGNED_CERT (self-signed certificate)`
  },
  {
    name: 'llhttp error with its HPE_ code',
    err: new HTTPParserError('Response does not match the HTTP/1.1 protocol (Invalid status code)', 'INVALID_STATUS', Buffer.from('HTTP/1.1 888')),
    code: 'FST_WS_PROXY_BAD_RESPONSE',
    status: 502,
    message: `Upstream ${ORIGIN} sent an invalid response: Response does not match the HTTP/1.1 protocol (Invalid status code)`
  },
  {
    // undici 7 looks llhttp's error number up in the name → number table, so `code` ends up undefined.
    name: 'llhttp error without a code (as undici 7 raises it)',
    err: new HTTPParserError('Response does not match the HTTP/1.1 protocol (Invalid header value char)'),
    code: 'FST_WS_PROXY_BAD_RESPONSE',
    status: 502,
    message: `Upstream ${ORIGIN} sent an invalid response: Response does not match the HTTP/1.1 protocol (Invalid header value char)`
  },
  {
    name: 'a bare HPE_ code (Node\'s own parser)',
    err: Object.assign(new Error('Parse Error: Invalid header value char'), { code: 'HPE_INVALID_HEADER_TOKEN' }),
    code: 'FST_WS_PROXY_BAD_RESPONSE',
    status: 502,
    message: `Upstream ${ORIGIN} sent an invalid response: Parse Error: Invalid header value char`
  },
  {
    name: 'headers overflow',
    err: new undiciErrors.HeadersOverflowError('Headers Overflow Error'),
    code: 'FST_WS_PROXY_BAD_RESPONSE',
    status: 502,
    message: `Upstream ${ORIGIN} sent an invalid response: Headers Overflow Error`
  },
  {
    name: 'informational error',
    err: new undiciErrors.InformationalError('reset'),
    code: 'FST_WS_PROXY_BAD_RESPONSE',
    status: 502,
    message: `Upstream ${ORIGIN} sent an invalid response: reset`
  },
  {
    name: "socket error 'bad upgrade' (a 101 nobody asked for)",
    err: new undiciErrors.SocketError('bad upgrade'),
    code: 'FST_WS_PROXY_BAD_RESPONSE',
    status: 502,
    message: `Upstream ${ORIGIN} sent an invalid response: bad upgrade`
  },
  {
    name: "socket error 'bad response' (a bare 1xx)",
    err: new undiciErrors.SocketError('bad response'),
    code: 'FST_WS_PROXY_BAD_RESPONSE',
    status: 502,
    message: `Upstream ${ORIGIN} sent an invalid response: bad response`
  },
  {
    name: "undici parser assertion (status 099, 101 without Upgrade): undici's text is not shown",
    err: Object.assign(new Error('The expression evaluated to a falsy value:\n\n  assert(statusCode >= 100)\n'), { code: 'ERR_ASSERTION' }),
    code: 'FST_WS_PROXY_BAD_RESPONSE',
    status: 502,
    message: `Upstream ${ORIGIN} sent an invalid response: malformed response head`
  },
  {
    name: "socket error 'other side closed' (closed before the head)",
    err: new undiciErrors.SocketError('other side closed'),
    code: 'FST_WS_PROXY_UPSTREAM_RESET',
    status: 502,
    message: `Upstream ${ORIGIN} closed the connection before responding: UND_ERR_SOCKET`
  },
  {
    name: 'ECONNRESET',
    err: systemError('ECONNRESET', 'read'),
    code: 'FST_WS_PROXY_UPSTREAM_RESET',
    status: 502,
    message: `Upstream ${ORIGIN} closed the connection before responding: ECONNRESET`
  },
  {
    name: 'an invalid argument (undici refused the request the proxy built): not an upstream reset',
    err: new undiciErrors.InvalidArgumentError('invalid header key'),
    code: 'FST_WS_PROXY_REQUEST_NOT_SENT',
    status: 500,
    message: `The request for upstream ${ORIGIN} could not be sent: UND_ERR_INVALID_ARG: invalid header key`
  },
  {
    name: 'an unknown error without a code',
    err: new Error('something odd'),
    code: 'FST_WS_PROXY_UPSTREAM_RESET',
    status: 502,
    message: `Upstream ${ORIGIN} closed the connection before responding: something odd`
  }
]

for (const c of cases) {
  t.test(`maps ${c.name} to ${c.code} ${c.status}`, async (t) => {
    const mapped = map(c.err)
    t.ok(mapped instanceof errors[c.code], `an instance of ${c.code}`)
    t.equal(mapped.code, c.code)
    t.equal(mapped.statusCode, c.status)
    t.equal(mapped.message, c.message)
    t.equal(mapped.cause, c.err, 'the original error is the cause')
  })
}

t.test('socket errors raised after the connection was made are resets, not connect failures', async (t) => {
  for (const code of ['ECONNRESET', 'EPIPE']) {
    t.equal(map(systemError(code)).code, 'FST_WS_PROXY_UPSTREAM_RESET', `${code} is a reset`)
  }
})

t.test('socket errors other than bad upgrade / bad response are resets', async (t) => {
  for (const message of ['other side closed', 'closed', 'Bad Upgrade', 'bad upgrade ']) {
    t.equal(map(new undiciErrors.SocketError(message)).code, 'FST_WS_PROXY_UPSTREAM_RESET', JSON.stringify(message))
  }
})

t.test('FST_WS_PROXY_* errors pass through unchanged', async (t) => {
  const own = [
    new errors.FST_WS_PROXY_BAD_PATH(),
    new errors.FST_WS_PROXY_CONNECT_TIMEOUT('http://other:1', 10),
    new errors.FST_WS_PROXY_BAD_RESPONSE('http://other:1', 'garbage', { cause: new Error('inner') })
  ]
  for (const err of own) {
    const mapped = map(err)
    t.equal(mapped, err, `${err.code} is the same object`)
    t.equal(mapped.statusCode, err.statusCode)
    t.equal(mapped.message, err.message, 'not re-wrapped with this origin')
  }
})

t.test('a request undici refused to send is not held against the server nor tried on another', async (t) => {
  const { attemptFailure, publicError } = await import('../src/http/error-map.js')
  for (const err of [new undiciErrors.InvalidArgumentError('invalid header key'), new undiciErrors.NotSupportedError('nope')]) {
    t.same(attemptFailure(err), { kind: null, sent: false }, (err as Error & { code: string }).code)
  }
  const shown = publicError(map(new undiciErrors.InvalidArgumentError('invalid header key')), 'req-1') as Mapped
  t.equal(shown.message, 'The proxy could not send the request to the upstream (request req-1)')
  t.equal(shown.code, 'FST_WS_PROXY_REQUEST_NOT_SENT')
  t.equal(shown.statusCode, 500)
})
