import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { RUN_STARTED } from './paths.js'

// tap's `after` (.taprc), once per run: repeats this run's failures at the end of the output, where a CI log's tail
// shows them (tap's TAP output puts them in the middle, among thousands of passing lines).

const RESULTS = '.tap/test-results'
const PER_FAILURE = 40
const TOTAL = 150

function main (): void {
  if (!existsSync(RUN_STARTED) || !existsSync(RESULTS)) return
  const started = Number(readFileSync(RUN_STARTED, 'utf8'))
  const lines: string[] = []
  for (const file of resultFiles(RESULTS)) {
    if (statSync(file).mtimeMs < started) continue
    const failures = failuresIn(readFileSync(file, 'utf8').split('\n'))
    if (failures.length > 0) lines.push(`${file.slice(RESULTS.length + 1, -'.tap'.length)}:`, ...failures)
  }
  if (lines.length === 0) return
  const shown = lines.slice(0, TOTAL)
  if (lines.length > TOTAL) shown.push(`... ${lines.length - TOTAL} more lines in ${RESULTS}/`)
  process.stdout.write(`\n# Failures in this run (each file's whole output: ${RESULTS}/)\n${shown.join('\n')}\n\n`)
}

function resultFiles (dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    return entry.isDirectory() ? resultFiles(path) : entry.name.endsWith('.tap') ? [path] : []
  })
}

/** Each `not ok` line with its YAML diagnostics (up to the `...` at its indentation). */
function failuresIn (tap: string[]): string[] {
  const out: string[] = []
  for (let i = 0; i < tap.length; i++) {
    const match = /^(\s*)not ok /.exec(tap[i])
    if (match === null) continue
    const block = [tap[i]]
    if (tap[i + 1]?.trimEnd() === `${match[1]}  ---`) {
      for (let j = i + 1; j < tap.length && block.length <= PER_FAILURE; j++) {
        block.push(tap[j])
        if (tap[j].trimEnd() === `${match[1]}  ...`) break
      }
    }
    out.push(...block)
  }
  return out
}

main()
