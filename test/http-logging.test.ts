import t from 'tap'
import { gateway, httpUpstream, origin, waitFor } from './helpers/servers.js'
import { request } from './helpers/clients.js'
import { closedPort, errorBody, logCapture, requestPath, scriptedUpstream, type LogRecord } from './helpers/http-faults.js'

// Proxy errors go through Fastify's error handler, so they reach Fastify's logger like any route error:
// 5xx at level error with the coded error, 4xx at level info.

const withCode = (records: LogRecord[], code: string): LogRecord[] => records.filter((r) => r.err?.code === code)

t.test('a 502 is logged at level error with its code, status and request', async (t) => {
  const port = await closedPort()
  const logs = logCapture()
  const { url } = await gateway(t, { upstream: `http://127.0.0.1:${port}` }, { logger: { level: 'info', stream: logs.stream } })
  const res = await request(`${url}/logged?q=1`)
  t.equal(res.status, 502)
  await waitFor(() => withCode(logs.records, 'FST_WS_PROXY_CONNECT_FAILED').length === 1, 2000, 'the error log line')
  const [line] = withCode(logs.records, 'FST_WS_PROXY_CONNECT_FAILED')
  t.equal(line.level, 50)
  t.equal(line.err?.statusCode, 502)
  t.match(line.err?.message, `Could not connect to upstream http://127.0.0.1:${port}: ECONNREFUSED`)
  t.match(line, { req: { method: 'GET', url: '/logged?q=1' }, res: { statusCode: 502 } })
  // The request's completion line carries the same status.
  await waitFor(() => logs.records.some((r) => r.msg === 'request completed'), 2000, 'the completion line')
  t.match(logs.records.find((r) => r.msg === 'request completed'), { res: { statusCode: 502 } })
})

t.test('a 504 read timeout is logged at level error with its code', async (t) => {
  const upstream = await scriptedUpstream(t, () => {})
  const logs = logCapture()
  const { url } = await gateway(t, { upstream: origin(upstream), timeouts: { read: 100 } }, { logger: { level: 'info', stream: logs.stream } })
  const res = await request(`${url}/slow`)
  t.equal(res.status, 504)
  await waitFor(() => withCode(logs.records, 'FST_WS_PROXY_READ_TIMEOUT').length === 1, 2000, 'the error log line')
  const [line] = withCode(logs.records, 'FST_WS_PROXY_READ_TIMEOUT')
  t.equal(line.level, 50)
  t.equal(line.err?.statusCode, 504)
  t.equal(errorBody(res.body).code, 'FST_WS_PROXY_READ_TIMEOUT')
})

t.test('a 400 for a dot-segment path is logged at level info, not as an error', async (t) => {
  const upstream = await httpUpstream(t)
  const logs = logCapture()
  const { port } = await gateway(t, { upstream: origin(upstream) }, { logger: { level: 'info', stream: logs.stream } })
  const res = await requestPath(`http://127.0.0.1:${port}`, '/a/../b')
  t.equal(res.status, 400)
  await waitFor(() => withCode(logs.records, 'FST_WS_PROXY_BAD_PATH').length === 1, 2000, 'the log line')
  t.equal(withCode(logs.records, 'FST_WS_PROXY_BAD_PATH')[0].level, 30)
  t.notOk(logs.records.some((r) => r.level >= 50), 'no error-level line')
})

t.test('a relayed upstream 500 is the upstream\'s answer: no error is logged', async (t) => {
  const upstream = await httpUpstream(t, (_req, res) => { res.statusCode = 500; res.end('boom') })
  const logs = logCapture()
  const { url } = await gateway(t, { upstream: origin(upstream) }, { logger: { level: 'info', stream: logs.stream } })
  const res = await request(`${url}/x`)
  t.equal(res.status, 500)
  t.equal(res.body.toString(), 'boom')
  await waitFor(() => logs.records.some((r) => r.msg === 'request completed'), 2000, 'the completion line')
  t.notOk(logs.records.some((r) => r.level >= 50), 'no error-level line')
  t.match(logs.records.find((r) => r.msg === 'request completed'), { res: { statusCode: 500 } })
})
