// The gateway's TLS as processes: a cluster reload (SIGHUP) reads a replaced certificate again, and refuses a
// broken one while the workers keep serving the old; `--demo --tls` serves the demo over HTTPS and HTTP/2 with a
// certificate made at start (removed at exit), and says why when openssl is missing or fails.
import t from 'tap'
import http2 from 'node:http2'
import https from 'node:https'
import tls from 'node:tls'
import { once } from 'node:events'
import { X509Certificate } from 'node:crypto'
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { WebSocket } from 'ws'
import { demoCertificate } from '../src/demo/certificate.js'
import { within } from './helpers/servers.js'
import { cli, configDir, exitCode, waitForOutput, type Run } from './helpers/cli.js'
import { upstream, config, primaryLines, waitForCount } from './helpers/cluster.js'

const { dir, write } = configDir('gateway-tls-cli')
// Real processes: a primary and its workers, seconds each.
t.setTimeout(180_000)

const [first, second] = await Promise.all([demoCertificate(), demoCertificate()])
t.teardown(async () => { await Promise.all([first.remove(), second.remove()]) })
const fingerprint = (file: string): string => new X509Certificate(readFileSync(file)).fingerprint256

/** The certificate a new TLS connection is shown, and the protocol ALPN picked when offered h2 and http/1.1. */
async function handshake (port: number): Promise<{ fingerprint: string, alpn: string | false }> {
  const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: ['h2', 'http/1.1'] })
  try {
    await within(once(socket, 'secureConnect'), 5000, 'a TLS handshake')
    return { fingerprint: socket.getPeerCertificate().fingerprint256, alpn: socket.alpnProtocol ?? false }
  } finally {
    socket.destroy()
  }
}

/** New connections until one shows `expected` (old workers stop accepting as they start to drain), bounded. */
async function untilShown (port: number, expected: string): Promise<number> {
  for (let attempt = 1; attempt <= 100; attempt++) {
    if ((await handshake(port)).fingerprint === expected) return attempt
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`no connection showed ${expected} in 100 attempts`)
}

t.test('a reload reads a replaced certificate again; a broken one is refused and the old one keeps serving', async (t) => {
  const up = await upstream(t)
  const certs = join(dir, 'certs')
  mkdirSync(certs, { recursive: true })
  copyFileSync(first.files.cert, join(certs, 'cert.pem'))
  copyFileSync(first.files.key, join(certs, 'key.pem'))
  const file = write('reload-tls.json', config(up.url, 'v0', { listen: { port: 0, tls: { cert: 'certs/cert.pem', key: 'certs/key.pem' }, http2: true } }))
  const run = cli(t, ['-c', file, '--workers', '2'])
  await waitForOutput(run, /"msg":"workers started"/)
  const [, portText] = await waitForOutput(run, /Server listening at https:\/\/127\.0\.0\.1:(\d+)/)
  const port = Number(portText)

  const before = await handshake(port)
  t.same(before, { fingerprint: fingerprint(first.files.cert), alpn: 'h2' }, 'the first certificate, and h2 offered')
  const h1 = await within(new Promise<string>((resolve, reject) => {
    https.get({ host: '127.0.0.1', port, path: '/x', rejectUnauthorized: false, agent: false }, (res) => {
      resolve(`${String(res.statusCode)} ${String(res.headers['x-config'])}`)
      res.resume()
    }).on('error', reject)
  }), 5000, 'an HTTPS request')
  t.equal(h1, '200 v0', 'HTTPS requests are proxied')

  // The files are replaced in place, as certbot or cert-manager do; the config file is unchanged.
  copyFileSync(second.files.cert, join(certs, 'cert.pem'))
  copyFileSync(second.files.key, join(certs, 'key.pem'))
  run.child.kill('SIGHUP')
  await waitForCount(run, 'reloaded: the new workers serve, the old ones drain', 1)
  const attempts = await untilShown(port, fingerprint(second.files.cert))
  t.ok(attempts >= 1, `the new certificate is shown after the reload (attempt ${attempts})`)
  await waitForCount(run, 'worker drained and exited', 2)
  for (let i = 0; i < 4; i++) t.equal((await handshake(port)).fingerprint, fingerprint(second.files.cert), `connection ${i} after the drain`)

  // A certificate whose key is not in place (a half-done renewal): the reload is refused, the workers keep theirs.
  copyFileSync(first.files.cert, join(certs, 'cert.pem'))
  const offset = run.output().length
  run.child.kill('SIGHUP')
  await waitForOutput(run, /"msg":"reload refused: invalid config; the running workers keep serving"/, 10_000, offset)
  const [refused] = primaryLines(run, /reload refused/)
  t.match(refused.error, /listen\/tls\/key: "certs\/key\.pem" is not the private key of the certificate in listen\/tls\/cert/)
  t.equal((await handshake(port)).fingerprint, fingerprint(second.files.cert), 'the running workers keep the certificate they had')

  run.child.kill('SIGTERM')
  t.equal(await exitCode(run), 0)
})

async function h2Get (base: string, ca: Buffer, path: string): Promise<{ status: number, body: string }> {
  const session = http2.connect(base, { ca })
  try {
    const stream = session.request({ ':path': path })
    const [headers] = await within(once(stream, 'response'), 5000, `GET ${path} over h2`) as [http2.IncomingHttpHeaders]
    let body = ''
    stream.setEncoding('utf8')
    stream.on('data', (chunk: string) => { body += chunk })
    await within(once(stream, 'end'), 5000, `the body of ${path}`)
    return { status: Number(headers[':status']), body }
  } finally {
    session.close()
  }
}

t.test('--demo --tls: the demo over HTTPS with HTTP/2, a certificate made at start for 127.0.0.1, removed at exit', async (t) => {
  const run = cli(t, ['--demo', '--tls'], { PORT: '0' })
  const [, base] = await waitForOutput(run, /gateway (https:\/\/127\.0\.0\.1:\d+)/)
  const [, certFile] = await waitForOutput(run, /\((\/\S+\/cert\.pem)\): a browser warns once; curl needs -k/)
  t.match(run.output(), `curl   -k ${base}/api/hello`)
  const ca = readFileSync(certFile)
  const names = new X509Certificate(ca).subjectAltName
  t.equal(names, 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1', 'for localhost, 127.0.0.1 and ::1')

  // Verified against the certificate itself: the name checks pass for 127.0.0.1.
  const page = await within(new Promise<{ status: number, alpn: string | false | null, body: string }>((resolve, reject) => {
    https.get(`${base}/`, { ca, agent: false, ALPNProtocols: ['http/1.1'] } as https.RequestOptions, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      res.on('end', () => resolve({ status: res.statusCode as number, alpn: (res.socket as tls.TLSSocket).alpnProtocol, body }))
    }).on('error', reject)
  }), 5000, 'the page over HTTPS')
  t.equal(page.status, 200)
  t.equal(page.alpn, 'http/1.1')
  t.match(page.body, /<title>fastify-ws-proxy demo<\/title>/)
  t.equal((await handshake(Number(new URL(base).port))).alpn, 'h2', 'h2 is on')
  const api = await h2Get(base, ca, '/api/hello')
  t.same({ status: api.status, body: JSON.parse(api.body) }, { status: 200, body: { hello: 'world', from: 'the demo upstream', forwardedFor: '127.0.0.1' } }, 'the API over h2')

  const ws = new WebSocket(`${base.replace('https', 'wss')}/echo`, ['echo.v1'], { ca })
  t.teardown(() => ws.terminate())
  const welcome = once(ws, 'message')
  await within(once(ws, 'open'), 5000, 'the wss:// handshake')
  t.match(String((await welcome)[0]), /welcome/)
  ws.send('over wss')
  t.equal(String((await within(once(ws, 'message'), 5000, 'the echo'))[0]), 'over wss')
  const closed = once(ws, 'close')

  run.child.kill('SIGTERM')
  t.equal(await exitCode(run), 0)
  t.equal((await closed)[0], 1001, 'the WebSocket was closed by the shutdown with 1001')
  t.notOk(existsSync(certFile), 'the certificate\'s directory is removed at exit')
})

t.test('--demo --tls without a working openssl: exit 1 and why', async (t) => {
  const missing = cli(t, ['--demo', '--tls'], { PORT: '0', PATH: join(dir, 'empty') })
  t.equal(await exitCode(missing), 1)
  t.equal(missing.errors(), 'error: --demo --tls generates a self-signed certificate with the openssl command (1.1.1 or later): ' +
    'the openssl command was not found. Install OpenSSL, or run a config with "listen": { "tls": { "cert": ..., "key": ... } }\n')

  // An openssl that fails (too old for -addext, say).
  const bin = join(dir, 'bin')
  mkdirSync(bin, { recursive: true })
  writeFileSync(join(bin, 'openssl'), '#!/bin/sh\necho "req: Unrecognized flag addext" >&2\nexit 1\n')
  chmodSync(join(bin, 'openssl'), 0o755)
  const failing: Run = cli(t, ['--demo', '--tls'], { PORT: '0', PATH: bin })
  t.equal(await exitCode(failing), 1)
  t.equal(failing.errors(), 'error: --demo --tls generates a self-signed certificate with the openssl command (1.1.1 or later): ' +
    'openssl failed: req: Unrecognized flag addext. Install OpenSSL, or run a config with "listen": { "tls": { "cert": ..., "key": ... } }\n')
})
