import { execFileSync } from 'node:child_process'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { CLI_BUILD, RUN_STARTED } from './paths.js'

// tap's `before` (.taprc), once per run.

// Marks the start: after-run.ts reports this run's failures only (.tap/test-results keeps older files).
mkdirSync('.tap', { recursive: true })
writeFileSync(RUN_STARTED, `${Date.now()}\n`)

// Compiles src/ for the tests that start the CLI as child processes (test/helpers/cli.ts). Under the TypeScript
// loader every process took about 3 s of CPU to start, so a cluster (a primary and its workers) took 10 s and more
// beside other test files; compiled, a process starts in about 1 s. No type check here (`npm run typecheck` does
// it); source maps point back to src/ for the coverage report.
rmSync(CLI_BUILD, { recursive: true, force: true })
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', CLI_BUILD, '--noCheck', '--sourceMap', '--declaration', 'false'], { stdio: 'inherit' })
