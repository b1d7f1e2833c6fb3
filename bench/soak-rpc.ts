// The soak's processes talk in JSON lines: the parent writes `{ id, cmd, args }` to a child's stdin, the child
// answers `{ id, ok, result | error }` on stdout and announces itself once with `{ ready }`. stderr is for people.
// Every child is started through `sh -c 'ulimit -n ...; exec node ...'`: Node cannot raise its own descriptor limit.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const NODE = [process.execPath, '--expose-gc', '--import', '@tapjs/typescript/import']

/** Raise the soft limit to `wanted` (hard one included: root with CAP_SYS_RESOURCE), else to the hard limit. */
const raiseLimit = (wanted: number): string => `ulimit -n ${wanted} 2>/dev/null || ulimit -n "$(ulimit -Hn)"`

/** What `ulimit -n` gives the children: `wanted`, or the hard limit when raising it is refused (a container). */
export function descriptorLimit (wanted: number): number {
  const out = spawnSync('sh', ['-c', `${raiseLimit(wanted)}; ulimit -n`]).stdout.toString().trim()
  return out === 'unlimited' ? wanted : Number(out)
}

/** The calling process's own descriptor limit, as the kernel applies it. */
export function ownDescriptorLimit (): number {
  return Number(/Max open files\s+(\d+)/.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1] ?? 0)
}

interface Reply { id: number, ok: boolean, result?: unknown, error?: string }

/** A child process of the soak, driven by requests. */
export class SoakChild {
  readonly name: string
  readonly child: ChildProcess
  readonly ready: Promise<Record<string, unknown>>
  readonly exited: Promise<void>
  #next = 1
  readonly #pending = new Map<number, { resolve: (value: unknown) => void, reject: (err: Error) => void }>()
  #exitCode: string | null = null

  constructor (name: string, script: string, args: string[], fdLimit: number) {
    this.name = name
    this.child = spawn('sh', ['-c', `${raiseLimit(fdLimit)}; exec "$0" "$@"`, ...NODE, script, ...args], {
      cwd: root,
      env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' },
      stdio: ['pipe', 'pipe', 'inherit']
    })
    // A child dying under us makes its pending requests fail at once instead of waiting for their bound.
    this.child.stdin?.on('error', () => {})
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => {
      this.#exitCode = signal ?? String(code)
      for (const { reject } of this.#pending.values()) reject(new Error(`${name} exited (${this.#exitCode})`))
      this.#pending.clear()
      resolve()
    }))
    let announced: (info: Record<string, unknown>) => void = () => {}
    let refused: (err: Error) => void = () => {}
    const announcement = new Promise<Record<string, unknown>>((resolve, reject) => { announced = resolve; refused = reject })
    const timer = setTimeout(() => refused(new Error(`${name}: not ready within 120 s`)), 120_000)
    this.exited.then(() => refused(new Error(`${name} exited before it was ready (${this.#exitCode})`))).catch(() => {})
    this.ready = announcement.finally(() => clearTimeout(timer))
    this.ready.catch(() => {})
    createInterface({ input: this.child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      if (!line.startsWith('{')) return
      const message = JSON.parse(line) as Reply & { ready?: Record<string, unknown> }
      if (message.ready !== undefined) {
        announced(message.ready)
        return
      }
      const pending = this.#pending.get(message.id)
      if (pending === undefined) return
      this.#pending.delete(message.id)
      if (message.ok) pending.resolve(message.result)
      else pending.reject(new Error(`${name} ${message.error ?? 'failed'}`))
    })
  }

  get pid (): number {
    return this.child.pid as number
  }

  get alive (): boolean {
    return this.#exitCode === null
  }

  /** Sends a command and waits for its answer, at most `ms`. */
  async request<T> (cmd: string, args: Record<string, unknown> = {}, ms = 30_000): Promise<T> {
    if (!this.alive) throw new Error(`${this.name} has exited (${this.#exitCode})`)
    const id = this.#next++
    return await new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        reject(new Error(`${this.name} ${cmd}: no answer within ${ms} ms`))
      }, ms)
      this.#pending.set(id, {
        resolve: (value) => { clearTimeout(timer); resolve(value as T) },
        reject: (err) => { clearTimeout(timer); reject(err) }
      })
      this.child.stdin?.write(JSON.stringify({ id, cmd, args }) + '\n')
    })
  }

  /** SIGTERM, then SIGKILL if it is still there after `ms`; resolves once it has exited. */
  async stop (ms = 3000): Promise<void> {
    if (!this.alive) return
    this.child.kill('SIGTERM')
    const timer = setTimeout(() => this.child.kill('SIGKILL'), ms)
    await this.exited
    clearTimeout(timer)
  }
}

type Handler = (args: Record<string, unknown>) => unknown

/** Child side: answers the parent's commands; exits when the parent goes away (stdin closes). */
export function serve (handlers: Record<string, Handler>): void {
  createInterface({ input: process.stdin }).on('line', (line) => {
    const { id, cmd, args } = JSON.parse(line) as { id: number, cmd: string, args: Record<string, unknown> }
    const handler = handlers[cmd]
    Promise.resolve()
      .then(() => {
        if (handler === undefined) throw new Error(`unknown command ${cmd}`)
        return handler(args)
      })
      .then(
        (result) => { process.stdout.write(JSON.stringify({ id, ok: true, result: result ?? null }) + '\n') },
        (err: Error) => { process.stdout.write(JSON.stringify({ id, ok: false, error: err.message }) + '\n') }
      )
  }).on('close', () => process.exit(0))
  process.on('SIGTERM', () => process.exit(0))
}

/** Child side: tells the parent it is up. */
export function announce (info: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify({ ready: { ...info, fdLimit: ownDescriptorLimit() } }) + '\n')
}

/** A full GC (the children run with --expose-gc), so memory figures are live memory. */
export function collectGarbage (): void {
  const gc = (globalThis as { gc?: () => void }).gc
  gc?.()
  gc?.()
}
