import { readFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { parseArgs } from 'node:util'
import { checkGatewayConfig, type CheckedGatewayConfig } from './config.js'
import { closeOnSignals, startGateway } from './start.js'
import { startDemoUpstream } from '../demo/upstream.js'

const HELP = `fastify-ws-proxy: an HTTP/1.1 + WebSocket reverse proxy gateway (Fastify + undici)

Usage:
  fastify-ws-proxy --config gateway.json    run a gateway from a JSON config
  fastify-ws-proxy --check --config FILE    validate the config and exit (like nginx -t)
  fastify-ws-proxy --demo                   run a gateway in front of a built-in demo upstream

Options:
  -c, --config FILE   JSON config: the plugin's options (routes, timeouts, ...) plus
                      "listen": { "host", "port" } and "logLevel"; see README "Options"
      --host HOST     override listen.host (default 127.0.0.1)
  -p, --port PORT     override listen.port (default 8080; 0 = any free port)
      --check         validate only: print "config ok" or the error, exit 0 or 1
      --demo          start the demo upstream (HTTP + WebSocket echo) and proxy it
  -h, --help          this help

Example config:
  { "listen": { "port": 8080 },
    "routes": [ { "prefix": "/chat/", "upstream": "http://127.0.0.1:3000/" },
                { "prefix": "/api/",  "upstream": "http://127.0.0.1:4000" } ],
    "timeouts": { "connect": 60000, "read": 60000 } }
`

/** Runs the CLI; resolves with the exit code, or -1 when a gateway keeps running (until a signal). */
export async function main (argv: string[]): Promise<number> {
  let args
  try {
    args = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', short: 'c' },
        host: { type: 'string' },
        port: { type: 'string', short: 'p', default: process.env.PORT },
        check: { type: 'boolean' },
        demo: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' }
      }
    }).values
  } catch (err) {
    process.stderr.write(`error: ${(err as Error).message}\n\n${HELP}`)
    return 2
  }
  if (args.help === true) {
    process.stdout.write(HELP)
    return 0
  }
  if (args.demo === true) return runDemo(args.host, args.port)
  if (args.config === undefined) {
    process.stderr.write(`error: --config FILE or --demo is required\n\n${HELP}`)
    return 2
  }
  let config: CheckedGatewayConfig
  try {
    const parsed: unknown = JSON.parse(await readFile(args.config, 'utf8'))
    config = checkGatewayConfig(withOverrides(parsed, args.host, args.port))
    if (args.check === true) {
      const { resolveOptions } = await import('../options/resolve.js')
      resolveOptions(config.proxy)
      process.stdout.write(`config ok: ${args.config}\n`)
      return 0
    }
  } catch (err) {
    process.stderr.write(`error: ${args.config}: ${(err as Error).message}\n`)
    return 1
  }
  try {
    const app = await startGateway(config)
    closeOnSignals(app)
  } catch (err) {
    process.stderr.write(`error: ${(err as Error).message}\n`)
    return 1
  }
  return -1
}

function withOverrides (parsed: unknown, host: string | undefined, port: string | undefined): unknown {
  if (parsed === null || typeof parsed !== 'object' || (host === undefined && port === undefined)) return parsed
  const config = parsed as { listen?: Record<string, unknown> }
  const listen = { ...config.listen }
  if (host !== undefined) listen.host = host
  if (port !== undefined) listen.port = Number(port)
  return { ...config, listen }
}

async function runDemo (host: string | undefined, port: string | undefined): Promise<number> {
  const upstream = await startDemoUpstream()
  const config = checkGatewayConfig(withOverrides({ upstream: upstream.url, logLevel: 'info' }, host, port))
  const app = await startGateway(config)
  closeOnSignals(app, () => upstream.close())
  const base = `http://${config.host}:${(app.server.address() as AddressInfo).port}`
  process.stdout.write(`
fastify-ws-proxy demo: gateway ${base}  ->  demo upstream ${upstream.url}

  open   ${base}/            the demo page (its WebSocket goes through the gateway)
  curl   ${base}/api/hello
  node   -e "const W=require('ws');const w=new W('${base.replace('http', 'ws')}/echo');w.on('message',m=>{console.log(String(m));w.close()});w.on('open',()=>w.send('hi'))"

Ctrl-C stops both.
`)
  return -1
}
