import type { FastifyBaseLogger } from 'fastify'
import type { ResolvedHealthCheck } from '../options/resolve-groups.js'
import { DEFAULTS } from '../options/schema.js'
import type { GroupTask, UpstreamGroup } from './group.js'
import type { PoolSpec, UpstreamServer } from './server.js'
import { request } from './undici.js'

/**
 * Active health checks (nginx Plus `health_check`, which nginx OSS lacks): every `interval` each server of the
 * group gets a GET of `path` over a pool of its own; `fails` bad answers in a row take it out, `passes` good ones
 * bring it back. A probe times out after `timeout`. Stopped (in-flight probes aborted) when the app closes.
 */
export class HealthChecks implements GroupTask {
  readonly #group: UpstreamGroup
  readonly #check: ResolvedHealthCheck
  readonly #log: FastifyBaseLogger
  readonly #spec: PoolSpec
  readonly #abort = new AbortController()
  readonly #timer: NodeJS.Timeout

  constructor (group: UpstreamGroup, check: ResolvedHealthCheck, log: FastifyBaseLogger) {
    this.#group = group
    this.#check = check
    this.#log = log
    this.#spec = { poolKey: 'health-check', connectTimeout: check.timeout, responseHeadLimit: DEFAULTS.responseHead }
    this.#timer = setInterval(runChecks, check.interval, this)
    this.#timer.unref()
    this.run()
  }

  run (): void {
    for (const server of this.#group.members) {
      if (!server.probing && !server.down) this.probe(server)
    }
  }

  probe (server: UpstreamServer): void {
    const check = this.#check
    server.probing = true
    request.call(server.pool(this.#spec), {
      method: 'GET',
      path: check.path,
      headers: check.headers,
      headersTimeout: check.timeout,
      bodyTimeout: check.timeout,
      signal: this.#abort.signal,
      ...(server.sni === null ? {} : { servername: server.sni })
    }).then(async (res) => {
      await res.body.dump()
      const [low, high] = check.status
      this.result(server, res.statusCode >= low && res.statusCode <= high, `status ${res.statusCode}`)
    }, (err: Error) => {
      // undici's errors (timeouts, refusals, aborts) all carry a code.
      this.result(server, false, String((err as Error & { code?: string }).code))
    })
  }

  result (server: UpstreamServer, ok: boolean, detail: string): void {
    server.probing = false
    if (this.#abort.signal.aborted) return
    const check = this.#check
    if (ok) {
      server.probes = server.probes > 0 ? server.probes + 1 : 1
      if (!server.healthy && server.probes >= check.passes) {
        server.healthy = true
        this.#log.info({ group: this.#group.name, upstream: server.addr }, 'upstream server passed its health checks')
      }
      return
    }
    server.probes = server.probes < 0 ? server.probes - 1 : -1
    if (server.healthy && -server.probes >= check.fails) {
      server.healthy = false
      this.#log.warn({ group: this.#group.name, upstream: server.addr, detail }, 'upstream server failed its health checks')
    }
  }

  stop (): void {
    clearInterval(this.#timer)
    this.#abort.abort()
  }
}

function runChecks (checks: HealthChecks): void {
  checks.run()
}
