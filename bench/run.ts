// `npm run bench [-- --quick] [-- --no-readme]`: the side-by-side benchmark. Every piece is its own process:
// the upstream (HTTP + ws echo), each contender proxying to it, and the load generators (autocannon; ws-load.ts).
// Contenders are interleaved round by round; medians are reported with ratios to "direct" (no proxy).
// Results go to bench/results/<date>.json and, unless --no-readme, to the README's benchmark table.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { fileURLToPath } from 'node:url'

const quick = process.argv.includes('--quick')
const writeReadme = !process.argv.includes('--no-readme')
const ROUNDS = quick ? 2 : 5
const SECONDS = quick ? 3 : 8
const IDLE_TUNNELS = quick ? 1000 : 5000
const root = fileURLToPath(new URL('..', import.meta.url))
const TS_ENV = { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' }
const TS = ['--import', '@tapjs/typescript/import']

interface Contender { name: string, script: string | null, note: string }

function hasNginx (): boolean {
  try {
    execFileSync('nginx', ['-v'], { stdio: 'ignore' })
    return true
  } catch {
    process.stderr.write('nginx is not installed: skipped (install it with `apt-get install nginx-light` or `dnf install nginx`)\n')
    return false
  }
}

const CONTENDERS: Contender[] = [
  { name: 'direct', script: null, note: 'no proxy: the client talks to the upstream (the limit)' },
  { name: 'fastify-ws-proxy', script: 'bench/contenders/fastify-ws-proxy.ts', note: 'this plugin, defaults (undici pool, 128 connections)' },
  { name: '@fastify/http-proxy', script: 'bench/contenders/fastify-http-proxy.ts', note: '@fastify/http-proxy 11 with `websocket: true`, defaults' },
  { name: 'http-proxy', script: 'bench/contenders/http-proxy.ts', note: 'node-http-proxy 1.18 (`web` + `ws`) with a keep-alive agent of 128 sockets' },
  ...(hasNginx() ? [{ name: 'nginx', script: 'bench/contenders/nginx.ts', note: 'nginx, 1 worker, the seeds\' WebSocket config, upstream `keepalive 128`' }] : [])
]

/** Starts a process that prints "READY <port> [<pid to measure>]" (nginx names its worker; others measure themselves). */
function startProcess (args: string[]): Promise<{ child: ChildProcess, port: number, pid: number }> {
  const child = spawn(process.execPath, ['--expose-gc', ...TS, '--import', './bench/contenders/gc-on-signal.ts', ...args], { cwd: root, env: TS_ENV, stdio: ['ignore', 'pipe', 'inherit'] })
  return new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error(`${args[0]} did not start within 30 s`)), 30_000)
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      const match = /READY (\d+)(?: (\d+))?/.exec(out)
      if (match !== null) {
        clearTimeout(timer)
        resolve({ child, port: Number(match[1]), pid: match[2] === undefined ? child.pid as number : Number(match[2]) })
      }
    })
    child.once('exit', (code) => reject(new Error(`${args[0]} exited with ${code}`)))
  })
}

function run (command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const child = spawn(command, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${args.join(' ')} timed out`)) }, (SECONDS + 60) * 1000)
    child.once('exit', (code) => {
      clearTimeout(timer)
      if (code === 0) resolve(out)
      else reject(new Error(`${command} ${args.join(' ')} exited with ${code}`))
    })
  })
}

/** utime + stime of a process, in seconds (Linux /proc; clock ticks are 100 per second on Linux). */
function cpuSeconds (pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

function rssBytes (pid: number): number {
  const line = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return line === null ? 0 : Number(line[1]) * 1024
}

const AUTOCANNON = 'node_modules/autocannon/autocannon.js'
const bodyFile = '/tmp/fastify-ws-proxy-bench-1mib.bin'
writeFileSync(bodyFile, Buffer.alloc(1024 * 1024, 120))

type Metrics = Record<string, number>

async function measure (port: number, pid: number | null): Promise<Metrics> {
  const m: Metrics = {}
  const getCpuBefore = pid === null ? 0 : cpuSeconds(pid)
  const get = JSON.parse(await run(process.execPath, [AUTOCANNON, '-j', '-c', '50', '-d', String(SECONDS), `http://127.0.0.1:${port}/small`]))
  // The proxy's own CPU per request: what it costs, whatever share of the cores the load generator took.
  if (pid !== null) m.getCpuUs = (cpuSeconds(pid) - getCpuBefore) * 1e6 / get.requests.total
  m.getRps = get.requests.average
  m.getP50 = get.latency.p50
  m.getP99 = get.latency.p99
  m.getErrors = get.errors + get.non2xx
  const post = JSON.parse(await run(process.execPath, [AUTOCANNON, '-j', '-c', '8', '-d', String(SECONDS), '-m', 'POST', '-i', bodyFile, `http://127.0.0.1:${port}/echo`]))
  m.postMBps = post.throughput.average / 1e6
  const rtt = JSON.parse(await run(process.execPath, [...TS, 'bench/ws-load.ts', `ws://127.0.0.1:${port}/rtt`, 'rtt', '50', '64', String(SECONDS)], TS_ENV))
  m.wsRttPerSec = rtt.messages / rtt.seconds
  const handshakes = JSON.parse(await run(process.execPath, [...TS, 'bench/ws-load.ts', `ws://127.0.0.1:${port}/hs`, 'handshake', '10', '64', String(SECONDS)], TS_ENV))
  m.wsHandshakesPerSec = handshakes.messages / handshakes.seconds
  m.wsHandshakeErrors = handshakes.failed
  const cpuBefore = pid === null ? 0 : cpuSeconds(pid)
  const bulk = JSON.parse(await run(process.execPath, [...TS, 'bench/ws-load.ts', `ws://127.0.0.1:${port}/bulk`, 'bulk', '1', String(64 * 1024), String(SECONDS)], TS_ENV))
  m.wsBulkMBps = bulk.bytes / bulk.seconds / 1e6
  // Both directions cross the proxy: bytes tunnelled = 2 x the echoed bytes.
  if (pid !== null) m.cpuSecPerGB = (cpuSeconds(pid) - cpuBefore) / (2 * bulk.bytes / 1e9)
  return m
}

/** Waits a second, then has a Node contender collect its garbage (nginx, whose worker is `pid`, has none). */
async function settle (child: ChildProcess, pid: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 1000))
  if (pid !== child.pid) return
  const collected = new Promise<void>((resolve) => {
    const onData = (chunk: Buffer): void => {
      if (chunk.toString().includes('GC')) { child.stdout?.off('data', onData); resolve() }
    }
    child.stdout?.on('data', onData)
  })
  child.kill('SIGUSR2')
  await Promise.race([collected, new Promise((resolve) => setTimeout(resolve, 5000))])
}

/**
 * RSS growth per idle tunnel, measured on a fresh process of the contender (after the load phases a Node heap has
 * grown and may shrink while tunnels open, which made the figure meaningless), after a warm-up of 200 tunnels opened
 * and closed: `count` ws clients connect and stay silent.
 */
async function idleTunnelMemory (contender: Contender, upstreamPort: number): Promise<number> {
  const { child, port, pid } = await startProcess([contender.script as string, String(upstreamPort)])
  try {
    // A warm-up (as the soak does): the first tunnels compile code and grow pools once per process, whoever they are.
    const warmUp = await holdIdle(port, WARM_UP_TUNNELS)
    warmUp.kill('SIGKILL')
    await new Promise((resolve) => setTimeout(resolve, 1000))
    await settle(child, pid)
    const before = rssBytes(pid)
    const holder = await holdIdle(port, IDLE_TUNNELS)
    try {
      await settle(child, pid)
      return (rssBytes(pid) - before) / IDLE_TUNNELS
    } finally {
      holder.kill('SIGKILL')
    }
  } finally {
    child.kill()
  }
}

const WARM_UP_TUNNELS = 200

/** A process holding `count` idle WebSocket connections to `port`, once all are open. */
async function holdIdle (port: number, count: number): Promise<ChildProcess> {
  const holder = spawn(process.execPath, [...TS, 'bench/ws-idle.ts', `ws://127.0.0.1:${port}/idle`, String(count)], { cwd: root, env: TS_ENV, stdio: ['ignore', 'pipe', 'inherit'] })
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('idle tunnels did not open in 60 s')), 60_000)
      holder.stdout?.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('OPEN')) { clearTimeout(timer); resolve() }
      })
    })
  } catch (err) {
    holder.kill('SIGKILL')
    throw err
  }
  return holder
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

const upstream = await startProcess(['bench/upstream.ts'])
const started: Array<{ contender: Contender, port: number, child: ChildProcess | null, pid: number | null }> = []
for (const contender of CONTENDERS) {
  if (contender.script === null) {
    started.push({ contender, port: upstream.port, child: null, pid: null })
  } else {
    const { child, port, pid } = await startProcess([contender.script, String(upstream.port)])
    started.push({ contender, port, child, pid })
  }
}

const samples = new Map<string, Metrics[]>()
try {
  for (let round = 1; round <= ROUNDS; round++) {
    for (const { contender, port, pid } of started) {
      process.stderr.write(`round ${round}/${ROUNDS}: ${contender.name}\n`)
      const metrics = await measure(port, pid)
      const list = samples.get(contender.name) ?? []
      list.push(metrics)
      samples.set(contender.name, list)
    }
  }
  for (const { contender } of started) {
    if (contender.script !== null) {
      const perTunnel = await idleTunnelMemory(contender, upstream.port)
      for (const m of samples.get(contender.name) ?? []) m.idleTunnelBytes = perTunnel
    }
  }
} finally {
  upstream.child.kill()
  for (const { child } of started) child?.kill()
}

const results: Record<string, Metrics> = {}
for (const [name, list] of samples) {
  const keys = Object.keys(list[0])
  results[name] = Object.fromEntries(keys.map((k) => [k, median(list.map((m) => m[k]))]))
}

const date = new Date().toISOString().slice(0, 10)
const machine = `${os.cpus()[0]?.model ?? 'cpu'} (${os.cpus().length} cores), ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`
mkdirSync(new URL('results/', import.meta.url), { recursive: true })
writeFileSync(new URL(`results/${date}${quick ? '-quick' : ''}.json`, import.meta.url), JSON.stringify({ date, machine, quick, rounds: ROUNDS, seconds: SECONDS, results, samples: Object.fromEntries(samples) }, null, 2))

const direct = results.direct
const nginx = results.nginx as Metrics | undefined
const fmt = (v: number | undefined, digits = 0): string => v === undefined || Number.isNaN(v) ? 'n/a' : v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
const rows = [
  ['HTTP small GET, req/s (50 connections)', 'getRps', 0, true],
  ['HTTP small GET, p50 / p99 latency ms', null, 0, false],
  ['HTTP small GET, proxy CPU µs per request', 'getCpuUs', 0, false],
  ['HTTP 1 MiB POST echo, MB/s (8 connections)', 'postMBps', 1, true],
  ['WebSocket round trips/s (50 clients, 64 B)', 'wsRttPerSec', 0, true],
  ['WebSocket bulk echo, MB/s each way (64 KiB messages)', 'wsBulkMBps', 1, true],
  ['WebSocket handshakes/s (10 clients: connect, one echo, close)', 'wsHandshakesPerSec', 0, true],
  ['proxy CPU seconds per GB tunnelled', 'cpuSecPerGB', 2, false],
  [`proxy RSS per idle tunnel, KiB (${IDLE_TUNNELS} tunnels)`, 'idleTunnelBytes', 1, false]
] as const
const names = Object.keys(results)
const table = [
  `Measured ${date} on ${machine}; ${ROUNDS} interleaved rounds of ${SECONDS} s per metric, medians; ratios are to direct, then to nginx.${quick ? ' (quick mode)' : ''}`,
  '',
  `| metric | ${names.join(' | ')} |`,
  `|---|${names.map(() => '---:').join('|')}|`,
  ...rows.map(([label, key, digits, withRatio]) => {
    const cells = names.map((name) => {
      const r = results[name]
      if (key === null) return `${fmt(r.getP50, 0)} / ${fmt(r.getP99, 0)}`
      const value = key === 'idleTunnelBytes' ? (r[key] === undefined ? undefined : r[key] / 1024) : r[key]
      if (!withRatio || name === 'direct') return fmt(value, digits)
      const toNginx = nginx === undefined || name === 'nginx' ? '' : `, ${(r[key] / nginx[key]).toFixed(2)}× nginx`
      return `${fmt(value, digits)} (${(r[key] / direct[key]).toFixed(2)}×${toNginx})`
    })
    return `| ${label} | ${cells.join(' | ')} |`
  }),
  '',
  ...CONTENDERS.map((c) => `- **${c.name}**: ${c.note}`)
].join('\n')
process.stdout.write(table + '\n')

if (writeReadme) {
  const file = new URL('../README.md', import.meta.url)
  const readme = readFileSync(file, 'utf8')
  const start = readme.indexOf('<!-- bench:start -->')
  const end = readme.indexOf('<!-- bench:end -->')
  if (start !== -1 && end !== -1) {
    writeFileSync(file, `${readme.slice(0, start + '<!-- bench:start -->'.length)}\n${table}\n${readme.slice(end)}`)
  }
}
