import { FST_WS_PROXY_BAD_HEADER_VALUE } from '../errors.js'
import type { VarContext } from '../vars/context.js'
import { isFieldValue } from './field.js'
import type { RewriteRule } from './rules.js'

/** A route's rewrites of upstream URLs in response headers (nginx `proxy_redirect`, `proxy_cookie_*`). */
export interface ResponseRewrites {
  readonly redirects: readonly RewriteRule[]
  readonly cookieDomain: readonly RewriteRule[]
  readonly cookiePath: readonly RewriteRule[]
}

/**
 * The first rule that matches rewrites the value: a text rule replaces the prefix it matched (or, for a domain,
 * the whole value), a regex rule replaces the whole value with its `to`, which may use the captures (nginx).
 * Returns the value unchanged when no rule matches.
 */
function apply (rules: readonly RewriteRule[], value: string, vars: VarContext | null, header: string, domain: boolean): string {
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i]
    let result: string | null = null
    if (rule.re !== null) {
      const match = rule.re.exec(value)
      if (match !== null) {
        const context = vars as VarContext
        const saved = context.captures
        context.captures = match
        result = rule.to(context)
        context.captures = saved
      }
    } else if (domain) {
      // nginx proxy_cookie_domain: the whole domain, ignoring case and a leading dot on either side.
      const bare = rule.text as string
      if (value.toLowerCase() === bare || value.toLowerCase() === `.${bare}`) result = (value.startsWith('.') ? '.' : '') + rule.to(vars as VarContext)
    } else if (value.startsWith(rule.text as string)) {
      result = rule.to(vars as VarContext) + value.slice((rule.text as string).length)
    }
    if (result !== null) {
      if (rule.variable && !isFieldValue(result)) throw new FST_WS_PROXY_BAD_HEADER_VALUE(header)
      return result
    }
  }
  return value
}

export function rewriteLocation (value: string, rewrites: ResponseRewrites, vars: VarContext | null): string {
  return apply(rewrites.redirects, value, vars, 'Location', false)
}

/** `Refresh: 5; url=http://upstream/...`: the URL after `url=` is rewritten like a Location (quotes kept). */
export function rewriteRefresh (value: string, rewrites: ResponseRewrites, vars: VarContext | null): string {
  const found = /url\s*=\s*/i.exec(value)
  if (found === null) return value
  let start = found.index + found[0].length
  let end = value.length
  const quote = value.charAt(start)
  if (quote === '"' || quote === '\'') {
    start++
    const close = value.indexOf(quote, start)
    if (close !== -1) end = close
  }
  return value.slice(0, start) + apply(rewrites.redirects, value.slice(start, end), vars, 'Refresh', false) + value.slice(end)
}

/** Rewrites the `Domain=` and `Path=` attributes of one `Set-Cookie` value; the rest is kept byte for byte. */
export function rewriteCookie (value: string, rewrites: ResponseRewrites, vars: VarContext | null): string {
  let out = ''
  let from = 0
  let semicolon = value.indexOf(';')
  while (semicolon !== -1) {
    const next = value.indexOf(';', semicolon + 1)
    const end = next === -1 ? value.length : next
    let start = semicolon + 1
    while (value.charCodeAt(start) === 32 || value.charCodeAt(start) === 9) start++
    const eq = value.indexOf('=', start)
    if (eq !== -1 && eq < end) {
      const attribute = value.slice(start, eq).trim().toLowerCase()
      const rules = attribute === 'domain' ? rewrites.cookieDomain : attribute === 'path' ? rewrites.cookiePath : null
      if (rules !== null && rules.length > 0) {
        out += value.slice(from, eq + 1) + apply(rules, value.slice(eq + 1, end), vars, 'Set-Cookie', attribute === 'domain')
        from = end
      }
    }
    semicolon = next
  }
  return from === 0 ? value : out + value.slice(from)
}
