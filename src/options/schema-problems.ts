import { ValueErrorType, type ValueError } from '@sinclair/typebox/value'
import { didYouMean } from '../suggest.js'
import { optionError, type OptionProblem } from './problems.js'

// TypeBox's schema errors as option problems: one per path, with a readable reason and, for a misspelt key or
// value, the closest valid one.

/** One problem per option path (TypeBox may report a path twice: a missing property, then its type). */
export function schemaProblems (errors: Iterable<ValueError>): OptionProblem[] {
  const seen = new Set<string>()
  const problems: OptionProblem[] = []
  for (const error of errors) {
    const path = error.path.slice(1).replaceAll('~1', '/').replaceAll('~0', '~') || '(root)'
    if (seen.has(path)) continue
    seen.add(path)
    problems.push({ path, reason: reasonOf(error) })
  }
  return problems
}

/** The coded error for one schema violation (the run-time API checks one value at a time). */
export function invalidOption (error: ValueError): Error {
  const [problem] = schemaProblems([error])
  return optionError(problem.path, problem.reason)
}

function reasonOf (error: ValueError): string {
  const schema = error.schema as { anyOf?: Array<{ const?: unknown }>, properties?: Record<string, unknown> }
  if (error.type === ValueErrorType.ObjectAdditionalProperties) {
    // The error's schema is the object's: its keys are what the user may have meant.
    const key = error.path.slice(error.path.lastIndexOf('/') + 1).replaceAll('~1', '/').replaceAll('~0', '~')
    return describe('unexpected property', error.value) + didYouMean(key, Object.keys(schema.properties as object))
  }
  // TypeBox says "expected union value" for a union of literals (methods, balance); name the allowed values instead.
  const literals = schema.anyOf?.map((option) => option.const)
  if (literals === undefined || literals.length === 0 || literals.some((value) => value === undefined)) {
    return describe(error.message, error.value)
  }
  const hint = typeof error.value === 'string' ? didYouMean(error.value, literals.map(String)) : ''
  return describe(`expected one of ${literals.join(', ')}`, error.value) + hint
}

function describe (message: string, value: unknown): string {
  const reason = message.charAt(0).toLowerCase() + message.slice(1)
  const shown = show(value)
  return shown === undefined ? reason : `${reason}, got ${shown.length > 80 ? shown.slice(0, 77) + '...' : shown}`
}

// JSON.stringify shows NaN and Infinity as null (a `Number(process.env.X)` gone wrong) and throws on a bigint.
function show (value: unknown): string | undefined {
  if (typeof value === 'number') return String(value)
  if (typeof value === 'bigint') return `${value}n`
  try {
    return JSON.stringify(value)
  } catch {
    return undefined
  }
}
