import t from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { WebSocket } from 'ws'
import { listen, portOf, within } from './helpers/servers.js'
import { request } from './helpers/clients.js'
import { configDir, exitCode, waitForOutput } from './helpers/cli.js'
import { upstream, config, startCluster, primaryLines, keepAliveGet, inProcess, wsEcho, waitForCount } from './helpers/cluster.js'

// Reloads (SIGHUP and --reload) of a cluster gateway: under load, refused, abandoned.
const { dir, write } = configDir('cluster-reload')
// Every case starts real processes (a primary and its workers): seconds each, more beside other test files.
t.setTimeout(300_000)

t.test('reloads under load (SIGHUP and --reload): no request fails, the new config serves, old workers drain', async (t) => {
  const up = await upstream(t)
  const pidFile = join(dir, 'reload.pid')
  const file = write('reload.json', { ...config(up.url, 'v0'), pidFile })
  const { run, base } = await startCluster(t, file)
  t.equal(Number(readFileSync(pidFile, 'utf8')), run.child.pid, 'the pid file names the primary')

  // A tunnel opened before the reloads: its old worker sends it away with 1001 within the grace period.
  const early = new WebSocket(base.replace('http', 'ws') + '/early')
  t.teardown(() => early.terminate())
  await once(early, 'open')
  const earlyClosed = once(early, 'close')

  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 })
  t.teardown(() => agent.destroy())
  const failures: string[] = []
  let requests = 0
  let echoes = 0
  let retried = 0
  const seen = new Set<string>()
  let running = true
  const isRunning = (): boolean => running
  const httpLoop = async (): Promise<void> => {
    for (let i = 0; i < 100_000 && isRunning(); i++) {
      try {
        const res = await keepAliveGet(agent, `${base}/load/${i}`)
        if (res.status !== 200) failures.push(`HTTP ${res.status}`)
        seen.add(res.config)
        requests++
        if (res.retried) retried++
      } catch (err) {
        failures.push(`HTTP ${(err as Error).message}`)
      }
    }
  }
  // A new connection per request (as curl or a health checker), through every reload.
  let fresh = 0
  const freshLoop = async (): Promise<void> => {
    for (let i = 0; i < 100_000 && isRunning(); i++) {
      try {
        const res = await within(request(`${base}/fresh/${i}`), 5000, `GET /fresh/${i} on a new connection`)
        if (res.status !== 200) failures.push(`fresh HTTP ${res.status}`)
        fresh++
      } catch (err) {
        failures.push(`fresh HTTP ${(err as Error).message}`)
      }
    }
  }
  // A tunnel open on a worker that starts draining is sent away with 1001 (the documented reload semantics, which
  // a WebSocket client meets with a reconnect): the echo is then done again on a fresh connection, once.
  let sentAway = 0
  const wsLoop = async (): Promise<void> => {
    for (let i = 0; i < 100_000 && isRunning(); i++) {
      try {
        let echoed = await wsEcho(base.replace('http', 'ws') + '/ws', `m${i}`)
        if (echoed === 1001) {
          sentAway++
          echoed = await wsEcho(base.replace('http', 'ws') + '/ws', `m${i}`)
        }
        if (echoed !== `m${i}`) failures.push(`WS echo of m${i}: ${echoed}`)
        echoes++
      } catch (err) {
        failures.push(`WS ${(err as Error).message}`)
      }
    }
  }
  const loops = Promise.all([httpLoop(), httpLoop(), freshLoop(), wsLoop()])

  for (let version = 1; version <= 3; version++) {
    write('reload.json', { ...config(up.url, `v${version}`), pidFile })
    const before = run.output().length
    if (version === 2) {
      const reload = await inProcess(['--reload', '-c', file])
      t.equal(reload.code, 0, '--reload validates, then signals the pid in the pid file')
      t.match(reload.out, `SIGHUP sent to pid ${run.child.pid as number}`)
    } else {
      run.child.kill('SIGHUP')
    }
    await waitForOutput(run, /"msg":"reloaded: the new workers serve, the old ones drain"/, 30_000, before)
    // The drained generation's workers exit; meanwhile requests keep flowing.
    await waitForOutput(run, /"generation":\d+,"code":0,"signal":null,"msg":"worker drained and exited"/, 10_000, before)
    const res = await request(`${base}/after/${version}`)
    t.equal(res.headers['x-config'], `v${version}`, `reload ${version}: new connections get the new config`)
  }
  running = false
  await loops
  t.same(failures, [], 'no request and no echo failed across three reloads')
  t.ok(requests > 20 && fresh > 20 && echoes > 5, `the loops ran (${requests} requests, ${retried} retried on a keep-alive connection closed as ` +
    `it was reused; ${fresh} on new connections; ${echoes} echoes, ${sentAway} sent away with 1001 and echoed on a new connection)`)
  t.ok(seen.has('v0') && seen.has('v3'), 'the loop saw the first and the last config')
  const [code, reason] = await earlyClosed as [number, Buffer]
  t.same([code, reason.toString()], [1001, 'reload'], 'a tunnel of a drained worker got 1001 going away, reason reload')
  await waitForCount(run, 'worker drained and exited', 6)
  t.match(primaryLines(run, 'worker drained and exited'), Array(6).fill({ code: 0, signal: null }), 'three generations of two workers drained and exited 0')

  run.child.kill('SIGINT')
  t.equal(await exitCode(run), 0)
  t.notOk(existsSync(pidFile), 'the pid file is removed at exit')
})

t.test('a reload with an invalid config is refused with the option path; the workers keep serving', async (t) => {
  const up = await upstream(t)
  const file = write('invalid.json', config(up.url, 'good'))
  const { run, base } = await startCluster(t, file)
  const [started] = primaryLines(run, 'workers started')
  write('invalid.json', { ...config(up.url, 'bad'), routes: [{ prefix: '/', upstream: 'ftp://nope' }] })
  const before = run.output().length
  run.child.kill('SIGHUP')
  await waitForOutput(run, /"msg":"reload refused: invalid config; the running workers keep serving"/, 10_000, before)
  const [refused] = primaryLines(run, /reload refused/)
  t.match(refused.error, /invalid\.json: .*routes\/0\/upstream/)
  t.equal(refused.level, 50)

  // --reload refuses it too, without signalling.
  const reload = await inProcess(['--reload', '-c', file])
  t.equal(reload.code, 1)
  t.match(reload.err, /routes\/0\/upstream/)

  const res = await request(`${base}/still`)
  t.equal(res.status, 200)
  t.equal(res.headers['x-config'], 'good')
  t.same(primaryLines(run, 'workers started')[0].workers, started.workers)
  t.equal(primaryLines(run, /reloaded/).length, 0)
  run.child.kill('SIGTERM')
  t.equal(await exitCode(run), 0)
})

t.test('a reload whose workers cannot listen is abandoned; the old generation keeps serving', async (t) => {
  const up = await upstream(t)
  const busy = await listen(t, http.createServer())
  const file = write('busy-reload.json', config(up.url, 'old'))
  const { run, base } = await startCluster(t, file)
  write('busy-reload.json', { ...config(up.url, 'new'), listen: { port: portOf(busy) } })
  const before = run.output().length
  run.child.kill('SIGHUP')
  await waitForOutput(run, /"msg":"reload failed: the new workers did not start; the running workers keep serving"/, 30_000, before)
  t.match(primaryLines(run, /reload failed/)[0].error, /EADDRINUSE/)
  const res = await request(`${base}/x`)
  t.equal(res.headers['x-config'], 'old')
  run.child.kill('SIGTERM')
  t.equal(await exitCode(run), 0)
})
