// The layout docs/development.md describes, held against the code: small files, no import circle, and the folders'
// direction (register-time configuration above run-time code; http/ below upgrade/). Imports are read as text, type-only
// ones included: a type import that runs back up ties two files as much as a value import does.
import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, posix, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))

function sourceFiles (dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sourceFiles(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [])
}

const files = sourceFiles('src').map((file) => relative(root, file).split('\\').join('/')).sort()
const text = new Map(files.map((file) => [file, readFileSync(join(root, file), 'utf8')]))

/** The src/ files a file imports (static `import`/`export ... from` and `import()` of relative paths). */
function importsOf (file: string): string[] {
  const found = new Set<string>()
  for (const [, target] of (text.get(file) as string).matchAll(/(?:\bfrom|\bimport\(?)\s*'(\.{1,2}\/[^']+)'/g)) {
    found.add(posix.normalize(posix.join(posix.dirname(file), target)).replace(/\.js$/, '.ts'))
  }
  return [...found]
}

const graph = new Map(files.map((file) => [file, importsOf(file)]))

/** The src/ files a file imports only as types (`import type { ... } from`, never also as values). */
function typeImportsOf (file: string): Set<string> {
  const source = text.get(file) as string
  const typeOnly = new Set<string>()
  for (const [, target] of source.matchAll(/^import type [^;]*?from '(\.{1,2}\/[^']+)'/gm)) {
    typeOnly.add(posix.normalize(posix.join(posix.dirname(file), target)).replace(/\.js$/, '.ts'))
  }
  for (const [, target] of source.matchAll(/^(?:import|export) (?!type )[^;]*?from '(\.{1,2}\/[^']+)'/gm)) {
    typeOnly.delete(posix.normalize(posix.join(posix.dirname(file), target)).replace(/\.js$/, '.ts'))
  }
  return typeOnly
}

/** The folder of a file under src/ (`http`), or the file itself for top-level files (`index.ts`). */
function folderOf (file: string): string {
  return file.split('/')[1]
}

t.test('every import names a file that exists', async (t) => {
  const missing = [...graph].flatMap(([file, targets]) => targets.filter((target) => !text.has(target)).map((target) => `${file} -> ${target}`))
  t.same(missing, [])
  t.ok(graph.get('src/index.ts')?.includes('src/errors.ts'), 'imports are read')
})

t.test('no source file is over 300 lines', async (t) => {
  const long = [...text].map(([file, source]) => [file, source.split('\n').length - (source.endsWith('\n') ? 1 : 0)] as const)
    .filter(([, lines]) => lines > 300).map(([file, lines]) => `${file}: ${lines} lines`)
  t.same(long, [])
})

t.test('no import circle between files', async (t) => {
  // Depth-first search; a file met again while still on the path closes a circle.
  const state = new Map<string, 'open' | 'done'>()
  const circles: string[] = []
  const path: string[] = []
  const visit = (file: string): void => {
    state.set(file, 'open')
    path.push(file)
    for (const next of graph.get(file) ?? []) {
      if (state.get(next) === 'open') circles.push([...path.slice(path.indexOf(next)), next].join(' -> '))
      else if (!state.has(next) && graph.has(next)) visit(next)
    }
    path.pop()
    state.set(file, 'done')
  }
  for (const file of files) if (!state.has(file)) visit(file)
  t.same(circles, [])
})

/** Folders a folder must never import from, and why. */
const FORBIDDEN: ReadonlyArray<[from: string, to: readonly string[], why: string]> = [
  ['http', ['upgrade', 'routing'], 'http/ relays requests; the upgrade builds on it, not the other way'],
  ['headers', ['options', 'http', 'upgrade', 'routing'], 'run-time header code gets compiled rules, it does not compile them'],
  ['vars', ['options', 'http', 'upgrade', 'routing', 'headers'], 'variables are the bottom of the request path'],
  ['options', ['upgrade', 'http', 'routing', 'upstream', 'index.ts', 'gateway'], 'configuration is register-time: it builds plain objects for run time'],
  ['upstream', ['upgrade', 'http', 'routing', 'index.ts'], 'upstream groups and pools know nothing of the requests that use them'],
  ['telemetry', ['upgrade', 'http', 'routing', 'options'], 'counters and events are read by everything and read nothing of it'],
  ['upgrade', ['routing', 'index.ts', 'gateway'], 'the upgrade is driven by a route, it does not route'],
  ['routing', ['index.ts', 'gateway'], 'routes are what a registration builds'],
  ['security', ['upgrade', 'http', 'routing', 'options', 'index.ts'], 'the request checks stand below everything that forwards'],
  ['timers', ['upgrade', 'http', 'routing', 'options', 'index.ts'], 'the sweep only calls back what it watches']
]

/**
 * The one run-time route (resolved settings and wiring) is read by the exchanges, handshakes and tunnels it drives: as a
 * type only, so nothing of routing/ runs from below it.
 */
const ROUTE_TYPE = 'src/routing/proxy-route.ts'

t.test('folders import only downwards', async (t) => {
  const wrong: string[] = []
  for (const [from, forbidden, why] of FORBIDDEN) {
    for (const [file, targets] of graph) {
      if (folderOf(file) !== from) continue
      const types = typeImportsOf(file)
      for (const target of targets) {
        if (target === ROUTE_TYPE && types.has(target)) continue
        if (forbidden.includes(folderOf(target))) wrong.push(`${file} -> ${target}: ${why}`)
      }
    }
  }
  t.same(wrong, [])
  t.ok(files.some((file) => dirname(file) === 'src/http'), 'the rules name folders that exist')
})
