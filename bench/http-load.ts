// HTTP load generator for the reload phase, in its own process: `connections` loops of GETs on an undici Pool
// (keep-alive; a response with `Connection: close` retires its socket, as RFC 9112 asks of clients, which
// autocannon does not do). Usage: http-load <url> <connections> <seconds>; SIGINT ends it early.
// Prints one JSON line: { requests, ok, non2xx, errors: { code: count } }.
import { Pool } from 'undici'

const [url, connectionsArg, secondsArg] = process.argv.slice(2)
const target = new URL(url)
const connections = Number(connectionsArg)
let deadline = Date.now() + Number(secondsArg) * 1000
process.on('SIGINT', () => { deadline = 0 })
const pool = new Pool(target.origin, { connections, pipelining: 1 })
const errors: Record<string, number> = {}
let requests = 0
let ok = 0
let non2xx = 0

async function loop (): Promise<void> {
  while (Date.now() < deadline) {
    requests++
    try {
      const res = await pool.request({ path: target.pathname, method: 'GET' })
      await res.body.dump()
      if (res.statusCode >= 200 && res.statusCode < 300) ok++
      else non2xx++
    } catch (err) {
      const code = (err as { code?: string }).code ?? (err as Error).message
      errors[code] = (errors[code] ?? 0) + 1
    }
  }
}

await Promise.all(Array.from({ length: connections }, loop))
await pool.close()
process.stdout.write(JSON.stringify({ requests, ok, non2xx, errors }) + '\n')
