import type { FastifyPluginCallback } from 'fastify'
import fp from 'fastify-plugin'
import { resolveOptions, type ResolvedOptions } from './options/resolve.js'
import type { WsProxyOptions } from './options/schema.js'
import { registerRoutes } from './routes.js'
import { UpstreamPools } from './upstream/pools.js'
import { releaseUpgradeRouter, upgradeRouterFor } from './upgrade/listener.js'
import { TunnelSet } from './upgrade/tunnels.js'

export type {
  WsProxyOptions, RouteOptions, TimeoutOptions, PoolOptions, ProxiedMethod,
  RequestHeaderOptions, ResponseHeaderOptions, RewriteRuleOptions, MapOptions
} from './options/schema.js'
export {
  PluginOptionsSchema, RouteSchema, PoolSchema, RequestHeadersSchema, ResponseHeadersSchema, MapSchema, DEFAULTS
} from './options/schema.js'
export { resolveOptions, type ResolvedOptions, type ResolvedRoute } from './options/resolve.js'
export * from './errors.js'
export type { TunnelCloseReason } from './upgrade/tunnel.js'

/** Live state of the proxies registered in a Fastify context and its children, for introspection and tests. */
export interface WsProxyState {
  /** Tunnels currently open. */
  readonly tunnels: number
  /** Connections currently open to upstreams in the keep-alive pools (tunnels not included). */
  readonly upstreamConnections: number
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Totals over every fastify-ws-proxy registration in this context and its children. */
    wsProxy: WsProxyState
  }
}

/** The registrations one `wsProxy` decoration sums over. */
class ProxyStateTotals implements WsProxyState {
  readonly registrations: Array<{ tunnels: TunnelSet, pools: UpstreamPools }> = []

  get tunnels (): number {
    let n = 0
    for (const r of this.registrations) n += r.tunnels.size
    return n
  }

  get upstreamConnections (): number {
    let n = 0
    for (const r of this.registrations) n += r.pools.connected
    return n
  }
}

function passThroughParser (_req: unknown, _payload: unknown, done: (err: null) => void): void {
  // Proxied bodies are never parsed: the handler streams `request.raw` to the upstream as it arrives.
  done(null)
}

const plugin: FastifyPluginCallback<WsProxyOptions> = (fastify, options, done) => {
  let resolved: ResolvedOptions
  try {
    resolved = resolveOptions(options)
  } catch (err) {
    // A throw from a callback plugin would escape avvio and crash the process instead of failing `ready()`.
    done(err as Error)
    return
  }
  const pools = new UpstreamPools(resolved)
  const tunnels = new TunnelSet(Math.min(...resolved.routes.map((r) => r.readTimeout)))

  if (!fastify.hasDecorator('wsProxy')) fastify.decorate('wsProxy', new ProxyStateTotals())
  ;(fastify.wsProxy as ProxyStateTotals).registrations.push({ tunnels, pools })

  // The routes live in their own context: its catch-all body parser must not reach the user's routes,
  // and Fastify's register `prefix` (ignored for a fastify-plugin) is applied to that context instead.
  fastify.register((proxied, _opts, registered) => {
    proxied.removeAllContentTypeParsers()
    proxied.addContentTypeParser('*', passThroughParser)
    const claims = registerRoutes(proxied, resolved.routes, pools, tunnels)
    if (claims.length > 0) upgradeRouterFor(proxied.server, proxied).claim(claims)
    registered()
  }, { prefix: (options.prefix ?? '').replace(/\/+$/, '') })

  // preClose runs before the server stops: live tunnels would otherwise keep server.close() waiting forever.
  fastify.addHook('preClose', (next) => {
    releaseUpgradeRouter(fastify.server)
    tunnels.destroyAll()
    next()
  })
  fastify.addHook('onClose', (_instance, next) => {
    pools.close().then(() => next(), next)
  })
  done()
}

/**
 * The fastify-ws-proxy plugin: proxies its routes to HTTP/1.1 upstreams over pooled undici connections and
 * tunnels upgraded connections (WebSocket and any other protocol) byte for byte after the upstream's 101.
 * Register it as often as needed, under different prefixes or contexts, for different upstreams.
 */
const wsProxyPlugin = fp(plugin, { fastify: '5.x', name: 'fastify-ws-proxy' })

export default wsProxyPlugin
export { wsProxyPlugin }
