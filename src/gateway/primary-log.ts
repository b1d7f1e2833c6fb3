import { hostname } from 'node:os'
import { LOG_LEVEL_NUMBERS } from '../telemetry/log-levels.js'

// The primary runs no Fastify app, so it writes pino's line format itself: one JSON object per line on stdout,
// with the same `level` numbers, `time`, `pid` and `hostname`, so the workers' and the primary's lines can be
// read by the same tools.
// `logLevel` is one of these (the config schema checks it).
const LEVELS: Readonly<Record<string, number>> = LOG_LEVEL_NUMBERS
const HOST = hostname()

/** The cluster primary's logger. */
export class PrimaryLog {
  #threshold: number

  constructor (level: string) {
    this.#threshold = LEVELS[level]
  }

  /** A reload may change `logLevel`. */
  setLevel (level: string): void {
    this.#threshold = LEVELS[level]
  }

  info (fields: Record<string, unknown>, msg: string): void { this.#write(30, fields, msg) }
  warn (fields: Record<string, unknown>, msg: string): void { this.#write(40, fields, msg) }
  error (fields: Record<string, unknown>, msg: string): void { this.#write(50, fields, msg) }

  #write (level: number, fields: Record<string, unknown>, msg: string): void {
    if (level < this.#threshold) return
    process.stdout.write(JSON.stringify({ level, time: Date.now(), pid: process.pid, hostname: HOST, role: 'primary', ...fields, msg }) + '\n')
  }
}
