// `npm run bench:select [-- --no-readme]`: the per-request cost of picking a server, per balancing method, with 2 and
// 100 servers. It times the work the proxy does per request for a group (the key's hash for hash methods, then the
// pick) on the real classes, in-process: nothing here depends on the network, and a request costs tens of
// microseconds, so the figures say how small a share selection is. Medians of 7 rounds of 1,000,000 picks each.
import type { IncomingMessage } from 'node:http'
import { readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import { resolveOptions } from '../src/options/resolve.js'
import type { BalanceMethod } from '../src/options/upstream-schema.js'
import { UpstreamGroup } from '../src/upstream/group.js'
import type { PoolMaker } from '../src/upstream/server.js'
import { VarContext } from '../src/vars/context.js'

const ROUNDS = 7
const PICKS = 1_000_000
const KEYS = 4096

// Picking never makes a pool; the benchmark has none.
const noPools: PoolMaker = {
  create: () => { throw new Error('no pools in the selection benchmark') },
  release: async () => {}
}

interface Case { label: string, balance: BalanceMethod, consistent: boolean }
const CASES: Case[] = [
  { label: 'round-robin (smooth weighted)', balance: 'round-robin', consistent: false },
  { label: 'least-conn', balance: 'least-conn', consistent: false },
  { label: 'ip-hash', balance: 'ip-hash', consistent: false },
  { label: 'hash `$http_x_user`', balance: 'hash', consistent: false },
  { label: 'hash `$http_x_user` consistent', balance: 'hash', consistent: true }
]

function groupOf (c: Case, servers: number): UpstreamGroup {
  const resolved = resolveOptions({
    upstreams: {
      api: {
        servers: Array.from({ length: servers }, (_, i) => ({ url: `http://10.0.${i >> 8}.${i & 255}:8080`, weight: 1 + (i % 3) })),
        balance: c.balance,
        ...(c.balance === 'hash' ? { hash: '$http_x_user' } : {}),
        ...(c.consistent ? { consistent: true } : {})
      }
    },
    upstream: 'http://api'
  })
  return new UpstreamGroup(resolved.groups[0], noPools, Fastify().log)
}

// Requests as the key template reads them: 4,096 users, 4,096 client addresses.
const contexts = Array.from({ length: KEYS }, (_, i) => new VarContext({ headers: { 'x-user': `user-${i * 7919}` }, url: '/' } as unknown as IncomingMessage, 'id', { proxyHost: 'api' }, '127.0.0.1'))
const ips = Array.from({ length: KEYS }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.${(i * 13) & 255}`)

function nsPerPick (group: UpstreamGroup): number {
  // least-conn: a spread of load, as under traffic (requests in flight and tunnels held).
  group.members.forEach((server, i) => { server.active = i % 5; server.tunnels = (i * 37) % 11 })
  let sink = 0
  const start = process.hrtime.bigint()
  for (let n = 0; n < PICKS; n++) {
    const k = n & (KEYS - 1)
    const hash = group.single === null ? group.keyHash(contexts[k], ips[k]) : 0
    const server = group.pick(hash, null)
    sink += server === null ? 0 : server.weight
  }
  const ns = Number(process.hrtime.bigint() - start) / PICKS
  if (sink === 0) throw new Error('nothing picked')
  return ns
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[sorted.length >> 1]
}

const rows: string[] = []
for (const c of CASES) {
  const figures = [2, 100].map((servers) => {
    const group = groupOf(c, servers)
    nsPerPick(group) // warm-up: JIT and caches
    return median(Array.from({ length: ROUNDS }, () => nsPerPick(group)))
  })
  rows.push(`| ${c.label} | ${figures[0].toFixed(0)} ns | ${figures[1].toFixed(0)} ns |`)
  console.log(rows.at(-1))
}
const single = groupOf(CASES[0], 1)
const url = median(Array.from({ length: ROUNDS }, () => nsPerPick(single)))
rows.push(`| one URL (\`upstream: 'http://host:port'\`) | ${url.toFixed(0)} ns | |`)
console.log(rows.at(-1))

const cpu = os.cpus()[0]?.model.trim() ?? 'unknown CPU'
const table = [
  `Measured ${new Date().toISOString().slice(0, 10)} on ${os.cpus().length} × ${cpu}, Node ${process.version} (\`npm run bench:select\`): ` +
  `time per request to hash the key (hash methods) and pick a server, median of ${ROUNDS} rounds of ${PICKS.toLocaleString('en-US')} picks, weights 1–3.`,
  '',
  '| method | 2 servers | 100 servers |',
  '|---|---|---|',
  ...rows
].join('\n')
if (!process.argv.includes('--no-readme')) {
  const file = fileURLToPath(new URL('../docs/benchmarks.md', import.meta.url))
  const readme = readFileSync(file, 'utf8')
  const startMark = '<!-- select-bench:start -->'
  const start = readme.indexOf(startMark)
  const end = readme.indexOf('<!-- select-bench:end -->')
  if (start !== -1 && end !== -1) writeFileSync(file, `${readme.slice(0, start + startMark.length)}\n${table}\n${readme.slice(end)}`)
}
