// `npm run soak [-- --quick] [-- --duration S --idle N --active N --rate R --proxies N]`: a bounded soak of the proxy
// (not part of `npm test`). Separate processes on 127.0.0.1: two `ws` echo upstreams A and B in a least-conn group,
// the proxy (bench/soak-proxy.ts; N identical processes on their own ports when one cannot hold every tunnel's
// descriptors, as a deployment would run `--workers N`) and the client processes (bench/soak-client.ts): some holding
// the idle tunnels, some whose tunnels exchange numbered messages at a steady rate and check every echo; tunnels spread
// over the proxies round-robin. Halfway through, B is killed with SIGKILL and restarted on its port; the tunnels it
// held end, their clients reconnect, the others must not notice.
// Reports (printed as markdown, and as JSON in bench/results/): messages lost on tunnels whose upstream lived (must
// be 0) and on B's, the proxy's RSS per tunnel and event-loop delay, and every tunnel's close reason (each opened
// tunnel must have closed with one once the clients are gone). Exits 1 when a must-hold check fails.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { descriptorLimit, SoakChild } from './soak-rpc.js'

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    duration: { type: 'string' },
    idle: { type: 'string' },
    active: { type: 'string' },
    rate: { type: 'string' },
    size: { type: 'string' },
    downtime: { type: 'string' },
    proxies: { type: 'string' }
  }
})
const quick = flags.quick === true
const number = (value: string | undefined, fallback: number): number => {
  const n = value === undefined ? fallback : Number(value)
  if (!Number.isFinite(n) || n < 0) throw new TypeError(`not a number: ${value}`)
  return n
}
const DURATION = number(flags.duration, quick ? 20 : 60)
const asked = { idle: number(flags.idle, quick ? 2000 : 10_000), active: number(flags.active, quick ? 200 : 1000) }
/** Messages per second per active tunnel, and their size. */
const RATE = number(flags.rate, 2)
const SIZE = Math.max(32, number(flags.size, 64))
/** How long B stays dead, and how long the proxy keeps a failed server out (the group's `failTimeout`). */
const DOWNTIME = number(flags.downtime, 2) * 1000
const FAIL_TIMEOUT = 1000
/** Tunnels each client process opens and closes before the memory baseline. */
const WARM_UP = 100

// A tunnel is two descriptors in the proxy, one in a client, one in an upstream. Node cannot raise its own limit,
// so each child is started through `ulimit -n`; without CAP_SYS_RESOURCE (most containers) the hard limit stays,
// and the proxy side runs as several processes; only a `--proxies N` too small scales the tunnel counts down.
const WANTED_FDS = 65_536
const fdLimit = descriptorLimit(WANTED_FDS)
// Kept free in the proxy: handshakes in flight (two sockets each, up to 200 per client process) and its own files.
const RESERVE = 1000
/** Tunnels one proxy process can hold. */
const perProxy = Math.max(0, Math.floor((fdLimit - RESERVE) / 2))
// Like a deployment's `--workers N`: as many proxy processes as their share of the tunnels needs, unless told.
const PROXIES = flags.proxies === undefined
  ? Math.max(1, Math.ceil((asked.idle + asked.active) / Math.max(1, perProxy)))
  : Math.max(1, Math.floor(number(flags.proxies, 1)))
const fits = perProxy * PROXIES
let idle = asked.idle
let active = asked.active
let scaledNote = ''
if (idle + active > fits) {
  const scale = fits / (idle + active)
  active = Math.floor(active * scale / 10) * 10
  idle = Math.floor((fits - active) / 10) * 10
  scaledNote = `The descriptor limit could not be raised to ${WANTED_FDS.toLocaleString('en-US')} (it is ${fdLimit.toLocaleString('en-US')}; ` +
    'raising the hard limit needs CAP_SYS_RESOURCE). ' +
    (PROXIES === 1 ? 'The proxy holds' : `Each of the ${PROXIES} proxy processes holds`) + ' two descriptors per tunnel, so this run is scaled down to ' +
    `${idle.toLocaleString('en-US')} idle + ${active.toLocaleString('en-US')} active tunnels ` +
    `(asked: ${asked.idle.toLocaleString('en-US')} + ${asked.active.toLocaleString('en-US')}).`
  process.stderr.write(`\n!! ${scaledNote}\n\n`)
}
const TUNNELS = idle + active
// A client holds one descriptor per tunnel (plus its handshakes in flight): a kind of client whose tunnels would not
// fit one process's limit is split over several, the same way.
const perClient = Math.max(1, fdLimit - RESERVE)
const CLIENTS = { idle: Math.max(1, Math.ceil(idle / perClient)), active: Math.max(1, Math.ceil(active / perClient)) }
const proxiesNote = `${PROXIES} proxy ${PROXIES === 1 ? 'process' : 'processes'} (as \`--workers ${PROXIES}\`)`
process.stderr.write(`soak: ${proxiesNote}${flags.proxies === undefined ? ', enough for each to hold its share of the tunnels' : ''}, ` +
  `${Math.ceil(TUNNELS / PROXIES).toLocaleString('en-US')} tunnels at most each (descriptor limit ${fdLimit.toLocaleString('en-US')}, ${RESERVE} spare); ` +
  `${CLIENTS.idle} idle + ${CLIENTS.active} active client ${CLIENTS.idle + CLIENTS.active === 1 ? 'process' : 'processes'}\n`)
// Opening is bounded generously: handshakes through a proxy on a busy 2-core machine can be as slow as 50 per second.
const OPEN_BOUND = 60_000 + TUNNELS * 30
const began = performance.now()
const log = (line: string): void => { process.stderr.write(`[soak ${((performance.now() - began) / 1000).toFixed(1)} s] ${line}\n`) }

interface LifeTotals { sessions: number, sent: number, echoed: number, lost: number, outOfOrder: number, corrupt: number, unexpectedCloses: number }
interface ClientReport {
  slots: number
  open: number
  reconnecting: number
  gaveUp: number
  attempts: number
  reconnects: number
  failures: Record<string, number>
  skipped: number
  lives: Record<string, LifeTotals>
  seconds?: number
}
interface ProxyStats {
  rss: number
  heapUsed: number
  live: number
  opened: Record<string, number>
  closed: Record<string, number>
  delay: { p50: number, p99: number, max: number, mean: number, samples: number }
  metrics: Array<{ requests: Record<string, number>, retries: number, tunnels: { live: number, opened: number, closed: Record<string, number> } }>
  servers: Array<{ url: string, state: string, liveTunnels: number, failures: number }>
  /** With several proxy processes: each one's own figures (the rest are their sums, delays their worst). */
  perProxy?: Array<Pick<ProxyStats, 'rss' | 'heapUsed' | 'live' | 'delay'>>
}

const addRecords = (records: Array<Record<string, number>>): Record<string, number> => {
  const total: Record<string, number> = {}
  for (const record of records) for (const [key, n] of Object.entries(record)) total[key] = (total[key] ?? 0) + n
  return total
}
const zeroTotals = (): LifeTotals => ({ sessions: 0, sent: 0, echoed: 0, lost: 0, outOfOrder: 0, corrupt: 0, unexpectedCloses: 0 })

/** The proxy processes' figures as one: counts, memory and tunnels summed; event-loop delay the worst process's. */
function mergeStats (all: ProxyStats[]): ProxyStats {
  if (all.length === 1) return all[0]
  const total = (pick: (s: ProxyStats) => number): number => all.reduce((n, s) => n + pick(s), 0)
  const worst = (pick: (d: ProxyStats['delay']) => number): number => Math.max(...all.map((s) => pick(s.delay)))
  return {
    rss: total((s) => s.rss),
    heapUsed: total((s) => s.heapUsed),
    live: total((s) => s.live),
    opened: addRecords(all.map((s) => s.opened)),
    closed: addRecords(all.map((s) => s.closed)),
    delay: { p50: worst((d) => d.p50), p99: worst((d) => d.p99), max: worst((d) => d.max), mean: worst((d) => d.mean), samples: total((s) => s.delay.samples) },
    metrics: all.flatMap((s) => s.metrics),
    servers: all.flatMap((s) => s.servers),
    perProxy: all.map(({ rss, heapUsed, live, delay }) => ({ rss, heapUsed, live, delay }))
  }
}

/** The client processes of one kind as one. */
function mergeReports (all: ClientReport[]): ClientReport {
  if (all.length === 1) return all[0]
  const merged: ClientReport = { slots: 0, open: 0, reconnecting: 0, gaveUp: 0, attempts: 0, reconnects: 0, failures: {}, skipped: 0, lives: {} }
  for (const report of all) {
    for (const key of ['slots', 'open', 'reconnecting', 'gaveUp', 'attempts', 'reconnects', 'skipped'] as const) merged[key] += report[key]
    merged.failures = addRecords([merged.failures, report.failures])
    for (const [life, t] of Object.entries(report.lives)) {
      const s = merged.lives[life] ??= zeroTotals()
      for (const key of Object.keys(s) as Array<keyof LifeTotals>) s[key] += t[key]
    }
    if (report.seconds !== undefined) merged.seconds = Math.max(merged.seconds ?? 0, report.seconds)
  }
  return merged
}

/** A file of /proc/<pid>, or '' once the process is gone (its death is reported by the `crashed` race). */
function proc (pid: number, file: string): string {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8')
  } catch {
    return ''
  }
}

function cpuSeconds (pid: number): number {
  const fields = proc(pid, 'stat').split(') ')[1]?.split(' ') ?? []
  // utime + stime, in clock ticks of 1/100 s (Linux's USER_HZ).
  return (Number(fields[11]) + Number(fields[12])) / 100
}

function rssBytes (pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(proc(pid, 'status'))?.[1] ?? 0) * 1024
}

const children: SoakChild[] = []
// Rejects as soon as a child dies unasked (all but the upstream the soak kills), so no wait outlives a crash.
let crash: (err: Error) => void = () => {}
const crashed = new Promise<never>((resolve, reject) => { crash = reject })
crashed.catch(() => {})
// A crash also cancels the sleeps under way, so the script ends at once rather than when they would have.
const cancelSleeps = new AbortController()
crashed.catch(() => cancelSleeps.abort())
const sacrificed = new Set<SoakChild>()
function start (name: string, script: string, args: Array<string | number>): SoakChild {
  const child = new SoakChild(name, script, args.map(String), fdLimit)
  children.push(child)
  child.exited.then(() => { if (!sacrificed.has(child) && !stopping) crash(new Error(`${name} died during the soak`)) }, () => {})
  return child
}
let stopping = false
/** Sleeps, unless a child dies first. */
const wait = async (ms: number): Promise<void> => { await Promise.race([sleep(ms, undefined, { signal: cancelSleeps.signal }), crashed]) }
/** Waits for a promise, unless a child dies first. */
const unlessCrashed = async <T>(promise: Promise<T>): Promise<T> => await Promise.race([promise, crashed])
async function stopAll (): Promise<void> {
  stopping = true
  await Promise.all(children.map(async (child) => await child.stop()))
}
// The whole run is bounded: opening, the soak, draining and closing each have their own bound; this is the backstop.
const BUDGET = OPEN_BOUND + (DURATION + 300) * 1000
const watchdog = setTimeout(() => {
  process.stderr.write(`soak: over its ${BUDGET / 1000} s budget, killing everything\n`)
  for (const child of children) child.child.kill('SIGKILL')
  process.exit(2)
}, BUDGET)
watchdog.unref()
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    for (const child of children) child.child.kill('SIGKILL')
    process.exit(130)
  })
}

const checks: Array<{ name: string, ok: boolean, detail: string }> = []
const check = (name: string, ok: boolean, detail: string): void => { checks.push({ name, ok, detail }) }
let result: Record<string, unknown> = {}

try {
  log('starting the upstreams, the proxy and the clients')
  const upstreamA = start('upstream A', 'bench/soak-upstream.ts', ['A'])
  const upstreamB = start('upstream B', 'bench/soak-upstream.ts', ['B1'])
  const restartedB = start('upstream B (restarted)', 'bench/soak-upstream.ts', ['B2', 'standby'])
  const proxies = Array.from({ length: PROXIES }, (_, i) => start(PROXIES === 1 ? 'proxy' : `proxy ${i + 1}`, 'bench/soak-proxy.ts', []))
  // Each client process gets a contiguous share of its kind's slots; slot numbers run on from the idle to the active
  // ones, so the round-robin over the proxies spans both kinds.
  const startClients = (kind: 'idle' | 'active', count: number, processes: number, rate: number, firstSlot: number): SoakChild[] =>
    Array.from({ length: processes }, (_, i) => {
      const from = Math.floor(count * i / processes)
      const to = Math.floor(count * (i + 1) / processes)
      return start(processes === 1 ? `${kind} clients` : `${kind} clients ${i + 1}`, 'bench/soak-client.ts', [kind, to - from, rate, SIZE, firstSlot + from])
    })
  const idleClients = startClients('idle', idle, CLIENTS.idle, 0, 0)
  const activeClients = startClients('active', active, CLIENTS.active, RATE, idle)
  /** Every proxy process's stats, as one. */
  const proxyStats = async (args: Record<string, unknown> = {}): Promise<ProxyStats> =>
    mergeStats(await Promise.all(proxies.map(async (proxy) => await proxy.request<ProxyStats>('stats', args))))
  const toProxies = async (cmd: string, args: Record<string, unknown> = {}): Promise<void> => {
    await Promise.all(proxies.map(async (proxy) => await proxy.request(cmd, args)))
  }
  /** Asks every client process of a kind, unless a child dies first; their reports as one. */
  const askClients = async (clients: SoakChild[], cmd: string, args: Record<string, unknown> = {}, ms?: number): Promise<ClientReport> =>
    mergeReports(await unlessCrashed(Promise.all(clients.map(async (c) => await c.request<ClientReport>(cmd, args, ms)))))
  for (const child of children) {
    const limit = Number((await child.ready).fdLimit)
    if (limit < fdLimit) throw new Error(`${child.name} runs with a descriptor limit of ${limit}, not ${fdLimit}`)
  }
  const [portA, portB] = (await Promise.all([upstreamA.ready, upstreamB.ready])).map((info) => Number(info.port))
  // Every proxy process the same configuration, each on its own port.
  const proxyPorts = await Promise.all(proxies.map(async (proxy) => (await proxy.request<{ port: number }>('listen', {
    a: `http://127.0.0.1:${portA}`, b: `http://127.0.0.1:${portB}`, failTimeout: FAIL_TIMEOUT
  })).port))
  // Tunnels opened and closed before the baseline: lazily built state (compiled code, pools) is not a per-tunnel cost.
  const warmUps = await unlessCrashed(Promise.all([...idleClients, ...activeClients].map(async (clients) =>
    await clients.request<{ opened: number }>('warmUp', { ports: proxyPorts, count: WARM_UP }, 60_000))))
  for (let waited = 0; (await proxyStats()).live > 0 && waited < 10_000; waited += 100) await wait(100)
  await toProxies('phase', { name: 'open' })
  await wait(1000)
  const before = await proxyStats({ gc: true })

  log(`opening ${idle} idle + ${active} active tunnels (descriptor limit ${fdLimit}, ${PROXIES} proxy ${PROXIES === 1 ? 'process' : 'processes'})`)
  const [idleOpen, activeOpen] = await Promise.all([
    askClients(idleClients, 'open', {}, OPEN_BOUND),
    askClients(activeClients, 'open', {}, OPEN_BOUND)
  ])
  const openSeconds = Math.max(idleOpen.seconds ?? 0, activeOpen.seconds ?? 0)
  check('every tunnel opened', idleOpen.open === idle && activeOpen.open === active,
    `${idleOpen.open}/${idle} idle, ${activeOpen.open}/${active} active in ${openSeconds.toFixed(1)} s`)
  await toProxies('phase', { name: 'soak' })
  const withTunnels = await proxyStats({ gc: true })
  log(`open in ${openSeconds.toFixed(1)} s; proxy RSS ${(withTunnels.rss / 2 ** 20).toFixed(1)} MiB with ${withTunnels.live} tunnels`)

  // The soak itself: traffic for DURATION seconds, B killed at half time and restarted DOWNTIME later.
  await toProxies('resetDelay')
  await Promise.all(activeClients.map(async (clients) => await clients.request('traffic')))
  const soakStart = performance.now()
  const cpuStart = proxies.map((proxy) => cpuSeconds(proxy.pid))
  let peakRss = 0
  // The proxies' RSS summed, sampled together.
  const sampler = setInterval(() => { peakRss = Math.max(peakRss, proxies.reduce((n, proxy) => n + rssBytes(proxy.pid), 0)) }, 1000)
  let liveOnBAtKill = 0
  let delayBeforeKill: ProxyStats['delay'] | null = null
  let perProxyBeforeKill: ProxyStats['perProxy']
  try {
    await wait(DURATION * 500)
    const atKill = await proxyStats()
    liveOnBAtKill = atKill.servers.filter((server) => server.url.endsWith(`:${portB}`)).reduce((n, server) => n + server.liveTunnels, 0)
    // Delay in two windows: steady traffic before the kill, then the kill, the reconnect storm and the rest.
    delayBeforeKill = atKill.delay
    perProxyBeforeKill = atKill.perProxy
    await toProxies('resetDelay')
    await toProxies('phase', { name: 'killed' })
    log(`SIGKILL upstream B (${liveOnBAtKill} tunnels on it)`)
    sacrificed.add(upstreamB)
    upstreamB.child.kill('SIGKILL')
    await upstreamB.exited
    await wait(DOWNTIME)
    await restartedB.request('listen', { port: portB })
    log('upstream B restarted on its port')
    await wait(Math.max(0, soakStart + DURATION * 1000 - performance.now()))
    // Reconnects still under way get a bounded extra while: a slot that gave up fails the soak anyway.
    for (let waited = 0; waited < 20_000; waited += 500) {
      const [i, a] = await Promise.all([askClients(idleClients, 'report'), askClients(activeClients, 'report')])
      if (i.reconnecting + a.reconnecting === 0) break
      if (waited === 0) log(`${i.reconnecting + a.reconnecting} tunnels still reconnecting: waiting for them (at most 20 s)`)
      await wait(500)
    }
  } finally {
    clearInterval(sampler)
  }
  const soakSeconds = (performance.now() - soakStart) / 1000
  // CPU of all the proxy processes, as a share of one core (so it can exceed 100 %).
  const proxyCpu = proxies.reduce((n, proxy, i) => n + cpuSeconds(proxy.pid) - cpuStart[i], 0) / soakSeconds * 100
  const atEnd = await proxyStats()
  log('stopping traffic, waiting for the last echoes')
  const [idleEnd, activeEnd] = await Promise.all([
    askClients(idleClients, 'stop', { ms: 15_000 }, 30_000),
    askClients(activeClients, 'stop', { ms: 15_000 }, 30_000)
  ])
  const endWithTunnels = await proxyStats({ gc: true })

  log('closing every tunnel from the clients')
  await toProxies('phase', { name: 'final' })
  const closeAll = async (clients: SoakChild[]): Promise<{ closed: number, terminated: number }> => {
    const all = await unlessCrashed(Promise.all(clients.map(async (c) => await c.request<{ closed: number, terminated: number }>('close', { ms: 20_000 }, 40_000))))
    return all.length === 1 ? all[0] : all.reduce((n, r) => ({ closed: n.closed + r.closed, terminated: n.terminated + r.terminated }), { closed: 0, terminated: 0 })
  }
  const [idleClose, activeClose] = await Promise.all([closeAll(idleClients), closeAll(activeClients)])
  let final = await proxyStats()
  for (let waited = 0; final.live > 0 && waited < 30_000; waited += 200) {
    await wait(200)
    final = await proxyStats()
  }
  final = await proxyStats({ gc: true })

  // What the clients saw, by upstream life: A and B2 lived through their tunnels, B1 was killed under them.
  const lives = (...reports: ClientReport[]): Record<string, LifeTotals> => {
    const sum: Record<string, LifeTotals> = {}
    for (const report of reports) {
      for (const [life, t] of Object.entries(report.lives)) {
        const s = sum[life] ??= { sessions: 0, sent: 0, echoed: 0, lost: 0, outOfOrder: 0, corrupt: 0, unexpectedCloses: 0 }
        for (const key of Object.keys(s) as Array<keyof LifeTotals>) s[key] += t[key]
      }
    }
    return sum
  }
  const activeLives = lives(activeEnd)
  const allLives = lives(idleEnd, activeEnd)
  const survivors = (totals: Record<string, LifeTotals>): LifeTotals => {
    const s = { sessions: 0, sent: 0, echoed: 0, lost: 0, outOfOrder: 0, corrupt: 0, unexpectedCloses: 0 }
    for (const [life, t] of Object.entries(totals)) {
      if (life === 'B1') continue
      for (const key of Object.keys(s) as Array<keyof LifeTotals>) s[key] += t[key]
    }
    return s
  }
  const lived = survivors(activeLives)
  const livedAll = survivors(allLives)
  const zero = zeroTotals()
  const killed = activeLives.B1 ?? zero
  const killedAll = allLives.B1 ?? zero

  check('no message lost where the upstream lived', lived.sent > 0 && lived.lost === 0 && lived.outOfOrder === 0 && lived.corrupt === 0,
    `${lived.sent} sent, ${lived.echoed} echoed, ${lived.lost} lost, ${lived.outOfOrder} out of order, ${lived.corrupt} corrupt`)
  check('no tunnel ended early where the upstream lived', livedAll.unexpectedCloses === 0 && livedAll.corrupt === 0,
    `${livedAll.unexpectedCloses} ended early, ${livedAll.corrupt} corrupt greetings or echoes`)
  check('every tunnel on the killed upstream ended', killedAll.sessions > 0 && killedAll.unexpectedCloses === killedAll.sessions,
    `${killedAll.unexpectedCloses} of ${killedAll.sessions} (proxy: ${liveOnBAtKill} live on B at the kill)`)
  check('every client reconnected', idleEnd.open === idle && activeEnd.open === active && idleEnd.gaveUp + activeEnd.gaveUp === 0,
    `${idleEnd.open + activeEnd.open}/${TUNNELS} open at the end, ${idleEnd.reconnects + activeEnd.reconnects} reconnects, ` +
    `${idleEnd.gaveUp + activeEnd.gaveUp} gave up`)
  check('proxy held every tunnel at the end of the soak', atEnd.live === TUNNELS, `${atEnd.live} live, ${TUNNELS} expected`)

  // The proxy's account: every tunnel it opened closed, with a documented reason; the right one for each kind.
  const sum = (record: Record<string, number>, keep: (key: string) => boolean = () => true): number =>
    Object.entries(record).reduce((n, [key, value]) => keep(key) ? n + value : n, 0)
  const opened = sum(final.opened)
  const closed = sum(final.closed)
  const reasonless = sum(final.closed, (key) => key.endsWith(' none') || key.endsWith(' unknown'))
  // The plugin's own counters (metrics()) must tell the same story as its events.
  const counted = final.metrics.reduce((n, route) => ({
    opened: n.opened + route.tunnels.opened, closed: n.closed + sum(route.tunnels.closed), live: n.live + route.tunnels.live
  }), { opened: 0, closed: 0, live: 0 })
  check('every tunnel closed with a reason', final.live === 0 && opened === closed && reasonless === 0 &&
    counted.opened === opened && counted.closed === closed && counted.live === 0,
    `${opened} opened, ${closed} closed, ${final.live} live, ${reasonless} without a documented reason ` +
    `(metrics(): ${counted.opened} opened, ${counted.closed} closed, ${counted.live} live)`)
  // B1 tunnels must end after the kill, by the upstream's going; every other tunnel only when its client closes it.
  const killedB1 = (key: string): boolean => key.startsWith('killed B1 ')
  const b1Wrong = sum(final.closed, (key) => killedB1(key) && !/ upstream-(closed|error)$/.test(key))
  const closedByClients = (key: string): boolean => key.startsWith('final ') || key.startsWith('warm-up ')
  const livedEarly = sum(final.closed, (key) => !closedByClients(key) && !killedB1(key))
  const finalWrong = sum(final.closed, (key) => closedByClients(key) && !/ (client|upstream)-closed$/.test(key))
  check('close reasons as expected', b1Wrong === 0 && livedEarly === 0 && finalWrong === 0,
    `${b1Wrong} B1 tunnels closed otherwise than by the upstream, ${livedEarly} others closed before the clients did, ` +
    `${finalWrong} closed otherwise than cleanly when the clients closed them (warm-up, end)`)
  const clientSessions = sum(Object.fromEntries(Object.entries(allLives).map(([life, t]) => [life, t.sessions]))) +
    warmUps.reduce((n, w) => n + w.opened, 0)
  const failedAttempts = sum(idleEnd.failures) + sum(activeEnd.failures)
  check('proxy and clients agree on tunnels opened', opened >= clientSessions && opened - clientSessions <= failedAttempts,
    `proxy ${opened}, clients ${clientSessions} (+ ${failedAttempts} failed attempts)`)

  const rssPerTunnel = (withTunnels.rss - before.rss) / withTunnels.live
  const heapPerTunnel = (withTunnels.heapUsed - before.heapUsed) / withTunnels.live
  result = {
    date: new Date().toISOString(),
    machine: `${os.cpus()[0]?.model ?? 'cpu'} (${os.cpus().length} cores), Node ${process.version}`,
    settings: { duration: DURATION, asked, idle, active, rate: RATE, size: SIZE, downtime: DOWNTIME, failTimeout: FAIL_TIMEOUT, fdLimit, proxies: PROXIES, clientProcesses: CLIENTS, quick, scaledNote },
    open: { seconds: openSeconds, idle: idleOpen, active: activeOpen },
    soak: { seconds: soakSeconds, proxyCpuPercent: proxyCpu, peakRss, delayBeforeKill, delayFromKill: atEnd.delay, liveOnBAtKill, ...(PROXIES === 1 ? {} : { perProxyBeforeKill }) },
    messages: { lived, killed, byLife: activeLives },
    tunnels: { byLife: allLives, idleEnd, activeEnd, idleClose, activeClose },
    proxy: { before, withTunnels, atEnd, endWithTunnels, final, rssPerTunnel, heapPerTunnel },
    checks
  }
  const fmt = (n: number, digits = 0): string => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
  const mib = (bytes: number): string => fmt(bytes / 2 ** 20, 1)
  // With several proxy processes, memory and CPU are their sum, event-loop delay the worst process's.
  const summed = PROXIES === 1 ? '' : ` (${PROXIES} processes summed)`
  const worstOf = PROXIES === 1 ? '' : ` (worst of the ${PROXIES} processes)`
  const eachProxy = (each: ProxyStats['perProxy']): string => each === undefined
    ? ''
    : `; each process's p99 / max: ${each.map(({ delay }) => `${fmt(delay.p99, 1)} / ${fmt(delay.max, 1)}`).join(', ')} ms`
  const reasons = [...new Set(Object.keys(final.closed).map((key) => key.split(' ')[2]))].sort()
  const reasonRows = ['warm-up', 'A', 'B1', 'B2'].map((life) => {
    const during = (reason: string): number => sum(final.closed, (key) => !closedByClients(key) && key.endsWith(` ${life} ${reason}`))
    const atClose = (reason: string): number => sum(final.closed, (key) => closedByClients(key) && key.endsWith(` ${life} ${reason}`))
    return `| ${life} | ${fmt(final.opened[life] ?? 0)} | ${reasons.map((r) => `${fmt(during(r))} / ${fmt(atClose(r))}`).join(' | ')} |`
  })
  const summary = [
    `### Soak: ${fmt(idle)} idle + ${fmt(active)} active tunnels for ${DURATION} s${quick ? ' (quick)' : ''}`,
    '',
    `Measured ${String(result.date).slice(0, 10)} on ${String(result.machine)}; descriptor limit ${fmt(fdLimit)}. ` +
      `${proxiesNote}. ` +
      `${fmt(active)} tunnels send ${RATE} messages/s each (${SIZE} B); upstream B is killed (SIGKILL) at ${DURATION / 2} s and ` +
      `restarted ${DOWNTIME / 1000} s later.`,
    ...(scaledNote === '' ? [] : ['', `**Scaled down:** ${scaledNote}`]),
    '',
    '| | |',
    '|---|---:|',
    `| tunnels opened (idle / active) | ${fmt(idleOpen.open)} / ${fmt(activeOpen.open)} in ${fmt(openSeconds, 1)} s |`,
    `| messages sent / echoed / lost, tunnels whose upstream lived (A, restarted B) | ${fmt(lived.sent)} / ${fmt(lived.echoed)} / **${fmt(lived.lost)}** (out of order ${fmt(lived.outOfOrder)}, corrupt ${fmt(lived.corrupt)}) |`,
    `| messages sent / echoed / lost (in flight at the kill), tunnels on the killed B | ${fmt(killed.sent)} / ${fmt(killed.echoed)} / ${fmt(killed.lost)} |`,
    `| tunnels ended by the kill (idle + active) / reconnected | ${fmt(killedAll.sessions)} / ${fmt(idleEnd.reconnects + activeEnd.reconnects)} (to A: ${fmt((allLives.A?.sessions ?? 0) - (idleOpen.lives.A?.sessions ?? 0) - (activeOpen.lives.A?.sessions ?? 0))}, to the restarted B: ${fmt(allLives.B2?.sessions ?? 0)}) |`,
    `| reconnect handshakes the proxy retried on the other server / answered 5xx / client attempts that failed | ${fmt(final.metrics.reduce((n, r) => n + r.retries, 0))} / ${fmt(final.metrics.reduce((n, r) => n + r.requests['5xx'], 0))} / ${fmt(failedAttempts)} |`,
    `| proxy RSS after GC${summed}: no tunnels / ${fmt(withTunnels.live)} tunnels / same at the end of the soak / all closed | ${mib(before.rss)} / ${mib(withTunnels.rss)} / ${mib(endWithTunnels.rss)} / ${mib(final.rss)} MiB |`,
    `| proxy RSS per tunnel${PROXIES === 1 ? '' : ` (all ${PROXIES} processes)`} (after GC; JS heap alone) | ${fmt(rssPerTunnel / 1024, 1)} KiB (${fmt(heapPerTunnel / 1024, 1)} KiB) |`,
    `| proxy peak RSS during the soak${summed} | ${mib(peakRss)} MiB |`,
    ...(delayBeforeKill === null
      ? []
      : [`| proxy event-loop delay${worstOf} p50 / p99 / max, steady traffic before the kill | ${fmt(delayBeforeKill.p50, 1)} / ${fmt(delayBeforeKill.p99, 1)} / ${fmt(delayBeforeKill.max, 1)} ms${eachProxy(perProxyBeforeKill)} |`]),
    `| proxy event-loop delay${worstOf} p50 / p99 / max, from the kill on (reconnect storm included) | ${fmt(atEnd.delay.p50, 1)} / ${fmt(atEnd.delay.p99, 1)} / ${fmt(atEnd.delay.max, 1)} ms${eachProxy(atEnd.perProxy)} |`,
    `| proxy CPU during the soak${summed} | ${fmt(proxyCpu, 1)} % of one core |`,
    '',
    'Tunnels by upstream (A; B before the kill, B1; B restarted, B2; the warm-up before the memory baseline) and close reason, ' +
      'from the proxy\'s `tunnelClose` events: closed during the soak / closed by their clients (warm-up, end). ' +
      `${fmt(opened)} opened, ${fmt(closed)} closed, ${fmt(final.live)} left.`,
    '',
    `| upstream | opened | ${reasons.join(' | ')} |`,
    `|---|---:|${reasons.map(() => '---:').join('|')}|`,
    ...reasonRows,
    '',
    ...checks.map(({ name, ok, detail }) => `- ${ok ? 'PASS' : 'FAIL'} ${name}: ${detail}`)
  ].join('\n')
  result.summary = summary
  process.stdout.write(`\n${summary}\n`)
} catch (err) {
  check('soak ran to its end', false, (err as Error).stack ?? String(err))
  process.stderr.write(`soak failed: ${(err as Error).stack ?? String(err)}\n`)
} finally {
  await stopAll()
  clearTimeout(watchdog)
}

mkdirSync(new URL('results/', import.meta.url), { recursive: true })
const file = new URL(`results/soak-${new Date().toISOString().replace(/[:.]/g, '-')}${quick ? '-quick' : ''}.json`, import.meta.url)
writeFileSync(file, JSON.stringify({ ...result, checks }, null, 2))
process.stderr.write(`\nraw figures: ${file.pathname}\n`)
const failed = checks.filter((c) => !c.ok)
if (failed.length > 0) {
  process.stderr.write(`soak FAILED: ${failed.map((c) => c.name).join('; ')}\n`)
  process.exitCode = 1
}
