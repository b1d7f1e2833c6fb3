import t from 'tap'
import { execFileSync } from 'node:child_process'
import { resolve } from 'node:path'
import Fastify from 'fastify'
import wsProxyPlugin from '../src/index.js'
import { mallocTuned, onGlibc, reportHeader, tuneMalloc } from '../src/allocator.js'
import { CLI_BUILD } from './setup/paths.js'

const glibc = onGlibc(reportHeader())

t.test('glibc is told by the runtime version in the report header', async (t) => {
  t.equal(onGlibc({ glibcVersionRuntime: '2.36' }), true)
  t.equal(onGlibc({}), false, 'musl, macOS, Windows: no glibc version')
  t.equal(onGlibc(undefined), false)
})

t.test('tuneMalloc: false leaves the allocator alone; the first registration otherwise tunes it, once per process', async (t) => {
  const off = Fastify()
  t.teardown(() => off.close())
  await off.register(wsProxyPlugin, { upstream: 'http://127.0.0.1:9', tuneMalloc: false })
  await off.ready()
  t.equal(mallocTuned(), false, 'not asked for by a registration with tuneMalloc: false')
  const on = Fastify()
  t.teardown(() => on.close())
  await on.register(wsProxyPlugin, { upstream: 'http://127.0.0.1:9' })
  await on.ready()
  t.equal(mallocTuned(), true, 'asked for by a registration with the default')
  t.equal(tuneMalloc(), false, 'done once per process: a later call does nothing')
})

// What the tuning changes, seen from outside: glibc serves a 1 MiB block from a mapping of its own until it has
// freed a mapped block of 16 MiB, and from its heap afterwards (the trim threshold moves with the mmap threshold).
// In a process of its own, the compiled build (test/setup/before-run.ts), so that each starts untuned. The probe
// reports how much its heap and its other read-write private mappings grew for eight 1 MiB blocks: the blocks either
// get mappings of their own, or come from the heap (grown, or from free space it already had).
const probe = (tune: boolean): { heap: number, mapped: number } => {
  const script = `
    import { readFileSync } from 'node:fs'
    import { setTimeout as sleep } from 'node:timers/promises'
    import { tuneMalloc } from ${JSON.stringify(resolve(CLI_BUILD, 'allocator.js'))}
    const sizes = () => {
      let heap = 0
      let mapped = 0
      for (const line of readFileSync('/proc/self/maps', 'utf8').split('\\n')) {
        const [range, perms, , , inode] = line.split(/ +/)
        if (range === undefined || range === '' || perms !== 'rw-p' || inode !== '0') continue
        const [from, to] = range.split('-').map((hex) => parseInt(hex, 16))
        if (line.endsWith('[heap]')) heap += to - from
        else if (!line.endsWith(']')) mapped += to - from
      }
      return { heap, mapped }
    }
    // Untuned: the same call as on a C library other than glibc, which does nothing.
    if (tuneMalloc(${tune ? '' : '{}'}) !== ${String(tune)}) throw new Error('tuneMalloc did not answer ${String(tune)}')
    // V8 may free a dead ArrayBuffer's memory on a helper thread after the collection: give it time, then collect again.
    globalThis.gc()
    await sleep(50)
    globalThis.gc()
    const before = sizes()
    const kept = Array.from({ length: 8 }, (_, i) => Buffer.allocUnsafeSlow(1024 * 1024 + i * 4096))
    const after = sizes()
    process.stdout.write(JSON.stringify({ heap: (after.heap - before.heap) / 1024 / 1024, mapped: (after.mapped - before.mapped) / 1024 / 1024, kept: kept.length }))`
  const out = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 })
  return JSON.parse(out) as { heap: number, mapped: number }
}

t.test('tuned, 1 MiB blocks come from the heap instead of mappings of their own', { skip: glibc ? false : 'glibc only' }, async (t) => {
  const untuned = probe(false)
  const tuned = probe(true)
  // Other mappings (V8's pages, a thread's malloc arena) may grow or shrink by a few hundred KiB meanwhile: the
  // bounds leave 2 MiB of slack either way around the 8 MiB that separate the two cases.
  t.ok(untuned.mapped >= 6, `untuned, mappings grew ${untuned.mapped.toFixed(2)} MiB for 8 MiB of blocks`)
  t.ok(untuned.heap < 1, `untuned, the heap grew ${untuned.heap.toFixed(2)} MiB`)
  t.ok(tuned.mapped < 2, `tuned, mappings grew ${tuned.mapped.toFixed(2)} MiB for 8 MiB of blocks (the heap ${tuned.heap.toFixed(2)} MiB)`)
})
