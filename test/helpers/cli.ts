import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Teardown } from './servers.js'
import type { Test } from 'tap'
import { main } from '../../src/gateway/cli-main.js'
import { CLI_BUILD } from '../setup/paths.js'

/** A directory of its own for a test file's configs and pid files. */
export function configDir (name: string): { dir: string, write: (file: string, content: unknown) => string } {
  const dir = mkdtempSync(join(tmpdir(), `fastify-ws-proxy-${name}-`))
  return {
    dir,
    write: (file, content) => {
      const path = join(dir, file)
      writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content))
      return path
    }
  }
}

export interface Run { child: ChildProcess, output: () => string, errors: () => string }

/** Runs the CLI, as compiled from src/ for this run (test/setup/before-run.ts), in a child process (its workers too); killed at teardown. */
export function cli (t: Teardown, args: string[], env: Record<string, string> = {}, detached = false): Run {
  const child = spawn(process.execPath, ['--enable-source-maps', join(CLI_BUILD, 'cli.js'), ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, as a terminal's foreground job: a signal to -pid reaches the primary and its workers.
    detached
  })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  let out = ''
  let err = ''
  child.stdout?.on('data', (chunk: Buffer) => { out += chunk.toString() })
  child.stderr?.on('data', (chunk: Buffer) => { err += chunk.toString() })
  return { child, output: () => out, errors: () => err }
}

export async function exitCode (run: Run): Promise<number> {
  if (run.child.exitCode !== null) return run.child.exitCode
  const [code] = await once(run.child, 'exit') as [number]
  return code
}

/** Resolves with the first match of `pattern` in the process's stdout from `from` on (bounded by `ms`). */
export async function waitForOutput (run: Run, pattern: RegExp, ms = 30_000, from = 0): Promise<RegExpExecArray> {
  const deadline = Date.now() + ms
  for (;;) {
    const match = pattern.exec(run.output().slice(from))
    if (match !== null) return match
    if (Date.now() > deadline || run.child.exitCode !== null) throw new Error(`no ${pattern} in output: ${run.output()} ${run.errors()}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** The JSON log lines the gateway's processes wrote to stdout. */
export function logLines (run: Run): Array<Record<string, unknown>> {
  return run.output().split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Record<string, unknown>)
}

/** Runs the CLI in this process (for the cases that start no server): exit code and what it printed. */
export async function inProcess (t: Test, args: string[]): Promise<{ code: number, out: string, err: string }> {
  const out = t.capture(process.stdout, 'write')
  const err = t.capture(process.stderr, 'write')
  const code = await main(args)
  const text = (calls: Array<{ args: unknown[] }>): string => calls.map((c) => String(c.args[0])).join('')
  return { code, out: text(out()), err: text(err()) }
}
