// `npm run bench:lifecycle [-- --quick] [-- --no-readme]`: what the tunnel lifecycle costs.
//  1. Frame-boundary tracking vs a blind pipe: one connection echoing 64 KiB frames through the plugin, once with
//     `Upgrade: websocket` (both directions tracked, for 1001 closes and pings) and once with another protocol
//     (a blind pipe), interleaved; MB/s each way and proxy CPU seconds per GB. The goal: within 5%.
//  2. Timers with 10,000 idle tunnels (or as many as the descriptor limit allows): proxy CPU% and RSS with none and with them (every timer set:
//     read, send, idle, maxTunnelLifetime), for the default one-second sweep and for a 100 ms sweep.
// Every part is its own process: a raw upgrade upstream, the plugin, the raw-socket load (bench/lifecycle/*).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { fileURLToPath } from 'node:url'

const quick = process.argv.includes('--quick')
const writeReadme = !process.argv.includes('--no-readme')
const ROUNDS = quick ? 3 : 7
const SECONDS = quick ? 3 : 6
// A tunnel is two sockets in the proxy: 10,000 need more than 20,000 descriptors, the hard limit of some machines
// (containers without CAP_SYS_RESOURCE cannot raise it). Below that, the figure is taken with as many as fit.
const HARD_LIMIT = Number(spawnSync('bash', ['-c', 'ulimit -Hn']).stdout.toString().trim()) || 65_536
const IDLE = Math.min(10_000, Math.floor((HARD_LIMIT - 200) / 2 / 100) * 100)
const WINDOW = quick ? 5 : 15
const root = fileURLToPath(new URL('..', import.meta.url))
const TS_ENV = { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' }
const NODE = [process.execPath, '--expose-gc', '--import', '@tapjs/typescript/import']

/** Runs node with its file-descriptor limit raised to the hard limit. */
function node (args: string[]): ChildProcess {
  return spawn('bash', ['-c', 'ulimit -n "$(ulimit -Hn)" && exec "$0" "$@"', ...NODE, ...args], { cwd: root, env: TS_ENV, stdio: ['ignore', 'pipe', 'inherit'] })
}

async function waitFor (child: ChildProcess, pattern: RegExp, ms: number, what: string): Promise<RegExpExecArray> {
  return await new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms)
    const onData = (chunk: Buffer): void => {
      out += chunk.toString()
      const match = pattern.exec(out)
      if (match === null) return
      clearTimeout(timer)
      child.stdout?.off('data', onData)
      resolve(match)
    }
    child.stdout?.on('data', onData)
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`${what}: exited with ${code}`)) })
  })
}

async function start (args: string[]): Promise<{ child: ChildProcess, port: number }> {
  const child = node(args)
  const match = await waitFor(child, /READY (\d+)/, 30_000, args[0])
  return { child, port: Number(match[1]) }
}

function cpuSeconds (pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

function rssBytes (pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024
}

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

async function collectGarbage (proxy: ChildProcess): Promise<void> {
  const done = waitFor(proxy, /GC/, 5000, 'GC')
  proxy.kill('SIGUSR2')
  await done
}

/** The proxy's CPU use (% of one core) over a WINDOW of rest, after a forced GC. */
async function cpuPercentAtRest (proxy: ChildProcess): Promise<number> {
  await collectGarbage(proxy)
  const before = cpuSeconds(proxy.pid as number)
  await sleep(WINDOW * 1000)
  return (cpuSeconds(proxy.pid as number) - before) / WINDOW * 100
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

const upstream = await start(['bench/lifecycle/upstream.ts'])
const results: Record<string, number> = {}
try {
  // 1. Boundary tracking vs blind pipe.
  const proxy = await start(['bench/lifecycle/proxy.ts', String(upstream.port)])
  const pid = proxy.child.pid as number
  const samples: Record<string, { mbps: number[], cpu: number[] }> = { websocket: { mbps: [], cpu: [] }, blind: { mbps: [], cpu: [] } }
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      for (const kind of round % 2 === 1 ? ['websocket', 'blind'] : ['blind', 'websocket']) {
        process.stderr.write(`bulk round ${round}/${ROUNDS}: ${kind}\n`)
        const before = cpuSeconds(pid)
        const client = node(['bench/lifecycle/client.ts', 'bulk', String(proxy.port), kind === 'websocket' ? 'websocket' : 'bench-raw', String(SECONDS)])
        const { bytes, seconds } = JSON.parse((await waitFor(client, /\{.*\}/, (SECONDS + 30) * 1000, 'bulk client'))[0]) as { bytes: number, seconds: number }
        samples[kind].mbps.push(bytes / seconds / 1e6)
        // Each echoed byte crossed the proxy twice.
        samples[kind].cpu.push((cpuSeconds(pid) - before) / (2 * bytes / 1e9))
      }
    }
  } finally {
    proxy.child.kill()
  }
  for (const kind of ['websocket', 'blind']) {
    results[`${kind}MBps`] = median(samples[kind].mbps)
    results[`${kind}CpuPerGB`] = median(samples[kind].cpu)
  }

  // 2. Timers with 10,000 idle tunnels.
  for (const variant of ['default', 'fast-tick']) {
    const proxy = await start(['bench/lifecycle/proxy.ts', String(upstream.port), variant])
    const pid = proxy.child.pid as number
    let holder: ChildProcess | null = null
    try {
      await sleep(1000)
      results[`${variant}CpuNone`] = await cpuPercentAtRest(proxy.child)
      results[`${variant}RssNone`] = rssBytes(pid)
      process.stderr.write(`${variant}: opening ${IDLE} idle tunnels\n`)
      holder = node(['bench/lifecycle/client.ts', 'idle', String(proxy.port), String(IDLE)])
      await waitFor(holder, /OPEN/, 120_000, 'idle tunnels')
      await sleep(2000)
      results[`${variant}CpuIdle`] = await cpuPercentAtRest(proxy.child)
      results[`${variant}RssIdle`] = rssBytes(pid)
    } finally {
      holder?.kill('SIGKILL')
      proxy.child.kill()
    }
  }
} finally {
  upstream.child.kill()
}

const date = new Date().toISOString().slice(0, 10)
const machine = `${os.cpus()[0]?.model ?? 'cpu'} (${os.cpus().length} cores), Node ${process.version}`
mkdirSync(new URL('results/', import.meta.url), { recursive: true })
writeFileSync(new URL(`results/${date}-lifecycle${quick ? '-quick' : ''}.json`, import.meta.url), JSON.stringify({ date, machine, quick, results }, null, 2))

const f = (v: number, digits = 1): string => v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
const mib = (v: number): string => f(v / 2 ** 20)
const table = [
  `Measured ${date} on ${machine}${quick ? ' (quick mode)' : ''}: \`npm run bench:lifecycle\`.`,
  '',
  `| one tunnel echoing 64 KiB frames (${ROUNDS} interleaved rounds of ${SECONDS} s, medians) | WebSocket (boundaries tracked) | blind pipe | tracked / blind |`,
  '|---|---:|---:|---:|',
  `| MB/s each way | ${f(results.websocketMBps)} | ${f(results.blindMBps)} | ${(results.websocketMBps / results.blindMBps).toFixed(3)} |`,
  `| proxy CPU seconds per GB | ${f(results.websocketCpuPerGB, 2)} | ${f(results.blindCpuPerGB, 2)} | ${(results.websocketCpuPerGB / results.blindCpuPerGB).toFixed(3)} |`,
  '',
  `| proxy at rest, every tunnel timer set (${WINDOW} s windows) | no tunnels | ${IDLE.toLocaleString('en-US')} idle tunnels |`,
  '|---|---:|---:|',
  `| CPU %, sweep every 1 s (default timers) | ${f(results.defaultCpuNone, 2)} | ${f(results.defaultCpuIdle, 2)} |`,
  `| CPU %, sweep every 100 ms (a route with a 1 s timer) | ${f(results['fast-tickCpuNone'], 2)} | ${f(results['fast-tickCpuIdle'], 2)} |`,
  `| RSS MiB (after GC), 1 s sweep | ${mib(results.defaultRssNone)} | ${mib(results.defaultRssIdle)} |`
].join('\n')
process.stdout.write(table + '\n')

if (writeReadme) {
  const file = new URL('../docs/benchmarks.md', import.meta.url)
  const readme = readFileSync(file, 'utf8')
  const startMark = '<!-- lifecycle-bench:start -->'
  const start = readme.indexOf(startMark)
  const end = readme.indexOf('<!-- lifecycle-bench:end -->')
  if (start !== -1 && end !== -1) writeFileSync(file, `${readme.slice(0, start + startMark.length)}\n${table}\n${readme.slice(end)}`)
}
