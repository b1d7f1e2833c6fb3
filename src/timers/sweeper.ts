/** Something whose timers the sweep enforces. */
export interface Swept {
  readonly size: number
  sweep (now: number): void
}

/**
 * One coarse interval per plugin registration enforces the timers of all its tunnels and uploads: a chunk only
 * sets a flag or moves a counter, and nothing is re-armed per chunk or per connection. The tick is a tenth of
 * the shortest timer configured (5 ms .. 1 s), so a timer fires at most one tick late and never early.
 * The interval runs only while something is watched, and never keeps the process alive.
 */
export class Sweeper {
  readonly tick: number
  readonly #targets: Swept[] = []
  #timer: NodeJS.Timeout | null = null

  constructor (shortestTimer: number) {
    this.tick = Math.min(1000, Math.max(5, Math.floor(shortestTimer / 10)))
  }

  watch (target: Swept): void {
    this.#targets.push(target)
  }

  /** Something was added to a target: make sure the interval runs. */
  wake (): void {
    if (this.#timer !== null) return
    this.#timer = setInterval(runSweep, this.tick, this)
    this.#timer.unref()
  }

  run (now: number): void {
    let watched = 0
    for (const target of this.#targets) {
      if (target.size === 0) continue
      target.sweep(now)
      watched += target.size
    }
    if (watched === 0) this.stop()
  }

  stop (): void {
    if (this.#timer === null) return
    clearInterval(this.#timer)
    this.#timer = null
  }
}

function runSweep (sweeper: Sweeper): void {
  sweeper.run(Date.now())
}
