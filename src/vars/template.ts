import { lookupVariable, type Expr, type LookupScope } from './builtins.js'

/** A template compiled at register time. */
export interface Template {
  readonly expr: Expr
  /** The value when the template has no variables (checked once at register time), else null. */
  readonly constant: string | null
}

const NAME_CHAR = /[A-Za-z0-9_]/

/**
 * Compiles an nginx-style template (`$name`, `${name}` when a name character follows, `$$` for a literal `$`)
 * into a plain function. Parsing and variable lookup happen here, once; an unknown variable or a malformed
 * `$` throws an Error naming the position, which the caller prefixes with the option path.
 */
export function compileTemplate (text: string, scope: LookupScope): Template {
  const parts: Array<string | Expr> = []
  let literal = ''
  let i = 0
  while (i < text.length) {
    const dollar = text.indexOf('$', i)
    if (dollar === -1) {
      literal += text.slice(i)
      break
    }
    literal += text.slice(i, dollar)
    const next = text.charAt(dollar + 1)
    let name: string
    if (next === '$') {
      literal += '$'
      i = dollar + 2
      continue
    } else if (next === '{') {
      const close = text.indexOf('}', dollar + 2)
      name = close === -1 ? '' : text.slice(dollar + 2, close)
      if (close === -1 || !/^[A-Za-z0-9_]+$/.test(name)) {
        throw new Error(`malformed "\${...}" at character ${dollar + 1} of ${JSON.stringify(text)}`)
      }
      i = close + 1
    } else if (/[0-9]/.test(next)) {
      // nginx: a capture reference is one digit ("$12" is $1 followed by "2").
      name = next
      i = dollar + 2
    } else if (NAME_CHAR.test(next)) {
      let end = dollar + 1
      while (end < text.length && NAME_CHAR.test(text.charAt(end))) end++
      name = text.slice(dollar + 1, end)
      i = end
    } else {
      throw new Error(`a "$" at character ${dollar + 1} of ${JSON.stringify(text)} starts no variable ($name or \${name}); write "$$" for a literal "$"`)
    }
    if (literal !== '') parts.push(literal)
    literal = ''
    parts.push(lookupVariable(name, scope))
  }
  if (literal !== '') parts.push(literal)
  return build(parts)
}

function build (parts: Array<string | Expr>): Template {
  if (parts.length === 0) return constantTemplate('')
  if (parts.length === 1) {
    const only = parts[0]
    return typeof only === 'string' ? constantTemplate(only) : { expr: only, constant: null }
  }
  const fns = parts.map((p): Expr => typeof p === 'string' ? () => p : p)
  if (fns.length === 2) {
    const [a, b] = fns
    return { expr: (c) => a(c) + b(c), constant: null }
  }
  return {
    expr: (c) => {
      let s = ''
      for (let k = 0; k < fns.length; k++) s += fns[k](c)
      return s
    },
    constant: null
  }
}

function constantTemplate (value: string): Template {
  return { expr: () => value, constant: value }
}
