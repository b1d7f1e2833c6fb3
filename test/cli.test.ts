import t from 'tap'
import { once } from 'node:events'
import { join } from 'node:path'
import { WebSocket } from 'ws'
import { httpUpstream, listen, origin, portOf, type Seen } from './helpers/servers.js'
import { request } from './helpers/clients.js'
import http from 'node:http'
import { cli, configDir, exitCode, inProcess, waitForOutput } from './helpers/cli.js'

const { dir, write: writeConfig } = configDir('cli')
// Three cases start the CLI in a child process: 33 s for the file in a CI run beside other files when the CLI ran
// under the TypeScript loader (19 s compiled), too close to tap's 60 s default.
t.setTimeout(180_000)

t.test('--help prints the usage and exits 0', async (t) => {
  const run = cli(t, ['--help'])
  t.equal(await exitCode(run), 0)
  t.match(run.output(), /Usage:\n\s+fastify-ws-proxy --config gateway\.json/)
  t.match(run.output(), /--check/)
})

t.test('--help in process prints the same usage', async (t) => {
  const { code, out } = await inProcess(t, ['-h'])
  t.equal(code, 0)
  t.match(out, /fastify-ws-proxy --demo/)
})

t.test('no config and no --demo is a usage error (exit 2)', async (t) => {
  const { code, err } = await inProcess(t, [])
  t.equal(code, 2)
  t.match(err, /--config FILE or --demo is required/)
})

t.test('an unknown flag is a usage error (exit 2)', async (t) => {
  const { code, err } = await inProcess(t, ['--nope'])
  t.equal(code, 2)
  t.match(err, /error: .*nope/)
})

t.test('--check accepts a valid config', async (t) => {
  const file = writeConfig('ok.json', { routes: [{ prefix: '/api/', upstream: 'http://127.0.0.1:1' }], listen: { port: 0 } })
  const { code, out } = await inProcess(t, ['--check', '--config', file])
  t.equal(code, 0)
  t.match(out, `config ok: ${file}`)
})

t.test('--check names the option path of an invalid config (exit 1)', async (t) => {
  const file = writeConfig('bad.json', { routes: [{ prefix: '/api/', upstream: 'ftp://127.0.0.1:1' }] })
  const { code, err } = await inProcess(t, ['--check', '--config', file])
  t.equal(code, 1)
  t.match(err, /Invalid fastify-ws-proxy option routes\/0\/upstream: expected string to match/)
})

t.test('--check runs the cross-field rules too', async (t) => {
  const file = writeConfig('dup.json', { routes: [{ prefix: '/a/', upstream: 'http://x' }, { prefix: '/a/', upstream: 'http://y' }] })
  const { code, err } = await inProcess(t, ['--check', '-c', file])
  t.equal(code, 1)
  t.match(err, /routes\/1\/prefix: duplicate prefix/)
})

t.test('gateway-only keys are validated: listen.port out of range, unknown key', async (t) => {
  const bad = await inProcess(t, ['--check', '-c', writeConfig('port.json', { upstream: 'http://x', listen: { port: 70000 } })])
  t.equal(bad.code, 1)
  t.match(bad.err, /listen\/port/)
  const unknown = await inProcess(t, ['--check', '-c', writeConfig('unknown.json', { upstream: 'http://x', lisen: {} })])
  t.equal(unknown.code, 1)
  t.match(unknown.err, /lisen: unexpected property/)
  const notObject = await inProcess(t, ['--check', '-c', writeConfig('array.json', '[]')])
  t.equal(notObject.code, 1)
  t.match(notObject.err, /\(root\): expected a JSON object/)
  const overridden = await inProcess(t, ['--check', '-c', writeConfig('override.json', { upstream: 'http://x' }), '--port', 'abc'])
  t.equal(overridden.code, 1, '--port must be a number')
  t.match(overridden.err, /listen\/port/)
})

t.test('a config that is not JSON, or missing, fails with exit 1', async (t) => {
  const broken = await inProcess(t, ['-c', writeConfig('broken.json', '{ "routes": ')])
  t.equal(broken.code, 1)
  t.match(broken.err, /broken\.json: .*JSON/)
  const missing = await inProcess(t, ['-c', join(dir, 'missing.json')])
  t.equal(missing.code, 1)
  t.match(missing.err, /ENOENT/)
})

t.test('runs a gateway from a config, proxies, and exits 0 on SIGTERM', async (t) => {
  const upstream = await httpUpstream(t)
  const file = writeConfig('run.json', { listen: { port: 0 }, logLevel: 'info', routes: [{ prefix: '/api/', upstream: origin(upstream) + '/' }] })
  const run = cli(t, ['-c', file, '--host', '127.0.0.1'])
  const [, port] = await waitForOutput(run, /Server listening at http:\/\/127\.0\.0\.1:(\d+)/)
  const res = await request(`http://127.0.0.1:${port}/api/x?y=1`)
  t.equal(res.status, 200)
  t.equal((JSON.parse(res.body.toString()) as Seen).url, '/x?y=1')
  run.child.kill('SIGTERM')
  t.equal(await exitCode(run), 0)
  t.match(run.output(), /"signal":"SIGTERM".*closing the gateway/)
})

t.test('a port already in use fails with exit 1', async (t) => {
  const busy = await listen(t, http.createServer())
  const file = writeConfig('busy.json', { upstream: 'http://127.0.0.1:1' })
  const run = cli(t, ['-c', file, '-p', String(portOf(busy))])
  t.equal(await exitCode(run), 1)
  t.match(run.errors(), /EADDRINUSE/)
})

t.test('--demo runs a gateway in front of the demo upstream: page, API, WebSocket', async (t) => {
  const run = cli(t, ['--demo'], { PORT: '0' })
  const [, base] = await waitForOutput(run, /gateway (http:\/\/127\.0\.0\.1:\d+)/)
  const page = await request(`${base}/`)
  t.equal(page.status, 200)
  t.match(page.body.toString(), /<title>fastify-ws-proxy demo<\/title>/)
  const api = await request(`${base}/api/hello`)
  t.same(JSON.parse(api.body.toString()), { hello: 'world', from: 'the demo upstream', forwardedFor: '127.0.0.1' })
  const echo = await request(`${base}/anything?q=1`, { method: 'POST', body: 'abc' })
  t.match(JSON.parse(echo.body.toString()), { method: 'POST', url: '/anything?q=1', bodyBytes: 3 })

  const ws = new WebSocket(base.replace('http', 'ws') + '/echo', ['chat', 'echo.v1'])
  t.teardown(() => ws.terminate())
  const welcome = once(ws, 'message')
  await once(ws, 'open')
  t.equal(ws.protocol, 'echo.v1', 'the upstream picked the subprotocol')
  t.match(ws.extensions, /permessage-deflate/, 'compression negotiated end to end')
  t.match(String((await welcome)[0]), /welcome/)
  ws.send('hi there')
  t.equal(String((await once(ws, 'message'))[0]), 'hi there')
  ws.close(4000, 'done')
  const [code] = await once(ws, 'close') as [number]
  t.equal(code, 4000)

  // Without echo.v1 on offer the upstream takes the first; the client stays open across the shutdown, which closes it.
  const plain = new WebSocket(base.replace('http', 'ws') + '/plain', ['chat', 'json'])
  t.teardown(() => plain.terminate())
  await once(plain, 'open')
  t.equal(plain.protocol, 'chat')
  const plainClosed = once(plain, 'close')
  run.child.kill('SIGINT')
  t.equal(await exitCode(run), 0)
  const [closeCode] = await plainClosed as [number]
  t.equal(closeCode, 1001, 'the live WebSocket was closed by the shutdown with 1001 "going away"')
})
