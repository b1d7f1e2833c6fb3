import type { FastifyReply, FastifyRequest } from 'fastify'
import { FST_WS_PROXY_GET_UPSTREAM_FAILED } from '../errors.js'
import type { ResolvedRoute } from '../options/resolve.js'
import type { GetUpstream } from '../options/schema.js'
import { DYNAMIC_ORIGINS, type DynamicUpstreams } from '../upstream/dynamic.js'
import { ProxyRoute } from './proxy-route.js'

/**
 * `getUpstream`: the route for the upstream it returns (`route` itself for `undefined`), or null once the request is
 * answered with FST_WS_PROXY_GET_UPSTREAM_FAILED (it threw or named no upstream). Routes are kept per returned
 * string, at most DYNAMIC_ORIGINS per route, the least recently used going first.
 */
export function chosenRoute (route: ProxyRoute, request: FastifyRequest, reply: FastifyReply): ProxyRoute | null {
  let text: unknown
  try {
    text = (route.settings.getUpstream as GetUpstream)(request)
  } catch (err) {
    upstreamFailed(route, request, reply, err, 'it threw')
    return null
  }
  if (text === undefined) return route
  if (typeof text !== 'string') {
    upstreamFailed(route, request, reply, new TypeError(`expected a string or undefined, got ${text === null ? 'null' : typeof text}`), 'it returned no upstream')
    return null
  }
  const chosen = route.chosen as Map<string, ProxyRoute>
  const known = chosen.get(text)
  if (known !== undefined && known.origin?.live !== false) {
    chosen.delete(text)
    chosen.set(text, known)
    if (known.origin !== null) (route.dynamic as DynamicUpstreams).touch(known.origin)
    return known
  }
  let derived: ProxyRoute
  try {
    derived = deriveRoute(route, text)
  } catch (err) {
    upstreamFailed(route, request, reply, err, 'it returned no valid upstream')
    return null
  }
  chosen.delete(text)
  chosen.set(text, derived)
  if (chosen.size > DYNAMIC_ORIGINS) chosen.delete(chosen.keys().next().value as string)
  return derived
}

/** `route` aimed at what `getUpstream` returned: same settings, that group, `upstream`'s path rules; same counters and slots. */
function deriveRoute (route: ProxyRoute, text: string): ProxyRoute {
  const parent = route.settings
  const target = (route.dynamic as DynamicUpstreams).resolve(text, parent.tls)
  const rewritePrefix = parent.rewritePrefix
  if (target.path !== null && rewritePrefix !== null) {
    throw new Error('the URL has a path, which replaces the prefix, and the route has rewritePrefix; give one or the other')
  }
  const settings: ResolvedRoute = Object.freeze({
    ...parent,
    origin: target.origin,
    group: target.resolved,
    proxyHost: target.host,
    rewrite: rewritePrefix ?? target.path,
    needsVars: parent.needsVars || target.resolved.hash?.constant === null,
    getUpstream: null,
    upgradeRoute: null
  })
  return new ProxyRoute(settings, route.fullPrefix, {
    group: target.group,
    stats: route.stats,
    slots: route.slots,
    uploads: route.uploads,
    headerFields: route.headerFields,
    exposeErrors: route.exposeErrors,
    dynamic: route.dynamic,
    origin: target.entry
  })
}

/** Answers 500 for a `getUpstream` that threw or named no upstream; the body names nothing internal unless `exposeErrors`. */
function upstreamFailed (route: ProxyRoute, request: FastifyRequest, reply: FastifyReply, err: unknown, what: string): void {
  request.log.error({ err, route: route.label }, `getUpstream failed (${what}): nothing was sent upstream`)
  const detail = route.exposeErrors ? `${what}: ${(err as Error).message}` : `${what} (details in the log, request ${request.id})`
  route.refuse(reply, new FST_WS_PROXY_GET_UPSTREAM_FAILED(route.label, detail))
}
