import t from 'tap'
import { join } from 'node:path'
import { httpUpstream, origin, within } from './helpers/servers.js'
import { request } from './helpers/clients.js'
import { cli, configDir, exitCode, logLines, waitForOutput, type Run } from './helpers/cli.js'
import { upstream, config, startCluster, inProcess } from './helpers/cluster.js'

// The cluster CLI forms: one process, the demo, usage errors, and two instances agreeing on consistent-hash keys.
const { dir, write } = configDir('cluster-cli')
// Most cases start real processes (a primary and its workers): seconds each, more beside other test files.
t.setTimeout(300_000)

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
  // At once, on new connections: the primary may hand some to the old workers as they leave (idle, they drain in
  // a few ms); each must be answered by a worker that serves.
  const after = Promise.all(Array.from({ length: 4 }, async () => (await request(`${base}/api/hello`)).status))
  t.same(await within(after, 10_000, () => `GET /api/hello after the reload: ${run.output().slice(-4000)}`), [200, 200, 200, 200])
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
  const check = await inProcess(['--check', '-c', write('auto.json', { upstream: 'http://127.0.0.1:1' }), '--workers', 'auto'])
  t.equal(check.code, 0)
  t.match(check.out, /config ok/)
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
