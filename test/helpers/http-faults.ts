import http, { type IncomingMessage, type OutgoingHttpHeaders } from 'node:http'
import net, { type Socket } from 'node:net'
import { once } from 'node:events'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { listen, within, type Teardown } from './servers.js'
// Shared with the upgrade helpers; re-exported so tests import them from here as before.
export { within, closedPort, logCapture, type LogRecord } from './servers.js'
import type { Answer } from './clients.js'

// Helpers for the plain HTTP path tests: scripted upstreams that misbehave, requests driven chunk by chunk,
// responses read to their end or their abort, and captured Fastify logs.

/** What a scripted upstream's connection looks like to its script. */
export interface ScriptedConnection {
  socket: Socket
  /** The request head as received, up to and including the blank line. */
  head: string
  /** Bytes received after the head (a body start), if any. */
  rest: Buffer
}

/**
 * A `net` upstream that hands each request head it reads to `script`, which writes exact bytes (or nothing, or
 * resets). Request bodies are not parsed: after a head, whatever follows is searched for the next head, which is
 * enough for body-less requests on a kept-alive connection. `accepted` lists every accepted socket.
 */
export async function scriptedUpstream (t: Teardown, script: (c: ScriptedConnection) => void): Promise<net.Server & { accepted: Socket[] }> {
  const accepted: Socket[] = []
  const server = net.createServer((socket) => {
    accepted.push(socket)
    socket.on('error', noop)
    let buffered = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      for (let end = buffered.indexOf('\r\n\r\n'); end !== -1; end = buffered.indexOf('\r\n\r\n')) {
        const head = buffered.subarray(0, end + 4).toString('latin1')
        buffered = buffered.subarray(end + 4)
        script({ socket, head, rest: buffered })
      }
    })
  }) as net.Server & { accepted: Socket[] }
  server.accepted = accepted
  return listen(t, server)
}

/**
 * A `net` upstream that answers every request with exactly `bytes` (a string is taken as latin1: one char, one byte),
 * and keeps the connection unless `close`.
 */
export async function fixedResponseUpstream (t: Teardown, response: string | Buffer, close = false): Promise<net.Server & { accepted: Socket[] }> {
  const bytes = typeof response === 'string' ? Buffer.from(response, 'latin1') : response
  return scriptedUpstream(t, ({ socket }) => {
    if (close) socket.end(bytes)
    else socket.write(bytes)
  })
}

function noop (): void {}

/** How a response body ended, as the client saw it. */
export interface BodyOutcome {
  body: Buffer
  /** True when the message ended cleanly ('end' with `complete`). */
  complete: boolean
  /** The error the response emitted (an aborted response), if any. */
  error: Error | null
}

/** Reads `res` until it ends or aborts (bounded by `ms`). Never rejects on an abort: the outcome says what happened. */
export async function readBody (res: IncomingMessage, ms = 5000): Promise<BodyOutcome> {
  const chunks: Buffer[] = []
  let error: Error | null = null
  res.on('data', (chunk: Buffer) => chunks.push(chunk))
  res.on('error', (err) => { error = err })
  await within(new Promise<void>((resolve) => {
    res.on('end', resolve)
    res.on('close', resolve)
  }), ms, 'the response to end or abort')
  return { body: Buffer.concat(chunks), complete: res.complete && error === null, error }
}

/**
 * Like `request` from clients.ts, but the request target is sent exactly as given: a URL string would go through
 * WHATWG parsing first, which resolves `..` and `%2e%2e`, drops a bare `?` and re-encodes some bytes.
 */
export async function requestPath (base: string, path: string, options: { method?: string, headers?: OutgoingHttpHeaders, body?: string | Buffer } = {}): Promise<Answer> {
  const { hostname, port } = new URL(base)
  const req = http.request({ host: hostname, port, path, method: options.method ?? 'GET', headers: options.headers, agent: false })
  req.end(options.body)
  const [res] = await within(once(req, 'response'), 5000, `the response to ${path}`) as [IncomingMessage]
  const outcome = await readBody(res)
  return { status: res.statusCode as number, headers: res.headers, rawHeaders: res.rawHeaders, body: outcome.body }
}

/** An `http.request` the test drives itself (write, end, destroy), with its response as a promise. */
export interface OpenRequest {
  req: http.ClientRequest
  response: Promise<IncomingMessage>
}

export function openRequest (t: Teardown, url: string, options: { method?: string, headers?: OutgoingHttpHeaders } = {}): OpenRequest {
  const req = http.request(url, { method: options.method ?? 'GET', headers: options.headers, agent: false })
  t.teardown(() => { req.destroy() })
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.on('response', resolve)
    req.on('error', reject)
  })
  // Tests that abort on purpose never await `response`; keep its rejection from being unhandled.
  response.catch(noop)
  return { req, response }
}

/** The error JSON Fastify's default error handler sends. */
export interface ErrorBody {
  statusCode: number
  code: string
  error: string
  message: string
}

export function errorBody (body: Buffer): ErrorBody {
  return JSON.parse(body.toString()) as ErrorBody
}

/**
 * A throwaway self-signed certificate for `localhost` made with the openssl CLI, or null when there is no openssl.
 * Made once per process.
 */
let madeCert: { key: string, cert: string } | null | undefined
export function selfSignedCert (): { key: string, cert: string } | null {
  if (madeCert !== undefined) return madeCert
  const dir = mkdtempSync(join(tmpdir(), 'fastify-ws-proxy-cert-'))
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')
    ], { stdio: 'ignore', timeout: 10_000 })
    madeCert = { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8') }
  } catch {
    madeCert = null
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  return madeCert
}
