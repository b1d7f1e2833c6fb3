// fastify-reply-from #404 "Upgrade requests throw errors when using Undici": a request carrying `Upgrade` (curl
// --http2 on an http:// URL asks for h2c that way) made undici's request() throw. With a real curl, such a request
// gets the upstream's plain HTTP/1.1 answer, on upgrading and non-upgrading routes: h2c is never offered upstream.
import t from 'tap'
import { execFile } from 'node:child_process'
import { gateway, httpUpstream, origin, type Seen } from '../helpers/servers.js'

function curl (args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '-i', '--max-time', '5', ...args], { timeout: 8000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : (typeof err.code === 'number' ? err.code : null), stdout, stderr })
    })
  })
}

const hasCurlHttp2 = await new Promise<boolean>((resolve) => {
  execFile('curl', ['--version'], { timeout: 5000 }, (err, stdout) => resolve(err === null && /\bHTTP2\b/.test(stdout)))
})

t.test('curl --http2 (h2c upgrade) through the gateway: the upstream\'s HTTP/1.1 200, body intact, on both kinds of route', { skip: !hasCurlHttp2 && 'needs curl with HTTP/2' }, async (t) => {
  const upstream = await httpUpstream(t)
  const seen: Seen[] = []
  upstream.prependListener('request', (req) => { seen.push({ method: req.method as string, url: req.url as string, headers: req.headers, rawHeaders: req.rawHeaders, bodyLength: 0 }) })
  const { url } = await gateway(t, {
    routes: [{ prefix: '/up/', upstream: origin(upstream) }, { prefix: '/plain/', upstream: origin(upstream), upgrade: false }]
  })
  for (const path of ['/up/items?x=1', '/plain/items?x=1']) {
    const { code, stdout, stderr } = await curl(['--http2', `${url}${path}`])
    t.equal(code, 0, `curl succeeded ${stderr}`)
    const head = stdout.slice(0, stdout.indexOf('\r\n\r\n'))
    t.match(head, /^HTTP\/1\.1 200 OK\r\n/, `${path}: a plain HTTP/1.1 answer, no switch`)
    const body = JSON.parse(stdout.slice(stdout.indexOf('\r\n\r\n') + 4)) as Seen
    t.equal(body.url, path, 'the upstream\'s own body (the URI as sent: an upstream without a path)')
    t.equal(body.method, 'GET')
    t.equal(body.headers['http2-settings'], undefined, 'HTTP2-Settings is named by Connection: hop-by-hop, not forwarded')
  }
  t.equal(seen.length, 2, 'one upstream request each')
  // RFC 9113 §3.1 deprecates h2c, and a tunnelled h2c connection would carry requests no hook sees (docs/security.md).
  t.same([seen[0].headers.upgrade, seen[0].headers.connection], [undefined, 'keep-alive'], 'an upgrading route never offers h2c upstream')
  t.equal(seen[1].headers.upgrade, undefined, 'a non-upgrading route never forwards Upgrade')
})
