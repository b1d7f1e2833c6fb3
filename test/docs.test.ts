// The documentation stays true to the code: the generated options page and JSON Schema are current, the README
// stays a five-minute read that links every page, every error code is documented, and the architecture map in
// docs/development.md names every file under src/ (and nothing else).
import t from 'tap'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { OPTIONS_PAGE, optionsPage, SCHEMA_FILE, schemaFile, sharedKeys, variablesTable } from '../scripts/options-doc.js'
import * as errors from '../src/errors.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const read = (path: string): string => readFileSync(join(root, path), 'utf8')
const readme = read('README.md')
const docs = readdirSync(join(root, 'docs')).filter((name) => name.endsWith('.md'))

t.test('docs/options.md and fastify-ws-proxy.schema.json are generated and current (npm run docs)', async (t) => {
  t.equal(readFileSync(OPTIONS_PAGE, 'utf8'), optionsPage())
  t.equal(readFileSync(SCHEMA_FILE, 'utf8'), schemaFile())
  const page = optionsPage()
  for (const key of sharedKeys()) {
    t.equal(page.split(`| \`${key}\` |`).length, 2, `${key} is documented once`)
    t.notOk(page.includes(`| \`routes[].${key}\``), `${key} is not repeated at route level`)
  }
  t.match(page, /\| `routes\[\]\.prefix` \| string \| yes \|/)
  t.match(page, /\| `upstreams\.<name>\.servers\[\]\.url` \| string \| yes \|/)
  t.match(page, /\| `listen\.port` \| integer \|/)
  t.match(variablesTable(), /\| `\$connection_upgrade` \| /)
})

t.test('the README: under 300 lines, both quick starts, the two commands, a link to every page', async (t) => {
  t.ok(readme.split('\n').length <= 300, `${readme.split('\n').length} lines`)
  t.match(readme, /```js\n/)
  t.match(readme, /```ts\n[^]*WsProxyOptions/)
  t.match(readme, /npm install && npm start/)
  t.match(readme, /npm test/)
  for (const page of docs.filter((name) => name !== 'README.md')) t.ok(readme.includes(`(docs/${page}`), `links docs/${page}`)
  const index = read('docs/README.md')
  for (const page of docs.filter((name) => name !== 'README.md')) t.ok(index.includes(`(${page})`), `the docs index links ${page}`)
})

t.test('relative links in the README and docs/ point to files that exist', async (t) => {
  for (const file of ['README.md', ...docs.map((name) => `docs/${name}`)]) {
    for (const [, target] of read(file).matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
      if (/^[a-z]+:/.test(target)) continue
      t.ok(existsSync(join(root, dirname(file), target)), `${file} -> ${target}`)
    }
  }
})

t.test('every error code is documented in docs/troubleshooting.md', async (t) => {
  const troubleshooting = read('docs/troubleshooting.md')
  for (const code of Object.keys(errors)) t.match(troubleshooting, `\`${code}\``, `${code} is documented`)
})

function sourceFiles (dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sourceFiles(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [])
}

t.test('the architecture map in docs/development.md lists every file under src/, one line each', async (t) => {
  const development = read('docs/development.md')
  const map = development.slice(development.indexOf('<!-- files:start -->'), development.indexOf('<!-- files:end -->'))
  const listed = [...map.matchAll(/^(src\/\S+\.ts) {2,}\S/gm)].map((m) => m[1]).sort()
  t.same(listed, sourceFiles('src').map((file) => relative(root, join(root, file))).sort())
})
