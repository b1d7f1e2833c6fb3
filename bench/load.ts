// The benchmark's load generator: one long-lived process (forked by bench/run.ts with an IPC channel) that runs
// one workload per message and answers with its counts. It sends { type: 'start' } when the measured window opens
// (connections are set up by then) and { type: 'done', result } when it closes, so that run.ts reads the proxy's CPU
// exactly around the window. Every loop stops at its deadline; every socket is closed before the answer.
import { readFileSync } from 'node:fs'
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2'
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
  /** `streams` loops of GET /small spread over `sessions` HTTP/2 connections (bench/http2.ts). */
  | { kind: 'h2-get', sessions: number, streams: number }
  /** `clients` WebSockets over HTTP/2 (RFC 8441) spread over `sessions` connections, each with one `bytes` message in flight. */
  | { kind: 'h2-ws-rtt', sessions: number, clients: number, bytes: number }

/** `ca`: the PEM file of the certificate an https:// or wss:// URL's server presents (self-signed). */
export interface LoadRequest { url: string, workload: Workload, seconds: number, ca?: string }

/** `units`: requests, round trips or handshake cycles; `bytes`: payload bytes echoed back to the client. */
export interface LoadResult { units: number, bytes: number, seconds: number, errors: number }

const SMALL_PATH = '/small'
/** The request's `ca`, read: trusted by every TLS client of the workload. */
let ca: Buffer | undefined

function send (message: unknown): void {
  ;(process.send as (m: unknown) => boolean)(message)
}

async function httpLoop (origin: string, w: Extract<Workload, { kind: 'get' | 'post' }>, seconds: number): Promise<LoadResult> {
  const pool = new Pool(origin, { connections: w.connections, pipelining: 1, keepAliveTimeout: 60_000, connect: { ca } })
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
  const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 256 * 1024 * 1024, ca })
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

/** A tunnel as the echo loop drives it: a `ws` client, or a WebSocket over an HTTP/2 stream (RFC 8441). */
interface Echo {
  send: (payload: Buffer) => void
  /** `listener` gets each echoed message's payload length. */
  onMessage: (listener: (length: number) => void) => void
  onError: (listener: () => void) => void
}

function wsEcho (ws: WebSocket): Echo {
  ws.binaryType = 'nodebuffer'
  return {
    send: (payload) => ws.send(payload),
    onMessage: (listener) => ws.on('message', (data: Buffer) => listener(data.length)),
    onError: (listener) => ws.on('error', listener)
  }
}

async function wsStream (url: string, tunnels: number, bytes: number, inFlight: number, seconds: number): Promise<LoadResult> {
  const sockets = await Promise.all(Array.from({ length: tunnels }, () => openWs(url)))
  const result = await echoLoop(sockets.map(wsEcho), bytes, inFlight, seconds)
  await closeAll(sockets)
  return result
}

/** Keeps `inFlight` messages of `bytes` in flight on every tunnel for `seconds`, then lets them come back (bounded). */
async function echoLoop (tunnels: Echo[], bytes: number, inFlight: number, seconds: number): Promise<LoadResult> {
  const payload = Buffer.alloc(bytes, 7)
  const result: LoadResult = { units: 0, bytes: 0, seconds: 0, errors: 0 }
  let stopped = false
  let outstanding = 0
  let allBack: (() => void) | null = null
  send({ type: 'start' })
  const started = performance.now()
  for (const ws of tunnels) {
    ws.onMessage((length) => {
      result.units++
      result.bytes += length
      if (!stopped) {
        ws.send(payload)
      } else if (--outstanding === 0) {
        allBack?.()
      }
    })
    ws.onError(() => { result.errors++ })
    for (let i = 0; i < inFlight; i++) ws.send(payload)
  }
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000))
  stopped = true
  result.seconds = (performance.now() - started) / 1000
  const counted = { ...result }
  // Let what is in flight come back (bounded), so that no contender is measured at a moment its buffers are full.
  outstanding = tunnels.length * inFlight
  await Promise.race([new Promise<void>((resolve) => { allBack = resolve }), new Promise((resolve) => setTimeout(resolve, 5000))])
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

// ---------------------------------------------------------------------------------------------------------------
// HTTP/2: Node's client. Its streams are never destroyed while others close (Node 20's client can spin without bound
// when a stream is destroyed in the same tick as another's 'close'): loops end their streams, sessions close gracefully.

async function h2Sessions (origin: string, count: number): Promise<ClientHttp2Session[]> {
  return await Promise.all(Array.from({ length: count }, async () => {
    const session = http2.connect(origin, { ca })
    await new Promise<void>((resolve, reject) => {
      session.once('remoteSettings', () => resolve())
      session.once('error', reject)
    })
    session.on('error', () => {})
    return session
  }))
}

/** Closes every session (GOAWAY once its streams are done), bounded by 5 s; then destroys what is left. */
async function closeSessions (sessions: ClientHttp2Session[]): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve))
  await Promise.race([
    Promise.all(sessions.map((session) => new Promise<void>((resolve) => session.close(resolve)))),
    new Promise((resolve) => setTimeout(resolve, 5000))
  ])
  await new Promise((resolve) => setImmediate(resolve))
  for (const session of sessions) if (!session.destroyed) session.destroy()
}

async function h2Get (origin: string, w: Extract<Workload, { kind: 'h2-get' }>, seconds: number): Promise<LoadResult> {
  const sessions = await h2Sessions(origin, w.sessions)
  const result: LoadResult = { units: 0, bytes: 0, seconds: 0, errors: 0 }
  const one = (session: ClientHttp2Session): Promise<void> => new Promise((resolve) => {
    let status = 0
    let ended = false
    const stream = session.request({ ':path': SMALL_PATH })
    stream.on('response', (headers: IncomingHttpHeaders) => { status = Number(headers[':status']) })
    stream.on('data', (chunk: Buffer) => { result.bytes += chunk.length })
    stream.on('end', () => { ended = true })
    stream.on('error', () => {})
    stream.on('close', () => {
      if (status === 200 && ended) result.units++
      else result.errors++
      resolve()
    })
  })
  const loop = async (i: number, deadline: number): Promise<void> => {
    const session = sessions[i % sessions.length]
    do {
      if (session.closed) { result.errors++; return }
      await one(session)
    } while (performance.now() < deadline)
  }
  // Warm-up: one request on every stream loop before the window.
  await Promise.all(Array.from({ length: w.streams }, (_, i) => loop(i, 0)))
  result.units = 0
  result.bytes = 0
  result.errors = 0
  send({ type: 'start' })
  const started = performance.now()
  const deadline = started + seconds * 1000
  await Promise.all(Array.from({ length: w.streams }, (_, i) => loop(i, deadline)))
  result.seconds = (performance.now() - started) / 1000
  await closeSessions(sessions)
  return result
}

/** A client's binary frame (RFC 6455 §5.2), masked; payloads under 64 KiB. */
function maskedFrame (payload: Buffer): Buffer {
  const short = payload.length < 126
  const head = Buffer.alloc(short ? 6 : 8)
  head[0] = 0x82
  head[1] = 0x80 | (short ? payload.length : 126)
  if (!short) head.writeUInt16BE(payload.length, 2)
  const mask = head.subarray(head.length - 4)
  mask.writeUInt32BE(0x5a3c9e17)
  const masked = Buffer.from(payload.map((byte, i) => byte ^ mask[i & 3]))
  return Buffer.concat([head, masked])
}

/** A WebSocket over an HTTP/2 stream: the extended CONNECT, then the server's frames counted as they complete. */
async function h2Echo (session: ClientHttp2Session, path: string): Promise<{ echo: Echo, stream: ClientHttp2Stream }> {
  const stream = session.request({ ':method': 'CONNECT', ':protocol': 'websocket', ':path': path, ':scheme': 'https', 'sec-websocket-version': '13' })
  const [headers] = await new Promise<[IncomingHttpHeaders]>((resolve, reject) => {
    stream.once('response', (h: IncomingHttpHeaders) => resolve([h]))
    stream.once('error', reject)
  })
  stream.on('error', () => {})
  if (Number(headers[':status']) !== 200) throw new Error(`extended CONNECT answered ${String(headers[':status'])}`)
  let frame: Buffer | null = null
  const echo: Echo = {
    send: (payload) => stream.write(frame ??= maskedFrame(payload)),
    onMessage: (listener) => {
      let buffered: Buffer = Buffer.alloc(0)
      stream.on('data', (chunk: Buffer) => {
        buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk])
        while (buffered.length >= 2) {
          const short = buffered[1] & 0x7f
          const offset = short === 126 ? 4 : short === 127 ? 10 : 2
          if (buffered.length < offset) return
          const length = short === 126 ? buffered.readUInt16BE(2) : short === 127 ? Number(buffered.readBigUInt64BE(2)) : short
          if (buffered.length < offset + length) return
          buffered = buffered.subarray(offset + length)
          listener(length)
        }
      })
    },
    onError: (listener) => stream.on('error', listener)
  }
  return { echo, stream }
}

async function h2WsRtt (url: string, w: Extract<Workload, { kind: 'h2-ws-rtt' }>, seconds: number): Promise<LoadResult> {
  const target = new URL(url)
  const sessions = await h2Sessions(target.origin, w.sessions)
  const tunnels = await Promise.all(Array.from({ length: w.clients }, (_, i) => h2Echo(sessions[i % sessions.length], target.pathname)))
  const result = await echoLoop(tunnels.map((t) => t.echo), w.bytes, 1, seconds)
  // END_STREAM on every tunnel (the proxy half-closes upstream, the upstream closes, the stream ends); no stream destroyed.
  for (const { stream } of tunnels) stream.end()
  await closeSessions(sessions)
  return result
}

async function run ({ url, workload: w, seconds, ca: caFile }: LoadRequest): Promise<LoadResult> {
  ca = caFile === undefined ? undefined : readFileSync(caFile)
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
    case 'h2-get':
      return await h2Get(url, w, seconds)
    case 'h2-ws-rtt':
      return await h2WsRtt(url, w, seconds)
  }
}

process.on('message', (request: LoadRequest) => {
  run(request).then(
    (result) => send({ type: 'done', result }),
    (err: Error) => send({ type: 'failed', message: err.stack ?? err.message })
  )
})
process.on('disconnect', () => process.exit(0))
