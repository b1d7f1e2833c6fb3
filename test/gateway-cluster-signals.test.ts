import t from 'tap'
import { once } from 'node:events'
import { WebSocket } from 'ws'
import { request } from './helpers/clients.js'
import { cli, configDir, exitCode, logLines, waitForOutput } from './helpers/cli.js'
import { httpUpstream, origin } from './helpers/servers.js'
import { upstream, config, startCluster, primaryLines } from './helpers/cluster.js'

// A cluster gateway's primary and workers: sharing the port, and signals at every stage (starting, reloading, Ctrl-C).
const { write } = configDir('cluster-signals')
// Every case starts real processes (a primary and its workers): seconds each, more beside other test files.
t.setTimeout(300_000)

t.test('--workers 2: a primary and two workers share the port; connections reach both', async (t) => {
  const up = await upstream(t)
  const { run, base } = await startCluster(t, write('two.json', { ...config(up.url, 'v1'), logLevel: 'info' }))
  const [started] = primaryLines(run, 'workers started')
  t.equal((started.workers as number[]).length, 2)
  t.not(run.child.pid, undefined)
  t.notOk((started.workers as number[]).includes(run.child.pid as number), 'the primary serves nothing itself')
  for (let i = 0; i < 8; i++) {
    const res = await request(`${base}/n/${i}`)
    t.equal(res.status, 200)
    t.equal(res.headers['x-config'], 'v1')
  }
  const servedBy = new Set(logLines(run).filter((line) => line.msg === 'request completed').map((line) => line.pid))
  t.same([...servedBy].sort(), [...(started.workers as number[])].sort(), 'new connections go round the workers')
  run.child.kill('SIGTERM')
  t.equal(await exitCode(run), 0)
  t.equal(primaryLines(run, 'worker drained and exited').length, 2)
})

t.test('SIGTERM while the workers are still starting: they are stopped, exit 0, nothing crashes', async (t) => {
  const up = await upstream(t)
  const run = cli(t, ['-c', write('early-stop.json', config(up.url, 'v1')), '--workers', '2'])
  await waitForOutput(run, /"msg":"starting workers"/)
  run.child.kill('SIGTERM')
  t.equal(await exitCode(run), 0)
  t.equal(primaryLines(run, 'every worker has exited').length, 1)
  t.equal(primaryLines(run, 'workers started').length, 0)
  t.notMatch(run.errors(), /Error|EPIPE/, 'no worker crashed on the way')

  // The demo prints its banner only once its gateway serves.
  const demo = cli(t, ['--demo', '--workers', '2'], { PORT: '0' })
  await waitForOutput(demo, /"msg":"starting workers"/)
  demo.child.kill('SIGTERM')
  t.equal(await exitCode(demo), 0)
  t.notMatch(demo.output(), /fastify-ws-proxy demo: gateway/, 'no banner for a gateway that never served')
})

t.test('SIGHUP while the workers are still starting waits for them, then reloads', async (t) => {
  const up = await upstream(t)
  const run = cli(t, ['-c', write('early-hup.json', config(up.url, 'v1')), '--workers', '2'])
  await waitForOutput(run, /"msg":"starting workers"/)
  run.child.kill('SIGHUP')
  await waitForOutput(run, /"msg":"reloaded: the new workers serve, the old ones drain"/)
  t.ok(run.output().indexOf('"workers started"') < run.output().indexOf('"reloaded:'), 'the reload came after the first generation')
  run.child.kill('SIGTERM')
  t.equal(await exitCode(run), 0)
})

t.test('SIGTERM while a reload\'s workers are starting: both generations drain, exit 0', async (t) => {
  const up = await upstream(t)
  const { run } = await startCluster(t, write('stop-in-reload.json', config(up.url, 'v1')))
  const before = run.output().length
  run.child.kill('SIGHUP')
  await waitForOutput(run, /"generation":2,"workers":2,"msg":"starting workers"/, 30_000, before)
  run.child.kill('SIGTERM')
  t.equal(await exitCode(run), 0)
  t.equal(primaryLines(run, /reloaded/).length, 0, 'the reload did not complete')
  t.equal(primaryLines(run, /reload failed/).length, 0, 'and is not reported as a failure: the stop ended it')
  t.equal(primaryLines(run, 'worker drained and exited').length, 4, 'two old and two new workers')
})

t.test('Ctrl-C (SIGINT to the whole process group): every worker drains once, exit 0', async (t) => {
  let reached: () => void = () => {}
  const upstreamReached = new Promise<void>((resolve) => { reached = resolve })
  const slow = await httpUpstream(t, (req, res) => {
    reached()
    setTimeout(() => res.end(`slow ${req.url as string}`), 500)
  })
  const up = await upstream(t)
  const file = write('ctrl-c.json', {
    ...config(up.url, 'v1'),
    // The slow answer comes well within the grace period (at which a drain cuts what is left).
    closeGracePeriod: 3000,
    routes: [{ prefix: '/slow/', upstream: origin(slow) + '/' }, { prefix: '/', upstream: up.url }]
  })
  const { run, base } = await startCluster(t, file, 2, true)
  t.teardown(() => { try { process.kill(-(run.child.pid as number), 'SIGKILL') } catch {} })
  const ws = new WebSocket(base.replace('http', 'ws') + '/tunnel')
  t.teardown(() => ws.terminate())
  await once(ws, 'open')
  const closed = once(ws, 'close')
  // A request in flight holds its worker's drain for half a second: the primary's drain message reaches that worker
  // after its own SIGINT, and it drains once.
  const inFlight = request(`${base}/slow/x`)
  await upstreamReached
  process.kill(-(run.child.pid as number), 'SIGINT')
  const res = await inFlight
  t.equal(res.status, 200)
  t.equal(res.body.toString(), 'slow /x', 'the request in flight finished')
  t.equal(res.headers.connection, 'close')
  t.equal(await exitCode(run), 0)
  t.equal(((await closed) as [number])[0], 1001)
  t.same(primaryLines(run, 'worker drained and exited').map((line) => line.code), [0, 0])
})
