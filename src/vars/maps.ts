import type { Expr } from './builtins.js'

// User maps (nginx `map SOURCE $name { KEY VALUE; ... default VALUE; }`) at request time. They are compiled and
// checked at register time (options/maps.ts); this is the lookup a compiled map runs when a template reads it.

/** A `~regex` key of a map and its value (which may read the regex's captures). */
export interface RegexCase { readonly re: RegExp, readonly value: Expr }

/** One map, compiled: what is looked up, the exact keys (lowercased), the regex keys in order, the default. */
export interface CompiledMap {
  readonly source: Expr
  readonly exact: ReadonlyMap<string, Expr> | null
  readonly regexes: readonly RegexCase[]
  readonly fallback: Expr
}

/** The map as a variable: nginx tries the exact keys first (ignoring case), then the regexes as written, then the default. */
export function mapVariable ({ source, exact, regexes, fallback }: CompiledMap): Expr {
  return (c) => {
    const value = source(c)
    if (exact !== null) {
      const hit = exact.get(value.toLowerCase())
      if (hit !== undefined) return hit(c)
    }
    for (let i = 0; i < regexes.length; i++) {
      const match = regexes[i].re.exec(value)
      if (match !== null) {
        const saved = c.captures
        c.captures = match
        const result = regexes[i].value(c)
        c.captures = saved
        return result
      }
    }
    return fallback(c)
  }
}
