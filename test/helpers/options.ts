import { resolveOptions, type InvalidOptionsError } from '../../src/index.js'

/** The error `resolveOptions` throws for `options`; fails the test when they are accepted. */
export function problemsOf (options: unknown): InvalidOptionsError {
  try {
    resolveOptions(options)
  } catch (err) {
    return err as InvalidOptionsError
  }
  throw new Error('the options were accepted')
}
