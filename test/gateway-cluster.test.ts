import t, { type Test } from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { WebSocket } from 'ws'
import { httpUpstream, listen, origin, portOf, within, wsUpstream } from './helpers/servers.js'
import { request } from './helpers/clients.js'
import { cli, configDir, exitCode, logLines, waitForOutput, type Run } from './helpers/cli.js'
import { main } from '../src/gateway/cli-main.js'

const { dir, write } = configDir('cluster')
// Every case starts real processes (a primary and its workers, each loading TypeScript): minutes, not seconds.
t.setTimeout(300_000)

/** An upstream for HTTP (echo of the request as JSON, optionally slow) and WebSocket (echo) on one port. */
async function upstream (t: Test): Promise<{ url: string, server: http.Server }> {
  const server = await httpUpstream(t)
  const { wss } = await wsUpstream(t)
  // Same port for both: the upgrade goes to a ws server without its own listener.
  server.on('upgrade', (req, socket, head) => {
    wss.handleUpgrade(req, socket, head, (ws) => { ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })) })
  })
  return { url: origin(server), server }
}

function config (upstreamUrl: string, version: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    listen: { port: 0 },
    routes: [{ prefix: '/', upstream: upstreamUrl }],
    responseHeaders: { set: { 'x-config': version } },
    closeGracePeriod: 1000,
    ...extra
  }
}

async function startCluster (t: Test, file: string, workers = 2, detached = false): Promise<{ run: Run, base: string }> {
  const run = cli(t, ['-c', file, '--workers', String(workers)], {}, detached)
  await waitForOutput(run, /"msg":"workers started"/)
  const [, port] = await waitForOutput(run, /Server listening at http:\/\/127\.0\.0\.1:(\d+)/)
  return { run, base: `http://127.0.0.1:${port}` }
}

function primaryLines (run: Run, msg: string | RegExp): Array<Record<string, unknown>> {
  return logLines(run).filter((line) => line.role === 'primary' && (typeof msg === 'string' ? line.msg === msg : msg.test(String(line.msg))))
}

/** A GET on a keep-alive agent. A request that meets a keep-alive connection the server closed as it was sent is retried once, as RFC 9112 §9.3.1 lets clients do for idempotent requests (Node's documented pattern). */
async function keepAliveGet (agent: http.Agent, url: string): Promise<{ status: number, config: string, retried: boolean }> {
  for (let attempt = 0; ; attempt++) {
    try {
      const req = http.get(url, { agent })
      req.setTimeout(5000, () => req.destroy(new Error(`no answer in 5 s (reused socket: ${String(req.reusedSocket)})`)))
      const [res] = await once(req, 'response') as [http.IncomingMessage]
      res.resume()
      await once(res, 'end')
      return { status: res.statusCode as number, config: String(res.headers['x-config']), retried: attempt > 0 }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (attempt > 0 || (code !== 'ECONNRESET' && code !== 'EPIPE')) throw err
    }
  }
}

/** Runs the CLI in this process; what it wrote to stdout and stderr is captured only while it runs (TAP writes to stdout too). */
async function inProcess (args: string[]): Promise<{ code: number, out: string, err: string }> {
  const writes = { out: process.stdout.write, err: process.stderr.write }
  let out = ''
  let err = ''
  process.stdout.write = ((chunk: string | Uint8Array) => { out += String(chunk); return true }) as typeof process.stdout.write
  process.stderr.write = ((chunk: string | Uint8Array) => { err += String(chunk); return true }) as typeof process.stderr.write
  try {
    return { code: await main(args), out, err }
  } finally {
    process.stdout.write = writes.out
    process.stderr.write = writes.err
  }
}

/**
 * One WebSocket echo on a fresh connection. Resolves with the echo, or with the close code when the tunnel was
 * sent away (1001 from a draining worker) before its echo came back; rejects on anything else.
 */
async function wsEcho (url: string, text: string): Promise<string | number> {
  const ws = new WebSocket(url, { handshakeTimeout: 5000 })
  const timer = setTimeout(() => ws.emit('error', new Error(`echo not done in 5 s (state ${ws.readyState})`)), 5000)
  try {
    await once(ws, 'open')
    ws.send(text)
    const answer = await Promise.race([
      once(ws, 'message').then(([data]) => String(data)),
      once(ws, 'close').then(([code]) => code as number)
    ])
    if (typeof answer === 'string') {
      ws.close(1000)
      await once(ws, 'close')
    }
    return answer
  } finally {
    clearTimeout(timer)
    ws.terminate()
  }
}

async function waitForCount (run: Run, msg: string, count: number, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms
  while (primaryLines(run, msg).length < count) {
    if (Date.now() > deadline) throw new Error(`${primaryLines(run, msg).length} of ${count} "${msg}" lines: ${run.output()}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

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
  const loops = Promise.all([httpLoop(), httpLoop(), wsLoop()])

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
  t.ok(requests > 20 && echoes > 5, `the loops ran (${requests} requests, ${retried} retried on a keep-alive connection closed as it was reused; ` +
    `${echoes} echoes, ${sentAway} sent away with 1001 and echoed on a new connection)`)
  t.ok(seen.has('v0') && seen.has('v3'), 'the loop saw the first and the last config')
  const [code] = await earlyClosed as [number]
  t.equal(code, 1001, 'a tunnel of a drained worker got 1001 going away')
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
  const [code] = await wsClosed as [number]
  t.equal(code, 1001)
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

t.test('one process (--workers 1): SIGHUP is refused with a warning and the gateway keeps serving', async (t) => {
  const up = await upstream(t)
  const run = cli(t, ['-c', write('single.json', config(up.url, 'single')), '--workers', '1'])
  const [, port] = await waitForOutput(run, /Server listening at http:\/\/127\.0\.0\.1:(\d+)/)
  run.child.kill('SIGHUP')
  await waitForOutput(run, /SIGHUP ignored: reloading needs a cluster/)
  t.equal((await request(`http://127.0.0.1:${port}/`)).headers['x-config'], 'single')
  t.equal(logLines(run).filter((line) => line.role === 'primary').length, 0, 'no primary')
  run.child.kill('SIGTERM')
  t.equal(await exitCode(run), 0)
})

t.test('--demo --workers 2: the demo upstream in the primary, the gateway in the workers', async (t) => {
  const run = cli(t, ['--demo', '--workers', '2'], { PORT: '0' })
  const [, base] = await waitForOutput(run, /gateway (http:\/\/127\.0\.0\.1:\d+)/, 60_000)
  const api = await within(request(`${base}/api/hello`), 10_000, 'GET /api/hello')
  t.match(JSON.parse(api.body.toString()), { hello: 'world' })
  const before = run.output().length
  run.child.kill('SIGHUP')
  await waitForOutput(run, /"msg":"reloaded/, 60_000, before)
  t.equal((await within(request(`${base}/api/hello`), 10_000, 'GET /api/hello after the reload')).status, 200)
  run.child.kill('SIGINT')
  t.equal(await within(exitCode(run), 30_000, () => `the exit: ${run.output().slice(-2000)}`), 0)
})

t.test('--workers and --reload usage errors', async (t) => {
  const zero = await inProcess(['--workers', '0', '-c', 'x.json'])
  t.equal(zero.code, 2)
  t.match(zero.err, /--workers: expected "auto" or an integer from 1 to 1024, got "0"/)
  const many = await inProcess(['-w', 'many', '--demo'])
  t.equal(many.code, 2)
  t.match(many.err, /got "many"/)

  const up = await upstream(t)
  const noPid = write('nopid.json', config(up.url, 'v'))
  const none = await inProcess(['--reload', '-c', noPid])
  t.equal(none.code, 1, 'no pid file configured')
  t.match(none.err, /--reload needs the running gateway's pid file/)
  const absent = await inProcess(['--reload', '-c', noPid, '--pid-file', join(dir, 'absent.pid')])
  t.equal(absent.code, 1, 'a pid file that does not exist')
  t.match(absent.err, /ENOENT/)
  const garbage = await inProcess(['--reload', '-c', noPid, '--pid-file', write('garbage.pid', 'nope\n')])
  t.equal(garbage.code, 1, 'a pid file without a pid')
  t.match(garbage.err, /holds no pid/)
})

t.test('`--workers auto` is one per core', async (t) => {
  const check = await inProcess(['--check', '-c', write('auto.json', { upstream: 'http://x' }), '--workers', 'auto'])
  t.equal(check.code, 0)
  t.match(check.out, /config ok/)
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

t.test('many instances: two gateways with the same group (servers listed in other orders) agree on every consistent-hash key, across workers and restarts', async (t) => {
  const names = ['a', 'b', 'c', 'd']
  const servers = await Promise.all(names.map(async (name) => await httpUpstream(t, (_req, res) => { res.end(name) })))
  const groupConfig = (order: number[]): Record<string, unknown> => ({
    listen: { port: 0 },
    upstreams: { cache: { servers: order.map((i) => ({ url: origin(servers[i]) })), balance: 'hash', hash: '$arg_key', consistent: true } },
    routes: [{ prefix: '/', upstream: 'http://cache' }]
  })
  const mapKeys = async (base: string): Promise<string[]> => {
    const picked: string[] = []
    for (let i = 0; i < 60; i++) picked.push((await request(`${base}/item?key=k${i}`)).body.toString())
    return picked
  }
  const one = await startCluster(t, write('ring-one.json', groupConfig([0, 1, 2, 3])))
  const startSingle = async (): Promise<{ run: Run, base: string }> => {
    const run = cli(t, ['-c', write('ring-two.json', groupConfig([3, 1, 0, 2])), '--workers', '1'])
    const [, port] = await waitForOutput(run, /Server listening at http:\/\/127\.0\.0\.1:(\d+)/)
    return { run, base: `http://127.0.0.1:${port}` }
  }
  const two = await startSingle()
  const viaOne = await mapKeys(one.base)
  const viaTwo = await mapKeys(two.base)
  t.same(viaTwo, viaOne, 'instance two (other order, one process) picks what instance one (two workers) picks for all 60 keys')
  t.equal(new Set(viaOne).size, 4, 'the keys use every server')

  two.run.child.kill('SIGTERM')
  t.equal(await exitCode(two.run), 0)
  const again = await startSingle()
  t.same(await mapKeys(again.base), viaOne, 'after a restart, the same servers for the same keys')
  again.run.child.kill('SIGTERM')
  one.run.child.kill('SIGTERM')
  t.equal(await exitCode(again.run), 0)
  t.equal(await exitCode(one.run), 0)
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
  const up = await upstream(t)
  const { run, base } = await startCluster(t, write('ctrl-c.json', config(up.url, 'v1')), 2, true)
  t.teardown(() => { try { process.kill(-(run.child.pid as number), 'SIGKILL') } catch {} })
  const ws = new WebSocket(base.replace('http', 'ws') + '/tunnel')
  t.teardown(() => ws.terminate())
  await once(ws, 'open')
  const closed = once(ws, 'close')
  process.kill(-(run.child.pid as number), 'SIGINT')
  t.equal(await exitCode(run), 0)
  t.equal(((await closed) as [number])[0], 1001)
  t.same(primaryLines(run, 'worker drained and exited').map((line) => line.code), [0, 0])
})
