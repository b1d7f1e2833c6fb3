// `npm run soak [-- --quick] [-- --duration S --idle N --active N --rate R]`: a bounded soak of the proxy (not part of
// `npm test`). Separate processes on 127.0.0.1: two `ws` echo upstreams A and B in a least-conn group, the proxy
// (bench/soak-proxy.ts) and two client processes (bench/soak-client.ts): one holding the idle tunnels, one whose
// tunnels exchange numbered messages at a steady rate and check every echo. Halfway through, B is killed with
// SIGKILL and restarted on its port; the tunnels it held end, their clients reconnect, the others must not notice.
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
    downtime: { type: 'string' }
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
// and the tunnel counts are scaled down to what the proxy can hold.
const WANTED_FDS = 65_536
const fdLimit = descriptorLimit(WANTED_FDS)
// Kept free in the proxy: handshakes in flight (two sockets each, up to 200 per client process) and its own files.
const RESERVE = 1000
const fits = Math.max(0, Math.floor((fdLimit - RESERVE) / 2))
let idle = asked.idle
let active = asked.active
let scaledNote = ''
if (idle + active > fits) {
  const scale = fits / (idle + active)
  active = Math.floor(active * scale / 10) * 10
  idle = Math.floor((fits - active) / 10) * 10
  scaledNote = `The descriptor limit could not be raised to ${WANTED_FDS.toLocaleString('en-US')} (it is ${fdLimit.toLocaleString('en-US')}; ` +
    'raising the hard limit needs CAP_SYS_RESOURCE). The proxy holds two descriptors per tunnel, so this run is scaled down to ' +
    `${idle.toLocaleString('en-US')} idle + ${active.toLocaleString('en-US')} active tunnels ` +
    `(asked: ${asked.idle.toLocaleString('en-US')} + ${asked.active.toLocaleString('en-US')}).`
  process.stderr.write(`\n!! ${scaledNote}\n\n`)
}
const TUNNELS = idle + active
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
  const proxy = start('proxy', 'bench/soak-proxy.ts', [])
  const idleClients = start('idle clients', 'bench/soak-client.ts', ['idle', idle, 0, SIZE])
  const activeClients = start('active clients', 'bench/soak-client.ts', ['active', active, RATE, SIZE])
  for (const child of children) {
    const limit = Number((await child.ready).fdLimit)
    if (limit < fdLimit) throw new Error(`${child.name} runs with a descriptor limit of ${limit}, not ${fdLimit}`)
  }
  const [portA, portB] = (await Promise.all([upstreamA.ready, upstreamB.ready])).map((info) => Number(info.port))
  const { port: proxyPort } = await proxy.request<{ port: number }>('listen', {
    a: `http://127.0.0.1:${portA}`, b: `http://127.0.0.1:${portB}`, failTimeout: FAIL_TIMEOUT
  })
  // Tunnels opened and closed before the baseline: lazily built state (compiled code, pools) is not a per-tunnel cost.
  const warmUps = await unlessCrashed(Promise.all([idleClients, activeClients].map(async (clients) =>
    await clients.request<{ opened: number }>('warmUp', { port: proxyPort, count: WARM_UP }, 60_000))))
  for (let waited = 0; (await proxy.request<ProxyStats>('stats')).live > 0 && waited < 10_000; waited += 100) await wait(100)
  await proxy.request('phase', { name: 'open' })
  await wait(1000)
  const before = await proxy.request<ProxyStats>('stats', { gc: true })

  log(`opening ${idle} idle + ${active} active tunnels (descriptor limit ${fdLimit})`)
  const [idleOpen, activeOpen] = await unlessCrashed(Promise.all([
    idleClients.request<ClientReport>('open', {}, OPEN_BOUND),
    activeClients.request<ClientReport>('open', {}, OPEN_BOUND)
  ]))
  const openSeconds = Math.max(idleOpen.seconds ?? 0, activeOpen.seconds ?? 0)
  check('every tunnel opened', idleOpen.open === idle && activeOpen.open === active,
    `${idleOpen.open}/${idle} idle, ${activeOpen.open}/${active} active in ${openSeconds.toFixed(1)} s`)
  await proxy.request('phase', { name: 'soak' })
  const withTunnels = await proxy.request<ProxyStats>('stats', { gc: true })
  log(`open in ${openSeconds.toFixed(1)} s; proxy RSS ${(withTunnels.rss / 2 ** 20).toFixed(1)} MiB with ${withTunnels.live} tunnels`)

  // The soak itself: traffic for DURATION seconds, B killed at half time and restarted DOWNTIME later.
  await proxy.request('resetDelay')
  await activeClients.request('traffic')
  const soakStart = performance.now()
  const cpuStart = cpuSeconds(proxy.pid)
  let peakRss = 0
  const sampler = setInterval(() => { peakRss = Math.max(peakRss, rssBytes(proxy.pid)) }, 1000)
  let liveOnBAtKill = 0
  let delayBeforeKill: ProxyStats['delay'] | null = null
  try {
    await wait(DURATION * 500)
    const atKill = await proxy.request<ProxyStats>('stats')
    liveOnBAtKill = atKill.servers.find((server) => server.url.endsWith(`:${portB}`))?.liveTunnels ?? 0
    // Delay in two windows: steady traffic before the kill, then the kill, the reconnect storm and the rest.
    delayBeforeKill = atKill.delay
    await proxy.request('resetDelay')
    await proxy.request('phase', { name: 'killed' })
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
      const [i, a] = await Promise.all([idleClients.request<ClientReport>('report'), activeClients.request<ClientReport>('report')])
      if (i.reconnecting + a.reconnecting === 0) break
      if (waited === 0) log(`${i.reconnecting + a.reconnecting} tunnels still reconnecting: waiting for them (at most 20 s)`)
      await wait(500)
    }
  } finally {
    clearInterval(sampler)
  }
  const soakSeconds = (performance.now() - soakStart) / 1000
  const proxyCpu = (cpuSeconds(proxy.pid) - cpuStart) / soakSeconds * 100
  const atEnd = await proxy.request<ProxyStats>('stats')
  log('stopping traffic, waiting for the last echoes')
  const [idleEnd, activeEnd] = await unlessCrashed(Promise.all([
    idleClients.request<ClientReport>('stop', { ms: 15_000 }, 30_000),
    activeClients.request<ClientReport>('stop', { ms: 15_000 }, 30_000)
  ]))
  const endWithTunnels = await proxy.request<ProxyStats>('stats', { gc: true })

  log('closing every tunnel from the clients')
  await proxy.request('phase', { name: 'final' })
  const [idleClose, activeClose] = await unlessCrashed(Promise.all([
    idleClients.request<{ closed: number, terminated: number }>('close', { ms: 20_000 }, 40_000),
    activeClients.request<{ closed: number, terminated: number }>('close', { ms: 20_000 }, 40_000)
  ]))
  let final = await proxy.request<ProxyStats>('stats')
  for (let waited = 0; final.live > 0 && waited < 30_000; waited += 200) {
    await wait(200)
    final = await proxy.request<ProxyStats>('stats')
  }
  final = await proxy.request<ProxyStats>('stats', { gc: true })

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
  const zero: LifeTotals = { sessions: 0, sent: 0, echoed: 0, lost: 0, outOfOrder: 0, corrupt: 0, unexpectedCloses: 0 }
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
    settings: { duration: DURATION, asked, idle, active, rate: RATE, size: SIZE, downtime: DOWNTIME, failTimeout: FAIL_TIMEOUT, fdLimit, quick, scaledNote },
    open: { seconds: openSeconds, idle: idleOpen, active: activeOpen },
    soak: { seconds: soakSeconds, proxyCpuPercent: proxyCpu, peakRss, delayBeforeKill, delayFromKill: atEnd.delay, liveOnBAtKill },
    messages: { lived, killed, byLife: activeLives },
    tunnels: { byLife: allLives, idleEnd, activeEnd, idleClose, activeClose },
    proxy: { before, withTunnels, atEnd, endWithTunnels, final, rssPerTunnel, heapPerTunnel },
    checks
  }
  const fmt = (n: number, digits = 0): string => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
  const mib = (bytes: number): string => fmt(bytes / 2 ** 20, 1)
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
    `| proxy RSS after GC: no tunnels / ${fmt(withTunnels.live)} tunnels / same at the end of the soak / all closed | ${mib(before.rss)} / ${mib(withTunnels.rss)} / ${mib(endWithTunnels.rss)} / ${mib(final.rss)} MiB |`,
    `| proxy RSS per tunnel (after GC; JS heap alone) | ${fmt(rssPerTunnel / 1024, 1)} KiB (${fmt(heapPerTunnel / 1024, 1)} KiB) |`,
    `| proxy peak RSS during the soak | ${mib(peakRss)} MiB |`,
    ...(delayBeforeKill === null
      ? []
      : [`| proxy event-loop delay p50 / p99 / max, steady traffic before the kill | ${fmt(delayBeforeKill.p50, 1)} / ${fmt(delayBeforeKill.p99, 1)} / ${fmt(delayBeforeKill.max, 1)} ms |`]),
    `| proxy event-loop delay p50 / p99 / max, from the kill on (reconnect storm included) | ${fmt(atEnd.delay.p50, 1)} / ${fmt(atEnd.delay.p99, 1)} / ${fmt(atEnd.delay.max, 1)} ms |`,
    `| proxy CPU during the soak | ${fmt(proxyCpu, 1)} % of one core |`,
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
