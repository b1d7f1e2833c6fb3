// `npm run bench:h2 [-- --rounds N] [-- --seconds S] [-- --no-docs]`
//
// HTTP/2 side by side, in one run: small GETs over h2 and over HTTP/1.1 (both over TLS), and 64 B WebSocket round
// trips over h2 (RFC 8441, extended CONNECT) and over HTTP/1.1 (wss), through this plugin (Fastify `http2: true`,
// `https` with `allowHTTP1`: one process serves both) and through nginx (`listen ... ssl http2`; nginx has no RFC
// 8441, so its WebSockets are wss over HTTP/1.1). The certificate is self-signed, made by openssl at start
// (src/demo/certificate.ts). Processes, CPU readings and the load generator are bench/run.ts's (bench/procs.ts); the
// upstream is the same plain HTTP/1.1 + `ws` echo. Rounds are interleaved, the order of the rows rotated per round;
// figures are medians, ratios medians of per-round ratios. Results: bench/results/<date>-h2.{json,md}, and the
// table between the h2-bench markers in docs/benchmarks.md (unless --no-docs).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { parseArgs } from 'node:util'
import { demoCertificate } from '../src/demo/certificate.js'
import type { LoadResult, Workload } from './load.js'
import { build, ensureNginx, LoadGenerator, median, processTree, startProcess, transpileBench } from './procs.js'

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '3' },
    'no-docs': { type: 'boolean', default: false }
  }
})
const ROUNDS = Number(args.rounds)
const SECONDS = Number(args.seconds)
// Node 20's http2 client can allocate without bound in one of its corner cases (see bench/load.ts): a cap, not a hang.
const NODE_FLAGS = ['--max-old-space-size=2048']
const OURS = 'fastify-ws-proxy'

type Proxy = typeof OURS | 'nginx'
interface Row { name: string, proxy: Proxy, scheme: 'https' | 'wss', workload: Workload }
interface Cell { id: string, unit: 'req' | 'rtt', path: string, baseline: string, rows: Row[] }

const cells: Cell[] = [
  {
    id: 'GET small, 50 concurrent, TLS',
    unit: 'req',
    path: '',
    baseline: `${OURS}, HTTP/1.1`,
    rows: [
      { name: `${OURS}, h2`, proxy: OURS, scheme: 'https', workload: { kind: 'h2-get', sessions: 5, streams: 50 } },
      { name: `${OURS}, HTTP/1.1`, proxy: OURS, scheme: 'https', workload: { kind: 'get', connections: 50, close: false } },
      { name: 'nginx, h2', proxy: 'nginx', scheme: 'https', workload: { kind: 'h2-get', sessions: 5, streams: 50 } },
      { name: 'nginx, HTTP/1.1', proxy: 'nginx', scheme: 'https', workload: { kind: 'get', connections: 50, close: false } }
    ]
  },
  {
    id: 'WS round trips, 64 B, 50 tunnels, TLS',
    unit: 'rtt',
    path: '/rtt',
    baseline: `${OURS}, HTTP/1.1 (wss)`,
    rows: [
      { name: `${OURS}, h2 (RFC 8441)`, proxy: OURS, scheme: 'https', workload: { kind: 'h2-ws-rtt', sessions: 5, clients: 50, bytes: 64 } },
      { name: `${OURS}, HTTP/1.1 (wss)`, proxy: OURS, scheme: 'wss', workload: { kind: 'ws-rtt', clients: 50, bytes: 64 } },
      { name: 'nginx, HTTP/1.1 (wss)', proxy: 'nginx', scheme: 'wss', workload: { kind: 'ws-rtt', clients: 50, bytes: 64 } }
    ]
  }
]
const CLIENTS: Partial<Record<Workload['kind'], string>> = {
  'h2-get': '50 streams over 5 h2 connections',
  get: '50 HTTP/1.1 keep-alive connections',
  'h2-ws-rtt': '50 extended CONNECT streams over 5 h2 connections',
  'ws-rtt': '50 wss connections'
}

interface Sample { rate: number, cpu: number, errors: number }

ensureNginx()
const { entry } = build(null)
const benchJs = transpileBench()
const certificate = await demoCertificate()
const loader = new LoadGenerator(benchJs, NODE_FLAGS)
const samples = new Map<string, Sample[]>() // row name -> per round
const children: Array<{ kill: () => boolean }> = []
try {
  const upstream = await startProcess(benchJs, ['bench/upstream.ts'])
  children.push(upstream.child)
  const { cert, key } = certificate.files
  const ours = await startProcess(benchJs, ['bench/contenders/fastify-ws-proxy.ts', String(upstream.port), entry, cert, key], NODE_FLAGS)
  children.push(ours.child)
  const nginx = await startProcess(benchJs, ['bench/contenders/nginx.ts', String(upstream.port), cert, key])
  children.push(nginx.child)
  const proxies = { [OURS]: { port: ours.port, tree: processTree(ours.pid) }, nginx: { port: nginx.port, tree: processTree(nginx.pid) } }
  const measure = async (cell: Cell, row: Row, seconds: number, measured: boolean): Promise<Sample> => {
    const { port, tree } = proxies[row.proxy]
    const request = { url: `${row.scheme}://127.0.0.1:${port}${cell.path}`, workload: row.workload, seconds, ca: cert }
    try {
      const { result, cpu } = await loader.run(request, measured ? tree : null)
      return sample(result, cpu)
    } catch (err) {
      process.stderr.write(`${row.name}: ${(err as Error).message}\n`)
      return { rate: NaN, cpu: NaN, errors: 1 }
    }
  }
  process.stderr.write(`${os.cpus().length} cores, Node ${process.version}: ${cells.reduce((n, c) => n + c.rows.length, 0)} rows x ${ROUNDS} rounds of ${SECONDS} s\n`)
  // Warm-up, not measured: both proxies' code paths compiled, pools and TLS sessions grown, before round 1.
  for (const cell of cells) for (const row of cell.rows) await measure(cell, row, 1, false)
  for (let round = 0; round < ROUNDS; round++) {
    for (const cell of cells) {
      process.stderr.write(`round ${round + 1}/${ROUNDS}: ${cell.id}\n`)
      for (let k = 0; k < cell.rows.length; k++) {
        const row = cell.rows[(k + round) % cell.rows.length]
        const list = samples.get(row.name) ?? []
        list.push(await measure(cell, row, SECONDS, true))
        samples.set(row.name, list)
      }
    }
  }
} finally {
  loader.close()
  for (const child of children) child.kill()
  await certificate.remove()
}

function sample (result: LoadResult, cpu: number): Sample {
  if (result.units === 0) return { rate: NaN, cpu: NaN, errors: result.errors }
  return { rate: result.units / result.seconds, cpu: cpu * 1e6 / result.units, errors: result.errors }
}

// ---------------------------------------------------------------------------------------------------------------
// Report.

const fmt = (v: number): string => Number.isNaN(v) ? 'n/a' : v.toLocaleString('en-US', { maximumFractionDigits: 0 })
const x = (v: number): string => Number.isNaN(v) ? 'n/a' : `${v.toFixed(2)}×`
const perRound = (a: string, b: string, key: 'rate' | 'cpu'): number =>
  median((samples.get(a) ?? []).map((s, round) => s[key] / (samples.get(b)?.[round]?.[key] ?? NaN)))
const date = new Date().toISOString()
const lines = [
  `Measured ${date.slice(0, 16).replace('T', ' ')} UTC on ${os.cpus()[0]?.model ?? 'cpu'} (${os.cpus().length} cores), Node ${process.version}: ` +
    `${ROUNDS} interleaved rounds of ${SECONDS} s per row, medians; ratios are medians of per-round ratios. CPU: utime+stime of the proxy's ` +
    'process tree over the measured window. TLS everywhere (self-signed P-256 certificate, TLS 1.3); the upstream is plain HTTP/1.1.',
  '',
  '| cell | proxy, client protocol | clients | proxy CPU | rate | CPU / ours over HTTP/1.1 | rate / ours over HTTP/1.1 |',
  '|---|---|---|---:|---:|---:|---:|'
]
for (const cell of cells) {
  const [rateUnit, cpuUnit] = cell.unit === 'req' ? ['req/s', 'µs/req'] : ['round trips/s', 'µs/round trip']
  for (const row of cell.rows) {
    const list = samples.get(row.name) ?? []
    const errors = list.reduce((sum, s) => sum + s.errors, 0)
    lines.push(`| ${row === cell.rows[0] ? cell.id : ''} | ${row.name}${errors > 0 ? ` (errors: ${errors})` : ''} | ${CLIENTS[row.workload.kind] ?? ''} | ` +
      `${fmt(median(list.map((s) => s.cpu)))} ${cpuUnit} | ${fmt(median(list.map((s) => s.rate)))} ${rateUnit} | ` +
      `${x(perRound(row.name, cell.baseline, 'cpu'))} | ${x(perRound(row.name, cell.baseline, 'rate'))} |`)
  }
}
const table = lines.join('\n')
process.stdout.write(table + '\n')

mkdirSync(new URL('results/', import.meta.url), { recursive: true })
const stem = `${date.slice(0, 19).replace(/:/g, '')}-h2`
writeFileSync(new URL(`results/${stem}.json`, import.meta.url), JSON.stringify({ date, rounds: ROUNDS, seconds: SECONDS, cells, samples: Object.fromEntries(samples) }, null, 2))
writeFileSync(new URL(`results/${stem}.md`, import.meta.url), table + '\n')
if (args['no-docs'] !== true) {
  const file = new URL('../docs/benchmarks.md', import.meta.url)
  const doc = readFileSync(file, 'utf8')
  const start = doc.indexOf('<!-- h2-bench:start -->')
  const end = doc.indexOf('<!-- h2-bench:end -->')
  if (start !== -1 && end !== -1) writeFileSync(file, `${doc.slice(0, start + '<!-- h2-bench:start -->'.length)}\n${table}\n${doc.slice(end)}`)
}
