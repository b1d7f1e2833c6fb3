// Soak clients, in their own process: <count> slots, each holding one WebSocket tunnel through the proxy.
// Usage: soak-client <idle|active> <count> <messages/s per tunnel> <message bytes> [first slot]; `warmUp { ports, count }`
// first (it sets the proxies' ports), then `open` opens them all. Slots spread over the proxy processes round-robin by
// their index across all client processes (this one's start at <first slot>); a reconnect goes to its slot's proxy.
// A tunnel (a "session") counts once the upstream's `hello <name>` arrives, naming the upstream life it reached.
// Active sessions send numbered messages at a steady rate and check each echo: right bytes, in order; what was
// sent but never echoed when the session ended is lost. A session that ends unexpectedly is reconnected
// (bounded attempts, backoff with jitter), as a real client would.
import { setTimeout as sleep } from 'node:timers/promises'
import { WebSocket } from 'ws'
import { announce, serve } from './soak-rpc.js'

const [mode, countArg, rateArg, sizeArg, firstArg] = process.argv.slice(2)
const active = mode === 'active'
let urls: string[] = []
const first = Number(firstArg ?? 0)
/** The proxy a slot's tunnels go to, every time. */
const urlOf = (slot: number): string => urls[(first + slot) % urls.length]
const count = Number(countArg)
const rate = Number(rateArg)
const size = Number(sizeArg)
const CONCURRENT_HANDSHAKES = 200
const HANDSHAKE_TIMEOUT = 10_000
const ATTEMPTS = 10
const RECONNECT_SPREAD = 5000
const PADDING = 'x'.repeat(size)

/** Totals per upstream life (A, B1, B2). */
interface LifeTotals {
  sessions: number
  sent: number
  echoed: number
  lost: number
  outOfOrder: number
  corrupt: number
  unexpectedCloses: number
}

interface Session {
  readonly slot: Slot
  readonly ws: WebSocket
  life: string
  sent: number
  echoed: number
  outOfOrder: number
  corrupt: number
  open: boolean
}

interface Slot {
  readonly index: number
  session: Session | null
  reconnecting: boolean
  gaveUp: boolean
}

const slots: Slot[] = Array.from({ length: count }, (_, index) => ({ index, session: null, reconnecting: false, gaveUp: false }))
const totals: Record<string, LifeTotals> = {}
const failures: Record<string, number> = {}
let attempts = 0
let reconnects = 0
let reconnecting = true
let closing = false

const lifeTotals = (life: string): LifeTotals => (totals[life] ??= { sessions: 0, sent: 0, echoed: 0, lost: 0, outOfOrder: 0, corrupt: 0, unexpectedCloses: 0 })
const message = (slot: number, seq: number): string => `${slot}:${seq}:${PADDING}`.slice(0, Math.max(size, 16))

/** Adds what a session did to its life's totals, once, when it ends (or at a report, for live ones). */
function account (session: Session, into: Record<string, LifeTotals>, unexpected: boolean): void {
  const t = into[session.life] ??= { sessions: 0, sent: 0, echoed: 0, lost: 0, outOfOrder: 0, corrupt: 0, unexpectedCloses: 0 }
  t.sessions++
  t.sent += session.sent
  t.echoed += session.echoed
  t.lost += session.sent - session.echoed
  t.outOfOrder += session.outOfOrder
  t.corrupt += session.corrupt
  if (unexpected) t.unexpectedCloses++
}

function onMessage (session: Session, data: Buffer): void {
  const text = data.toString()
  if (!session.open) {
    // The upstream's greeting names it; anything else first is a corrupted tunnel.
    if (text.startsWith('hello ')) {
      session.life = text.slice(6)
      session.open = true
      session.ws.emit('hello')
    } else {
      session.corrupt++
    }
    return
  }
  if (text === message(session.slot.index, session.echoed + 1)) {
    session.echoed++
    return
  }
  // Not the next one: a gap or a reordering if it parses as one of ours, else damaged bytes.
  const [slot, seq] = text.split(':').map(Number)
  if (slot === session.slot.index && seq > 0 && seq <= session.sent && text === message(slot, seq)) {
    session.outOfOrder++
    session.echoed++
  } else {
    session.corrupt++
  }
}

let handshakes = 0
const waiting: Array<() => void> = []
async function handshakeSlot (): Promise<void> {
  if (handshakes < CONCURRENT_HANDSHAKES) {
    handshakes++
    return
  }
  await new Promise<void>((resolve) => waiting.push(resolve))
}
function releaseHandshake (): void {
  const next = waiting.shift()
  if (next !== undefined) next()
  else handshakes--
}

/** One attempt: resolves once the upstream said hello, rejects on any failure (the socket is then gone). */
async function attempt (slot: Slot): Promise<void> {
  attempts++
  const ws = new WebSocket(urlOf(slot.index), { perMessageDeflate: false, handshakeTimeout: HANDSHAKE_TIMEOUT })
  const session: Session = { slot, ws, life: '?', sent: 0, echoed: 0, outOfOrder: 0, corrupt: 0, open: false }
  ws.on('message', (data: Buffer) => onMessage(session, data))
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no hello')), HANDSHAKE_TIMEOUT)
      ws.once('hello', () => { clearTimeout(timer); resolve() })
      ws.once('error', (err) => { clearTimeout(timer); reject(err) })
      ws.once('close', () => { clearTimeout(timer); reject(new Error('closed before hello')) })
    })
  } catch (err) {
    ws.terminate()
    throw err
  }
  ws.on('error', () => {})
  ws.once('close', () => onClose(session))
  slot.session = session
  lifeTotals(session.life)
}

function onClose (session: Session): void {
  const slot = session.slot
  slot.session = null
  account(session, totals, !closing)
  if (!closing && reconnecting) reconnect(slot, true).catch(() => {})
}

/** Opens a slot's tunnel, with up to ATTEMPTS tries; a reconnect first waits a random share of RECONNECT_SPREAD. */
async function reconnect (slot: Slot, again: boolean): Promise<void> {
  slot.reconnecting = true
  if (again) await sleep(Math.random() * RECONNECT_SPREAD)
  for (let n = 0; n < ATTEMPTS; n++) {
    // Set by `stop`, while this loop sleeps.
    if (!reconnecting) break
    await handshakeSlot()
    try {
      await attempt(slot)
      if (again) reconnects++
      slot.reconnecting = false
      return
    } catch (err) {
      const reason = (err as Error).message.replace(/\d+ ms/, 'N ms')
      failures[reason] = (failures[reason] ?? 0) + 1
    } finally {
      releaseHandshake()
    }
    await sleep(Math.min(4000, 250 * 2 ** n) * (0.5 + Math.random()))
  }
  slot.reconnecting = false
  slot.gaveUp = true
}

// Steady traffic: every 20 ms, as many messages as the rate owes since the start, one per slot in turn.
let trafficStarted = 0
let owed = 0
let skipped = 0
let cursor = 0
let ticker: NodeJS.Timeout | null = null
function tick (): void {
  const due = Math.floor((performance.now() - trafficStarted) / 1000 * rate * count)
  for (; owed < due; owed++) {
    const session = slots[cursor].session
    cursor = cursor + 1 === count ? 0 : cursor + 1
    if (session === null) {
      skipped++
      continue
    }
    session.sent++
    session.ws.send(message(session.slot.index, session.sent))
  }
}

function report (): Record<string, unknown> {
  // Live sessions are added to a copy, so a report can be taken at any time.
  const lives: Record<string, LifeTotals> = structuredClone(totals)
  let open = 0
  for (const slot of slots) {
    if (slot.session !== null) {
      open++
      account(slot.session, lives, false)
    }
  }
  return {
    mode,
    slots: count,
    open,
    reconnecting: slots.filter((slot) => slot.reconnecting).length,
    gaveUp: slots.filter((slot) => slot.gaveUp).length,
    attempts,
    reconnects,
    failures,
    skipped,
    lives
  }
}

/** Opens `count` tunnels and closes them again: the proxy's lazily built state is then in its memory baseline. */
async function warmUp (count: number): Promise<number> {
  const sockets = await Promise.all(Array.from({ length: count }, async (_, index) => {
    const ws = new WebSocket(urlOf(index), { perMessageDeflate: false, handshakeTimeout: HANDSHAKE_TIMEOUT })
    await new Promise<void>((resolve, reject) => {
      ws.once('message', () => resolve())
      ws.once('error', reject)
    })
    return ws
  }))
  await Promise.all(sockets.map(async (ws) => await new Promise<void>((resolve) => {
    ws.once('close', () => resolve())
    ws.close(1000, 'warm-up over')
  })))
  return sockets.length
}

serve({
  warmUp: async (args) => {
    urls = (args.ports as number[]).map((port) => `ws://127.0.0.1:${Number(port)}/soak`)
    return { opened: await warmUp(Number(args.count)) }
  },
  open: async () => {
    const started = performance.now()
    await Promise.all(slots.map(async (slot) => await reconnect(slot, false)))
    return { ...report(), seconds: (performance.now() - started) / 1000 }
  },
  traffic: () => {
    if (!active) return
    trafficStarted = performance.now()
    ticker = setInterval(tick, 20)
  },
  report,
  /** Stops sending and reconnecting, then waits (bounded) until every message sent has been echoed. */
  stop: async (args) => {
    reconnecting = false
    if (ticker !== null) clearInterval(ticker)
    const deadline = Date.now() + Number(args.ms ?? 15_000)
    const pending = (): boolean => slots.some((slot) => slot.session !== null && slot.session.echoed < slot.session.sent)
    while (pending() && Date.now() < deadline) await sleep(20)
    return report()
  },
  /** Closes every tunnel with a Close 1000 and waits (bounded) for all to be gone; stragglers are terminated. */
  close: async (args) => {
    closing = true
    const sessions = slots.map((slot) => slot.session).filter((session) => session !== null)
    const closed = sessions.map(async (session) => await new Promise<void>((resolve) => {
      session.ws.once('close', () => resolve())
      session.ws.close(1000, 'soak over')
    }))
    const all = Promise.all(closed).then(() => false)
    const late = await Promise.race([all, sleep(Number(args.ms ?? 20_000)).then(() => true)])
    let terminated = 0
    for (const slot of slots) {
      if (slot.session !== null) {
        terminated++
        slot.session.ws.terminate()
      }
    }
    return { closed: sessions.length - terminated, terminated, late }
  }
})
announce({})
