import type { FastifyInstance } from 'fastify'

/** What readiness reads of an upstream group: its name and its servers' states. */
export interface ReadinessGroup {
  readonly name: string
  readonly members: ReadonlyArray<{ readonly state: string }>
}

/** What readiness looks at: whether a drain has begun, and every group of every registration. */
export interface ReadinessSource {
  readonly draining: boolean
  allGroups (): Iterable<ReadinessGroup>
}

/** The readiness answer: 200 when ready; 503 while draining or while a group has no server up. */
export interface Readiness {
  status: 'ready' | 'draining' | 'no-live-upstream'
  groups?: string[]
}

export function readiness (source: ReadinessSource): Readiness {
  if (source.draining) return { status: 'draining' }
  let down: string[] | null = null
  for (const group of source.allGroups()) {
    // Only 'up' counts, as requests see it: a 'failed' server is out until its failTimeout ends.
    if (!group.members.some((server) => server.state === 'up')) (down ??= []).push(group.name)
  }
  return down === null ? { status: 'ready' } : { status: 'no-live-upstream', groups: down }
}

/**
 * Liveness and readiness routes for balancers and orchestrators (Kubernetes probes). Both answer JSON and are
 * never cached; readiness turns 503 as soon as `app.close()` begins, so a balancer stops sending new work
 * while what is in flight drains.
 */
export function registerHealthRoutes (fastify: FastifyInstance, paths: { live: string | null, ready: string | null },
  source: ReadinessSource): void {
  if (paths.live !== null) {
    fastify.get(paths.live, { logLevel: 'warn' }, async (_request, reply) => {
      reply.header('cache-control', 'no-store')
      return { status: 'live' }
    })
  }
  if (paths.ready !== null) {
    fastify.get(paths.ready, { logLevel: 'warn' }, async (_request, reply) => {
      const answer = readiness(source)
      reply.header('cache-control', 'no-store')
      reply.code(answer.status === 'ready' ? 200 : 503)
      return answer
    })
  }
}
