import type { RequestHeaderRules, ResponseRules, RewriteRule } from '../headers/rules.js'
import type { CaptureNames, LookupScope } from '../vars/builtins.js'
import { compileRequestRules, compileResponseRules, compileRewriteRule, compileRewriteRules } from './header-rules.js'
import type { MapRegistry } from './maps.js'
import type { DefaultedOptions, RouteOptions } from './schema.js'

/** A route's header settings, compiled (part of `ResolvedRoute`). */
export interface HeaderSettings {
  /** Compiled request header rules (plugin's and route's merged), or null when there are none. */
  readonly requestRules: RequestHeaderRules | null
  /** Compiled response header rules: names dropped, headers set and added. */
  readonly responseRules: ResponseRules
  /** `Location`/`Refresh` rewrites in order; `'default'` stands for the rule derived from the route (see RouteProxy). */
  readonly redirects: ReadonlyArray<RewriteRule | 'default'>
  readonly cookieDomain: readonly RewriteRule[]
  readonly cookiePath: readonly RewriteRule[]
  /** Whether any template reads the request's context, so a VarContext is made per request. */
  readonly needsVars: boolean
}

/**
 * Compiles a route's header templates over the plugin's: header rules merge per name, `redirect` and the cookie
 * rules are taken whole from the route when it has them. The shorthand's single route has no options of its own,
 * so its rules are the plugin's, named at the plugin's path.
 */
export function resolveHeaderRules (route: RouteOptions, at: string, plugin: DefaultedOptions, maps: MapRegistry, hostCaptures: CaptureNames | null): HeaderSettings {
  const request: LookupScope = { response: false, map: maps.lookup, captures: null, hostCaptures }
  const response: LookupScope = { ...request, response: true }
  const own = at === '' ? undefined : route
  const levels = (key: string) => ({ plugin: `${key}/`, route: `${at}${key}/` })
  const requestRules = compileRequestRules(plugin.requestHeaders, own?.requestHeaders, levels('requestHeaders'), request)
  const responseRules = compileResponseRules(plugin.responseHeaders, own?.responseHeaders, levels('responseHeaders'), response)
  // Where a whole-list setting comes from, for error paths: the route when it sets it, else the plugin.
  const from = (key: 'redirect' | 'cookieDomain' | 'cookiePath') => own?.[key] !== undefined ? `${at}${key}/` : `${key}/`
  const redirect = own?.redirect ?? plugin.redirect ?? ['default']
  const redirects = redirect === false
    ? []
    : redirect.map((rule, i) => rule === 'default' ? 'default' as const : compileRewriteRule(rule, `${from('redirect')}${i}`, response))
  const cookieDomain = compileRewriteRules(own?.cookieDomain ?? plugin.cookieDomain ?? [], from('cookieDomain'), response, true)
  const cookiePath = compileRewriteRules(own?.cookiePath ?? plugin.cookiePath ?? [], from('cookiePath'), response)
  const written = [...(requestRules === null ? [] : [...requestRules.set, ...requestRules.add, requestRules.host, requestRules.connection, requestRules.upgrade]),
    ...responseRules.set, ...responseRules.add, ...cookieDomain, ...cookiePath, ...redirects.filter((rule) => rule !== 'default')]
  return { requestRules, responseRules, redirects, cookieDomain, cookiePath, needsVars: written.some((rule) => rule?.variable === true) }
}
