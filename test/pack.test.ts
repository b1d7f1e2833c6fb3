// The package as a user gets it: `npm pack`, installed into a scratch app beside the oldest Fastify 5 (a peer
// dependency: one Fastify, the app's), type-checked with the app's strict settings, and `--demo` run from it
// (without `ws`, which is a dev dependency only). Uses the npm registry for the scratch app's dependencies.
import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { WebSocket } from 'ws'
import { within } from './helpers/servers.js'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
/** The oldest Fastify the peer range `^5` admits. */
const OLD_FASTIFY = '5.0.0'
t.setTimeout(240_000)

const GOOD = `import Fastify from 'fastify'
import wsProxyPlugin, { type WsProxyOptions, type TunnelCloseEvent } from 'fastify-ws-proxy'

const options: WsProxyOptions = { routes: [{ prefix: '/chat/', upstream: 'http://127.0.0.1:3000/' }], timeouts: { read: 60_000 } }
const app = Fastify()
await app.register(wsProxyPlugin, options)
app.wsProxy.on('tunnelClose', (event: TunnelCloseEvent) => console.log(event.reason, app.wsProxy.tunnels))
`
const TYPO = `import Fastify from 'fastify'
import wsProxyPlugin from 'fastify-ws-proxy'

const app = Fastify()
await app.register(wsProxyPlugin, { upstream: 'http://127.0.0.1:3000', tmeouts: { read: 1 } })
`

async function tscOutput (dir: string): Promise<string> {
  try {
    await run(process.execPath, [tsc, '-p', dir], { cwd: dir })
    return ''
  } catch (err) {
    return (err as { stdout: string }).stdout
  }
}

/** Compiles src/ into dist/ as `prepare` does, without the type check (`npm run typecheck` does that): a third of the time. */
async function build (): Promise<void> {
  await run(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--noCheck'], { cwd: root })
}

t.test('the packed package installs beside an older Fastify 5, type-checks, and runs --demo', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fastify-ws-proxy-pack-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  await build()
  const { stdout } = await run('npm', ['pack', '--silent', '--ignore-scripts', '--pack-destination', dir], { cwd: root })
  const tarball = join(dir, stdout.trim().split('\n').pop() as string)
  const app = join(dir, 'app')
  const write = (file: string, text: string): void => writeFileSync(join(app, file), text)
  mkdirSync(app)
  write('package.json', JSON.stringify({ name: 'scratch', private: true, type: 'module' }))
  await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', tarball, `fastify@${OLD_FASTIFY}`], { cwd: app })

  const modules = join(app, 'node_modules')
  t.notOk(existsSync(join(modules, 'fastify-ws-proxy', 'node_modules', 'fastify')), 'no second Fastify inside the package')
  t.notOk(existsSync(join(modules, 'ws')), 'ws is not installed with the package')
  t.ok(existsSync(join(modules, 'fastify-ws-proxy', 'fastify-ws-proxy.schema.json')), 'the JSON Schema ships')
  t.ok(existsSync(join(modules, 'fastify-ws-proxy', 'LICENSE')), 'the LICENSE ships')
  t.notOk(readdirSync(join(modules, 'fastify-ws-proxy', 'dist')).some((f) => f.endsWith('.map')), 'no source maps to src/ files that are not shipped')

  write('tsconfig.json', JSON.stringify({
    compilerOptions: { strict: true, module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', noEmit: true, skipLibCheck: true, types: ['node'], typeRoots: [join(root, 'node_modules', '@types')] },
    files: ['app.ts', 'typo.ts']
  }))
  write('app.ts', GOOD)
  write('typo.ts', TYPO)
  // One run for both files: app.ts must raise nothing, typo.ts one short error naming the options type.
  const errors = await tscOutput(app)
  t.notMatch(errors, /^app\.ts/m, 'a strict TypeScript app type-checks against the installed package')
  t.match(errors, /^typo\.ts\(5,[^]*'tmeouts' does not exist in type 'FastifyRegisterOptions<WsProxyOptions>'/)
  t.ok(errors.length < 2000, `the typo's message is short (${errors.length} characters)`)

  const demo = spawn(process.execPath, [join(modules, 'fastify-ws-proxy', 'dist', 'cli.js'), '--demo'], { cwd: app, env: { ...process.env, PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { if (demo.exitCode === null) demo.kill('SIGKILL') })
  let out = ''
  demo.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
  const base = await within((async () => {
    for (;;) {
      const match = /gateway (http:\/\/127\.0\.0\.1:\d+)/.exec(out)
      if (match !== null) return match[1]
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  })(), 20_000, 'the demo to start')
  t.match(await (await fetch(`${base}/api/hello`)).json(), { hello: 'world', from: 'the demo upstream' })
  const ws = new WebSocket(`${base.replace('http', 'ws')}/echo`, ['echo.v1'], { perMessageDeflate: true })
  t.teardown(() => ws.terminate())
  const first = once(ws, 'message')
  await once(ws, 'open')
  t.match(ws.extensions, /permessage-deflate/)
  t.match(String((await first)[0]), /^welcome/)
  ws.send('through the packed gateway')
  t.equal(String((await once(ws, 'message'))[0]), 'through the packed gateway')
  demo.kill('SIGINT')
  const [code] = await once(demo, 'exit') as [number]
  t.equal(code, 0)
})
