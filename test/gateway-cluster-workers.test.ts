import t from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import { WebSocket } from 'ws'
import { httpUpstream, listen, origin, portOf } from './helpers/servers.js'
import { request } from './helpers/clients.js'
import { cli, configDir, exitCode, waitForOutput } from './helpers/cli.js'
import { upstream, config, startCluster, primaryLines, inProcess } from './helpers/cluster.js'

// A cluster gateway's workers: dying and restarted, draining at SIGTERM, killed when stuck, failing to listen.
const { write } = configDir('cluster-workers')
// Every case starts real processes (a primary and its workers): seconds each, more beside other test files.
t.setTimeout(300_000)

t.test('a worker that dies is logged with its reason and restarted with backoff; requests carry on', async (t) => {
  const up = await upstream(t)
  const { run, base } = await startCluster(t, write('crash.json', config(up.url, 'v1')))
  const [started] = primaryLines(run, 'workers started')
  const victim = (started.workers as number[])[0]
  process.kill(victim, 'SIGKILL')
  await waitForOutput(run, /"msg":"worker restarted"/)
  const [died] = primaryLines(run, /worker died/)
  t.match(died, { worker: victim, slot: 0, signal: 'SIGKILL', reason: 'killed by SIGKILL', restartIn: 100, level: 50 })
  const [restarted] = primaryLines(run, 'worker restarted')
  t.not(restarted.worker, victim)

  // Dying again soon doubles the wait.
  process.kill(restarted.worker as number, 'SIGKILL')
  await waitForOutput(run, /"restartIn":200,"msg":"worker died; restarting it"/)
  await waitForOutput(run, /"msg":"worker restarted"[^\n]*\n[^]*"msg":"worker restarted"/)
  for (let i = 0; i < 4; i++) t.equal((await request(`${base}/after-crash/${i}`)).status, 200)
  run.child.kill('SIGTERM')
  t.equal(await exitCode(run), 0)
})

t.test('SIGTERM drains every worker: in-flight requests finish, tunnels get 1001, exit 0', async (t) => {
  const slow = await httpUpstream(t, (req, res) => { setTimeout(() => res.end(`slow ${req.url as string}`), 400) })
  const up = await upstream(t)
  const file = write('drain.json', {
    listen: { port: 0 },
    closeGracePeriod: 2000,
    routes: [{ prefix: '/slow/', upstream: origin(slow) + '/' }, { prefix: '/', upstream: up.url }]
  })
  const { run, base } = await startCluster(t, file)
  const ws = new WebSocket(base.replace('http', 'ws') + '/tunnel')
  t.teardown(() => ws.terminate())
  await once(ws, 'open')
  const wsClosed = once(ws, 'close')
  const inFlight = request(`${base}/slow/x`)
  await new Promise((resolve) => setTimeout(resolve, 100))
  const started = Date.now()
  run.child.kill('SIGTERM')
  const res = await inFlight
  t.equal(res.status, 200)
  t.equal(res.body.toString(), 'slow /x', 'the request in flight finished')
  t.equal(res.headers.connection, 'close', 'and its connection is not kept')
  const [code, reason] = await wsClosed as [number, Buffer]
  t.same([code, reason.toString()], [1001, 'shutdown'], 'Close 1001, reason shutdown')
  t.equal(await exitCode(run), 0)
  t.ok(Date.now() - started < 4000, 'within the grace period')
  t.equal(primaryLines(run, 'every worker has exited').length, 1)
})

t.test('a worker that does not drain is killed after its grace period', async (t) => {
  const up = await upstream(t)
  const { run } = await startCluster(t, write('stuck.json', { ...config(up.url, 'v1'), closeGracePeriod: 0 }))
  const [started] = primaryLines(run, 'workers started')
  const stuck = (started.workers as number[])[0]
  process.kill(stuck, 'SIGSTOP')
  t.teardown(() => { try { process.kill(stuck, 'SIGKILL') } catch {} })
  run.child.kill('SIGTERM')
  t.equal(await exitCode(run), 0)
  t.match(primaryLines(run, /still alive after its grace period/)[0], { worker: stuck, after: 5000, level: 40 })
  t.match(primaryLines(run, 'worker drained and exited').find((line) => line.worker === stuck), { signal: 'SIGKILL' })
})

t.test('a first generation that cannot listen: exit 1 with the reason', async (t) => {
  const busy = await listen(t, http.createServer())
  const run = cli(t, ['-c', write('busy.json', { upstream: 'http://127.0.0.1:1', logLevel: 'warn' }), '-p', String(portOf(busy)), '--workers', '2'])
  t.equal(await exitCode(run), 1)
  t.match(run.errors(), /error: .*EADDRINUSE/)
  t.same(primaryLines(run, /./).filter((line) => (line.level as number) < 40), [], 'logLevel warn: the primary logged nothing at info')
  t.same(primaryLines(run, /killed/), [], 'the workers that failed were not waited for again')

  // The demo in one process, in this process: its upstream is closed again, nothing is left running.
  const demo = await inProcess(['--demo', '-p', String(portOf(busy)), '--workers', '1'])
  t.equal(demo.code, 1)
  t.match(demo.err, /EADDRINUSE/)
})
