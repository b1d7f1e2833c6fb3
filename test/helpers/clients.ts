import http, { type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import type { Seen, Teardown } from './servers.js'

export interface Answer {
  status: number
  headers: IncomingHttpHeaders
  rawHeaders: string[]
  body: Buffer
}

/**
 * One request with `http.request` (which, unlike undici's clients, lets a test send any header:
 * Connection, Keep-Alive, TE, ...). A fresh connection each time, so nothing is shared between tests.
 */
export async function request (url: string, options: { method?: string, headers?: OutgoingHttpHeaders | string[], body?: Buffer | string } = {}): Promise<Answer> {
  const req = http.request(url, { method: options.method ?? 'GET', headers: options.headers, agent: false })
  req.end(options.body)
  const [res] = await once(req, 'response') as [http.IncomingMessage]
  const chunks: Buffer[] = []
  for await (const chunk of res) chunks.push(chunk as Buffer)
  return { status: res.statusCode as number, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks) }
}

/** Writes `bytes` on a raw TCP connection and resolves with everything read until the server closes it. */
export async function rawExchange (t: Teardown, port: number, bytes: string | Buffer, timeoutMs = 5000): Promise<string> {
  const socket = net.connect(port, '127.0.0.1')
  t.teardown(() => { socket.destroy() })
  socket.setTimeout(timeoutMs, () => socket.destroy(new Error('raw exchange timed out')))
  const chunks: Buffer[] = []
  socket.on('data', (chunk) => chunks.push(chunk))
  socket.write(bytes)
  await once(socket, 'close')
  return Buffer.concat(chunks).toString('latin1')
}

/** The values of header `name` (lowercase) in a raw [name, value, ...] list, in order. */
export function values (raw: string[], name: string): string[] {
  const out: string[] = []
  for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() === name) out.push(raw[i + 1])
  return out
}

/** What the echo upstream (servers.ts `echoHandler`) reports it received. */
export function seenOf (body: Buffer): Seen {
  return JSON.parse(body.toString()) as Seen
}
