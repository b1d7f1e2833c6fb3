import http, { type Server } from 'node:http'
import { once } from 'node:events'
import { WebSocket } from 'ws'
import { httpUpstream, origin, wsUpstream, type Teardown } from './servers.js'
import { cli, logLines, waitForOutput, type Run } from './cli.js'
import { main } from '../../src/gateway/cli-main.js'

// Shared by the gateway-cluster-*.test.ts files: each case there starts real processes (a primary and its workers),
// so the cases are spread over several files that tap runs side by side, each within its own timeout.

/** An upstream for HTTP (echo of the request as JSON, optionally slow) and WebSocket (echo) on one port. */
export async function upstream (t: Teardown): Promise<{ url: string, server: Server }> {
  const server = await httpUpstream(t)
  const { wss } = await wsUpstream(t)
  // Same port for both: the upgrade goes to a ws server without its own listener.
  server.on('upgrade', (req, socket, head) => {
    wss.handleUpgrade(req, socket, head, (ws) => { ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })) })
  })
  return { url: origin(server), server }
}

export function config (upstreamUrl: string, version: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    listen: { port: 0 },
    routes: [{ prefix: '/', upstream: upstreamUrl }],
    responseHeaders: { set: { 'x-config': version } },
    closeGracePeriod: 1000,
    ...extra
  }
}

export async function startCluster (t: Teardown, file: string, workers = 2, detached = false): Promise<{ run: Run, base: string }> {
  const run = cli(t, ['-c', file, '--workers', String(workers)], {}, detached)
  await waitForOutput(run, /"msg":"workers started"/)
  const [, port] = await waitForOutput(run, /Server listening at http:\/\/127\.0\.0\.1:(\d+)/)
  return { run, base: `http://127.0.0.1:${port}` }
}

export function primaryLines (run: Run, msg: string | RegExp): Array<Record<string, unknown>> {
  return logLines(run).filter((line) => line.role === 'primary' && (typeof msg === 'string' ? line.msg === msg : msg.test(String(line.msg))))
}

/** A GET on a keep-alive agent. A request that meets a keep-alive connection the server closed as it was sent is retried once, as RFC 9112 §9.3.1 lets clients do for idempotent requests (Node's documented pattern). */
export async function keepAliveGet (agent: http.Agent, url: string): Promise<{ status: number, config: string, retried: boolean }> {
  for (let attempt = 0; ; attempt++) {
    try {
      const req = http.get(url, { agent })
      req.setTimeout(5000, () => req.destroy(new Error(`no answer in 5 s (reused socket: ${String(req.reusedSocket)})`)))
      const [res] = await once(req, 'response') as [http.IncomingMessage]
      res.resume()
      await once(res, 'end')
      return { status: res.statusCode as number, config: String(res.headers['x-config']), retried: attempt > 0 }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (attempt > 0 || (code !== 'ECONNRESET' && code !== 'EPIPE')) throw err
    }
  }
}

/** Runs the CLI in this process; what it wrote to stdout and stderr is captured only while it runs (TAP writes to stdout too). */
export async function inProcess (args: string[]): Promise<{ code: number, out: string, err: string }> {
  const writes = { out: process.stdout.write, err: process.stderr.write }
  let out = ''
  let err = ''
  process.stdout.write = ((chunk: string | Uint8Array) => { out += String(chunk); return true }) as typeof process.stdout.write
  process.stderr.write = ((chunk: string | Uint8Array) => { err += String(chunk); return true }) as typeof process.stderr.write
  try {
    return { code: await main(args), out, err }
  } finally {
    process.stdout.write = writes.out
    process.stderr.write = writes.err
  }
}

/**
 * One WebSocket echo on a fresh connection. Resolves with the echo, or with the close code when the tunnel was
 * sent away (1001 from a draining worker) before its echo came back; rejects on anything else.
 */
export async function wsEcho (url: string, text: string): Promise<string | number> {
  const ws = new WebSocket(url, { handshakeTimeout: 5000 })
  const timer = setTimeout(() => ws.emit('error', new Error(`echo not done in 5 s (state ${ws.readyState})`)), 5000)
  try {
    await once(ws, 'open')
    ws.send(text)
    const answer = await Promise.race([
      once(ws, 'message').then(([data]) => String(data)),
      once(ws, 'close').then(([code]) => code as number)
    ])
    if (typeof answer === 'string') {
      ws.close(1000)
      await once(ws, 'close')
    }
    return answer
  } finally {
    clearTimeout(timer)
    ws.terminate()
  }
}

export async function waitForCount (run: Run, msg: string, count: number, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms
  while (primaryLines(run, msg).length < count) {
    if (Date.now() > deadline) throw new Error(`${primaryLines(run, msg).length} of ${count} "${msg}" lines: ${run.output()}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
