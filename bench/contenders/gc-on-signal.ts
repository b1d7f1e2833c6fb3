// Preloaded into every Node contender (`--expose-gc --import`).
// - SIGUSR2 runs a full GC, so the idle-tunnel memory figure compares live memory, not how much garbage each
//   contender's handshakes happened to leave behind. It answers "GC <KiB of young generation>".
// - With BENCH_GC_DIR set, the process keeps `<dir>/<pid>` up to date with its garbage collections so far:
//   "<mark-compacts> <scavenges> <ms in GC pauses>". bench/run.ts reads it when the measured window opens and closes:
//   a Node process runs on scavenges or falls into a mark-compact storm, often for the rest of its life, and its CPU
//   per unit of work in the two states differs up to 2×, so every figure says which state it was measured in.
import { openSync, writeSync } from 'node:fs'
import { constants, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks'
import { getHeapSpaceStatistics } from 'node:v8'

const gc = (globalThis as { gc?: () => void }).gc
process.on('SIGUSR2', () => {
  gc?.()
  gc?.()
  const young = getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')
  process.stdout.write(`GC ${Math.round((young?.space_size ?? 0) / 1024)}\n`)
})

const dir = process.env.BENCH_GC_DIR
if (dir !== undefined && dir !== '') {
  // One descriptor for the process's life, rewritten in place with fixed-width text: one pwrite per update.
  const fd = openSync(`${dir}/${process.pid}`, 'w')
  let majors = 0
  let minors = 0
  let ms = 0
  let flush: NodeJS.Timeout | null = null
  const write = (): void => {
    flush = null
    writeSync(fd, `${majors} ${minors} ${ms.toFixed(3)}`.padEnd(48), 0)
  }
  // At most one write per 50 ms: a process in a storm collects hundreds of times a second, and the file's cost must
  // not depend on the state it reports. The reader's windows are seconds long.
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries() as Array<PerformanceEntry & { detail?: { kind?: number } }>) {
      const kind = entry.detail?.kind
      if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors++
      else if (kind === constants.NODE_PERFORMANCE_GC_MINOR) minors++
      ms += entry.duration
    }
    flush ??= setTimeout(write, 50).unref()
  }).observe({ entryTypes: ['gc'] })
  write()
}
