// `npm run bench:hatches`: what `getUpstream` + `rewriteRequestHeaders` cost per request. One gateway process has two
// routes to the same local upstream: `/plain/` (a URL `upstream`) and `/hatches/` (the same upstream returned by
// `getUpstream`, and a `rewriteRequestHeaders` adding one header). GETs from bench/http-load.ts (50 keep-alive
// connections), rounds interleaved plain/hatches; the proxy's CPU per request is read from the process itself
// (process.cpuUsage, user + system) around each run. Prints the median of the rounds. `-- --quick`: 1 s runs.
// Usage: npm run bench:hatches [-- --quick] [--rounds N] [--seconds S]
import { fork, spawn } from 'node:child_process'
import http from 'node:http'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import type { AddressInfo } from 'node:net'

const LOADER = ['--import', '@tapjs/typescript/import']
const self = fileURLToPath(import.meta.url)
const CONNECTIONS = 50

if (process.argv[2] === 'proxy') {
  // The gateway under test, in its own process so its CPU is its own.
  const { default: Fastify } = await import('fastify')
  const { default: wsProxyPlugin } = await import('../src/index.js')
  const upstream = process.argv[3]
  const app = Fastify({ logger: false })
  await app.register(wsProxyPlugin, {
    routes: [
      { prefix: '/plain/', upstream },
      {
        prefix: '/hatches/',
        upstream: 'http://127.0.0.1:1',
        getUpstream: (request) => request.headers['x-skip'] === undefined ? upstream : undefined,
        rewriteRequestHeaders: (request, headers) => {
          headers['x-request-id'] = request.id
          return headers
        }
      }
    ]
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  process.on('message', (message) => {
    if (message === 'cpu') {
      const { user, system } = process.cpuUsage()
      process.send?.({ cpu: user + system })
    } else {
      app.close().then(() => process.exit(0), () => process.exit(1))
    }
  })
  process.send?.({ port: (app.server.address() as AddressInfo).port })
} else {
  const args = process.argv.slice(2)
  const quick = args.includes('--quick')
  const rounds = Number(args[args.indexOf('--rounds') + 1] ?? 3) || 3
  const seconds = args.includes('--seconds') ? Number(args[args.indexOf('--seconds') + 1]) : quick ? 1 : 3

  const upstream = http.createServer((_req, res) => {
    res.setHeader('content-type', 'text/plain')
    res.end('ok')
  })
  upstream.listen(0, '127.0.0.1')
  await once(upstream, 'listening')
  const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`
  const proxy = fork(self, ['proxy', upstreamUrl], { execArgv: LOADER, env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' } })
  const nextMessage = async (): Promise<Record<string, number>> => (await once(proxy, 'message'))[0] as Record<string, number>
  const { port } = await nextMessage()
  const cpu = async (): Promise<number> => {
    proxy.send('cpu')
    return (await nextMessage()).cpu
  }

  async function run (path: string, secs: number): Promise<{ requests: number, rps: number, cpuPerRequest: number }> {
    const before = await cpu()
    const child = spawn(process.execPath, [...LOADER, 'bench/http-load.ts', `http://127.0.0.1:${port}${path}`, String(CONNECTIONS), String(secs)], {
      env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' },
      stdio: ['ignore', 'pipe', 'inherit']
    })
    let out = ''
    child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
    const timer = setTimeout(() => child.kill('SIGINT'), (secs + 30) * 1000)
    await once(child, 'close')
    clearTimeout(timer)
    const after = await cpu()
    const result = JSON.parse(out) as { requests: number, ok: number }
    if (result.ok !== result.requests) throw new Error(`${path}: ${result.requests - result.ok} requests failed`)
    return { requests: result.requests, rps: result.requests / secs, cpuPerRequest: (after - before) / result.requests }
  }

  // In process, free of the load generator's noise: the header round trip rewriteRequestHeaders adds (the list made an
  // object, the function, the result checked and made a list again), on a browser-like request's 11 fields.
  const { headersObject, rewrittenHeaders } = await import('../src/headers/request-headers.js')
  const built = ['Host', '127.0.0.1:3000', 'User-Agent', 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36',
    'Accept', 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8', 'Accept-Language', 'en-GB,en;q=0.9',
    'Accept-Encoding', 'gzip, deflate, br', 'Cookie', 'session=0123456789abcdef; theme=dark', 'Cache-Control', 'no-cache',
    'Referer', 'http://127.0.0.1:3000/app/', 'x-forwarded-for', '127.0.0.1', 'x-forwarded-proto', 'http', 'x-forwarded-host', '127.0.0.1:3000']
  const ITERATIONS = quick ? 50_000 : 300_000
  let sink = 0
  for (let i = 0; i < 20_000; i++) sink += rewrittenHeaders(built, headersObject(built), '/hatches/').length
  // CPU time, not wall time: on shared cores this process is often descheduled.
  const start = process.cpuUsage()
  for (let i = 0; i < ITERATIONS; i++) {
    const headers = headersObject(built)
    headers['x-request-id'] = 'req-1'
    sink += rewrittenHeaders(built, headers, '/hatches/').length
  }
  const used = process.cpuUsage(start)
  const roundTrip = (used.user + used.system) / ITERATIONS
  if (sink === 0) throw new Error('unreachable')

  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  // Warm-up: both routes, so the JIT and the pools are ready before anything is measured.
  await run('/plain/x', quick ? 1 : 2)
  await run('/hatches/x', quick ? 1 : 2)
  const results: Record<'plain' | 'hatches', Array<{ rps: number, cpuPerRequest: number }>> = { plain: [], hatches: [] }
  for (let i = 0; i < rounds; i++) {
    // Interleaved, alternating which goes first, so drift in the machine's load falls on both.
    const order: Array<'plain' | 'hatches'> = i % 2 === 0 ? ['plain', 'hatches'] : ['hatches', 'plain']
    for (const name of order) {
      const r = await run(`/${name}/x`, seconds)
      results[name].push(r)
      process.stdout.write(`round ${i + 1} ${name.padEnd(7)} ${r.rps.toFixed(0).padStart(6)} req/s  ${r.cpuPerRequest.toFixed(1).padStart(6)} µs CPU/request\n`)
    }
  }
  const plainCpu = median(results.plain.map((r) => r.cpuPerRequest))
  const hatchesCpu = median(results.hatches.map((r) => r.cpuPerRequest))
  const plainRps = median(results.plain.map((r) => r.rps))
  const hatchesRps = median(results.hatches.map((r) => r.rps))
  process.stdout.write(`\nmedians of ${rounds} rounds, ${seconds} s each, GET, ${CONNECTIONS} connections, proxy CPU from process.cpuUsage()\n`)
  process.stdout.write('| route | req/s | proxy CPU µs/request |\n|---|---:|---:|\n')
  process.stdout.write(`| \`upstream\` only | ${plainRps.toFixed(0)} | ${plainCpu.toFixed(1)} |\n`)
  process.stdout.write(`| \`getUpstream\` + \`rewriteRequestHeaders\` | ${hatchesRps.toFixed(0)} | ${hatchesCpu.toFixed(1)} |\n`)
  process.stdout.write(`| difference | ${((hatchesRps / plainRps - 1) * 100).toFixed(1)} % | ${hatchesCpu >= plainCpu ? '+' : ''}${(hatchesCpu - plainCpu).toFixed(1)} µs (${((hatchesCpu / plainCpu - 1) * 100).toFixed(1)} %) |\n`)
  process.stdout.write(`\nin process, ${ITERATIONS} iterations: the rewriteRequestHeaders round trip on 11 fields: ${roundTrip.toFixed(2)} µs CPU\n`)
  proxy.send('stop')
  await once(proxy, 'exit')
  upstream.close()
}
