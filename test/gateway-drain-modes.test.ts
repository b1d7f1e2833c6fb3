import t from 'tap'
import { once } from 'node:events'
import { WebSocket } from 'ws'
import { within, type Teardown } from './helpers/servers.js'
import { parseFrames, rawClient, wsHandshakeHead } from './helpers/ws.js'
import { configDir, exitCode, waitForOutput } from './helpers/cli.js'
import { upstream, config, startCluster, primaryLines, waitForCount } from './helpers/cluster.js'

// `tunnelDrain` on a cluster gateway's reload (SIGHUP) and stop (SIGTERM): the old workers' tunnels follow it, and
// every Close they get says why (`reload` or `shutdown`). `immediate` on reload is pinned by
// gateway-cluster-reload.test.ts. Real processes: a primary and two workers per generation.
const { write } = configDir('drain-modes')
t.setTimeout(300_000)

const GRACE = 3000
const WINDOW = 300
/** The worker learns of the reload through the primary's IPC, the test through the primary's log pipe: some slack. */
const SLACK = 200

interface Tracked { ws: WebSocket, closedAt: number, code: number, reason: string, echoes: number }

/** A WebSocket through the gateway that echoes a message every `every` ms until it is closed. */
async function tracked (t: Teardown, url: string, every = 0): Promise<Tracked> {
  const ws = new WebSocket(url, { handshakeTimeout: 5000 })
  t.teardown(() => ws.terminate())
  await within(once(ws, 'open'), 5000, 'the WebSocket to open')
  const state: Tracked = { ws, closedAt: 0, code: 0, reason: '', echoes: 0 }
  let timer: NodeJS.Timeout | null = null
  ws.on('message', () => { state.echoes++ })
  ws.on('close', (code: number, reason: Buffer) => {
    state.closedAt = Date.now()
    state.code = code
    state.reason = reason.toString()
    if (timer !== null) clearInterval(timer)
  })
  if (every > 0) {
    timer = setInterval(() => { if (ws.readyState === ws.OPEN) ws.send('tick') }, every)
    t.teardown(() => { if (timer !== null) clearInterval(timer) })
  }
  return state
}

async function closedAll (tunnels: Tracked[], ms: number): Promise<void> {
  const deadline = Date.now() + ms
  while (tunnels.some((s) => s.closedAt === 0)) {
    if (Date.now() > deadline) throw new Error(`${tunnels.filter((s) => s.closedAt === 0).length} tunnels still open after ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

t.test('deadline: a reload leaves live tunnels relaying until the close window, then Close 1001 "reload"', async (t) => {
  const up = await upstream(t)
  const file = write('deadline.json', config(up.url, 'v1', { tunnelDrain: 'deadline', closeGracePeriod: GRACE }))
  const { run, base } = await startCluster(t, file)
  const ws = base.replace('http', 'ws')
  const tunnels = await Promise.all([tracked(t, `${ws}/a`, 100), tracked(t, `${ws}/b`, 100)])
  // A client that never answers the Close: its connection ends once the upstream has answered (nothing more can
  // flow), within the grace period. (Both sides mute: destroyed at the deadline, tunnel-drain-modes.test.ts.)
  const mute = await rawClient(t, Number(new URL(base).port))
  mute.socket.write(wsHandshakeHead('/mute'))
  await mute.contains('\r\n\r\n', 5000)
  const before = run.output().length
  run.child.kill('SIGHUP')
  await waitForOutput(run, /"msg":"reloaded: the new workers serve, the old ones drain"/, 30_000, before)
  const reloadedAt = Date.now()
  const echoesThen = tunnels.map((s) => s.echoes)
  await closedAll(tunnels, GRACE + 5000)
  for (const [i, s] of tunnels.entries()) {
    t.same([s.code, s.reason], [1001, 'reload'], `tunnel ${i}: Close 1001 "reload"`)
    const after = s.closedAt - reloadedAt
    t.ok(after >= GRACE - WINDOW - SLACK && after < GRACE + 3000, `tunnel ${i} closed ${after} ms after the reload (window at ${GRACE - WINDOW})`)
    t.ok(s.echoes - echoesThen[i] >= 10, `tunnel ${i} kept relaying through the drain (${s.echoes - echoesThen[i]} echoes)`)
  }
  await mute.end(GRACE + 5000)
  const cut = Date.now() - reloadedAt
  const [close] = parseFrames(mute.bytes.subarray(mute.text.indexOf('\r\n\r\n') + 4))
  t.same([close?.opcode, close?.payload.subarray(2).toString()], [0x8, 'reload'], 'the mute client got its Close "reload" too')
  t.ok(cut >= GRACE - WINDOW - SLACK && cut < GRACE + 4000, `and its connection ended ${cut} ms after the reload`)
  await waitForCount(run, 'worker drained and exited', 2)
  // The new generation serves; a stop sends its tunnels away with `shutdown`.
  const late = await tracked(t, `${ws}/late`)
  run.child.kill('SIGTERM')
  await closedAll([late], GRACE + 5000)
  t.same([late.code, late.reason], [1001, 'shutdown'], 'a stop closes with Close 1001 "shutdown"')
  t.equal(await exitCode(run), 0)
})

t.test('spread: a reload sends the old workers\' tunnels away one by one over the grace period, each with "reload"', async (t) => {
  const up = await upstream(t)
  const file = write('spread.json', config(up.url, 'v1', { tunnelDrain: 'spread', closeGracePeriod: GRACE }))
  const { run, base } = await startCluster(t, file)
  const ws = base.replace('http', 'ws')
  const tunnels: Tracked[] = []
  for (let i = 0; i < 20; i++) tunnels.push(await tracked(t, `${ws}/t${i}`))
  const before = run.output().length
  run.child.kill('SIGHUP')
  await waitForOutput(run, /"msg":"reloaded: the new workers serve, the old ones drain"/, 30_000, before)
  const reloadedAt = Date.now()
  await closedAll(tunnels, GRACE + 5000)
  t.same(tunnels.map((s) => [s.code, s.reason]), Array(20).fill([1001, 'reload']), 'every tunnel got Close 1001 "reload"')
  const times = tunnels.map((s) => s.closedAt - reloadedAt).sort((a, b) => a - b)
  t.ok(times[19] - times[0] >= 1500, `spread over ${times[19] - times[0]} ms (${times.join(', ')})`)
  t.ok(times[19] < GRACE + 3000, `the last one ${times[19]} ms after the reload`)
  await waitForCount(run, 'worker drained and exited', 2)
  t.match(primaryLines(run, 'worker drained and exited'), [{ code: 0 }, { code: 0 }])
  run.child.kill('SIGTERM')
  t.equal(await exitCode(run), 0)
})
