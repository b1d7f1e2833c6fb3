import { readFileSync } from 'node:fs'
import { readFile, rm, writeFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { availableParallelism } from 'node:os'
import { parseArgs } from 'node:util'
import { checkGatewayConfig, effectiveConfig, loadGatewayConfig, loadTls, withOverrides, type CheckedGatewayConfig, type ListenOverrides } from './config.js'
import { unresolvedHosts } from './host-check.js'
import { invalidOptions, type OptionProblem } from '../options/problems.js'
import { didYouMean } from '../suggest.js'
import { drainOnSignals, startGateway } from './start.js'
import { PrimaryLog } from './primary-log.js'
import { Supervisor } from './supervisor.js'
import { startDemoUpstream } from '../demo/upstream.js'
import { demoCertificate, type DemoCertificate } from '../demo/certificate.js'

const HELP = `fastify-ws-proxy: an HTTP/1.1 + WebSocket reverse proxy gateway (Fastify + undici)

Usage:
  fastify-ws-proxy --config gateway.json    run a gateway from a JSON config
  fastify-ws-proxy --check --config FILE    validate the config, look its upstream hosts up, and exit (like nginx -t)
  fastify-ws-proxy --print-config -c FILE   print the config with every default filled in (like nginx -T)
  fastify-ws-proxy --reload --config FILE   validate FILE, then make the running gateway reload it (like nginx -s reload)
  fastify-ws-proxy --demo                   run a gateway in front of a built-in demo upstream
  fastify-ws-proxy --demo --tls             the same over HTTPS and HTTP/2, with a self-signed certificate

Options:
  -c, --config FILE   JSON config: the plugin's options (routes, timeouts, ...) plus
                      "listen": { "host", "port", "tls", "http2" }, "server", "pidFile" and "logLevel";
                      see docs/options.md and docs/tls.md.
                      Editors check it with "$schema": "./node_modules/fastify-ws-proxy/fastify-ws-proxy.schema.json"
      --host HOST     override listen.host (default 127.0.0.1)
  -p, --port PORT     override listen.port (default 8080; 0 = any free port)
  -w, --workers N     worker processes: a number, or "auto" (one per core; the default with --config).
                      1 runs a single process (the default with --demo); more run a cluster that
                      reloads on SIGHUP without dropping requests
      --pid-file FILE write the gateway's pid here (overrides "pidFile"); --reload reads it
      --check         validate only, upstream host names resolved: print "config ok" or every problem, exit 0 or 1
      --print-config  print the effective config (JSON, defaults filled in) and exit
      --reload        validate the config, then send SIGHUP to the pid in its pid file
      --demo          start the demo upstream (HTTP + WebSocket echo) and proxy it
      --tls           with --demo: serve HTTPS + HTTP/2 with a certificate generated at start
                      (self-signed, for localhost and 127.0.0.1; needs the openssl command)
  -v, --version       print the version
  -h, --help          this help

Example config:
  { "listen": { "port": 8080 },
    "routes": [ { "prefix": "/chat/", "upstream": "http://127.0.0.1:3000/" },
                { "prefix": "/api/",  "upstream": "http://127.0.0.1:4000" } ],
    "timeouts": { "connect": 60000, "read": 60000 } }
`

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version

const FLAGS = {
  config: { type: 'string', short: 'c' },
  host: { type: 'string' },
  port: { type: 'string', short: 'p', default: process.env.PORT },
  workers: { type: 'string', short: 'w' },
  'pid-file': { type: 'string' },
  check: { type: 'boolean' },
  'print-config': { type: 'boolean' },
  reload: { type: 'boolean' },
  demo: { type: 'boolean' },
  tls: { type: 'boolean' },
  version: { type: 'boolean', short: 'v' },
  help: { type: 'boolean', short: 'h' }
} as const

/** A usage error: one line, exit 2 (the help is one flag away, not reprinted). */
function usageError (message: string): number {
  process.stderr.write(`error: ${message} (see --help)\n`)
  return 2
}

/** parseArgs' message, its first sentence only (the rest is advice about `--`), with the closest flag for an unknown one. */
function argsProblem (err: Error): string {
  const unknown = /^Unknown option '([^']+)'/.exec(err.message)
  if (unknown === null) return err.message.split('. ')[0]
  return `unknown option ${unknown[1]}${didYouMean(unknown[1], Object.keys(FLAGS).map((flag) => `--${flag}`), (flag) => flag)}`
}

/** Runs the CLI; resolves with the exit code, or -1 when a gateway keeps running (until a signal). */
export async function main (argv: string[]): Promise<number> {
  let args
  let workers: number | null
  try {
    args = parseArgs({ args: argv, options: FLAGS }).values
    workers = parseWorkers(args.workers)
  } catch (err) {
    return usageError(argsProblem(err as Error))
  }
  if (args.help === true) {
    process.stdout.write(HELP)
    return 0
  }
  if (args.version === true) {
    process.stdout.write(`fastify-ws-proxy ${VERSION}\n`)
    return 0
  }
  const overrides: ListenOverrides = { host: args.host, port: args.port }
  if (args.demo === true) return await runDemo(overrides, workers ?? 1, args.tls === true)
  if (args.tls === true) return usageError('--tls goes with --demo; a config serves HTTPS with "listen": { "tls": ... }')
  const file = args.config
  if (file === undefined) return usageError('--config FILE or --demo is required')
  let config: CheckedGatewayConfig
  try {
    config = await loadGatewayConfig(file, overrides)
  } catch (err) {
    process.stderr.write(`error: ${(err as Error).message}\n`)
    return 1
  }
  if (args['pid-file'] !== undefined) config.pidFile = args['pid-file']
  if (args['print-config'] === true) {
    process.stdout.write(JSON.stringify(effectiveConfig(config), null, 2) + '\n')
    return 0
  }
  const unresolved = unresolvedHosts(config.proxy)
  if (args.check === true) return await check(file, config, await unresolved)
  if (args.reload === true) return await signalReload(config.pidFile)
  // Only a warning at start: platforms (Kubernetes, Compose) often publish a service's name after the proxy starts.
  unresolved.then((problems) => {
    for (const { path, reason } of problems) process.stderr.write(`warning: ${file}: ${path}: ${reason}\n`)
  }, /* c8 ignore next: unresolvedHosts() reports lookup failures as problems and cannot reject */ () => {})
  const load = async (): Promise<CheckedGatewayConfig> => {
    const fresh = await loadGatewayConfig(file, overrides)
    fresh.pidFile = config.pidFile
    return fresh
  }
  return (await run(config, workers ?? availableParallelism(), load)).code
}

/** `--check`: the config is valid; its warnings are printed, and a host that does not resolve is an error (nginx -t). */
async function check (file: string, config: CheckedGatewayConfig, unresolved: readonly OptionProblem[]): Promise<number> {
  for (const warning of config.warnings) process.stderr.write(`warning: ${file}: ${warning}\n`)
  if (unresolved.length > 0) {
    process.stderr.write(`error: ${file}: ${invalidOptions(unresolved).message}\n`)
    return 1
  }
  process.stdout.write(`config ok: ${file}\n`)
  return 0
}

function parseWorkers (value: string | undefined): number | null {
  if (value === undefined) return null
  if (value === 'auto') return availableParallelism()
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1 || n > 1024) throw new Error(`--workers: expected "auto" or an integer from 1 to 1024, got ${JSON.stringify(value)}`)
  return n
}

/**
 * Runs the gateway, one process or a cluster, until a signal; -1, or 1 when it cannot start. `port` is null when
 * a signal stopped the start (its handler exits).
 */
async function run (config: CheckedGatewayConfig, workers: number, load: () => Promise<CheckedGatewayConfig>,
  extra?: () => Promise<void>): Promise<{ code: number, port: number | null }> {
  const cleanUp = async (): Promise<void> => {
    await removePidFile(config.pidFile)
    await extra?.()
  }
  try {
    if (config.pidFile !== null) await writeFile(config.pidFile, `${process.pid}\n`)
    const port = workers === 1 ? await runSingle(config, cleanUp) : await runCluster(config, workers, load, cleanUp)
    return { code: -1, port }
  } catch (err) {
    process.stderr.write(`error: ${(err as Error).message}\n`)
    await cleanUp()
    return { code: 1, port: null }
  }
}

async function runSingle (config: CheckedGatewayConfig, cleanUp: () => Promise<void>): Promise<number> {
  const app = await startGateway(config)
  drainOnSignals(app, config, cleanUp)
  process.on('SIGHUP', () => app.log.warn('SIGHUP ignored: reloading needs a cluster (--workers 2 or more); this gateway runs one process'))
  return (app.server.address() as AddressInfo).port
}

/** The cluster primary: it supervises the workers, reloads on SIGHUP and drains them on SIGINT/SIGTERM. */
async function runCluster (config: CheckedGatewayConfig, workers: number, load: () => Promise<CheckedGatewayConfig>,
  cleanUp: () => Promise<void>): Promise<number | null> {
  const log = new PrimaryLog(config.logLevel)
  const supervisor = new Supervisor({ workers, load, log })
  let stopping = false
  const reload = (): void => {
    log.info({ signal: 'SIGHUP' }, 'reloading the config')
    supervisor.reload().catch(/* c8 ignore next: reload() reports its failures itself */ () => {})
  }
  const stop = (signal: string): void => {
    stopping = true
    process.removeListener('SIGINT', stop)
    process.removeListener('SIGTERM', stop)
    process.removeListener('SIGHUP', reload)
    log.info({ signal }, 'closing the gateway: the workers drain')
    supervisor.stop().then(cleanUp).then(() => {
      log.info({}, 'every worker has exited')
      process.exit(0)
    }, /* c8 ignore next 4: stop() waits for exits and cannot fail; removing the pid file could */ (err: unknown) => {
      log.error({ error: (err as Error).message }, 'closing failed')
      process.exit(1)
    })
  }
  // Signals count from the start: one during start-up stops the workers that are starting (or queues a reload).
  process.on('SIGHUP', reload)
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  try {
    await supervisor.start(config)
  } catch (err) {
    if (stopping) return null // the stop above exits
    process.removeListener('SIGINT', stop)
    process.removeListener('SIGTERM', stop)
    process.removeListener('SIGHUP', reload)
    throw err
  }
  return supervisor.port
}

/** `--reload`: the config is valid (checked above); signal the running gateway named by the pid file. */
async function signalReload (pidFile: string | null): Promise<number> {
  if (pidFile === null) {
    process.stderr.write('error: --reload needs the running gateway\'s pid file: "pidFile" in the config, or --pid-file\n')
    return 1
  }
  try {
    const pid = Number((await readFile(pidFile, 'utf8')).trim())
    if (!Number.isInteger(pid) || pid <= 0) throw new Error(`${pidFile} holds no pid`)
    process.kill(pid, 'SIGHUP')
    process.stdout.write(`reload signalled: SIGHUP sent to pid ${pid}\n`)
    return 0
  } catch (err) {
    process.stderr.write(`error: ${(err as Error).message}\n`)
    return 1
  }
}

async function removePidFile (pidFile: string | null): Promise<void> {
  if (pidFile !== null) await rm(pidFile, { force: true })
}

async function runDemo (overrides: ListenOverrides, workers: number, tls: boolean): Promise<number> {
  let certificate: DemoCertificate | null = null
  if (tls) {
    try {
      certificate = await demoCertificate()
    } catch (err) {
      process.stderr.write(`error: ${(err as Error).message}\n`)
      return 1
    }
  }
  const upstream = await startDemoUpstream()
  const listen = certificate === null ? {} : { listen: { tls: certificate.files, http2: true } }
  const config = checkGatewayConfig(withOverrides({ upstream: upstream.url, logLevel: 'info', ...listen }, overrides))
  await loadTls(config, '/')
  const cleanUp = async (): Promise<void> => {
    await upstream.close()
    await certificate?.remove()
  }
  const { code, port } = await run(config, workers, async () => config, cleanUp)
  if (code !== -1 || port === null) return code
  const base = `${tls ? 'https' : 'http'}://${config.host}:${port}`
  const wsUrl = `'${base.replace('http', 'ws')}/echo'`
  const https = certificate === null
    ? { note: '', curl: '', ws: wsUrl }
    : {
        note: '\n  HTTPS with HTTP/2 (and HTTP/1.1), with a self-signed certificate for localhost and 127.0.0.1 made for this run\n' +
          `  (${certificate.files.cert}): a browser warns once; curl needs -k.\n`,
        curl: '-k ',
        ws: `${wsUrl},{rejectUnauthorized:false}`
      }
  process.stdout.write(`
fastify-ws-proxy demo: gateway ${base}  ->  demo upstream ${upstream.url}
${https.note}
  open   ${base}/            the demo page (its WebSocket goes through the gateway)
  curl   ${https.curl}${base}/api/hello
  node   -e "const W=require('ws');const w=new W(${https.ws});w.on('message',m=>{console.log(String(m));w.close()});w.on('open',()=>w.send('hi'))"

Ctrl-C stops both.
`)
  return -1
}
