// What the benchmark scripts share (bench/run.ts, bench/http2.ts): nginx installed when missing, the plugin compiled,
// the bench's scripts transpiled, processes started and measured through /proc, and the load generator (bench/load.ts)
// driven over IPC with the proxy's CPU read around its measured window.
import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { LoadRequest, LoadResult } from './load.js'

export const root = fileURLToPath(new URL('..', import.meta.url))
export const cacheDir = join(root, 'node_modules/.cache/fastify-ws-proxy-bench')

function findNginx (): string | null {
  for (const candidate of ['nginx', '/usr/sbin/nginx']) {
    try {
      execFileSync(candidate, ['-v'], { stdio: 'ignore' })
      return candidate
    } catch {}
  }
  return null
}

export function ensureNginx (): string {
  let nginx = findNginx()
  if (nginx === null && process.getuid?.() === 0 && existsSync('/usr/bin/apt-get')) {
    process.stderr.write('nginx is missing: apt-get install -y nginx-light\n')
    try {
      execFileSync('apt-get', ['install', '-y', '-qq', 'nginx-light'], { stdio: 'inherit' })
    } catch {
      execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' })
      execFileSync('apt-get', ['install', '-y', '-qq', 'nginx-light'], { stdio: 'inherit' })
    }
    nginx = findNginx()
  }
  if (nginx === null) {
    throw new Error('nginx is required (the benchmark compares against it): install it with `apt-get install nginx-light` or `dnf install nginx`')
  }
  return nginx
}

/** Compiles src/ of the working tree, or of `ref` checked out in a temporary worktree, into the cache; returns index.js. */
export function build (ref: string | null): { label: string, entry: string } {
  const tsc = join(root, 'node_modules/typescript/bin/tsc')
  if (ref === null) {
    const out = join(cacheDir, 'current')
    rmSync(out, { recursive: true, force: true })
    compile(tsc, join(root, 'tsconfig.build.json'), out)
    return { label: 'fastify-ws-proxy', entry: join(out, 'index.js') }
  }
  const sha = execFileSync('git', ['rev-parse', '--verify', `${ref}^{commit}`], { cwd: root }).toString().trim()
  // Inside node_modules/ so that the ref's sources and build resolve this checkout's dependencies.
  const tree = join(cacheDir, `tree-${sha.slice(0, 12)}`)
  const out = join(cacheDir, `build-${sha.slice(0, 12)}`)
  rmSync(out, { recursive: true, force: true })
  if (existsSync(tree)) execFileSync('git', ['worktree', 'remove', '--force', tree], { cwd: root, stdio: 'ignore' })
  execFileSync('git', ['worktree', 'add', '--detach', tree, sha], { cwd: root, stdio: 'ignore' })
  try {
    compile(tsc, join(tree, 'tsconfig.build.json'), out)
  } finally {
    execFileSync('git', ['worktree', 'remove', '--force', tree], { cwd: root, stdio: 'ignore' })
  }
  return { label: `fastify-ws-proxy@${ref}`, entry: join(out, 'index.js') }
}

function compile (tsc: string, project: string, out: string): void {
  try {
    execFileSync(process.execPath, [tsc, '-p', project, '--outDir', out, '--declaration', 'false'], { stdio: 'pipe' })
  } catch (err) {
    // Type errors still emit JavaScript; only a missing output is fatal.
    if (!existsSync(join(out, 'index.js'))) throw err
    process.stderr.write(`note: ${project} compiled with type errors\n`)
  }
}

/**
 * The bench's own scripts as plain JavaScript (type annotations stripped, nothing else). Run under the TypeScript
 * loader, every Node process carried the TypeScript compiler in its heap: ~20 MB more to mark in each major GC, which
 * no production proxy pays and which made the Node contenders' bulk figures depend on how often V8 marked.
 */
export function transpileBench (): string {
  mkdirSync(cacheDir, { recursive: true })
  // Under node_modules/ no package.json of ours applies: the builds are ES modules like the package.
  writeFileSync(join(cacheDir, 'package.json'), '{ "type": "module" }\n')
  const out = join(cacheDir, 'bench')
  // Fresh files, not rewritten ones: a checkout whose node_modules is a hard-linked copy of another's must not write
  // its scripts into the other's.
  rmSync(out, { recursive: true, force: true })
  mkdirSync(join(out, 'contenders'), { recursive: true })
  const ts = createRequire(import.meta.url)('typescript') as typeof import('typescript')
  for (const file of ['upstream.ts', 'load.ts', 'ws-idle.ts', ...readdirSync(join(root, 'bench/contenders')).map((f) => `contenders/${f}`)]) {
    const source = readFileSync(join(root, 'bench', file), 'utf8')
    const { outputText } = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true } })
    writeFileSync(join(out, file.replace(/\.ts$/, '.js')), outputText)
  }
  return out
}

/** Starts a process that prints "READY <port> [<pid to measure>]" (nginx names its master; others measure themselves). */
/** The port a bench process announces on its first `READY <port>` line. */
export function readyPort (child: ChildProcess, name: string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let out = ''
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      const match = /READY (\d+)/.exec(out)
      if (match !== null) resolve(Number(match[1]))
    })
    child.once('exit', (code) => reject(new Error(`${name} exited with ${code}`)))
  })
}

export function startProcess (benchJs: string, args: string[], nodeFlags: string[] = []): Promise<{ child: ChildProcess, port: number, pid: number }> {
  const script = join(benchJs, args[0].replace(/^bench\//, '').replace(/\.ts$/, '.js'))
  mkdirSync(gcDir, { recursive: true })
  const child = spawn(process.execPath, ['--expose-gc', ...nodeFlags, '--import', join(benchJs, 'contenders/gc-on-signal.js'), script, ...args.slice(1)],
    { cwd: root, env: { ...process.env, BENCH_GC_DIR: gcDir }, stdio: ['ignore', 'pipe', 'inherit'] })
  return new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${args[0]} did not start within 30 s`)) }, 30_000)
    const onData = (chunk: Buffer): void => {
      out += chunk.toString()
      const match = /READY (\d+)(?: (\d+))?/.exec(out)
      if (match !== null) {
        clearTimeout(timer)
        child.stdout?.off('data', onData)
        resolve({ child, port: Number(match[1]), pid: match[2] === undefined ? child.pid as number : Number(match[2]) })
      }
    }
    child.stdout?.on('data', onData)
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`${args[0]} exited with ${code}`)) })
  })
}

/** Where each Node process of the bench keeps its GC counts (contenders/gc-on-signal.ts); one folder per bench run. */
const gcDir = join(cacheDir, `gc-${process.pid}`)
process.once('exit', () => rmSync(gcDir, { recursive: true, force: true }))

/** Garbage collections of a Node process so far; null for a process that keeps no counts (nginx, a finished one). */
export interface GcCounts { majors: number, minors: number, ms: number }
export function gcCounts (pid: number): GcCounts | null {
  try {
    const [majors, minors, ms] = readFileSync(join(gcDir, String(pid)), 'utf8').split(' ').map(Number)
    return Number.isFinite(ms) ? { majors, minors, ms } : null
  } catch {
    return null
  }
}

/** A process and all its descendants (nginx: master and worker). */
export function processTree (pid: number): number[] {
  const children = new Map<number, number[]>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const ppid = Number(readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1].split(' ')[1])
      const list = children.get(ppid) ?? []
      list.push(Number(entry))
      children.set(ppid, list)
    } catch {}
  }
  const tree = [pid]
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]) ?? []))
  return tree
}

const TICKS = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100

/** utime + stime of a process tree, in seconds (threads included: /proc/<pid>/stat sums them). */
export function cpuSeconds (pids: number[]): number {
  let ticks = 0
  for (const pid of pids) {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
      ticks += Number(fields[11]) + Number(fields[12])
    } catch {}
  }
  return ticks / TICKS
}

export function median (values: number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b)
  if (sorted.length === 0) return NaN
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/**
 * The load generator (bench/load.ts) in a process of its own. `run` runs one workload; the proxy's CPU is read when
 * the load generator opens and closes its window. A workload that does not finish in time counts as failed (no
 * figures, one error) and the load generator is replaced.
 */
export class LoadGenerator {
  #child: ChildProcess
  readonly #fork: () => ChildProcess

  constructor (benchJs: string, nodeFlags: string[] = []) {
    this.#fork = () => fork(join(benchJs, 'load.js'), [], { cwd: root, execArgv: nodeFlags, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    this.#child = this.#fork()
  }

  /** `gcPid`: a Node process whose garbage collections over the window are reported alongside its CPU. */
  run (request: LoadRequest, pids: number[] | null, gcPid: number | null = null): Promise<{ result: LoadResult, cpu: number, gc: GcCounts | null }> {
    const loader = this.#child
    return new Promise((resolve, reject) => {
      let before = 0
      let gcBefore: GcCounts | null = null
      const timer = setTimeout(() => {
        loader.off('message', onMessage)
        process.stderr.write(`${request.workload.kind} to ${request.url} did not finish in ${request.seconds + 60} s: counted as failed\n`)
        loader.kill('SIGKILL')
        this.#child = this.#fork()
        resolve({ result: { units: 0, bytes: 0, seconds: request.seconds, errors: 1 }, cpu: NaN, gc: null })
      }, (request.seconds + 60) * 1000)
      const onMessage = (message: { type: string, result?: LoadResult, message?: string }): void => {
        if (message.type === 'start') {
          before = pids === null ? 0 : cpuSeconds(pids)
          gcBefore = gcPid === null ? null : gcCounts(gcPid)
          return
        }
        const cpu = pids === null ? 0 : cpuSeconds(pids) - before
        const gcAfter = gcPid === null ? null : gcCounts(gcPid)
        const gc = gcBefore === null || gcAfter === null
          ? null
          : { majors: gcAfter.majors - gcBefore.majors, minors: gcAfter.minors - gcBefore.minors, ms: gcAfter.ms - gcBefore.ms }
        clearTimeout(timer)
        loader.off('message', onMessage)
        if (message.type === 'done') resolve({ result: message.result as LoadResult, cpu, gc })
        else reject(new Error(message.message))
      }
      loader.on('message', onMessage)
      loader.send(request)
    })
  }

  close (): void {
    this.#child.disconnect()
  }
}
