// The gateway CLI and its config file as a user meets them: --version, --print-config, one-line usage errors with
// the closest flag, every problem of a config at once, `$schema`, upstream host names looked up by --check
// (an error) and at start (a warning), and the JSON Schema shipped for editors.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { checkGatewayConfig, gatewayJsonSchema } from '../src/gateway/config.js'
import { resolveOptions } from '../src/options/resolve.js'
import { unresolvedHosts } from '../src/gateway/host-check.js'
import { cli, configDir, exitCode, inProcess } from './helpers/cli.js'
import { within } from './helpers/servers.js'

const { write } = configDir('cli-config')
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
/** RFC 6761: `.invalid` never resolves. */
const NOWHERE = 'no-such-host.invalid'

t.test('--version prints the package version', async (t) => {
  for (const flag of ['--version', '-v']) {
    const { code, out } = await inProcess(t, [flag])
    t.equal(code, 0)
    t.equal(out, `fastify-ws-proxy ${pkg.version}\n`)
  }
})

t.test('usage errors are one line pointing at --help, with the closest flag', async (t) => {
  const cases: Array<[string[], string]> = [
    [['--confg', 'x.json'], 'error: unknown option --confg; did you mean --config? (see --help)\n'],
    [['--zzz'], 'error: unknown option --zzz (see --help)\n'],
    [['--config'], 'error: Option \'-c, --config <value>\' argument missing (see --help)\n'],
    [['gateway.json'], 'error: Unexpected argument \'gateway.json\' (see --help)\n'],
    [['--workers', 'many', '--demo'], 'error: --workers: expected "auto" or an integer from 1 to 1024, got "many" (see --help)\n'],
    [[], 'error: --config FILE or --demo is required (see --help)\n']
  ]
  for (const [args, message] of cases) {
    const { code, err } = await inProcess(t, args)
    t.equal(code, 2, args.join(' '))
    t.equal(err, message)
  }
})

t.test('--check reports every problem of a config at once, sorted by path, with suggestions', async (t) => {
  const file = write('three.json', {
    lisen: { port: 8080 },
    routes: [{ prefix: '/a/', upstream: 'http://127.0.0.1:1', timeouts: { read: '60s' } }],
    upstreams: { chat: { servers: [{ url: 'http://127.0.0.1:2' }], balance: 'least_conn' } }
  })
  const { code, err } = await inProcess(t, ['--check', '-c', file])
  t.equal(code, 1)
  t.equal(err, `error: ${file}: Invalid fastify-ws-proxy option lisen: unexpected property, got {"port":8080}; did you mean "listen"?\n` +
    '  routes/0/timeouts/read: expected integer, got "60s"\n' +
    '  upstreams/chat/balance: expected one of round-robin, least-conn, ip-hash, hash, got "least_conn"; did you mean "least-conn"?\n')
})

t.test('--check: a near miss of a group is an error, an unused group a warning, a $schema key accepted', async (t) => {
  const groups = { chat: { servers: [{ url: 'http://127.0.0.1:2' }] }, spare: { servers: [{ url: 'http://127.0.0.1:3' }] } }
  const near = await inProcess(t, ['--check', '-c', write('near.json', { upstreams: groups, routes: [{ prefix: '/c/', upstream: 'http://chatt' }] })])
  t.equal(near.code, 1)
  t.match(near.err, /routes\/0\/upstream: no upstream group is named "chatt"; did you mean "chat" \(http:\/\/chat\)\?/)
  const file = write('warn.json', { $schema: './node_modules/fastify-ws-proxy/fastify-ws-proxy.schema.json', upstreams: groups, routes: [{ prefix: '/c/', upstream: 'http://chat' }] })
  const ok = await inProcess(t, ['--check', '-c', file])
  t.equal(ok.code, 0)
  t.equal(ok.err, `warning: ${file}: upstreams/spare: no route names this group (as http://spare)\n`)
  t.equal(ok.out, `config ok: ${file}\n`)
})

t.test('--check looks upstream host names up, as nginx -t does', async (t) => {
  const file = write('dns.json', {
    upstreams: { far: { servers: [{ url: `http://${NOWHERE}:81` }, { url: 'http://localhost:82' }] }, dynamic: { servers: [{ url: `http://${NOWHERE}:83` }], resolve: { interval: 1000 } } },
    routes: [
      { prefix: '/a/', upstream: `http://${NOWHERE}:8080/`, upgradeUpstream: `http://${NOWHERE}:8081` },
      { prefix: '/b/', upstream: 'http://far' },
      { prefix: '/c/', upstream: 'http://dynamic' },
      { prefix: '/d/', upstream: 'http://unix:/tmp/x.sock:' }
    ]
  })
  const { code, err } = await inProcess(t, ['--check', '-c', file])
  t.equal(code, 1)
  const reason = `host "${NOWHERE}" does not resolve (ENOTFOUND); requests to it get 502`
  t.equal(err, `error: ${file}: Invalid fastify-ws-proxy option routes/0/upgradeUpstream: ${reason}\n` +
    `  routes/0/upstream: ${reason}\n  upstreams/far/servers/0/url: ${reason}\n`, 'a group that re-resolves is not looked up')
  t.same(await unresolvedHosts({ upstream: `http://${NOWHERE}` }), [{ path: 'upstream', reason }], 'the single-route shorthand')
})

t.test('--print-config prints the effective config, defaults filled in, that --check accepts', async (t) => {
  const file = write('print.json', { upstream: 'http://127.0.0.1:1', pidFile: '/tmp/gw.pid' })
  const { code, out } = await inProcess(t, ['--print-config', '-c', file, '--port', '9000'])
  t.equal(code, 0)
  const printed = JSON.parse(out) as Record<string, unknown>
  t.match(printed, {
    listen: { host: '127.0.0.1', port: 9000 },
    server: { maxHeaderSize: 16384, headersTimeout: 60000 },
    pidFile: '/tmp/gw.pid',
    logLevel: 'info',
    upstream: 'http://127.0.0.1:1',
    timeouts: { connect: 60000, read: 60000, send: 60000 },
    pool: { connections: 128, keepAliveTimeout: 4000 },
    closeGracePeriod: 5000
  })
  const again = await inProcess(t, ['--print-config', '-c', write('printed.json', printed)])
  t.same(JSON.parse(again.out), printed, 'printing the printed config changes nothing')
  const withoutPid = await inProcess(t, ['--print-config', '-c', write('nopid.json', { upstream: 'http://127.0.0.1:1' })])
  t.notOk('pidFile' in JSON.parse(withoutPid.out))
})

t.test('the JSON Schema shipped in the package is the config schema, current (npm run docs)', async (t) => {
  const shipped = JSON.parse(readFileSync(new URL('../fastify-ws-proxy.schema.json', import.meta.url), 'utf8')) as Record<string, unknown>
  t.same(shipped, gatewayJsonSchema())
  t.equal(shipped.$schema, 'http://json-schema.org/draft-07/schema#')
  t.notMatch(JSON.stringify(shipped), /not in a JSON config/, 'what only code can pass is left out')
  t.equal((shipped.properties as Record<string, unknown>).$schema !== undefined, true, 'a $schema key is allowed')
})

t.test('at start, a host that does not resolve is a warning and the gateway runs', async (t) => {
  const file = write('start.json', { listen: { port: 0 }, logLevel: 'warn', upstream: `http://${NOWHERE}:8080` })
  const run = cli(t, ['-c', file, '-w', '1'])
  await within((async () => {
    while (!run.errors().includes('warning:')) await new Promise((resolve) => setTimeout(resolve, 20))
  })(), 20_000, 'the warning')
  t.equal(run.errors(), `warning: ${file}: upstream: host "${NOWHERE}" does not resolve (ENOTFOUND); requests to it get 502\n`)
  t.equal(run.child.exitCode, null, 'still running')
  run.child.kill('SIGTERM')
  t.equal(await exitCode(run), 0)
})

t.test('a checked gateway config is resolved once: registering its plugin part takes the checked options', async (t) => {
  const config = checkGatewayConfig({ upstream: 'http://127.0.0.1:9' })
  const first = resolveOptions(config.proxy)
  t.equal(resolveOptions(config.proxy), first, 'the same resolved options, not a second pass')
  t.ok(Object.isFrozen(config.proxy))
  t.equal(first.closeGracePeriod, config.closeGracePeriod)
  t.not(resolveOptions({ ...config.proxy }), first, 'other objects are checked as always')
})
