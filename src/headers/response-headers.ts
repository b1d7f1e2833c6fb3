import type { VarContext } from '../vars/context.js'
import { connectionTokens, isHopByHop } from './hop-by-hop.js'
import { fieldSlot, fieldText, lowerOf, textOf } from './raw-fields.js'
import { evaluate } from './request-headers.js'
import { rewriteCookie, rewriteLocation, rewriteRefresh, type ResponseRewrites } from './rewrites.js'
import type { HeaderRule } from './rules.js'

/** A route's response rules, complete (the default redirect rule resolved against the route's prefix). */
export interface ResponseHeaderPlan extends ResponseRewrites {
  readonly drop: ReadonlySet<string> | null
  readonly set: readonly HeaderRule[]
  readonly add: readonly HeaderRule[]
}

/**
 * The upstream's response headers as a flat [name, value, ...] array for `writeHead`, in the upstream's order
 * and case, without hop-by-hop fields or those named by its Connection header (RFC 9110 §7.6.1). Node then
 * frames the body for the client (Content-Length kept; chunked re-applied when the upstream chunked).
 * latin1 keeps every byte as the upstream sent it: Node writes header strings back as latin1.
 * `keepUpgrade` keeps `Upgrade` for a 101, which must name the protocol switched to.
 * Then the route's plan applies: hidden and set names dropped, `Location`/`Refresh`/`Set-Cookie` rewritten,
 * set and added values appended. Throws FST_WS_PROXY_BAD_HEADER_VALUE for a template value not allowed in a field.
 */
export function buildResponseHeaders (raw: Buffer[], keepUpgrade: boolean, plan: ResponseHeaderPlan, vars: VarContext | null): string[] {
  let named: string[] | null = null
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 10 && lowerOf(fieldSlot(raw[i]), raw[i]) === 'connection') {
      const tokens = connectionTokens(fieldText(raw[i + 1]), true)
      if (tokens !== null) named = named === null ? tokens : named.concat(tokens)
    }
  }
  const drop = plan.drop
  const out: string[] = []
  for (let i = 0; i < raw.length; i += 2) {
    const slot = fieldSlot(raw[i])
    const lower = lowerOf(slot, raw[i])
    if ((isHopByHop(lower) || (named !== null && named.includes(lower))) && !(keepUpgrade && lower === 'upgrade')) continue
    if (drop !== null && drop.has(lower)) continue
    const name = textOf(slot, raw[i])
    // A Set-Cookie value (a session) is never kept in the table of repeated fields: decoded each time.
    const cookie = lower.length === 10 && lower === 'set-cookie'
    let value = cookie ? raw[i + 1].toString('latin1') : fieldText(raw[i + 1])
    // Only three names are rewritten; their lengths tell them apart before any string comparison.
    if (lower.length === 8 && lower === 'location' && plan.redirects.length > 0) value = rewriteLocation(value, plan, vars)
    else if (lower.length === 7 && lower === 'refresh' && plan.redirects.length > 0) value = rewriteRefresh(value, plan, vars)
    else if (cookie && (plan.cookieDomain.length > 0 || plan.cookiePath.length > 0)) value = rewriteCookie(value, plan, vars)
    out.push(name, value)
  }
  for (let i = 0; i < plan.set.length; i++) push(out, plan.set[i], vars)
  for (let i = 0; i < plan.add.length; i++) push(out, plan.add[i], vars)
  return out
}

function push (out: string[], rule: HeaderRule, vars: VarContext | null): void {
  const value = evaluate(rule, vars)
  if (value !== '') out.push(rule.name, value)
}
