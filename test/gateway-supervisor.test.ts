import t from 'tap'
import cluster from 'node:cluster'
import { fileURLToPath } from 'node:url'
import { Supervisor, type SupervisorOptions } from '../src/gateway/supervisor.js'
import type { CheckedGatewayConfig } from '../src/gateway/config.js'
import type { PrimaryLog } from '../src/gateway/primary-log.js'
import { within, type Teardown } from './helpers/servers.js'

// The supervisor's decisions, in this process as the cluster primary, with stand-in workers
// (test/fixtures/fake-worker.mjs) that report ready at once: restarts and their backoff, the reason logged for a
// death, a stop or a reload while a restart waits. The real workers are exercised in the gateway-cluster-*.test.ts files.

// No execArgv: the test runner's TypeScript loader would make every fork take a second or more.
cluster.setupPrimary({ exec: fileURLToPath(new URL('./fixtures/fake-worker.mjs', import.meta.url)), execArgv: [], silent: true })

interface Line { level: string, fields: Record<string, unknown>, msg: string }

/** A PrimaryLog that keeps its lines and lets a test react to one the moment it is written. */
class RecordingLog {
  readonly lines: Line[] = []
  #watchers: Array<{ match: RegExp, resolve: (line: Line) => void }> = []
  onLine: ((line: Line) => void) | null = null
  setLevel (): void {}
  info (fields: Record<string, unknown>, msg: string): void { this.#add('info', fields, msg) }
  warn (fields: Record<string, unknown>, msg: string): void { this.#add('warn', fields, msg) }
  error (fields: Record<string, unknown>, msg: string): void { this.#add('error', fields, msg) }
  #add (level: string, fields: Record<string, unknown>, msg: string): void {
    const line = { level, fields, msg }
    this.lines.push(line)
    this.onLine?.(line)
    this.#watchers = this.#watchers.filter((w) => {
      if (!w.match.test(msg)) return true
      w.resolve(line)
      return false
    })
  }

  /** The next line matching `match` (bounded). */
  async next (match: RegExp, ms = 10_000): Promise<Line> {
    return await within(new Promise<Line>((resolve) => { this.#watchers.push({ match, resolve }) }), ms, `a log line ${String(match)}`)
  }
}

const config = (port: number): CheckedGatewayConfig => ({
  host: '127.0.0.1',
  port,
  tls: null,
  credentials: null,
  http2: false,
  logLevel: 'info',
  server: { maxHeaderSize: 16384, headersTimeout: 10_000 },
  pidFile: null,
  proxy: { upstream: 'http://127.0.0.1:1', closeGracePeriod: 1000 },
  closeGracePeriod: 1000,
  warnings: []
})

function supervisor (t: Teardown, workers: number, timing: Pick<SupervisorOptions, 'stableAfter' | 'firstBackoff'> = {}): { sup: Supervisor, log: RecordingLog } {
  const log = new RecordingLog()
  const sup = new Supervisor({ workers, load: async () => config(4343), log: log as unknown as PrimaryLog, ...timing })
  t.teardown(async () => { await within(sup.stop(), 10_000, 'the supervisor to stop') })
  return { sup, log }
}

function exitWorker (pid: number, code: number): void {
  const worker = Object.values(cluster.workers ?? {}).find((w) => w?.process.pid === pid)
  worker?.send({ type: 'exit', code })
}

t.test('a death is logged with its exit code; its slot is empty until the restart; backoff doubles, and starts over after a stable run', async (t) => {
  // Far longer than a stand-in takes to restart and die again, even on a loaded machine.
  const { sup, log } = supervisor(t, 2, { stableAfter: 2000 })
  await sup.start(config(4242))
  t.equal(sup.port, 4242, 'the port the workers reported')
  const [first, second] = sup.pids
  t.equal(sup.pids.length, 2)

  let pidsAtDeath: number[] = []
  log.onLine = (line) => { if (line.msg.startsWith('worker died')) pidsAtDeath = sup.pids }
  exitWorker(first, 3)
  const died = await log.next(/^worker died/)
  t.match(died.fields, { worker: first, slot: 0, code: 3, signal: null, reason: 'exit code 3', restartIn: 100 })
  t.same(pidsAtDeath, [second], 'while its restart waits, the slot holds no worker')
  const restarted = await log.next(/^worker restarted/)
  t.equal(sup.pids.length, 2)

  // Dying again before it has served stableAfter doubles the wait...
  exitWorker(restarted.fields.worker as number, 4)
  t.match((await log.next(/^worker died/)).fields, { reason: 'exit code 4', restartIn: 200 })
  const again = await log.next(/^worker restarted/)
  // ...and after a stable run the backoff starts over.
  await new Promise((resolve) => setTimeout(resolve, 2100))
  exitWorker(again.fields.worker as number, 5)
  t.match((await log.next(/^worker died/)).fields, { reason: 'exit code 5', restartIn: 100 })
  await log.next(/^worker restarted/)
})

t.test('a stop while a restart waits cancels it, and ends at once when no worker is left', async (t) => {
  const { sup, log } = supervisor(t, 1)
  await sup.start(config(4242))
  const [pid] = sup.pids
  let stopped: Promise<void> | null = null
  // As a signal would: right after the death, while its restart waits.
  log.onLine = (line) => { if (line.msg.startsWith('worker died')) setImmediate(() => { stopped = sup.stop() }) }
  exitWorker(pid, 7)
  await log.next(/^worker died/)
  await new Promise((resolve) => setImmediate(resolve))
  await within(stopped as unknown as Promise<void>, 2000, 'the stop')
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.notOk(log.lines.some((line) => line.msg === 'worker restarted'), 'the restart was cancelled')
  t.same(sup.pids, [])
  t.equal(await sup.reload(), false, 'a reload after the stop does nothing')
  t.equal(log.lines.filter((line) => line.msg === 'starting workers').length, 1)
})

t.test('a reload while a restart waits: the new generation takes every slot, the dead worker is not restarted', async (t) => {
  // A restart that waits 2 s: far longer than a generation of these stand-ins takes to start, so it is still
  // waiting when the reload's workers are ready.
  const { sup, log } = supervisor(t, 2, { firstBackoff: 2000 })
  await sup.start(config(4242))
  const victim = sup.pids[0]
  log.onLine = (line) => {
    if (line.msg === 'starting workers' && line.fields.generation === 2) exitWorker(victim, 2)
  }
  const reloaded = sup.reload()
  t.match((await log.next(/^worker died/)).fields, { worker: victim, restartIn: 2000 })
  const diedAt = Date.now()
  t.equal(await within(reloaded, 10_000, 'the reload'), true)
  await new Promise((resolve) => setTimeout(resolve, 2300 - (Date.now() - diedAt)))
  t.notOk(log.lines.some((line) => line.msg === 'worker restarted'), 'the death during the reload was not restarted')
  t.equal(sup.pids.length, 2)
  t.notOk(sup.pids.includes(victim))
})
