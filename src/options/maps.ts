import { isBuiltinName, type CaptureNames, type Expr, type LookupScope } from '../vars/builtins.js'
import { mapVariable, type RegexCase } from '../vars/maps.js'
import { compileTemplate, type Template } from '../vars/template.js'
import { fail, isOptionError } from './problems.js'
import type { MapOptions } from './schema.js'

// Register time for templates and user maps: compiled once, every error naming its option path.

const MAP_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/** Compiles a template at an option path; a compile error becomes the coded option error naming that path. */
export function compileAt (text: string, scope: LookupScope, path: string): Template {
  try {
    return compileTemplate(text, scope)
  } catch (err) {
    if (isOptionError(err)) throw err
    fail(path, (err as Error).message)
  }
}

/** Option path segment for a key that may hold `/` (a regex): quoted so the path stays readable. */
export function keySegment (key: string): string {
  return /^[A-Za-z0-9_.-]+$/.test(key) ? key : JSON.stringify(key)
}

/**
 * The user's maps, compiled once at register time into functions of the request (nginx evaluates a map when
 * it is used, so an unused map costs nothing per request). Maps may use other maps; a cycle is an error.
 */
export class MapRegistry {
  readonly #definitions: Record<string, MapOptions>
  readonly #compiled = new Map<string, Expr>()
  readonly #compiling: string[] = []
  readonly #at: string
  /** Passed to template scopes: resolves a map name to its function, compiling it on first use. */
  readonly lookup: (name: string) => Expr | undefined

  constructor (definitions: Record<string, MapOptions>, at: string) {
    this.#definitions = definitions
    this.#at = at
    this.lookup = (name) => Object.hasOwn(this.#definitions, name) ? this.#compile(name) : undefined
    for (const name of Object.keys(definitions)) {
      // The built-in $connection_upgrade is nginx's own map idiom: a user copying that map defines the same thing.
      if (!MAP_NAME.test(name)) fail(`${at}${keySegment(name)}`, 'a map name must be letters, digits and "_", not starting with a digit')
      if (isBuiltinName(name) && name !== 'connection_upgrade') {
        fail(`${at}${name}`, `$${name} is a built-in variable; choose another map name`)
      }
      this.#compile(name)
    }
  }

  #compile (name: string): Expr {
    const done = this.#compiled.get(name)
    if (done !== undefined) return done
    if (this.#compiling.includes(name)) {
      const cycle = [...this.#compiling.slice(this.#compiling.indexOf(name)), name].map((n) => `$${n}`).join(' → ')
      fail(`${this.#at}${name}`, `maps refer to each other in a cycle: ${cycle}`)
    }
    this.#compiling.push(name)
    const expr = compileMap(this.#definitions[name], `${this.#at}${name}/`, this.lookup)
    this.#compiling.pop()
    this.#compiled.set(name, expr)
    return expr
  }
}

function compileMap (definition: MapOptions, at: string, map: (name: string) => Expr | undefined): Expr {
  const plain: LookupScope = { response: false, map, captures: null }
  const source = compileAt(definition.source, plain, `${at}source`).expr
  const fallback = compileAt(definition.default ?? '', plain, `${at}default`).expr
  let exact: Map<string, Expr> | null = null
  const regexes: RegexCase[] = []
  for (const [key, valueText] of Object.entries(definition.cases ?? {})) {
    const path = `${at}cases/${keySegment(key)}`
    const re = regexOf(key, path)
    if (re !== null) {
      const value = compileAt(valueText, { response: false, map, captures: captureNames(re) }, path).expr
      regexes.push({ re, value })
    } else {
      // nginx: string keys match ignoring case; a leading "\" escapes a key that would start with "~".
      const literal = (key.startsWith('\\') ? key.slice(1) : key).toLowerCase()
      exact ??= new Map()
      if (!exact.has(literal)) exact.set(literal, compileAt(valueText, plain, path).expr)
    }
  }
  return mapVariable({ source, exact, regexes, fallback })
}

/** nginx's regex syntax: `~regex` (case-sensitive) or `~*regex` (ignoring case) is compiled; other text is null. */
export function regexOf (text: string, path: string): RegExp | null {
  if (!text.startsWith('~')) return null
  const caseless = text.startsWith('~*')
  try {
    return new RegExp(text.slice(caseless ? 2 : 1), caseless ? 'i' : '')
  } catch (err) {
    fail(path, `the regular expression does not compile: ${(err as Error).message}`)
  }
}

/** How many groups a regex has and their names: what `$1`..`$9` and `$name` may refer to in a value. */
export function captureNames (re: RegExp): CaptureNames {
  const count = (new RegExp(`${re.source}|`).exec('') as RegExpExecArray).length - 1
  const names = [...re.source.matchAll(/\(\?<([A-Za-z_$][\w$]*)>/g)].map((m) => m[1])
  return { count, names }
}
