// `npm run bench:drain [-- --tunnels N] [-- --grace MS] [-- --no-readme]`: the reconnect storm of a reload, per
// `tunnelDrain` mode. A CLI gateway with two workers (a primary and its workers, src/cli.ts) in front of the
// benchmark upstream (bench/upstream.ts, a ws echo), N WebSocket clients in this process (2,000 by default) spread
// over its workers by the cluster. SIGHUP: a new generation of two workers starts, the old ones drain, and every
// client, on its Close 1001, reconnects at once (as most client libraries do) to the same port, so the new
// workers take the storm. Measured per mode: the peak handshakes/s the new workers see (the most reconnections
// completed in any 100 ms, × 10), the p99 and max handshake latency of the reconnections (connect to open), the
// spread of the Closes, their reasons; with `deadline`, every client also sends a numbered message every second
// through the drain until 1 s before the close window can open (the old workers' drain begins after the primary's
// `reloaded` line), and each of them must have been echoed before its tunnel's Close. Writes the `drain-bench`
// block of docs/benchmarks.md.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { WebSocket } from 'ws'
import { readyPort } from './procs.js'

const arg = (name: string, fallback: number): number => {
  const at = process.argv.indexOf(name)
  return at === -1 ? fallback : Number(process.argv[at + 1])
}
const TUNNELS = arg('--tunnels', 2000)
const GRACE = arg('--grace', 5000)
const WINDOW = Math.min(1000, Math.floor(GRACE / 10))
const writeReadme = !process.argv.includes('--no-readme')
const MODES = ['immediate', 'spread', 'deadline'] as const
type Mode = typeof MODES[number]
const root = fileURLToPath(new URL('..', import.meta.url))
const TS_ENV = { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' }
const TS = ['--import', '@tapjs/typescript/import']
const dir = mkdtempSync(join(os.tmpdir(), 'fastify-ws-proxy-bench-drain-'))

function node (args: string[]): ChildProcess {
  return spawn(process.execPath, [...TS, ...args], { cwd: root, env: TS_ENV, stdio: ['ignore', 'pipe', 'inherit'] })
}

async function freePort (): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as net.AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

/** Resolves once `output()` matches `pattern` from `from` on (bounded). */
async function waitForLine (output: () => string, pattern: RegExp, from: number, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!pattern.test(output().slice(from))) {
    if (Date.now() > deadline) throw new Error(`no ${String(pattern)} within ${ms} ms`)
    await sleep(10)
  }
}

/** One client: its tunnel on the old generation, then its reconnection. */
interface Client {
  ws: WebSocket
  sent: Array<{ seq: number, at: number }>
  echoed: Set<number>
  closeAt: number
  code: number
  reason: string
  /** The reconnection: when it started and when it opened (0 until then), or its error. */
  reconnectFrom: number
  reconnectAt: number
  reconnectError: string | null
  again: WebSocket | null
  ticker: NodeJS.Timeout | null
}

async function open (url: string): Promise<WebSocket> {
  const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: 30_000 })
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('error', reject)
  })
  return ws
}

function reconnect (client: Client, url: string): void {
  client.reconnectFrom = performance.now()
  const again = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: 30_000 })
  client.again = again
  again.once('open', () => { client.reconnectAt = performance.now() })
  again.once('error', (err) => { client.reconnectError = err.message })
}

interface ModeResult {
  mode: Mode
  tunnels: number
  reasons: Record<string, number>
  /** ms from the reload (SIGHUP) to the first and the last Close. */
  firstClose: number
  lastClose: number
  peakHandshakesPerSecond: number
  /** The most reconnections completed in any one second. */
  peakInOneSecond: number
  p50HandshakeMs: number
  p99HandshakeMs: number
  maxHandshakeMs: number
  reconnected: number
  reconnectErrors: number
  /** `deadline` only: messages sent through the drain (and before it), and how many were not echoed before the Close. */
  messages: number
  lost: number
}

function percentile (sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]
}

async function runMode (mode: Mode, upstreamPort: number): Promise<ModeResult> {
  const port = await freePort()
  const file = join(dir, `gateway-${mode}.json`)
  writeFileSync(file, JSON.stringify({
    listen: { port },
    // One line per closed tunnel would measure pino, not the proxy.
    logLevel: 'info',
    tunnelLogLevel: 'silent',
    closeGracePeriod: GRACE,
    tunnelDrain: mode,
    upstream: `http://127.0.0.1:${upstreamPort}`
  }))
  const gateway = node(['src/cli.ts', '-c', file, '--workers', '2'])
  let output = ''
  gateway.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const exited = new Promise((resolve) => gateway.once('exit', resolve))
  try {
    await waitForLine(() => output, /"msg":"workers started"/, 0)
    const url = `ws://127.0.0.1:${port}/drain`
    const clients: Client[] = []
    for (let i = 0; i < TUNNELS; i += 100) {
      const batch = await Promise.all(Array.from({ length: Math.min(100, TUNNELS - i) }, async () => await open(url)))
      for (const ws of batch) {
        clients.push({
          ws, sent: [], echoed: new Set(), closeAt: 0, code: 0, reason: '', reconnectFrom: 0, reconnectAt: 0, reconnectError: null, again: null, ticker: null
        })
      }
    }
    for (const client of clients) {
      client.ws.on('message', (data: Buffer) => { client.echoed.add(Number(data.toString())) })
      client.ws.on('close', (code: number, reason: Buffer) => {
        client.closeAt = performance.now()
        client.code = code
        client.reason = reason.toString()
        if (client.ticker !== null) clearInterval(client.ticker)
        reconnect(client, url)
      })
      client.ws.on('error', () => {})
    }
    // `deadline`: messages stop 1 s before the close window can open, so each has a second to go and come back.
    let stopAt = Infinity
    if (mode === 'deadline') {
      // A numbered message per client per second, staggered.
      let seq = 0
      for (const [i, client] of clients.entries()) {
        setTimeout(() => {
          if (client.closeAt !== 0) return
          client.ticker = setInterval(() => {
            if (client.ws.readyState !== client.ws.OPEN || performance.now() >= stopAt) return
            const n = seq++
            client.sent.push({ seq: n, at: performance.now() })
            client.ws.send(String(n))
          }, 1000)
        }, (i * 1000) / clients.length)
      }
      await sleep(1500)
    }
    const before = output.length
    const reloadAt = performance.now()
    gateway.kill('SIGHUP')
    await waitForLine(() => output, /"msg":"reloaded: the new workers serve, the old ones drain"/, before)
    stopAt = performance.now() + GRACE - WINDOW - 1000
    const bound = Date.now() + GRACE + 60_000
    while (clients.some((c) => c.reconnectAt === 0 && c.reconnectError === null) && Date.now() < bound) await sleep(50)
    // Give the last echoes of `deadline` a moment, then close everything.
    await sleep(200)
    for (const client of clients) {
      if (client.ticker !== null) clearInterval(client.ticker)
      client.ws.terminate()
      client.again?.terminate()
    }

    const reasons: Record<string, number> = {}
    for (const c of clients) reasons[`${c.code} ${c.reason}`] = (reasons[`${c.code} ${c.reason}`] ?? 0) + 1
    const closes = clients.map((c) => c.closeAt - reloadAt).filter((t) => t > 0).sort((a, b) => a - b)
    const opened = clients.filter((c) => c.reconnectAt !== 0)
    const latencies = opened.map((c) => c.reconnectAt - c.reconnectFrom).sort((a, b) => a - b)
    const times = opened.map((c) => c.reconnectAt).sort((a, b) => a - b)
    const peakIn = (ms: number): number => {
      let peak = 0
      for (let i = 0, j = 0; i < times.length; i++) {
        while (times[i] - times[j] >= ms) j++
        peak = Math.max(peak, i - j + 1)
      }
      return peak
    }
    let messages = 0
    let lost = 0
    for (const c of clients) {
      for (const { seq } of c.sent) {
        messages++
        if (!c.echoed.has(seq)) lost++
      }
    }
    return {
      mode,
      tunnels: TUNNELS,
      reasons,
      firstClose: Math.round(closes[0]),
      lastClose: Math.round(closes[closes.length - 1]),
      peakHandshakesPerSecond: peakIn(100) * 10,
      peakInOneSecond: peakIn(1000),
      p50HandshakeMs: Math.round(percentile(latencies, 0.5)),
      p99HandshakeMs: Math.round(percentile(latencies, 0.99)),
      maxHandshakeMs: Math.round(latencies[latencies.length - 1]),
      reconnected: opened.length,
      reconnectErrors: clients.filter((c) => c.reconnectError !== null).length,
      messages,
      lost
    }
  } finally {
    gateway.kill('SIGTERM')
    await Promise.race([exited, sleep(GRACE + 10_000)])
    if (gateway.exitCode === null) gateway.kill('SIGKILL')
  }
}

const upstream = node(['bench/upstream.ts'])
const upstreamPort = await readyPort(upstream, 'the upstream')

const results: ModeResult[] = []
try {
  for (const mode of MODES) {
    results.push(await runMode(mode, upstreamPort))
    process.stderr.write(`${JSON.stringify(results.at(-1))}\n`)
  }
} finally {
  upstream.kill('SIGKILL')
}

const load = os.loadavg()[0].toFixed(1)
const row = (r: ModeResult): string => `| \`${r.mode}\` | ${r.firstClose.toLocaleString('en-US')}–${r.lastClose.toLocaleString('en-US')} | ` +
  `${r.peakHandshakesPerSecond.toLocaleString('en-US')} | ${r.peakInOneSecond.toLocaleString('en-US')} | ${r.p50HandshakeMs} | ${r.p99HandshakeMs} | ` +
  `${r.maxHandshakeMs} | ${r.reconnected}/${r.tunnels} | ` +
  `${Object.entries(r.reasons).map(([k, n]) => `${n} × ${k}`).join(', ')} |`
const deadline = results.find((r) => r.mode === 'deadline') as ModeResult
const table = [
  `${new Date().toISOString().slice(0, 10)}, ${os.cpus().length} cores (${os.cpus()[0].model.split(' ').slice(0, 2).join(' ')}), Node ${process.version}; ` +
    `${TUNNELS.toLocaleString('en-US')} tunnels on a gateway with 2 workers, closeGracePeriod ${GRACE} ms; one reload (SIGHUP) per mode, ` +
    `every client reconnecting at once on its Close; clients, upstream, primary and both generations on the same cores (load average ${load} at the end).`,
  '',
  '| `tunnelDrain` | Closes (ms after SIGHUP) | peak handshakes/s at the new workers (100 ms × 10) | most in any 1 s | p50 handshake (ms) | p99 handshake (ms) | max handshake (ms) | reconnected | Close code and reason |',
  '|---|---|---|---|---|---|---|---|---|',
  ...results.map(row),
  '',
  `\`deadline\`: ${deadline.messages.toLocaleString('en-US')} messages sent through the tunnels before and during the drain, ` +
    `up to 1 s before the close window: **${deadline.lost} lost** (not echoed before the tunnel's Close).`
].join('\n')
process.stdout.write(table + '\n')
mkdirSync(join(root, 'bench', 'results'), { recursive: true })
writeFileSync(join(root, 'bench', 'results', `drain-${new Date().toISOString().replace(/[:.]/g, '-')}.json`),
  JSON.stringify({ date: new Date().toISOString(), tunnels: TUNNELS, grace: GRACE, window: WINDOW, results }, null, 2))
if (writeReadme) {
  const path = join(root, 'docs', 'benchmarks.md')
  const text = readFileSync(path, 'utf8')
  const startMark = '<!-- drain-bench:start -->'
  const from = text.indexOf(startMark)
  const to = text.indexOf('<!-- drain-bench:end -->')
  if (from === -1 || to === -1) throw new Error('docs/benchmarks.md has no drain-bench marks')
  writeFileSync(path, text.slice(0, from + startMark.length) + '\n' + table + '\n' + text.slice(to))
}
