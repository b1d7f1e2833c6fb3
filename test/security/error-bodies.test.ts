// Upstream failures answer what happened, with the request id, and never where: no address, port or system error
// in the body (they stay in the log, as the error's cause). `exposeErrors: true` restores the detailed message.
import t, { type Test } from 'tap'
import Fastify from 'fastify'
import wsProxyPlugin, { type WsProxyOptions } from '../../src/index.js'
import { closedPort, logCapture, portOf, type LogRecord } from '../helpers/servers.js'
import { fixedResponseUpstream, scriptedUpstream } from '../helpers/http-faults.js'
import { errorOf, exchange, head, upgrade, type RawAnswer } from './support.js'

interface Failure {
  name: string
  code: string
  status: number
  text: string
  /** The detailed message (exposeErrors), matched. */
  detail: RegExp
  /** What the body must never show. */
  secrets: string[]
  options: (t: Test) => Promise<WsProxyOptions>
}

const FAILURES: Failure[] = [
  {
    name: 'connect refused',
    code: 'FST_WS_PROXY_CONNECT_FAILED',
    status: 502,
    text: 'Could not connect to the upstream',
    detail: /127\.0\.0\.1:\d+.*ECONNREFUSED/,
    secrets: ['127.0.0.1', 'ECONNREFUSED'],
    options: async () => ({ routes: [{ prefix: '/api/', upstream: `http://127.0.0.1:${await closedPort()}/` }] })
  },
  {
    name: 'a bad upstream response',
    code: 'FST_WS_PROXY_BAD_RESPONSE',
    status: 502,
    text: 'The upstream sent an invalid response',
    detail: /127\.0\.0\.1:\d+ sent an invalid response/,
    secrets: ['127.0.0.1', 'HPE_'],
    options: async (t) => {
      const upstream = await fixedResponseUpstream(t, 'HTTP/1.1 2OO Okay\r\nbroken\r\n\r\n', true)
      return { routes: [{ prefix: '/api/', upstream: `http://127.0.0.1:${portOf(upstream)}/` }] }
    }
  },
  {
    name: 'a 101 without Upgrade (to a plain request, and to an upgrade)',
    code: 'FST_WS_PROXY_BAD_RESPONSE',
    status: 502,
    text: 'The upstream sent an invalid response',
    detail: /127\.0\.0\.1:\d+ sent an invalid response/,
    secrets: ['127.0.0.1'],
    options: async (t) => {
      const upstream = await fixedResponseUpstream(t, 'HTTP/1.1 101 Switching Protocols\r\n\r\n')
      return { routes: [{ prefix: '/api/', upstream: `http://127.0.0.1:${portOf(upstream)}/` }] }
    }
  },
  {
    name: 'an upstream reset before responding',
    code: 'FST_WS_PROXY_UPSTREAM_RESET',
    status: 502,
    text: 'The upstream closed the connection before responding',
    detail: /127\.0\.0\.1:\d+/,
    secrets: ['127.0.0.1', 'ECONNRESET', 'UND_ERR'],
    options: async (t) => {
      const upstream = await scriptedUpstream(t, ({ socket }) => { socket.resetAndDestroy() })
      return { routes: [{ prefix: '/api/', upstream: `http://127.0.0.1:${portOf(upstream)}/` }] }
    }
  },
  {
    name: 'a read timeout',
    code: 'FST_WS_PROXY_READ_TIMEOUT',
    status: 504,
    text: 'The upstream did not respond in time',
    detail: /127\.0\.0\.1:\d+/,
    secrets: ['127.0.0.1'],
    options: async (t) => {
      const upstream = await scriptedUpstream(t, () => {})
      return { routes: [{ prefix: '/api/', upstream: `http://127.0.0.1:${portOf(upstream)}/`, timeouts: { read: 150 } }] }
    }
  },
  {
    name: 'no live upstream',
    code: 'FST_WS_PROXY_NO_LIVE_UPSTREAM',
    status: 502,
    text: 'No live upstream server',
    detail: /No live upstream server in backend-pool-7/,
    secrets: ['backend-pool-7', '127.0.0.1'],
    options: async () => ({
      upstreams: { 'backend-pool-7': { servers: [{ url: `http://127.0.0.1:${await closedPort()}`, down: true }] } },
      routes: [{ prefix: '/api/', upstream: 'http://backend-pool-7/' }]
    })
  }
]

async function failingGateway (t: Test, options: WsProxyOptions) {
  const logs = logCapture()
  let n = 0
  const app = Fastify({ logger: { level: 'info', stream: logs.stream }, genReqId: () => `sec-${++n}` })
  t.teardown(() => app.close())
  await app.register(wsProxyPlugin, options)
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, port: portOf(app.server), logs: logs.records }
}

/** The logged error of request `id` (Fastify's error log line for a 5xx, or the plugin's own). */
function logsOf (records: LogRecord[], id: string): string {
  return records.filter((r) => r.reqId === id).map((r) => JSON.stringify(r)).join('\n')
}

for (const failure of FAILURES) {
  t.test(`${failure.name}: the body says what happened with the request id, the log says where`, async (t) => {
    const options = await failure.options(t)
    const upstreamPorts = JSON.stringify(options).match(/127\.0\.0\.1:(\d+)/g)?.map((a) => a.split(':')[1]) ?? []
    const { port, logs } = await failingGateway(t, options)
    const answers: Array<[string, RawAnswer]> = [
      ['sec-1', await exchange(t, port, head('/api/x', ['Connection: close']), { ms: 5000 })],
      ['sec-2', await exchange(t, port, upgrade('/api/x'), { ms: 5000 })]
    ]
    for (const [id, answer] of answers) {
      t.equal(answer.status, failure.status, id)
      t.same(errorOf(answer), {
        statusCode: failure.status,
        code: failure.code,
        error: failure.status === 504 ? 'Gateway Timeout' : 'Bad Gateway',
        message: `${failure.text} (request ${id})`
      }, id)
      for (const secret of [...failure.secrets, ...upstreamPorts]) t.notOk(answer.text.includes(secret), `${id}: no ${secret} anywhere in the answer`)
      t.notMatch(answer.body, /ECONN|ETIMEDOUT|UND_ERR|socket|\d+\.\d+\.\d+\.\d+/, id)
      t.match(logsOf(logs, id), failure.detail, `${id}: the log has the details`)
    }
  })

  t.test(`${failure.name}: exposeErrors restores the detailed message`, async (t) => {
    const { port } = await failingGateway(t, { ...await failure.options(t), exposeErrors: true })
    const answer = await exchange(t, port, head('/api/x', ['Connection: close']), { ms: 5000 })
    t.equal(answer.status, failure.status)
    t.equal(errorOf(answer).code, failure.code)
    t.match(errorOf(answer).message, failure.detail)
    t.notMatch(errorOf(answer).message, /\(request sec-/)
  })
}

t.test('answers that name nothing internal keep their own message: a streamed body over limits.body is a plain 413', async (t) => {
  const upstream = await scriptedUpstream(t, ({ socket }) => { socket.resume() })
  const { port } = await failingGateway(t, { routes: [{ prefix: '/api/', upstream: `http://127.0.0.1:${portOf(upstream)}/` }], limits: { body: 10 } })
  // Chunked, so the limit is met while the body streams (the dispatch is already under way).
  const answer = await exchange(t, port, head('/api/x', ['Transfer-Encoding: chunked', 'Connection: close'], { method: 'POST' }) +
    '14\r\n' + 'x'.repeat(20) + '\r\n0\r\n\r\n', { ms: 5000 })
  t.equal(answer.status, 413)
  t.same(errorOf(answer), { statusCode: 413, code: 'FST_WS_PROXY_BODY_TOO_LARGE', error: 'Payload Too Large', message: 'Request body larger than 10 bytes' })
})
