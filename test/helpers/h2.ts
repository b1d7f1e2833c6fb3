import http2, { type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders, type SecureClientSessionOptions } from 'node:http2'
import { once } from 'node:events'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import wsProxyPlugin, { type WsProxyOptions } from '../../src/index.js'
import { selfSignedCert } from './http-faults.js'
import { portOf, within, type Teardown } from './servers.js'

// Helpers for the HTTP/2 tests: a gateway on Fastify `http2: true` (h2c, or h2 over TLS with a throwaway
// certificate, with `allowHTTP1`), Node's http2 client sessions, and one request read to its end or its reset.

export interface H2Gateway {
  app: FastifyInstance
  port: number
  /** `http://` (h2c) or `https://` (TLS). */
  url: string
  /** The certificate to trust (TLS only). */
  ca: string | null
}

/**
 * A Fastify gateway with `http2: true` and the plugin, listening on 127.0.0.1, closed at teardown. With `tls`, the
 * server takes h2 and, with `allowHTTP1`, HTTP/1.1 on the same port (ALPN). Null when openssl could not make a certificate.
 */
export interface H2GatewaySettings {
  tls?: boolean
  fastify?: Record<string, unknown>
  setup?: (app: FastifyInstance) => void | Promise<void>
}

export async function h2Gateway (t: Teardown, options: WsProxyOptions, settings: H2GatewaySettings = {}): Promise<H2Gateway> {
  let ca: string | null = null
  // Before Node 24, an HTTP/2 server's close() waits for every client session to go; Fastify sends them GOAWAY
  // (after preClose, so after the tunnels' drain) only with `forceCloseConnections: true`.
  const fastifyOptions: Record<string, unknown> = { logger: false, http2: true, forceCloseConnections: true, ...settings.fastify }
  if (settings.tls === true) {
    const cert = selfSignedCert()
    if (cert === null) throw new Error('openssl could not make a certificate')
    ca = cert.cert
    fastifyOptions.https = { key: cert.key, cert: cert.cert, allowHTTP1: true }
  }
  const app = Fastify(fastifyOptions as FastifyServerOptions) as unknown as FastifyInstance
  t.teardown(() => app.close())
  if (settings.setup !== undefined) await settings.setup(app)
  await app.register(wsProxyPlugin, { exposeErrors: true, ...options })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = portOf(app.server)
  return { app, port, url: `${ca === null ? 'http' : 'https'}://127.0.0.1:${port}`, ca }
}

/** An HTTP/2 client session to the gateway, connected (its remote settings received), destroyed at teardown. */
export async function h2Session (t: Teardown, gw: { url: string, ca: string | null }, options: SecureClientSessionOptions = {}): Promise<ClientHttp2Session> {
  const session = http2.connect(gw.url, gw.ca === null ? options : { ca: gw.ca, ...options })
  session.on('error', () => {})
  t.teardown(() => { session.destroy() })
  await within(once(session, 'remoteSettings'), 3000, 'the server\'s SETTINGS')
  return session
}

export interface H2Answer {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
  /** The RST_STREAM code when the stream was reset, else 0 (NO_ERROR after a complete answer). */
  rstCode: number
  /** Whether the stream ended with END_STREAM (a complete answer). */
  ended: boolean
}

/** One request on `session`, read to its end or its reset; `body` is written and the stream ended. Bounded by `ms`. */
export async function h2Request (session: ClientHttp2Session, headers: OutgoingHttpHeaders, body?: Buffer | string, ms = 5000): Promise<H2Answer> {
  const stream = session.request(headers)
  const chunks: Buffer[] = []
  let status = 0
  let responseHeaders: IncomingHttpHeaders = {}
  let ended = false
  stream.on('response', (h) => {
    responseHeaders = h
    status = h[':status'] as number
  })
  stream.on('data', (chunk: Buffer) => chunks.push(chunk))
  stream.on('end', () => { ended = true })
  stream.on('error', () => {})
  stream.end(body)
  await within(once(stream, 'close'), ms, `the answer to ${String(headers[':method'] ?? 'GET')} ${String(headers[':path'])}`)
  return { status, headers: responseHeaders, body: Buffer.concat(chunks), rstCode: stream.rstCode ?? 0, ended }
}

/** The parsed JSON body of a coded error answer. */
export function codeOf (answer: { body: Buffer }): string {
  return (JSON.parse(answer.body.toString()) as { code: string }).code
}

export interface RawH2Answer {
  /** The status when the server sent it from HPACK's static table (200, 204, 206, 304, 400, 404, 500), else -1. */
  status: number
  body: string
  /** The RST_STREAM error code, or -1. */
  rstCode: number
  /** The HPACK blocks of stream 1's HEADERS frames, as they came (to check what went on the wire). */
  head: Buffer
}

const STATIC_STATUS = new Map([[0x88, 200], [0x89, 204], [0x8a, 206], [0x8b, 304], [0x8c, 400], [0x8d, 404], [0x8e, 500]])

function frame (type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9)
  head.writeUIntBE(payload.length, 0, 3)
  head[3] = type
  head[4] = flags
  head.writeUInt32BE(stream, 5)
  return Buffer.concat([head, payload])
}

/**
 * One HTTP/2 request (h2c, prior knowledge) written frame by frame, so that it may carry what Node's client refuses to
 * send (no :authority, a repeated Authorization): fields as HPACK literals, in order, with END_STREAM. Reads stream 1's
 * answer until its end or a reset.
 */
export async function rawH2Request (t: Teardown, port: number, fields: Array<[string, string]>, ms = 3000): Promise<RawH2Answer> {
  const net = await import('node:net')
  const socket = net.connect(port, '127.0.0.1')
  t.teardown(() => { socket.destroy() })
  const block = Buffer.concat(fields.map(([name, value]) => Buffer.concat([
    Buffer.from([0, name.length]), Buffer.from(name, 'latin1'), Buffer.from([value.length]), Buffer.from(value, 'latin1')
  ])))
  socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(4, 0, 0, Buffer.alloc(0)), frame(1, 0x5, 1, block)]))
  const answer: RawH2Answer = { status: -1, body: '', rstCode: -1, head: Buffer.alloc(0) }
  let buffered = Buffer.alloc(0)
  await within(new Promise<void>((resolve, reject) => {
    socket.on('error', reject)
    socket.on('close', () => resolve())
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      while (buffered.length >= 9 && buffered.length >= 9 + buffered.readUIntBE(0, 3)) {
        const length = buffered.readUIntBE(0, 3)
        const [type, flags] = [buffered[3], buffered[4]]
        const stream = buffered.readUInt32BE(5) & 0x7fffffff
        const payload = buffered.subarray(9, 9 + length)
        buffered = buffered.subarray(9 + length)
        if (type === 4 && (flags & 1) === 0) socket.write(frame(4, 1, 0, Buffer.alloc(0)))
        if (stream !== 1) continue
        if (type === 1) {
          answer.status = STATIC_STATUS.get(payload[0]) ?? -1
          answer.head = Buffer.concat([answer.head, payload])
        }
        if (type === 0) answer.body += payload.toString()
        if (type === 3) answer.rstCode = payload.readUInt32BE(0)
        if (type === 3 || (flags & 1) === 1) {
          socket.end()
          resolve()
        }
      }
    })
  }), ms, 'the raw HTTP/2 answer')
  return answer
}
