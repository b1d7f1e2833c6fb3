// `npm run bench:headers`: what header templates cost per request. The same rules are evaluated two ways on a
// real IncomingMessage (one request to a local server): compiled once at register time (what the plugin does),
// and by a naive interpreter that parses each template on every request. Both must produce identical headers.
import http, { type IncomingMessage } from 'node:http'
import { once } from 'node:events'
import { resolveOptions } from '../src/options/resolve.js'
import { buildRequestHeaders } from '../src/headers/request-headers.js'
import { VarContext } from '../src/vars/context.js'
import type { RequestHeaderOptions } from '../src/options/schema.js'

const RULES: RequestHeaderOptions = {
  set: {
    Host: '$host',
    'X-Real-IP': '$remote_addr',
    'X-Forwarded-For': '$proxy_add_x_forwarded_for',
    'X-Request-Id': '$request_id',
    'X-Original-URI': '$request_uri',
    'X-Tenant': '${tenant}-$arg_region'
  },
  add: { 'X-Trace': '$scheme://$host$uri$is_args$args' }
}
const MAPS = { tenant: { source: '$http_x_api_key', cases: { '~^(?<t>[a-z]+)-': '$t' }, default: 'public' } }
const ITERATIONS = Number(process.env.ITERATIONS ?? 300_000)

/** The naive way: every request re-parses each template and looks each variable up by name. */
function naive (req: IncomingMessage, id: string, proxyHost: string): string[] {
  const vars: Record<string, () => string> = {
    host: () => (req.headers.host ?? '').split(':')[0].toLowerCase(),
    remote_addr: () => req.socket.remoteAddress ?? '',
    proxy_add_x_forwarded_for: () => req.headers['x-forwarded-for'] === undefined ? req.socket.remoteAddress ?? '' : `${String(req.headers['x-forwarded-for'])}, ${req.socket.remoteAddress ?? ''}`,
    request_id: () => id,
    request_uri: () => req.url ?? '',
    scheme: () => 'http',
    uri: () => decodeURIComponent((req.url ?? '').split('?')[0]),
    is_args: () => (req.url ?? '').includes('?') ? '?' : '',
    args: () => (req.url ?? '').split('?')[1] ?? '',
    arg_region: () => new URLSearchParams((req.url ?? '').split('?')[1] ?? '').get('region') ?? '',
    tenant: () => /^(?<t>[a-z]+)-/.exec(String(req.headers['x-api-key'] ?? ''))?.groups?.t ?? 'public'
  }
  const evaluate = (template: string): string => template.replace(/\$(?:\{(\w+)\}|(\w+))/g, (_m, a?: string, b?: string) => vars[a ?? b ?? '']())
  const out: string[] = []
  const drop = new Set(Object.keys(RULES.set ?? {}).map((n) => n.toLowerCase()))
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const lower = req.rawHeaders[i].toLowerCase()
    if (!drop.has(lower) && !['connection', 'host'].includes(lower)) out.push(req.rawHeaders[i], req.rawHeaders[i + 1])
  }
  for (const [name, template] of Object.entries(RULES.set ?? {})) {
    const value = evaluate(template)
    if (value !== '') out.push(name, value)
  }
  for (const [name, template] of Object.entries(RULES.add ?? {})) {
    const value = evaluate(template as string)
    if (value !== '') out.push(name, value)
  }
  return out
}

function time (label: string, fn: () => unknown): number {
  for (let i = 0; i < 20_000; i++) fn()
  const start = process.hrtime.bigint()
  for (let i = 0; i < ITERATIONS; i++) fn()
  const ns = Number(process.hrtime.bigint() - start) / ITERATIONS
  console.log(`${label.padEnd(44)} ${ns.toFixed(0).padStart(6)} ns/request`)
  return ns
}

const server = http.createServer()
server.listen(0, '127.0.0.1')
await once(server, 'listening')
const port = (server.address() as { port: number }).port
const client = http.get({ port, host: '127.0.0.1', path: '/api/items?region=eu&page=2', headers: { 'x-api-key': 'acme-123', 'user-agent': 'bench', accept: '*/*' } })
client.on('error', () => {})
const [req, res] = await once(server, 'request') as [IncomingMessage, http.ServerResponse]

const route = resolveOptions({ upstream: 'http://127.0.0.1:1', maps: MAPS, requestHeaders: RULES }).routes[0]
const plain = resolveOptions({ upstream: 'http://127.0.0.1:1' }).routes[0]
const context = { proxyHost: route.proxyHost }
const compiled = (): string[] => buildRequestHeaders(route, req, new VarContext(req, 'req-1', context, '127.0.0.1'))
const interpreted = (): string[] => naive(req, 'req-1', route.proxyHost)

const a = compiled().filter((_, i, all) => !/^x-forwarded-(proto|host)$/i.test(all[i - (i % 2)]))
const b = interpreted()
const sorted = (list: string[]): string => JSON.stringify(list.reduce<string[]>((pairs, _v, i) => i % 2 === 0 ? [...pairs, `${list[i].toLowerCase()}: ${list[i + 1]}`] : pairs, []).sort())
if (sorted(a) !== sorted(b)) throw new Error(`the two evaluations differ:\n${sorted(a)}\n${sorted(b)}`)

console.log(`Node ${process.version}, ${ITERATIONS} iterations, ${Object.keys(RULES.set ?? {}).length + 1} templated headers and one regex map`)
const base = time('no rules (the default path)', () => buildRequestHeaders(plain, req, null))
const fast = time('compiled templates (this plugin)', compiled)
const slow = time('naive per-request interpreter', interpreted)
console.log(`templates cost ${(fast - base).toFixed(0)} ns per request over no rules; the interpreter is ${(slow / fast).toFixed(1)}× slower than compiled`)
res.end()
client.destroy()
server.close()
