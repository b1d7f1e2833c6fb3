import { isFieldValue, isToken } from '../headers/field.js'
import type { HeaderRule, RequestHeaderRules, ResponseRules, RewriteRule } from '../headers/rules.js'
import type { LookupScope } from '../vars/builtins.js'
import { captureNames, compileAt, keySegment, regexOf } from './maps.js'
import { fail } from './problems.js'
import type { RequestHeaderOptions, ResponseHeaderOptions, RewriteRuleOptions } from './schema.js'

// Register time for `requestHeaders`, `responseHeaders`, `redirect`, `cookieDomain` and `cookiePath`: the rules of
// a route merged over the plugin's, checked and compiled into the plain objects of headers/rules.ts.

// Framing and connection management belong to the proxy: a template may not write these.
const FRAMING = new Set(['content-length', 'transfer-encoding', 'keep-alive', 'te', 'trailer', 'proxy-connection'])
const REQUEST_STEERING = new Set(['host', 'connection', 'upgrade'])

type Level = 'plugin' | 'route'
interface LevelRules<T> { at: string, rules: T }

/** One level's rules per lowercased name: route names replace the plugin's (not merged into them). */
interface NamedRules {
  set: Map<string, { name: string, text: string, path: string }>
  add: Map<string, { name: string, texts: string[], paths: string[] }>
  remove: Map<string, string>
}

function collect (levels: Array<LevelRules<{ set?: Record<string, string>, add?: Record<string, string | string[]> } | undefined>>,
  removeKey: 'remove' | 'hide', check: (lower: string, path: string, kind: 'set' | 'add' | 'remove') => void): NamedRules {
  const merged: NamedRules = { set: new Map(), add: new Map(), remove: new Map() }
  for (const { at, rules } of levels) {
    if (rules === undefined) continue
    const level: NamedRules = { set: new Map(), add: new Map(), remove: new Map() }
    for (const [name, text] of Object.entries(rules.set ?? {})) {
      const path = `${at}set/${keySegment(name)}`
      const lower = checkedName(name, path)
      check(lower, path, 'set')
      if (level.set.has(lower)) fail(path, `header ${name} is set twice (header names ignore case)`)
      level.set.set(lower, { name, text, path })
    }
    for (const [name, value] of Object.entries(rules.add ?? {})) {
      const path = `${at}add/${keySegment(name)}`
      const lower = checkedName(name, path)
      check(lower, path, 'add')
      const previous = level.add.get(lower)
      const texts = typeof value === 'string' ? [value] : value
      const paths = typeof value === 'string' ? [path] : value.map((_, i) => `${path}/${i}`)
      level.add.set(lower, previous === undefined ? { name, texts, paths } : { name, texts: previous.texts.concat(texts), paths: previous.paths.concat(paths) })
    }
    const removed = (rules as Record<string, string[] | undefined>)[removeKey] ?? []
    removed.forEach((name, i) => {
      const path = `${at}${removeKey}/${i}`
      const lower = checkedName(name, path)
      check(lower, path, 'remove')
      if (level.set.has(lower) || level.add.has(lower)) {
        fail(path, `header ${name} is both written and ${removeKey === 'hide' ? 'hidden' : 'removed'}`)
      }
      level.remove.set(lower, name)
    })
    // The route level wins per header name: any rule it has for a name replaces all the plugin's rules for it.
    for (const lower of new Set([...level.set.keys(), ...level.add.keys(), ...level.remove.keys()])) {
      merged.set.delete(lower)
      merged.add.delete(lower)
      merged.remove.delete(lower)
    }
    for (const [k, v] of level.set) merged.set.set(k, v)
    for (const [k, v] of level.add) merged.add.set(k, v)
    for (const [k, v] of level.remove) merged.remove.set(k, v)
  }
  return merged
}

function checkedName (name: string, path: string): string {
  if (!isToken(name)) fail(path, `${JSON.stringify(name)} is not a valid header name (RFC 9110 token)`)
  return name.toLowerCase()
}

function headerRule (name: string, text: string, scope: LookupScope, path: string): HeaderRule {
  const template = compileAt(text, scope, path)
  if (template.constant !== null && !isFieldValue(template.constant)) {
    fail(path, 'the value has characters not allowed in an HTTP field value (CR, LF, NUL or other controls)')
  }
  return { name, lower: name.toLowerCase(), value: template.expr, check: template.constant === null, variable: template.constant === null }
}

/** Compiles the request header rules of a route over the plugin's; null when there are none (the fast path). */
export function compileRequestRules (plugin: RequestHeaderOptions | undefined, route: RequestHeaderOptions | undefined,
  at: Record<Level, string>, scope: LookupScope): RequestHeaderRules | null {
  if (plugin === undefined && route === undefined) return null
  const merged = collect([{ at: at.plugin, rules: plugin }, { at: at.route, rules: route }], 'remove', (lower, path, kind) => {
    if (FRAMING.has(lower) || lower === 'expect') {
      fail(path, `${lower} is managed by the proxy (message framing and connection handling) and cannot be ${kind === 'remove' ? 'removed' : 'written'}`)
    }
    if (REQUEST_STEERING.has(lower) && kind !== 'set') {
      fail(path, `${lower} can only be \`set\` (it steers the request rather than being copied)`)
    }
  })
  let host: HeaderRule | null = null
  let connection: HeaderRule | null = null
  let upgrade: HeaderRule | null = null
  const set: HeaderRule[] = []
  for (const [lower, { name, text, path }] of merged.set) {
    const rule = headerRule(name, text, scope, path)
    if (lower === 'host') host = rule
    else if (lower === 'connection') connection = rule
    else if (lower === 'upgrade') upgrade = rule
    else set.push(rule)
  }
  const add: HeaderRule[] = []
  for (const { name, texts, paths } of merged.add.values()) texts.forEach((text, i) => add.push(headerRule(name, text, scope, paths[i])))
  const drop = new Set([...merged.set.keys(), ...merged.remove.keys()])
  return { drop, set, add, host, connection, upgrade }
}

/** Compiles the response header rules, redirects and cookie rewrites of a route over the plugin's. */
export function compileResponseRules (plugin: ResponseHeaderOptions | undefined, route: ResponseHeaderOptions | undefined,
  at: Record<Level, string>, scope: LookupScope): ResponseRules {
  const merged = collect([{ at: at.plugin, rules: plugin }, { at: at.route, rules: route }], 'hide', (lower, path, kind) => {
    // The handshake's own fields: a 101 must keep them exactly as the upstream sent them (RFC 6455 §4.2.2).
    if (lower.startsWith('sec-websocket-')) {
      fail(path, `${lower} belongs to the WebSocket handshake and cannot be ${kind === 'remove' ? 'hidden' : 'written'}`)
    }
    if (FRAMING.has(lower) || REQUEST_STEERING.has(lower)) {
      fail(path, `${lower} is managed by the proxy (message framing and connection handling) and cannot be ${kind === 'remove' ? 'hidden' : 'written'}`)
    }
  })
  const set = [...merged.set.values()].map(({ name, text, path }) => headerRule(name, text, scope, path))
  const add: HeaderRule[] = []
  for (const { name, texts, paths } of merged.add.values()) texts.forEach((text, i) => add.push(headerRule(name, text, scope, paths[i])))
  return { drop: new Set([...merged.set.keys(), ...merged.remove.keys()]), set, add }
}

/** Compiles `from` → `to` rules; a `~` / `~*` `from` is a regular expression whose captures `to` may use. */
export function compileRewriteRules (rules: readonly RewriteRuleOptions[], at: string, scope: LookupScope, domain = false): RewriteRule[] {
  return rules.map((rule, i) => compileRewriteRule(rule, `${at}${i}`, scope, domain))
}

/** One rule; a `domain` rule's text is matched whole, so it is kept lowercased and without a leading dot. */
export function compileRewriteRule (rule: RewriteRuleOptions, path: string, scope: LookupScope, domain = false): RewriteRule {
  const re = regexOf(rule.from, `${path}/from`)
  const to = compileAt(rule.to, { ...scope, captures: re === null ? null : captureNames(re) }, `${path}/to`)
  if (to.constant !== null && !isFieldValue(to.constant)) {
    fail(`${path}/to`, 'the value has characters not allowed in an HTTP field value')
  }
  const text = re !== null ? null : domain ? rule.from.toLowerCase().replace(/^\./, '') : rule.from
  return { text, re, to: to.expr, variable: to.constant === null || re !== null }
}
