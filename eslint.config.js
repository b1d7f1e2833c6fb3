import neostandard from 'neostandard'

export default [
  ...neostandard({
    ts: true,
    ignores: ['dist/**', 'node_modules/**', 'coverage/**', '.tap/**', '.cli-build/**', 'scratch/**']
  }),
  {
    // nginx templates write `${name}` inside plain strings on purpose (README, tests, examples).
    rules: { 'no-template-curly-in-string': 'off' }
  }
]
