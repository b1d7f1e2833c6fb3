// The benchmark's load generator: one long-lived process (forked by bench/run.ts with an IPC channel) that runs
// one workload per message and answers with its counts. It sends { type: 'start' } when the measured window opens
// (connections are set up by then) and { type: 'done', result } when it closes, so that run.ts reads the proxy's CPU
// exactly around the window. Every loop stops at its deadline; every socket is closed before the answer.
import { Agent, Pool } from 'undici'
import { WebSocket } from 'ws'

export type Workload =
  /** `connections` loops of GET /small (keep-alive, or `Connection: close` on each request). */
  | { kind: 'get', connections: number, close: boolean }
  /** `connections` loops of POST with a `bytes` body: to /echo (the body comes back, read whole) or to /upload (read whole by the upstream, a short answer). */
  | { kind: 'post', connections: number, bytes: number, close: boolean, upload?: boolean }
  /** `clients` tunnels, each with one `bytes` message in flight (round trips). */
  | { kind: 'ws-rtt', clients: number, bytes: number }
  /** `tunnels` tunnels, each keeping `inFlight` bytes of `bytes`-sized binary messages in flight (echo throughput). */
  | { kind: 'ws-bulk', tunnels: number, bytes: number, inFlight: number }
  /** `loops` loops of: (warm: one GET on a keep-alive connection, so the proxy's upstream pool has an idle connection), open, one echo, close. */
  | { kind: 'ws-handshake', loops: number, warm: boolean }

export interface LoadRequest { url: string, workload: Workload, seconds: number }

/** `units`: requests, round trips or handshake cycles; `bytes`: payload bytes echoed back to the client. */
export interface LoadResult { units: number, bytes: number, seconds: number, errors: number }

const SMALL_PATH = '/small'

function send (message: unknown): void {
  ;(process.send as (m: unknown) => boolean)(message)
}

async function httpLoop (origin: string, w: Extract<Workload, { kind: 'get' | 'post' }>, seconds: number): Promise<LoadResult> {
  const pool = new Pool(origin, { connections: w.connections, pipelining: 1, keepAliveTimeout: 60_000 })
  const body = w.kind === 'post' ? Buffer.alloc(w.bytes, 120) : null
  const path = w.kind === 'post' ? (w.upload === true ? '/upload' : '/echo') : SMALL_PATH
  const method = w.kind === 'post' ? 'POST' : 'GET'
  const result: LoadResult = { units: 0, bytes: 0, seconds: 0, errors: 0 }
  let deadline = 0
  const one = async (): Promise<void> => {
    try {
      const res = await pool.request({ path, method, body, reset: w.close })
      for await (const chunk of res.body) result.bytes += (chunk as Buffer).length
      if (res.statusCode === 200) result.units++
      else result.errors++
    } catch {
      result.errors++
    }
  }
  // Warm-up: every connection open (and the proxy's upstream pool filled) before the window.
  await Promise.all(Array.from({ length: w.connections }, one))
  result.units = 0
  result.bytes = 0
  result.errors = 0
  send({ type: 'start' })
  const started = performance.now()
  deadline = started + seconds * 1000
  await Promise.all(Array.from({ length: w.connections }, async () => {
    while (performance.now() < deadline) await one()
  }))
  result.seconds = (performance.now() - started) / 1000
  await pool.close()
  return result
}

function openWs (url: string): Promise<WebSocket> {
  const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 })
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws))
    ws.once('error', reject)
  })
}

function closeAll (sockets: WebSocket[]): Promise<void> {
  return Promise.all(sockets.map((ws) => new Promise<void>((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) { resolve(); return }
    ws.once('close', () => resolve())
    ws.terminate()
  }))).then(() => undefined)
}

async function wsStream (url: string, tunnels: number, bytes: number, inFlight: number, seconds: number): Promise<LoadResult> {
  const sockets = await Promise.all(Array.from({ length: tunnels }, () => openWs(url)))
  const payload = Buffer.alloc(bytes, 7)
  const result: LoadResult = { units: 0, bytes: 0, seconds: 0, errors: 0 }
  let stopped = false
  let outstanding = 0
  let allBack: (() => void) | null = null
  send({ type: 'start' })
  const started = performance.now()
  for (const ws of sockets) {
    ws.binaryType = 'nodebuffer'
    ws.on('message', (data: Buffer) => {
      result.units++
      result.bytes += data.length
      if (!stopped) {
        ws.send(payload)
      } else if (--outstanding === 0) {
        allBack?.()
      }
    })
    ws.on('error', () => { result.errors++ })
    for (let i = 0; i < inFlight; i++) ws.send(payload)
  }
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000))
  stopped = true
  result.seconds = (performance.now() - started) / 1000
  const counted = { ...result }
  // Let what is in flight come back (bounded), so that no contender is measured at a moment its buffers are full.
  outstanding = tunnels * inFlight
  await Promise.race([new Promise<void>((resolve) => { allBack = resolve }), new Promise((resolve) => setTimeout(resolve, 5000))])
  await closeAll(sockets)
  return counted
}

async function handshakes (url: string, w: Extract<Workload, { kind: 'ws-handshake' }>, seconds: number): Promise<LoadResult> {
  const target = new URL(url)
  const origin = `http://${target.host}`
  const agent = w.warm ? new Agent({ connections: w.loops, keepAliveTimeout: 60_000 }) : null
  const payload = Buffer.alloc(64, 7)
  const result: LoadResult = { units: 0, bytes: 0, seconds: 0, errors: 0 }
  const cycle = async (): Promise<void> => {
    try {
      if (agent !== null) {
        const res = await agent.request({ origin, path: SMALL_PATH, method: 'GET' })
        await res.body.dump()
      }
      const ws = await openWs(url)
      await new Promise<void>((resolve, reject) => {
        ws.once('message', () => { ws.close(1000); ws.once('close', () => resolve()) })
        ws.once('error', reject)
        ws.send(payload)
      })
      result.units++
    } catch {
      result.errors++
    }
  }
  await Promise.all(Array.from({ length: w.loops }, cycle))
  result.units = 0
  result.errors = 0
  send({ type: 'start' })
  const started = performance.now()
  const deadline = started + seconds * 1000
  await Promise.all(Array.from({ length: w.loops }, async () => {
    while (performance.now() < deadline) await cycle()
  }))
  result.seconds = (performance.now() - started) / 1000
  await agent?.close()
  return result
}

async function run ({ url, workload: w, seconds }: LoadRequest): Promise<LoadResult> {
  switch (w.kind) {
    case 'get':
    case 'post':
      return await httpLoop(url, w, seconds)
    case 'ws-rtt':
      return await wsStream(url, w.clients, w.bytes, 1, seconds)
    case 'ws-bulk':
      return await wsStream(url, w.tunnels, w.bytes, Math.max(1, Math.floor(w.inFlight / w.bytes)), seconds)
    case 'ws-handshake':
      return await handshakes(url, w, seconds)
  }
}

process.on('message', (request: LoadRequest) => {
  run(request).then(
    (result) => send({ type: 'done', result }),
    (err: Error) => send({ type: 'failed', message: err.stack ?? err.message })
  )
})
process.on('disconnect', () => process.exit(0))
