// `npm run bench:workers [-- --quick] [-- --no-readme] [-- --reloads-only]`: the CLI gateway with `--workers 1` vs `--workers 2`
// (GET req/s and WebSocket round trips, interleaved rounds, medians), then failed requests while the gateway
// reloads 10 times under GET load. Every piece is its own process: the upstream (bench/upstream.ts), the gateway
// (src/cli.ts: a primary and its workers), autocannon and ws-load. Writes the `workers-bench` table of docs/benchmarks.md.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { readyPort } from './procs.js'

const quick = process.argv.includes('--quick')
const reloadsOnly = process.argv.includes('--reloads-only')
const writeReadme = !process.argv.includes('--no-readme') && !reloadsOnly
const ROUNDS = quick ? 2 : 3
const SECONDS = quick ? 3 : 6
const RELOADS = 10
const root = fileURLToPath(new URL('..', import.meta.url))
const TS_ENV = { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' }
const TS = ['--import', '@tapjs/typescript/import']
const AUTOCANNON = 'node_modules/autocannon/autocannon.js'
const dir = mkdtempSync(join(os.tmpdir(), 'fastify-ws-proxy-bench-workers-'))

function node (args: string[]): ChildProcess {
  return spawn(process.execPath, [...TS, ...args], { cwd: root, env: TS_ENV, stdio: ['ignore', 'pipe', 'inherit'] })
}

/** Runs a process to its end and resolves with its stdout (bounded). */
function run (args: string[], started?: (child: ChildProcess) => void): Promise<string> {
  const child = node(args)
  started?.(child)
  let out = ''
  child.stdout?.on('data', (chunk: Buffer) => { out += chunk.toString() })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${args.join(' ')} timed out`)) }, 180_000)
    child.once('exit', (code) => {
      clearTimeout(timer)
      if (code === 0) resolve(out)
      else reject(new Error(`${args.join(' ')} exited with ${code}`))
    })
  })
}

async function freePort (): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as net.AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** One GET on a fresh connection: the status and the `x-gen` header of the config that answered. */
function probe (port: number): Promise<{ status: number, gen: string }> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/small', agent: false }, (res) => {
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode as number, gen: String(res.headers['x-gen']) }))
    })
    req.setTimeout(2000, () => req.destroy())
    req.on('error', () => resolve({ status: 0, gen: '' }))
  })
}

async function until (what: string, check: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

function writeConfig (file: string, upstreamPort: number, port: number, gen: number): void {
  writeFileSync(file, JSON.stringify({
    listen: { port },
    // Per-request logging would measure pino, not the proxy.
    logLevel: 'warn',
    upstream: `http://127.0.0.1:${upstreamPort}`,
    responseHeaders: { set: { 'x-gen': String(gen) } }
  }))
}

async function startGateway (upstreamPort: number, workers: number): Promise<{ child: ChildProcess, port: number, file: string }> {
  const port = await freePort()
  const file = join(dir, `gateway-${workers}.json`)
  writeConfig(file, upstreamPort, port, 0)
  const child = node(['src/cli.ts', '-c', file, '--workers', String(workers)])
  child.stdout?.resume()
  await until(`the gateway with ${workers} worker(s)`, async () => (await probe(port)).status === 200)
  return { child, port, file }
}

async function stop (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  await exited
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

interface Round { getRps: number, getP99: number, wsRttPerSec: number, errors: number }

async function measure (port: number): Promise<Round> {
  const get = JSON.parse(await run([AUTOCANNON, '-j', '-c', '50', '-d', String(SECONDS), `http://127.0.0.1:${port}/small`]))
  const rtt = JSON.parse(await run(['bench/ws-load.ts', `ws://127.0.0.1:${port}/rtt`, 'rtt', '50', '64', String(SECONDS)]))
  return { getRps: get.requests.average, getP99: get.latency.p99, wsRttPerSec: rtt.messages / rtt.seconds, errors: get.errors + get.non2xx }
}

/** GET load for the whole reload phase; SIGHUP once the previous reload is seen serving (new connections get its x-gen). */
async function reloadsUnderLoad (upstreamPort: number): Promise<{ requests: number, failed: number, errors: Record<string, number>, seconds: number }> {
  const gateway = await startGateway(upstreamPort, 2)
  try {
    // Ended by SIGINT a second after the last reload (a bound all the same).
    let loader: ChildProcess | null = null
    const load = run(['bench/http-load.ts', `http://127.0.0.1:${gateway.port}/small`, '50', '170'], (child) => { loader = child })
    await new Promise((resolve) => setTimeout(resolve, 1500))
    const started = Date.now()
    for (let gen = 1; gen <= RELOADS; gen++) {
      writeConfig(gateway.file, upstreamPort, gateway.port, gen)
      gateway.child.kill('SIGHUP')
      await until(`reload ${gen}`, async () => (await probe(gateway.port)).gen === String(gen))
      await new Promise((resolve) => setTimeout(resolve, 500))
    }
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const seconds = (Date.now() - started) / 1000
    ;(loader as ChildProcess | null)?.kill('SIGINT')
    const result = JSON.parse(await load) as { requests: number, ok: number, non2xx: number, errors: Record<string, number> }
    const failed = result.requests - result.ok
    return { requests: result.requests, failed, errors: { ...result.errors, non2xx: result.non2xx }, seconds }
  } finally {
    await stop(gateway.child)
  }
}

const upstream = node(['bench/upstream.ts'])
const upstreamPort = await readyPort(upstream, 'the upstream')

const results: Record<number, Round[]> = { 1: [], 2: [] }

/** Prints the table, keeps the raw figures under bench/results/ and writes the workers-bench block of docs/benchmarks.md. */
function report (reloads: Awaited<ReturnType<typeof reloadsUnderLoad>>): void {
  const summary = (workers: number): Round => ({
    getRps: median(results[workers].map((r) => r.getRps)),
    getP99: median(results[workers].map((r) => r.getP99)),
    wsRttPerSec: median(results[workers].map((r) => r.wsRttPerSec)),
    errors: results[workers].reduce((sum, r) => sum + r.errors, 0)
  })
  const one = summary(1)
  const two = summary(2)
  const fmt = (n: number): string => Math.round(n).toLocaleString('en-US')
  const cpu = os.cpus()[0]?.model.trim() ?? 'unknown CPU'
  const table = [
    `${new Date().toISOString().slice(0, 10)}, ${os.cpus().length} cores (${cpu}), Node ${process.version}, ${ROUNDS} interleaved rounds of ${SECONDS} s` +
      `${quick ? ' (--quick)' : ''}; load generators and the upstream on the same cores.`,
    '',
    '| | `--workers 1` | `--workers 2` | ratio |',
    '|---|---|---|---|',
    `| GET req/s (50 connections) | ${fmt(one.getRps)} | ${fmt(two.getRps)} | ${(two.getRps / one.getRps).toFixed(2)}× |`,
    `| GET p99 latency (ms) | ${one.getP99} | ${two.getP99} | |`,
    `| WebSocket round trips/s (50 clients, 64 B) | ${fmt(one.wsRttPerSec)} | ${fmt(two.wsRttPerSec)} | ${(two.wsRttPerSec / one.wsRttPerSec).toFixed(2)}× |`,
    `| failed requests while measuring | ${one.errors} | ${two.errors} | |`,
    '',
    `${RELOADS} reloads (SIGHUP, each seen serving before the next) in ${reloads.seconds.toFixed(1)} s under GET load, \`--workers 2\`: ` +
      `**${reloads.failed} failed** of ${fmt(reloads.requests)} requests (50 keep-alive connections, undici)` +
      (reloads.failed === 0 ? '.' : `: ${JSON.stringify(reloads.errors)}.`)
  ].join('\n')
  process.stdout.write(table + '\n')
  mkdirSync(join(root, 'bench', 'results'), { recursive: true })
  writeFileSync(join(root, 'bench', 'results', `workers-${new Date().toISOString().replace(/[:.]/g, '-')}.json`),
    JSON.stringify({ date: new Date().toISOString(), quick, rounds: results, reloads }, null, 2))
  if (writeReadme) {
    const readmePath = join(root, 'docs', 'benchmarks.md')
    const readme = readFileSync(readmePath, 'utf8')
    const startMark = '<!-- workers-bench:start -->'
    const endMark = '<!-- workers-bench:end -->'
    const from = readme.indexOf(startMark)
    const to = readme.indexOf(endMark)
    if (from === -1 || to === -1) throw new Error('docs/benchmarks.md has no workers-bench marks')
    writeFileSync(readmePath, readme.slice(0, from + startMark.length) + '\n' + table + '\n' + readme.slice(to))
  }
}

try {
  for (let round = 0; round < (reloadsOnly ? 0 : ROUNDS); round++) {
    for (const workers of [1, 2]) {
      const gateway = await startGateway(upstreamPort, workers)
      try {
        results[workers].push(await measure(gateway.port))
      } finally {
        await stop(gateway.child)
      }
      process.stderr.write(`round ${round + 1}/${ROUNDS}, --workers ${workers}: ${JSON.stringify(results[workers].at(-1))}\n`)
    }
  }
  const reloads = await reloadsUnderLoad(upstreamPort)
  process.stderr.write(`reloads: ${JSON.stringify(reloads)}\n`)
  if (!reloadsOnly) report(reloads)
} finally {
  upstream.kill('SIGKILL')
}
