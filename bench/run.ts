// `npm run bench [-- --quick] [-- --compare <git-ref>] [-- --floor] [-- --only <regex>] [-- --rounds N] [-- --seconds S] [-- --profile <dir>] [-- --node-flags='<flags>' --log <dir>] [-- --no-docs]`
//
// The side-by-side benchmark. Every piece is its own process on 127.0.0.1: the upstream (HTTP + `ws` echo), each
// contender proxying to it (direct = no proxy, this plugin, nginx, @fastify/http-proxy, http-proxy), and one load
// generator (bench/load.ts). Rounds are interleaved: each cell of the sweep runs every contender in turn (order
// rotated per round), round after round, so drift on a shared machine hits them alike.
//
// The primary figure is the proxy's CPU per unit of work: utime + stime of the contender's process tree, read from
// /proc when the load generator opens and closes its measured window. It holds steady where req/s swings with
// what else runs on the cores. Ratios are medians of per-round ratios (same round, same cell).
//
// --compare <ref> builds <ref> in a temporary worktree and runs it as one more contender, then prints CPU ratios
// old/new per cell: the regression check before merging. --floor adds two minimal proxies, `floor (node)` (a bare
// `http` server and an undici Pool) and `floor (fastify)` (the same behind one Fastify route): what Node and undici
// alone cost per cell; not peers, and a column "ours / floor (fastify)" per cell. --profile <dir> runs the Node contenders under --cpu-prof
// (one folder each; pair it with --only). --node-flags adds flags to every Node contender (e.g. '--trace-gc'), and
// --log <dir> keeps each contender's output after its READY line in <dir>/<contender>.log. Results:
// bench/results/<date>[-quick].{json,md}; a whole sweep also replaces the table in docs/benchmarks.md.
import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import type { LoadRequest, LoadResult, Workload } from './load.js'
import { build, ensureNginx, type GcCounts, LoadGenerator, median, processTree, root, startProcess as startIn, transpileBench } from './procs.js'

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    compare: { type: 'string' },
    floor: { type: 'boolean', default: false },
    only: { type: 'string' },
    rounds: { type: 'string' },
    seconds: { type: 'string' },
    profile: { type: 'string' },
    'node-flags': { type: 'string' },
    log: { type: 'string' },
    'no-docs': { type: 'boolean', default: false }
  }
})
const quick = args.quick as boolean
const ROUNDS = args.rounds !== undefined ? Number(args.rounds) : quick ? 3 : 5
const SECONDS = args.seconds !== undefined ? Number(args.seconds) : quick ? 1.5 : 4
// Enough that what a process allocates once (compiled code, grown pools) does not pass for a per-tunnel cost.
const IDLE_TUNNELS = 5000
/** Quiet time before a settled idle-memory reading: V8 measures the allocation rate over the last five seconds. */
const QUIET_MS = 7000
/** Per contender, RSS bytes per idle tunnel, one figure per round (see `idleMemory`). */
interface IdleFigures { burst: Map<string, number[]>, settled: Map<string, number[]> }
const KiB = 1024
const MiB = 1024 * KiB

// ---------------------------------------------------------------------------------------------------------------
// The sweep. `quick` cells make the --quick run (a few minutes); a full run has them all.

type Unit = 'req' | 'rtt' | 'GB' | 'handshake'
interface Cell { id: string, path: string, workload: Workload, unit: Unit, quick: boolean }

const size = (n: number): string => n >= MiB ? `${n / MiB} MiB` : n >= KiB ? `${n / KiB} KiB` : `${n} B`
const cells: Cell[] = []
for (const connections of [1, 10, 50, 200]) {
  cells.push({ id: `GET small, ${connections} conns, keep-alive`, path: '/', workload: { kind: 'get', connections, close: false }, unit: 'req', quick: connections === 50 })
}
cells.push({ id: 'GET small, 50 conns, Connection: close', path: '/', workload: { kind: 'get', connections: 50, close: true }, unit: 'req', quick: true })
for (const bytes of [1 * KiB, 64 * KiB, 1 * MiB]) {
  cells.push({ id: `POST ${size(bytes)} echo, 10 conns`, path: '/', workload: { kind: 'post', connections: 10, bytes, close: false }, unit: 'req', quick: bytes === MiB })
}
// 16 MiB as an upload, not an echo: a 16 MiB echo through nginx (proxy_request_buffering off) stalled with no answer
// for 60 s (direct and the Node proxies answered): a full-duplex echo that large is not what nginx streams.
cells.push({ id: 'POST 16 MiB upload, 2 conns', path: '/', workload: { kind: 'post', connections: 2, bytes: 16 * MiB, close: false, upload: true }, unit: 'req', quick: false })
cells.push({ id: 'POST 1 MiB echo, 1 conn', path: '/', workload: { kind: 'post', connections: 1, bytes: MiB, close: false }, unit: 'req', quick: false })
cells.push({ id: 'POST 1 MiB echo, 50 conns', path: '/', workload: { kind: 'post', connections: 50, bytes: MiB, close: false }, unit: 'req', quick: false })
cells.push({ id: 'POST 1 MiB echo, 10 conns, Connection: close', path: '/', workload: { kind: 'post', connections: 10, bytes: MiB, close: true }, unit: 'req', quick: false })
for (const clients of [1, 50]) {
  cells.push({ id: `WS round trips, 64 B, ${clients} tunnels`, path: '/rtt', workload: { kind: 'ws-rtt', clients, bytes: 64 }, unit: 'rtt', quick: clients === 50 })
}
// Bulk echo: message size x bytes in flight per tunnel (one message: no backpressure; MiBs: the proxy's buffers fill).
const bulk: Array<[number, number, number, boolean]> = [
  // tunnels, message bytes, bytes in flight per tunnel, quick
  [1, 64, 64 * KiB, false],
  [1, 1 * KiB, 1 * MiB, false],
  [1, 16 * KiB, 1 * MiB, false],
  [1, 64 * KiB, 64 * KiB, true],
  [1, 64 * KiB, 512 * KiB, false],
  [1, 64 * KiB, 4 * MiB, true],
  [1, 64 * KiB, 16 * MiB, true],
  [1, 1 * MiB, 1 * MiB, false],
  [1, 1 * MiB, 16 * MiB, true],
  [50, 1 * KiB, 64 * KiB, false],
  [50, 64 * KiB, 64 * KiB, true],
  [50, 64 * KiB, 1 * MiB, false]
]
for (const [tunnels, bytes, inFlight, q] of bulk) {
  const held = inFlight <= bytes ? 'one message' : `${size(inFlight)}`
  cells.push({ id: `WS bulk, ${size(bytes)} msgs, ${held} in flight, ${tunnels} tunnel${tunnels > 1 ? 's' : ''}`, path: '/bulk', workload: { kind: 'ws-bulk', tunnels, bytes, inFlight }, unit: 'GB', quick: q })
}
cells.push({ id: 'WS handshakes, 20 loops, new upstream connection', path: '/hs', workload: { kind: 'ws-handshake', loops: 20, warm: false }, unit: 'handshake', quick: true })
cells.push({ id: 'WS handshakes, 20 loops, after a keep-alive GET (warm pool)', path: '/hs', workload: { kind: 'ws-handshake', loops: 20, warm: true }, unit: 'handshake', quick: false })

const WARM_UP: Workload[] = [
  { kind: 'get', connections: 50, close: false },
  { kind: 'post', connections: 10, bytes: 256 * KiB, close: false },
  { kind: 'ws-rtt', clients: 10, bytes: 64 },
  { kind: 'ws-bulk', tunnels: 2, bytes: 64 * KiB, inFlight: MiB },
  { kind: 'ws-handshake', loops: 10, warm: true }
]

const only = args.only === undefined ? null : new RegExp(args.only, 'i')
const selected = cells.filter((c) => (only !== null ? only.test(c.id) : !quick || c.quick))
if (selected.length === 0) throw new Error(`no cell matches --only ${args.only}`)

// ---------------------------------------------------------------------------------------------------------------
// Processes and /proc.

interface Contender { name: string, args: string[] | null, note: string, node: boolean }
interface Started { contender: Contender, port: number, pid: number | null, child: ChildProcess | null }

function rssBytes (pids: number[]): number {
  let kB = 0
  for (const pid of pids) {
    try {
      const line = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
      kB += line === null ? 0 : Number(line[1])
    } catch {}
  }
  return kB * 1024
}

const benchJs = transpileBench()
const loader = new LoadGenerator(benchJs)
const load = (request: LoadRequest, pids: number[] | null, gcPid: number | null = null): Promise<{ result: LoadResult, cpu: number, gc: GcCounts | null }> => loader.run(request, pids, gcPid)
const startProcess = (args: string[], nodeFlags: string[] = []): ReturnType<typeof startIn> => startIn(benchJs, args, nodeFlags)

// ---------------------------------------------------------------------------------------------------------------
// Metrics of one measurement.

interface Sample {
  /** Work per second: req/s, round trips/s, MB/s echoed (bulk), handshake cycles/s. */
  rate: number
  /** Proxy CPU per unit: µs per request / round trip / handshake, ms per GB echoed (bulk); NaN for direct. */
  cpu: number
  errors: number
  /** A Node contender's mark-compacts per second of the window; NaN for direct and nginx. */
  majors: number
  /** A Node contender's GC pauses as a share of its CPU over the window; NaN for direct and nginx. */
  gcShare: number
}

function sample (cell: Cell, { result, cpu, gc }: { result: LoadResult, cpu: number, gc: GcCounts | null }, measured: boolean): Sample {
  const errors = result.errors
  const majors = gc === null ? NaN : gc.majors / result.seconds
  const gcShare = gc === null || !(cpu > 0) ? NaN : gc.ms / 1e3 / cpu
  if (result.units === 0) return { rate: NaN, cpu: NaN, errors, majors, gcShare }
  if (cell.unit === 'GB') {
    // Each echoed byte crosses the proxy twice (there and back); the figure is per GB echoed.
    return { rate: result.bytes / result.seconds / 1e6, cpu: measured ? cpu * 1e3 / (result.bytes / 1e9) : NaN, errors, majors, gcShare }
  }
  return { rate: result.units / result.seconds, cpu: measured ? cpu * 1e6 / result.units : NaN, errors, majors, gcShare }
}

// ---------------------------------------------------------------------------------------------------------------
// The run.

ensureNginx()
const builds = [build(null), ...(args.compare === undefined ? [] : [build(args.compare)])]
const fileName = (name: string): string => name.replace(/[^\w.-]+/g, '_')
const profileFlags = (name: string): string[] => [
  ...(args['node-flags']?.split(' ').filter((f) => f !== '') ?? []),
  // One folder per contender: the TypeScript loader's thread writes a profile of its own beside the main thread's.
  ...(args.profile === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', join(args.profile, fileName(name))])
]
if (args.log !== undefined) mkdirSync(args.log, { recursive: true })
/** With --log, what a contender prints after its READY line goes to <dir>/<contender>.log. */
function keepLog (name: string, child: ChildProcess): void {
  if (args.log === undefined) return
  const log = createWriteStream(join(args.log, `${fileName(name)}.log`))
  child.stdout?.pipe(log)
}
const FLOOR_NODE = 'floor (node)'
const FLOOR_FASTIFY = 'floor (fastify)'
// The floors read tunnels in place with the working tree's tunnel-reads module (floor-parts.ts).
const floorPlugin = builds[0].entry
const floor = args.floor as boolean
// --floor: reference points, not peers (PEERS below names the peers).
const floorContenders: Contender[] = !floor
  ? []
  : [
      { name: FLOOR_NODE, args: ['bench/contenders/floor.ts', floorPlugin], node: true, note: 'not a peer: the least a Node proxy does, `http.createServer` dispatching to an undici Pool (128 connections) with one handler object, no checks, no X-Forwarded-*; upgrades dialled with `net.connect`, the 101 unparsed, both sockets read in place (the plugin\'s `readInPlace`) and each chunk written to the peer' },
      { name: FLOOR_FASTIFY, args: ['bench/contenders/floor-fastify.ts', floorPlugin], node: true, note: 'not a peer: floor (node) behind one Fastify catch-all route (`logger: false`, bodies unparsed, `reply.hijack()` then `reply.raw`); upgrades routed through Fastify (`app.routing` from the server\'s `upgrade` event, as a plugin must for hooks), then relayed as floor (node)' }
    ]
const contenders: Contender[] = [
  { name: 'direct', args: null, node: false, note: 'no proxy: the load generator talks to the upstream (the limit)' },
  ...builds.map((b) => ({ name: b.label, args: ['bench/contenders/fastify-ws-proxy.ts', b.entry], node: true, note: `this plugin (compiled ${b.label === 'fastify-ws-proxy' ? 'working tree' : b.label.slice('fastify-ws-proxy@'.length)}), defaults: undici pool of 128 connections` })),
  { name: 'nginx', args: ['bench/contenders/nginx.ts'], node: false, note: 'nginx (1 worker), WebSocket map config, upstream `keepalive 128`, `proxy_request_buffering off`' },
  { name: '@fastify/http-proxy', args: ['bench/contenders/fastify-http-proxy.ts'], node: true, note: '@fastify/http-proxy 11 with `websocket: true`, defaults (reply-from over undici, WebSockets re-framed by `ws`)' },
  { name: 'http-proxy', args: ['bench/contenders/http-proxy.ts'], node: true, note: 'node-http-proxy 1.18 (`web` + `ws`), keep-alive agent of 128 sockets' },
  ...floorContenders
]
const ours = builds[0].label
const old = builds[1]?.label

const upstream = await startProcess(['bench/upstream.ts'])
const started: Started[] = []
const samples = new Map<string, Map<string, Sample[]>>() // cell id -> contender -> per round
let idle: IdleFigures = { burst: new Map(), settled: new Map() }
try {
  for (const contender of contenders) {
    if (contender.args === null) {
      started.push({ contender, port: upstream.port, pid: null, child: null })
    } else {
      const { child, port, pid } = await startProcess([...contender.args.slice(0, 1), String(upstream.port), ...contender.args.slice(1)],
        contender.node ? profileFlags(contender.name) : [])
      keepLog(contender.name, child)
      started.push({ contender, port, pid, child })
    }
  }
  const trees = new Map(started.map((s) => [s.contender.name, s.pid === null ? null : processTree(s.pid)]))
  const machine = `${os.cpus()[0]?.model ?? 'cpu'} (${os.cpus().length} cores), Node ${process.version}`
  process.stderr.write(`${machine}: ${selected.length} cells x ${started.length} contenders x ${ROUNDS} rounds of ${SECONDS} s\n`)
  // Warm-up, not measured: every contender's code paths compiled (a fresh Node process runs its first requests in
  // the interpreter), every pool and buffer grown, before round 1.
  for (const s of started) {
    process.stderr.write(`warm-up: ${s.contender.name}\n`)
    for (const workload of WARM_UP) {
      const scheme = workload.kind.startsWith('ws') ? 'ws' : 'http'
      await load({ url: `${scheme}://127.0.0.1:${s.port}${scheme === 'ws' ? '/warm' : ''}`, workload, seconds: 1 }, null)
    }
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const cell of selected) {
      process.stderr.write(`round ${round + 1}/${ROUNDS}: ${cell.id}\n`)
      const byContender = samples.get(cell.id) ?? new Map<string, Sample[]>()
      samples.set(cell.id, byContender)
      for (let k = 0; k < started.length; k++) {
        const s = started[(k + round) % started.length]
        const scheme = cell.workload.kind.startsWith('ws') ? 'ws' : 'http'
        const url = `${scheme}://127.0.0.1:${s.port}${scheme === 'ws' ? cell.path : ''}`
        const measured = await load({ url, workload: cell.workload, seconds: SECONDS }, trees.get(s.contender.name) ?? null, s.contender.node ? s.pid : null)
        const list = byContender.get(s.contender.name) ?? []
        list.push(sample(cell, measured, s.pid !== null))
        byContender.set(s.contender.name, list)
      }
    }
  }
  if (only === null || only.test('idle tunnels')) idle = await idleMemory(contenders.filter((c) => c.args !== null), quick ? 1 : 3)
} finally {
  loader.close()
  upstream.child.kill()
  for (const { child } of started) child?.kill()
}

/**
 * RSS growth per idle tunnel, on a fresh process of each contender (no warm-up: every contender starts alike):
 * `IDLE_TUNNELS` ws clients connect and stay silent; Node contenders collect their garbage before each reading.
 * Two figures per process. `burst`: one second after the last tunnel opened, against one second after start.
 * `settled`: both readings taken after `QUIET_MS` without traffic. V8 grows a Node process's young generation while
 * thousands of handshakes keep most of what they allocate (up to 16 MiB per semi-space in Node 20, whatever the
 * tunnel count), and gives it back only at a collection that sees a low allocation rate over its last five seconds;
 * `settled` is the memory the tunnels hold, `burst` adds that growth, spread over 5,000 tunnels.
 */
async function idleMemory (list: Contender[], rounds: number): Promise<IdleFigures> {
  const figures: IdleFigures = { burst: new Map(), settled: new Map() }
  const add = (which: Map<string, number[]>, name: string, value: number): void => {
    which.set(name, [...which.get(name) ?? [], value])
  }
  for (let round = 0; round < rounds; round++) {
    for (const contender of list) {
      process.stderr.write(`idle tunnels ${round + 1}/${rounds}: ${contender.name}\n`)
      const args = contender.args as string[]
      const { child, port, pid } = await startProcess([args[0], String(upstream.port), ...args.slice(1)])
      try {
        const tree = processTree(pid)
        await settle(child, contender.node, 1000)
        const before = rssBytes(tree)
        await settle(child, contender.node, QUIET_MS)
        const quietBefore = rssBytes(tree)
        const holder = await holdIdle(port, IDLE_TUNNELS)
        try {
          await settle(child, contender.node, 1000)
          add(figures.burst, contender.name, (rssBytes(tree) - before) / IDLE_TUNNELS)
          await settle(child, contender.node, QUIET_MS)
          add(figures.settled, contender.name, (rssBytes(tree) - quietBefore) / IDLE_TUNNELS)
        } finally {
          holder.kill('SIGKILL')
        }
      } finally {
        child.kill()
      }
    }
  }
  return figures
}

/**
 * Waits `ms`, then has a Node contender collect its garbage (gc-on-signal.ts). After `QUIET_MS` the collection also
 * returns the young generation's growth; a contender whose young generation stays grown is named on stderr.
 */
async function settle (child: ChildProcess, node: boolean, ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
  if (!node) return
  const collected = new Promise<void>((resolve) => {
    const onData = (chunk: Buffer): void => {
      const reply = /GC (\d+)/.exec(chunk.toString())
      if (reply === null) return
      child.stdout?.off('data', onData)
      if (ms >= QUIET_MS && Number(reply[1]) > 4096) process.stderr.write(`idle tunnels: young generation still ${reply[1]} KiB after ${ms} ms quiet\n`)
      resolve()
    }
    child.stdout?.on('data', onData)
  })
  child.kill('SIGUSR2')
  await Promise.race([collected, new Promise((resolve) => setTimeout(resolve, 5000))])
}

async function holdIdle (port: number, count: number): Promise<ChildProcess> {
  const holder = spawn(process.execPath, [join(benchJs, 'ws-idle.js'), `ws://127.0.0.1:${port}/idle`, String(count)], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] })
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

// ---------------------------------------------------------------------------------------------------------------
// Report.

const PEERS = ['@fastify/http-proxy', 'http-proxy']
const names = started.map((s) => s.contender.name)
const fmt = (v: number, digits = 0): string => Number.isNaN(v) ? 'n/a' : v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
const x = (v: number): string => Number.isNaN(v) ? 'n/a' : `${v.toFixed(2)}×`
const UNIT: Record<Unit, [string, string, number]> = {
  req: ['req/s', 'µs/req', 0],
  rtt: ['round trips/s', 'µs/round trip', 1],
  GB: ['MB/s', 'ms/GB', 0],
  handshake: ['cycles/s', 'µs/cycle', 0]
}
/** Median over rounds of (ours / other) in the same round; `best`: the better Node peer in that round. */
function ratio (byContender: Map<string, Sample[]>, other: string | 'best', key: 'rate' | 'cpu', a = ours): number {
  const mine = byContender.get(a) ?? []
  return median(mine.map((m, round) => {
    const theirs = other === 'best'
      ? PEERS.map((p) => byContender.get(p)?.[round]?.[key] ?? NaN).reduce((b, v) => key === 'rate' ? Math.max(b, v) : Math.min(b, v), key === 'rate' ? -Infinity : Infinity)
      : byContender.get(other)?.[round]?.[key] ?? NaN
    return m[key] / theirs
  }))
}

const date = new Date().toISOString()
const header = `| cell | figure | ${names.join(' | ')} | ours / best Node peer | ours / nginx |${floor ? ' ours / floor (fastify) |' : ''}${old === undefined ? '' : ' old / new |'}`
const lines = [
  `Measured ${date.slice(0, 16).replace('T', ' ')} UTC on ${os.cpus()[0]?.model ?? 'cpu'} (${os.cpus().length} cores), Node ${process.version}: ` +
    `${ROUNDS} interleaved rounds of ${SECONDS} s per cell, medians; ratios are medians of per-round ratios${quick ? ' (--quick)' : ''}. ` +
    'CPU: utime+stime of the proxy\'s process tree over the measured window; bulk figures per GB echoed (each byte crosses the proxy twice).',
  '',
  header,
  `|---|---|${names.map(() => '---:').join('|')}|---:|---:|${floor ? '---:|' : ''}${old === undefined ? '' : '---:|'}`
]
for (const cell of selected) {
  const byContender = samples.get(cell.id) as Map<string, Sample[]>
  const [rateUnit, cpuUnit, digits] = UNIT[cell.unit]
  const errors = names.map((n) => (byContender.get(n) ?? []).reduce((sum, m) => sum + m.errors, 0))
  const errorNote = errors.some((e) => e > 0) ? ` (errors: ${names.map((n, i) => `${n} ${errors[i]}`).filter((_, i) => errors[i] > 0).join(', ')})` : ''
  for (const key of ['cpu', 'rate'] as const) {
    const cellsText = names.map((n) => fmt(median((byContender.get(n) ?? []).map((m) => m[key])), key === 'rate' && cell.unit !== 'req' && cell.unit !== 'handshake' ? digits : 0))
    const compare = old === undefined ? '' : ` ${key === 'cpu' ? x(ratio(byContender, ours, 'cpu', old)) : x(ratio(byContender, ours, 'rate', old))} |`
    const overFloor = floor ? ` ${x(ratio(byContender, FLOOR_FASTIFY, key))} |` : ''
    lines.push(`| ${key === 'cpu' ? cell.id + errorNote : ''} | ${key === 'cpu' ? `CPU ${cpuUnit}` : rateUnit} | ${cellsText.join(' | ')} | ${x(ratio(byContender, 'best', key))} | ${x(ratio(byContender, 'nginx', key))} |${overFloor}${compare}`)
  }
}
if (idle.burst.size > 0) {
  for (const [which, label] of [[idle.settled, 'KiB RSS per tunnel, settled'], [idle.burst, 'KiB RSS per tunnel, 1 s after the burst']] as const) {
    const kib = names.map((n) => which.has(n) ? fmt(median(which.get(n) as number[]) / 1024, 1) : 'n/a')
    const mine = median(which.get(ours) ?? [])
    const oldIdle = old === undefined ? '' : ` ${x(median(which.get(old) ?? []) / mine)} |`
    const floorIdle = floor ? ` ${x(mine / median(which.get(FLOOR_FASTIFY) ?? []))} |` : ''
    const first = which === idle.settled ? `idle tunnels, ${IDLE_TUNNELS} on a fresh process` : ''
    lines.push(`| ${first} | ${label} | ${kib.join(' | ')} | ${x(mine / median(which.get('@fastify/http-proxy') ?? []))} of @fastify/http-proxy | ${x(mine / median(which.get('nginx') ?? []))} |${floorIdle}${oldIdle}`)
  }
}
// Which GC state each Node contender was measured in: a process that falls into a mark-compact storm stays in it, and
// its CPU per unit of work is up to 2× that of the same build running on scavenges alone.
const nodeNames = started.filter((s) => s.contender.node).map((s) => s.contender.name)
lines.push('', 'GC over the measured windows, per Node contender: mark-compacts per second / main-thread GC pauses (wall time, so inflated on a loaded machine) as a share of its CPU; medians over rounds.', '',
  `| cell | ${nodeNames.join(' | ')} |`, `|---|${nodeNames.map(() => '---:').join('|')}|`)
for (const cell of selected) {
  const byContender = samples.get(cell.id) as Map<string, Sample[]>
  const gcText = nodeNames.map((n) => {
    const list = byContender.get(n) ?? []
    const share = median(list.map((m) => m.gcShare))
    return `${fmt(median(list.map((m) => m.majors)), 1)} / ${Number.isNaN(share) ? 'n/a' : `${(share * 100).toFixed(0)}%`}`
  })
  lines.push(`| ${cell.id} | ${gcText.join(' | ')} |`)
}
lines.push('', ...contenders.map((c) => `- **${c.name}**: ${c.note}`))
if (floor) lines.push('', 'ours / floor (fastify): this plugin over the floor behind Fastify, per cell (medians of per-round ratios); the floors are not Node peers and never count as "best Node peer".')
if (old !== undefined) lines.push('', `old / new: ${old} over the working tree, per cell; CPU above 1.00× means the working tree is cheaper, rate below 1.00× means it is faster.`)
const table = lines.join('\n')
process.stdout.write(table + '\n')

mkdirSync(new URL('results/', import.meta.url), { recursive: true })
const stem = `${date.slice(0, 19).replace(/:/g, '')}${quick ? '-quick' : ''}${old === undefined ? '' : '-compare'}`
writeFileSync(new URL(`results/${stem}.json`, import.meta.url), JSON.stringify({
  date,
  quick,
  rounds: ROUNDS,
  seconds: SECONDS,
  idleTunnels: IDLE_TUNNELS,
  contenders,
  samples: Object.fromEntries([...samples].map(([id, m]) => [id, Object.fromEntries(m)])),
  idle: Object.fromEntries(idle.burst),
  idleSettled: Object.fromEntries(idle.settled)
}, null, 2))
writeFileSync(new URL(`results/${stem}.md`, import.meta.url), table + '\n')

// A whole sweep (not --only, not --compare) replaces the table in docs/benchmarks.md, unless --no-docs.
if (only === null && old === undefined && args['no-docs'] !== true) {
  const file = new URL('../docs/benchmarks.md', import.meta.url)
  const doc = readFileSync(file, 'utf8')
  const start = doc.indexOf('<!-- bench:start -->')
  const end = doc.indexOf('<!-- bench:end -->')
  if (start !== -1 && end !== -1) writeFileSync(file, `${doc.slice(0, start + '<!-- bench:start -->'.length)}\n${table}\n${doc.slice(end)}`)
}
