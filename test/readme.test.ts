import t from 'tap'
import { readFileSync } from 'node:fs'
import { optionsTable, withTable } from '../scripts/options-doc.js'
import * as errors from '../src/errors.js'

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')

t.test('the README options table is generated from the schema and up to date (npm run docs)', async (t) => {
  t.equal(withTable(readme), readme)
  t.ok(readme.includes(optionsTable()))
  t.match(optionsTable(), /\| `routes\[\]\.timeouts\.read` \| integer \|/)
})

t.test('a README without the markers is reported', async (t) => {
  t.throws(() => withTable('no markers here'), /no options markers/)
})

t.test('the README shows the two commands and lists every error code', async (t) => {
  t.match(readme, /npm install && npm start/)
  t.match(readme, /npm test/)
  for (const code of Object.keys(errors)) t.match(readme, `\`${code}\``, `${code} is documented`)
})
