import cluster, { type Worker } from 'node:cluster'
import { gracePeriod, type CheckedGatewayConfig } from './config.js'
import type { PrimaryLog } from './primary-log.js'
import type { FromWorker, ToWorker } from './worker.js'
import type { DrainReason } from '../upgrade/tunnel-registry.js'

/** Restart backoff after a worker dies: 100 ms, doubled per death in a row, at most 10 s. */
const BACKOFF_FIRST = 100
const BACKOFF_MAX = 10_000
/** A worker that served this long before it died starts its slot's backoff over. */
const STABLE_AFTER = 10_000
/** How long a new worker may take to listen. */
const START_TIMEOUT = 30_000
/** A draining worker still alive this long after its grace period is killed. */
const KILL_MARGIN = 5_000

/** One worker process as the primary tracks it. */
interface Member {
  readonly worker: Worker
  readonly slot: number
  readonly generation: number
  readonly grace: number
  /** When it said it listens (0 until then). */
  readyAt: number
  /** Sent its config (a message sent before the worker says it waits would be lost). */
  told: boolean
  /** Told to drain, or to be told at once: its exit is expected. */
  retiring: boolean
  /** Why it drains: its tunnels are closed with this reason. */
  drainReason: DrainReason
  killTimer: NodeJS.Timeout | null
}

export interface SupervisorOptions {
  /** Worker processes per generation. */
  workers: number
  /** Reads and validates the config again (SIGHUP); throws with the reason. */
  load: () => Promise<CheckedGatewayConfig>
  log: PrimaryLog
  /** A worker that served this long before it died starts its slot's backoff over (ms; default 10 s). */
  stableAfter?: number
  /** The wait before a dead worker's first restart (ms; default 100), doubled per death in a row up to 10 s. */
  firstBackoff?: number
}

/**
 * The cluster primary, as nginx's master process: it runs `workers` processes with one config (a generation),
 * restarts a worker that dies (with backoff, logging why), reloads without dropping a request (a new generation
 * starts and listens before the old one is told to drain), and drains everything on stop. It never listens
 * itself: Node's cluster shares the listening socket and hands connections only to workers still accepting.
 */
export class Supervisor {
  readonly #options: SupervisorOptions
  readonly #log: PrimaryLog
  /** The generation that serves: slot → member. */
  #current: Array<Member | null> = []
  readonly #members = new Set<Member>()
  #generation = 0
  #config: CheckedGatewayConfig | null = null
  readonly #deaths: number[] = []
  readonly #respawns = new Map<number, NodeJS.Timeout>()
  #reloads: Promise<boolean> = Promise.resolve(true)
  #stopping = false
  #allGone: (() => void) | null = null
  /** The port the first worker reported (with `listen.port` 0, every worker shares that one). */
  port = 0

  constructor (options: SupervisorOptions) {
    this.#options = options
    this.#log = options.log
  }

  /** Worker pids of the serving generation. */
  get pids (): number[] {
    return this.#current.flatMap((member) => member === null ? [] : [member.worker.process.pid as number])
  }

  /** Starts the first generation; rejects (with every worker gone) when one of them cannot start. */
  async start (config: CheckedGatewayConfig): Promise<void> {
    const started = this.#startGeneration(config).then((members) => {
      this.#serve(config, members)
      this.#log.info({ generation: this.#generation, workers: this.pids }, 'workers started')
    })
    // A reload asked for meanwhile waits for the first generation.
    this.#reloads = started.then(() => true, () => false)
    await started
  }

  /**
   * nginx `-s reload`: reads the config again; an invalid one is refused and the running workers keep serving.
   * A valid one starts a new generation; once every new worker listens, the old ones drain. Reloads queue up.
   */
  async reload (): Promise<boolean> {
    this.#reloads = this.#reloads.then(async () => await this.#reloadOnce())
    return await this.#reloads
  }

  /** Drains every worker (each within its grace period) and resolves when all have exited. */
  async stop (): Promise<void> {
    this.#stopping = true
    this.#cancelRespawns()
    const gone = new Promise<void>((resolve) => { this.#allGone = resolve })
    for (const member of this.#members) this.#retire(member)
    if (this.#members.size === 0) this.#allGone?.()
    await gone
  }

  async #reloadOnce (): Promise<boolean> {
    if (this.#stopping || this.#config === null) return false
    let config: CheckedGatewayConfig
    try {
      config = await this.#options.load()
    } catch (err) {
      this.#log.error({ error: (err as Error).message }, 'reload refused: invalid config; the running workers keep serving')
      return false
    }
    let members: Member[]
    try {
      members = await this.#startGeneration(config)
    } catch (err) {
      // A stop meanwhile has retired them: nothing to report.
      if (!this.#stopping) this.#log.error({ error: (err as Error).message }, 'reload failed: the new workers did not start; the running workers keep serving')
      return false
    }
    const old = this.#current
    // The new generation fills every slot: a dead old worker is not restarted.
    this.#cancelRespawns()
    this.#serve(config, members)
    for (const member of old) if (member !== null) this.#retire(member, 'reload')
    this.#log.info({ generation: this.#generation, workers: this.pids }, 'reloaded: the new workers serve, the old ones drain')
    return true
  }

  #cancelRespawns (): void {
    for (const timer of this.#respawns.values()) clearTimeout(timer)
    this.#respawns.clear()
  }

  #serve (config: CheckedGatewayConfig, members: Member[]): void {
    this.#config = config
    this.#current = members
    this.#deaths.length = 0
    this.#log.setLevel(config.logLevel)
  }

  /** Forks a full generation and waits until every worker listens; on a failure the others are drained. */
  async #startGeneration (config: CheckedGatewayConfig): Promise<Member[]> {
    const generation = ++this.#generation
    this.#log.info({ generation, workers: this.#options.workers }, 'starting workers')
    const started = Array.from({ length: this.#options.workers }, (_, slot) => this.#fork(config, generation, slot))
    const results = await Promise.allSettled(started.map(async ([, ready]) => { await ready }))
    const failure = results.find((result) => result.status === 'rejected')
    if (failure === undefined && !this.#stopping) return started.map(([member]) => member)
    for (const [member] of started) this.#retire(member)
    // A stop retires starting workers, so it ends here as a failure; unless it came in the very tick the last one listened.
    /* c8 ignore next */
    throw failure === undefined ? new Error('stopped while starting') : failure.reason
  }

  /** Forks one worker with a config; the promise settles when it listens, or fails to. */
  #fork (config: CheckedGatewayConfig, generation: number, slot: number): [Member, Promise<void>] {
    const worker = cluster.fork()
    const member: Member = {
      worker, slot, generation, grace: gracePeriod(config), readyAt: 0, told: false, retiring: false, drainReason: 'shutdown', killTimer: null
    }
    this.#members.add(member)
    const ready = new Promise<void>((resolve, reject) => {
      let reason = 'it exited before listening'
      /* c8 ignore next 3: a worker that neither listens nor exits for 30 s (a start-up that hangs) */
      const timer = setTimeout(() => {
        reject(new Error(`worker ${worker.process.pid as number} did not listen within ${START_TIMEOUT} ms`))
      }, START_TIMEOUT)
      worker.on('message', (message: FromWorker) => {
        if (message.type === 'waiting') {
          member.told = true
          const reply: ToWorker = member.retiring ? { type: 'drain', reason: member.drainReason } : { type: 'start', config, generation }
          worker.send(reply)
        } else if (message.type === 'ready') {
          member.readyAt = Date.now()
          if (this.port === 0) this.port = message.port
          clearTimeout(timer)
          resolve()
        } else {
          reason = message.message
        }
      })
      worker.once('exit', (code, signal) => {
        clearTimeout(timer)
        reject(new Error(reason))
        this.#exited(member, code, signal)
      })
    })
    // A rejection nobody awaits (a restart that fails) is reported by #exited.
    ready.catch(() => {})
    return [member, ready]
  }

  #retire (member: Member, reason: DrainReason = 'shutdown'): void {
    // Already exited (a generation that failed to start is retired after its failures have exited), or told.
    if (member.retiring || !this.#members.has(member)) return
    member.retiring = true
    member.drainReason = reason
    if (member.told && member.worker.isConnected()) member.worker.send({ type: 'drain', reason } satisfies ToWorker)
    member.killTimer = setTimeout(() => {
      this.#log.warn({ worker: member.worker.process.pid, after: member.grace + KILL_MARGIN }, 'worker still alive after its grace period: killed')
      member.worker.process.kill('SIGKILL')
    }, member.grace + KILL_MARGIN)
  }

  #exited (member: Member, code: number | null, signal: string | null): void {
    this.#members.delete(member)
    if (member.killTimer !== null) clearTimeout(member.killTimer)
    const pid = member.worker.process.pid
    if (member.retiring || this.#stopping) {
      this.#log.info({ worker: pid, generation: member.generation, code, signal }, 'worker drained and exited')
    } else if (this.#current[member.slot] === member) {
      this.#current[member.slot] = null
      const stable = member.readyAt !== 0 && Date.now() - member.readyAt >= (this.#options.stableAfter ?? STABLE_AFTER)
      const deaths = this.#deaths[member.slot] = stable ? 1 : (this.#deaths[member.slot] ?? 0) + 1
      const restartIn = Math.min(BACKOFF_MAX, (this.#options.firstBackoff ?? BACKOFF_FIRST) * 2 ** (deaths - 1))
      this.#log.error({ worker: pid, slot: member.slot, code, signal, reason: exitReason(code, signal), restartIn }, 'worker died; restarting it')
      this.#respawns.set(member.slot, setTimeout(() => this.#respawn(member.slot), restartIn))
    }
    if (this.#members.size === 0) this.#allGone?.()
  }

  #respawn (slot: number): void {
    this.#respawns.delete(slot)
    const config = this.#config as CheckedGatewayConfig
    const [member, ready] = this.#fork(config, this.#generation, slot)
    this.#current[slot] = member
    ready.then(() => this.#log.info({ worker: member.worker.process.pid, slot }, 'worker restarted'), () => {})
  }
}

function exitReason (code: number | null, signal: string | null): string {
  return signal !== null ? `killed by ${signal}` : `exit code ${code as number}`
}
