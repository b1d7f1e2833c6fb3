import { fail, type OptionProblem } from './problems.js'
import type { MetricsRegistry, RouteOptions, WsProxyOptions } from './schema.js'

// What options carry that is not data: the user's code (route functions, DNS resolvers) and other plugins' objects
// (a prom-client Registry, the routes' Fastify `config`). Taken out of a shallow copy before the schema check and
// the clone, and put back after: they are handed on as given, never copied.

/**
 * The routes' `config` objects, taken out of a shallow copy of the options (like the registry): they belong to other
 * plugins (a rate-limit `keyGenerator` is a function), so they are handed to Fastify as given, never copied.
 */
function setAsideRouteConfigs (own: Record<string, unknown>, configs: Map<number, Record<string, unknown>>): OptionProblem[] {
  const problems: OptionProblem[] = []
  if (!Array.isArray(own.routes)) return problems
  own.routes = own.routes.map((route: unknown, i) => {
    if (route === null || typeof route !== 'object' || !('config' in route)) return route
    const { config, ...rest } = route as Record<string, unknown>
    if (config === undefined) return rest
    if (config === null || typeof config !== 'object' || Array.isArray(config)) {
      problems.push({ path: `routes/${i}/config`, reason: 'expected an object (the Fastify route config)' })
    } else {
      configs.set(i, config as Record<string, unknown>)
    }
    return rest
  })
  return problems
}

type RouteFunctions = Pick<RouteOptions, 'getUpstream' | 'rewriteRequestHeaders'>

const ROUTE_FUNCTIONS = {
  getUpstream: '(request) => string | undefined',
  rewriteRequestHeaders: '(request, headers) => headers'
} as const

const FROM_JSON = 'functions cannot come from a JSON config (give it to the plugin in JavaScript)'

/**
 * The routes' functions (`getUpstream`, `rewriteRequestHeaders`), taken out like their `config`: code is never copied.
 * A JSON config (`json`) cannot hold one: any value there is a problem.
 */
function setAsideRouteFunctions (own: Record<string, unknown>, functions: Map<number, RouteFunctions>, json: boolean): OptionProblem[] {
  const problems: OptionProblem[] = []
  if (!Array.isArray(own.routes)) return problems
  own.routes = own.routes.map((route: unknown, i) => {
    if (route === null || typeof route !== 'object') return route
    const rest: Record<string, unknown> = { ...route }
    for (const [key, signature] of Object.entries(ROUTE_FUNCTIONS)) {
      const fn = rest[key]
      delete rest[key]
      if (json && key in route) problems.push({ path: `routes/${i}/${key}`, reason: FROM_JSON })
      if (json || fn === undefined) continue
      if (typeof fn !== 'function') {
        problems.push({ path: `routes/${i}/${key}`, reason: `expected a function ${signature}` })
        continue
      }
      const hooks = functions.get(i) ?? {}
      hooks[key as keyof RouteFunctions] = fn as never
      functions.set(i, hooks)
    }
    return rest
  })
  return problems
}

/** The `resolve.resolver` functions of the groups, taken out of a shallow copy of the options (like the registry). */
function setAsideResolvers (own: Record<string, unknown>): Map<string, unknown> {
  const resolvers = new Map<string, unknown>()
  const groups = own.upstreams
  if (groups === null || typeof groups !== 'object') return resolvers
  const kept: Record<string, unknown> = { ...groups }
  for (const [name, group] of Object.entries(kept)) {
    const resolve = (group as { resolve?: unknown } | null)?.resolve
    if (resolve === null || typeof resolve !== 'object' || !('resolver' in resolve)) continue
    const { resolver, ...rest } = resolve as Record<string, unknown>
    if (resolver === undefined) continue
    if (typeof resolver !== 'function') fail(`upstreams/${name}/resolve/resolver`, 'expected a function (hostname, family) => Promise<string[]>')
    resolvers.set(name, resolver)
    kept[name] = { ...(group as object), resolve: rest }
  }
  own.upstreams = kept
  return resolvers
}

function checkRegistry (registry: unknown): MetricsRegistry {
  const candidate = registry as Partial<MetricsRegistry> | null
  if (typeof candidate?.registerMetric !== 'function' || typeof candidate.getSingleMetric !== 'function') {
    fail('metrics/registry', 'expected a prom-client Registry')
  }
  return registry as MetricsRegistry
}

/** What was set aside, to put back into the checked copy; `problems`: what is wrong with it (reported with the schema's). */
export interface SetAside {
  readonly own: Record<string, unknown>
  readonly registry: MetricsRegistry | null
  readonly resolvers: ReadonlyMap<string, unknown>
  readonly configs: ReadonlyMap<number, Record<string, unknown>>
  readonly functions: ReadonlyMap<number, RouteFunctions>
  readonly problems: readonly OptionProblem[]
}

/**
 * Sets aside what is not data, from a shallow copy of `options` (`own` in the result, to check and clone). Throws
 * at once for a registry or a resolver that is not one.
 */
export function setAside (options: Record<string, unknown>, json: boolean): SetAside {
  const own = { ...options }
  // A prom-client Registry is an object to keep, not data to check or copy: it is set aside and put back.
  const metrics = own.metrics as Record<string, unknown> | undefined
  let registry: MetricsRegistry | null = null
  if (metrics !== null && typeof metrics === 'object' && metrics.registry !== undefined) {
    registry = checkRegistry(metrics.registry)
    own.metrics = { ...metrics, registry: undefined }
    delete (own.metrics as Record<string, unknown>).registry
  }
  const resolvers = setAsideResolvers(own)
  const configs = new Map<number, Record<string, unknown>>()
  const problems = setAsideRouteConfigs(own, configs)
  const functions = new Map<number, RouteFunctions>()
  problems.push(...setAsideRouteFunctions(own, functions, json))
  return { own, registry, resolvers, configs, functions, problems }
}

/** Puts the resolvers, route configs and route functions back into the checked copy of the options. */
export function putBack (copy: WsProxyOptions, aside: SetAside): void {
  for (const [name, resolver] of aside.resolvers) {
    (copy.upstreams?.[name].resolve as Record<string, unknown>).resolver = resolver
  }
  for (const [i, config] of aside.configs) (copy.routes as RouteOptions[])[i].config = config
  for (const [i, hooks] of aside.functions) Object.assign((copy.routes as RouteOptions[])[i], hooks)
}
