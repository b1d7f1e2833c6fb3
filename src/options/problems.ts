import { FST_WS_PROXY_INVALID_OPTION } from '../errors.js'

// Every problem of the options in one error, so a config with three mistakes is fixed in one round, not three.

/** One invalid option: its path (`routes/0/upstream`) and what is wrong. */
export interface OptionProblem {
  readonly path: string
  readonly reason: string
}

/** The error `register` and the gateway CLI throw for invalid options: the first problem in the message's head. */
export interface InvalidOptionsError extends TypeError {
  readonly code: 'FST_WS_PROXY_INVALID_OPTION'
  /** Every problem found, sorted by path. */
  readonly problems: readonly OptionProblem[]
}

/** How many problems one message lists; the error's `problems` has them all. */
export const MOST_SHOWN = 20

/** The one invalid-option error: `path` (`''` for the options as a whole) and what is wrong with it. */
export function optionError (path: string, reason: string): Error {
  return new FST_WS_PROXY_INVALID_OPTION(path === '' ? '(root)' : path, reason)
}

/** Throws the invalid-option error for `path`: every register-time check reports through this. */
export function fail (path: string, reason: string): never {
  throw optionError(path, reason)
}

/** Whether `err` is an invalid-option error (from `fail` or `invalidOptions`). */
export function isOptionError (err: unknown): boolean {
  return (err as { code?: unknown }).code === 'FST_WS_PROXY_INVALID_OPTION'
}

const HEAD = /^Invalid fastify-ws-proxy option (.+?): ([^]*)$/

function byPath (a: OptionProblem, b: OptionProblem): number {
  return a.path.localeCompare(b.path, 'en', { numeric: true })
}

/** One error for every problem: the first (by path) as `<path>: <reason>`, each other on a line of its own. */
export function invalidOptions (problems: readonly OptionProblem[]): InvalidOptionsError {
  const sorted = [...problems].sort(byPath)
  const [first, ...rest] = sorted
  const lines = rest.slice(0, MOST_SHOWN - 1).map((p) => `\n  ${p.path}: ${p.reason}`)
  if (rest.length >= MOST_SHOWN) lines.push(`\n  ... and ${rest.length - MOST_SHOWN + 1} more`)
  const err = optionError(first.path, first.reason + lines.join(''))
  return Object.assign(err, { problems: Object.freeze(sorted) }) as unknown as InvalidOptionsError
}

/** The path and reason of an option error (the checks of other modules throw one each). Other errors are rethrown. */
function problemOf (err: unknown): OptionProblem {
  const head = isOptionError(err) ? HEAD.exec((err as Error).message) : null
  if (head === null) throw err
  return { path: head[1], reason: head[2] }
}

/** Collects the problems of independent checks: each runs even when an earlier one failed. */
export class ProblemList {
  readonly problems: OptionProblem[] = []

  /** Runs `check`; an option error it throws is recorded and `undefined` returned. */
  attempt<T> (check: () => T): T | undefined {
    try {
      return check()
    } catch (err) {
      this.problems.push(problemOf(err))
      return undefined
    }
  }

  /** Throws them all as one error, if there are any. */
  throwIfAny (): void {
    if (this.problems.length > 0) throw invalidOptions(this.problems)
  }
}
