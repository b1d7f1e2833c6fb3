// A real browser through the gateway: headless Chromium (the system's package, driven by playwright-core) loads the
// demo page through a gateway wired as `--demo` wires it, clicks its buttons and reads its log, and opens native
// WebSockets of its own: subprotocol and permessage-deflate negotiated end to end, text and binary echoed byte for
// byte, an HTTP request, close codes either way, a handshake the upstream refuses (the browser sees its error and
// 1006) and a gateway drain (the browser sees 1001). Every request the page makes stays on 127.0.0.1.
// Then the demo over HTTPS and HTTP/2 (`listen.tls` + `listen.http2`, a certificate made as `--demo --tls` makes it):
// the page's WebSocket is an extended CONNECT (RFC 8441) on the page's own HTTP/2 connection, and a drain sends it 1001.
// Without /usr/bin/chromium the browser part is skipped (`apt-get install chromium`), or fails when CI is set.
// The demo upstream's own WebSocket behaviour is also checked with a Node client, so it stays covered without a browser.
import t from 'tap'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import type { Http2SecureServer, IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import type { FastifyInstance } from 'fastify'
import { startDemoUpstream } from '../src/demo/upstream.js'
import { checkGatewayConfig, loadTls, withOverrides, type CheckedGatewayConfig } from '../src/gateway/config.js'
import { demoCertificate } from '../src/demo/certificate.js'
import { drainGateway, startGateway } from '../src/gateway/start.js'
import { portOf, within, type Teardown } from './helpers/servers.js'
import { messages, openWs, pattern, unexpectedResponse, wsClosed, wsUrl } from './helpers/ws.js'

const CHROMIUM = '/usr/bin/chromium'
const CI = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false' && process.env.CI !== '0'
/** Actions and waits in the page; generous, as other test files share the two cores. */
const PAGE_TIMEOUT = 8000

async function demoUpstream (t: Teardown): Promise<string> {
  const upstream = await startDemoUpstream()
  t.teardown(() => upstream.close())
  return upstream.url
}

/** A gateway in front of the demo upstream, configured as `--demo` does (gateway/cli-main.ts), silent, on a free port. */
async function demoGateway (t: Teardown, upstreamUrl: string): Promise<{ app: FastifyInstance, config: CheckedGatewayConfig, url: string }> {
  const config = checkGatewayConfig(withOverrides({ upstream: upstreamUrl, logLevel: 'silent' }, { port: '0' }))
  const app = await startGateway(config)
  t.teardown(() => app.close())
  return { app, config, url: `http://127.0.0.1:${portOf(app.server)}` }
}

t.test('the demo upstream through the gateway, with a Node client: close command, subprotocols, refusal', async (t) => {
  const { url } = await demoGateway(t, await demoUpstream(t))

  const plain = await openWs(t, wsUrl(url, '/echo'))
  t.equal(plain.protocol, '', 'no subprotocol offered: none chosen, the handshake is accepted')
  t.match((await messages(plain, 1))[0].data.toString(), /^welcome: /)
  plain.send(Buffer.from('close 4000'), { binary: true })
  t.same((await messages(plain, 1)).map((m) => [m.data.toString(), m.isBinary]), [['close 4000', true]], 'a binary message is only echoed')
  const plainClosed = wsClosed(plain)
  plain.send('close 4321 the upstream says bye')
  t.same(await plainClosed, { code: 4321, reason: 'the upstream says bye' })

  const chat = await openWs(t, wsUrl(url, '/echo'), ['json', 'chat'])
  t.equal(chat.protocol, 'chat', 'echo.v1 not offered: chat, the one the demo speaks')
  await messages(chat, 1)
  chat.send('close 3999x')
  t.equal((await messages(chat, 1))[0].data.toString(), 'close 3999x', 'not a command: echoed')
  const chatClosed = wsClosed(chat)
  chat.send('close 3999')
  t.same(await chatClosed, { code: 3999, reason: '' }, 'the reason is optional')

  const refused = await unexpectedResponse(t, wsUrl(url, '/echo'), { 'sec-websocket-protocol': 'nope.v9' })
  t.equal(refused.status, 400, 'the upstream\'s refusal reaches the client')
  t.equal(refused.body.toString(), 'unsupported subprotocol; this upstream speaks echo.v1, chat')
})

// ---- In the page. The project compiles without the DOM library: the evaluated functions reach the browser's
// globals through these few types. Playwright sends their source to the page, so they use nothing from this module.

interface NativeCloseEvent { code: number, reason: string, wasClean: boolean }
interface NativeWebSocket {
  binaryType: string
  readonly protocol: string
  onopen: (() => void) | null
  onmessage: ((event: { data: string | ArrayBuffer }) => void) | null
  onerror: (() => void) | null
  onclose: ((event: NativeCloseEvent) => void) | null
  send (data: string | Uint8Array): void
}
interface InPage {
  WebSocket: new (url: string, protocols: string[]) => NativeWebSocket
  /** What each native WebSocket opened by `openNative` has seen, in order. */
  natives?: string[][]
}

/** A native WebSocket script: the messages to send once open; a number sends that many bytes of `pattern(n)`. */
interface NativeScript { url: string, protocols: string[], send: Array<string | number> }

/**
 * In the page: opens a native WebSocket and records what its owner sees (`open <protocol>`, `text <data>`,
 * `binary <base64>`, `error`, `close <code> <clean|unclean> <reason>`); resolves with its index once open or closed.
 */
async function openNative ({ url, protocols, send }: NativeScript): Promise<number> {
  const page = globalThis as unknown as InPage
  const events: string[] = []
  page.natives ??= []
  const index = page.natives.push(events) - 1
  const ws = new page.WebSocket(url, protocols)
  ws.binaryType = 'arraybuffer'
  return await new Promise<number>((resolve) => {
    ws.onopen = () => {
      events.push(`open ${ws.protocol}`)
      for (const message of send) {
        // The same bytes as test/helpers/ws.ts pattern(n).
        ws.send(typeof message === 'string' ? message : new Uint8Array(message).map((_, i) => (i * 31 + (i >>> 8)) & 0xff))
      }
      resolve(index)
    }
    ws.onmessage = ({ data }) => {
      if (typeof data === 'string') {
        events.push(`text ${data}`)
        return
      }
      let latin1 = ''
      for (const byte of new Uint8Array(data)) latin1 += String.fromCharCode(byte)
      events.push(`binary ${btoa(latin1)}`)
    }
    ws.onerror = () => { events.push('error') }
    ws.onclose = ({ code, wasClean, reason }) => {
      events.push(`close ${code} ${wasClean ? 'clean' : 'unclean'} ${reason}`)
      resolve(index)
    }
  })
}

/** What native WebSocket `index` has seen once it has closed (bounded). */
async function nativeClosed (page: Page, index: number): Promise<string[]> {
  await page.waitForFunction((i) => (globalThis as unknown as InPage).natives?.[i].at(-1)?.startsWith('close ') === true, index, { timeout: PAGE_TIMEOUT })
  return await page.evaluate((i) => (globalThis as unknown as InPage).natives?.[i] ?? [], index)
}

/** The lines of the demo page's #log. */
async function logLines (page: Page): Promise<string[]> {
  return ((await page.locator('#log').textContent()) ?? '').split('\n').filter((line) => line !== '')
}

/** Waits until the page's #log has a line matching `line` (bounded). */
async function logShows (page: Page, line: RegExp): Promise<void> {
  await page.locator('#log', { hasText: line }).waitFor({ timeout: PAGE_TIMEOUT })
}

t.test('the demo page in headless Chromium, through the gateway', {
  skip: !existsSync(CHROMIUM) && !CI ? `${CHROMIUM} not found: install it with \`apt-get install chromium\` (Debian) to run the browser test` : false
}, async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.fail(`${CHROMIUM} not found and CI is set: .ci/run installs it with \`apt-get install chromium\``)
    return
  }
  const upstreamUrl = await demoUpstream(t)
  const { url } = await demoGateway(t, upstreamUrl)

  const context = await launchChromium(t, [])

  // Every URL the pages ask for (HTTP and WebSocket); anything not on 127.0.0.1 is aborted and recorded.
  const requested: string[] = []
  const blocked: string[] = []
  context.on('request', (request) => { requested.push(request.url()) })
  await context.route((target) => target.hostname !== '127.0.0.1', async (route) => {
    blocked.push(route.request().url())
    await route.abort()
  })
  const newPage = async (t: Teardown): Promise<Page> => {
    const page = await context.newPage()
    t.teardown(() => page.close())
    page.on('websocket', (socket) => { requested.push(socket.url()) })
    return page
  }

  await t.test('the buttons: open with echo.v1, text, binary, HTTP, Close (4000), a close by the upstream', async (t) => {
    const page = await newPage(t)
    const loaded = await page.goto(`${url}/`)
    t.equal(loaded?.status(), 200)
    t.equal(await page.title(), 'fastify-ws-proxy demo', 'the page came from the demo upstream through the gateway')

    await page.click('#connect')
    await logShows(page, /^text: welcome/m)
    await page.fill('#text', 'hello from Chromium')
    await page.click('#send')
    await logShows(page, /^text: hello from Chromium$/m)
    await page.click('#binary')
    await logShows(page, /^binary: /m)
    await page.click('#http')
    await logShows(page, /^HTTP /m)
    await page.click('#close')
    await logShows(page, /^closed: /m)
    const lines = await logLines(page)
    t.match(lines[0], /^open, subprotocol: echo\.v1, extensions: permessage-deflate/, 'the upstream\'s choices reach the browser')
    t.same(lines.slice(1), [
      'text: welcome: everything you send is echoed; send "close 4321 why" and the upstream closes with that code',
      'text: hello from Chromium',
      'binary: [1,2,3,255]',
      'HTTP 200: {"hello":"world","from":"the demo upstream","forwardedFor":"127.0.0.1"}',
      'closed: code 4000, reason bye from the page'
    ])
    t.equal(await page.isDisabled('#send'), true, 'the page knows it is closed')

    // What a person does to see the upstream close: connect again and type the command.
    await page.click('#connect')
    await page.fill('#text', 'close 4321 the upstream says bye')
    await page.click('#send')
    await logShows(page, /^closed: code 4321/m)
    t.equal((await logLines(page)).at(-1), 'closed: code 4321, reason the upstream says bye')
  })

  await t.test('native WebSockets: bytes exact, a close by the upstream, a refused handshake', async (t) => {
    const page = await newPage(t)
    await page.goto(`${url}/`)

    // Every byte value, and a message past the 16-bit length field (a 64-bit length on the wire), compressed both ways.
    const echo = await page.evaluate(openNative, { url: wsUrl(url, '/echo'), protocols: ['chat'], send: [256, 70_000, 'close 4002 enough'] })
    const seen = await nativeClosed(page, echo)
    t.equal(seen[0], 'open chat')
    t.match(seen[1], /^text welcome: /)
    const binaries = seen.slice(2, 4).map((event) => Buffer.from(event.replace(/^binary /, ''), 'base64'))
    t.ok(binaries[0].equals(pattern(256)), 'all 256 byte values came back as sent')
    t.ok(binaries[1].equals(pattern(70_000)), '70000 bytes came back as sent')
    t.same(seen.slice(4), ['close 4002 clean enough'], 'the upstream\'s Close, code and reason, reached the browser')

    // The upstream refuses a subprotocol it does not speak (400); the browser reports the failure as WebSocket
    // does: an error event, then close 1006 (never the HTTP status, which only the console shows).
    const handshakeErrors: string[] = []
    page.on('websocket', (socket) => socket.on('socketerror', (error) => { handshakeErrors.push(error) }))
    const refused = await page.evaluate(openNative, { url: wsUrl(url, '/echo'), protocols: ['nope.v9'], send: [] })
    t.same(await nativeClosed(page, refused), ['error', 'close 1006 unclean '])
    t.match(handshakeErrors, [/400/], 'Chromium saw the upstream\'s 400, relayed by the gateway')
  })

  await t.test('the gateway drains: the page and a native WebSocket see 1001 "going away", reason shutdown', async (t) => {
    // A gateway of its own, so the one above stays up for the others.
    const draining = await demoGateway(t, upstreamUrl)
    const page = await newPage(t)
    await page.goto(`${draining.url}/`)
    await page.click('#connect')
    await logShows(page, /^text: welcome/m)
    const native = await page.evaluate(openNative, { url: wsUrl(draining.url, '/echo'), protocols: ['echo.v1'], send: [] })
    t.equal(draining.app.wsProxy.tunnels, 2)

    // What Ctrl-C does to `npm start` (drainOnSignals): stop accepting, a quiet second, then app.close(), which
    // sends 1001. The browser sees it well before closeGracePeriod (5 s), whose deadline would cut tunnels (1006).
    const drained = drainGateway(draining.app, draining.config)
    await within(logShows(page, /^closed: /m), 4000, 'the page to see its WebSocket close')
    t.equal((await logLines(page)).at(-1), 'closed: code 1001, reason shutdown')
    t.same((await nativeClosed(page, native)).slice(-1), ['close 1001 clean shutdown'])
    // Chromium keeps a preconnected socket that has sent nothing; the drain closes it with the idle ones, so the
    // whole drain ends well before that deadline too.
    await within(drained, 4000, 'the drain')
    t.equal(draining.app.wsProxy.tunnels, 0)
  })

  await t.test('no request the pages made left 127.0.0.1', async (t) => {
    t.same(blocked, [])
    t.ok(requested.length >= 3, `${requested.length} requests recorded`)
    t.same(requested.filter((target) => !/^(http|ws):\/\/127\.0\.0\.1:\d+\//.test(target)), [])
  })
})

// ---- Over HTTPS and HTTP/2: the demo gateway with `listen.tls` and `listen.http2`, as `--demo --tls` runs it.

interface InPageTiming { performance: { getEntriesByType (type: string): Array<{ nextHopProtocol: string }> } }

t.test('the demo page over HTTPS and HTTP/2 in headless Chromium: its WebSocket is a stream of the page\'s connection (RFC 8441)', {
  skip: !existsSync(CHROMIUM) && !CI ? `${CHROMIUM} not found: install it with \`apt-get install chromium\` (Debian) to run the browser test` : false
}, async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.fail(`${CHROMIUM} not found and CI is set: .ci/run installs it with \`apt-get install chromium\``)
    return
  }
  const certificate = await demoCertificate()
  t.teardown(() => certificate.remove())
  const config = checkGatewayConfig(withOverrides({ upstream: await demoUpstream(t), logLevel: 'silent', listen: { tls: certificate.files, http2: true } }, { port: '0' }))
  await loadTls(config, '/')
  const app = await startGateway(config)
  t.teardown(() => app.close())
  const url = `https://127.0.0.1:${portOf(app.server)}`

  // What the server sees: extended CONNECTs (RFC 8441) on h2 streams, HTTP/1.1 upgrades, and the tunnels' events.
  const connects: string[] = []
  let upgrades = 0
  const tunnels: Array<Record<string, unknown>> = []
  const sessionIds = new Map<unknown, number>()
  const streams: string[] = []
  ;(app.server as unknown as Http2SecureServer).on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, rawHeaders: string[] = []) => {
    if (!sessionIds.has(stream.session)) sessionIds.set(stream.session, sessionIds.size)
    // As the client sent it (the plugin routes an extended CONNECT as the GET handshake, rewriting `headers`).
    const method = rawHeaders[rawHeaders.indexOf(':method') + 1]
    streams.push(`session ${String(sessionIds.get(stream.session))}: ${method} ${String(headers[':path'])} ${String(headers[':protocol'])}`)
    if (method === 'CONNECT') connects.push(`${String(headers[':protocol'])} ${String(headers[':path'])}`)
  })
  app.server.on('upgrade', () => { upgrades++ })
  app.wsProxy.on('tunnelOpen', (event) => { tunnels.push({ ...event }) })

  // The certificate is self-signed: Chromium is told to accept it (and nothing else changes in how it connects).
  const context = await launchChromium(t, ['--ignore-certificate-errors'])
  const blocked: string[] = []
  await context.route((target) => target.hostname !== '127.0.0.1', async (route) => {
    blocked.push(route.request().url())
    await route.abort()
  })

  const page = await context.newPage()
  t.teardown(() => page.close())
  const loaded = await page.goto(`${url}/`)
  t.equal(loaded?.status(), 200)
  t.equal(await page.title(), 'fastify-ws-proxy demo')
  t.equal(await page.evaluate(() => (globalThis as unknown as InPageTiming).performance.getEntriesByType('navigation')[0].nextHopProtocol), 'h2',
    'the page came over HTTP/2')

  await page.click('#connect')
  await logShows(page, /^text: welcome/m)
  await page.fill('#text', 'hello over h2')
  await page.click('#send')
  await logShows(page, /^text: hello over h2$/m)
  await page.click('#close')
  await logShows(page, /^closed: /m)
  const lines = await logLines(page)
  t.match(lines[0], /^open, subprotocol: echo\.v1/)
  t.same(lines.slice(-2), ['text: hello over h2', 'closed: code 4000, reason bye from the page'])

  // The plugin advertises SETTINGS_ENABLE_CONNECT_PROTOCOL: Chromium opens its WebSocket as a stream of the page's
  // HTTP/2 connection (an extended CONNECT), not an HTTP/1.1 upgrade on a connection of its own.
  t.same(connects, ['websocket /echo'], 'the WebSocket was an extended CONNECT on an HTTP/2 stream')
  t.equal(upgrades, 0, 'no HTTP/1.1 upgrade')
  const page0 = streams.find((line) => line.endsWith(': GET / undefined'))?.split(':')[0]
  t.equal(streams.find((line) => line.includes(': CONNECT '))?.split(':')[0], page0, 'on the connection that brought the page')
  t.equal(tunnels.length, 1)
  t.match(tunnels[0], { protocol: 'websocket', route: '/', httpVersion: '2' }, 'the tunnel event says HTTP/2')
  t.comment(`tunnelOpen: ${JSON.stringify(tunnels[0])}`)
  t.comment(streams.join('; '))

  // A drain (reload, SIGTERM): GOAWAY to the session at once, and the WebSocket on its stream gets 1001.
  await page.click('#connect')
  await logShows(page, /^open, /m)
  const drained = drainGateway(app, config)
  await within(page.locator('#log', { hasText: /^closed: code 1001, reason shutdown$/m }).waitFor({ timeout: PAGE_TIMEOUT }), 4000, 'the page to see 1001')
  await within(drained, 4000, 'the drain')
  t.match(tunnels[1], { httpVersion: '2' }, 'the second WebSocket went over HTTP/2 as well')
  t.same(blocked, [])
})

/** Headless Chromium with a profile of its own, closed and removed at the end of `t`. */
async function launchChromium (t: Teardown, extraArgs: string[]): Promise<BrowserContext> {
  const userDataDir = mkdtempSync(join(tmpdir(), 'fastify-ws-proxy-chromium-'))
  t.teardown(() => rmSync(userDataDir, { recursive: true, force: true }))
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30_000,
    // No sandbox (CI runs as root); and no traffic of Chromium's own (component updates, sync, QUIC probes): the
    // machine may have no network beyond loopback, and the test must not depend on one.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', ...extraArgs]
  })
  t.teardown(() => context.close())
  context.setDefaultTimeout(PAGE_TIMEOUT)
  return context
}
