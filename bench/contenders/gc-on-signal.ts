// Preloaded into every Node contender (`--expose-gc --import`): SIGUSR2 runs a full GC, so the idle-tunnel memory
// figure compares live memory, not how much garbage each contender's handshakes happened to leave behind.
const gc = (globalThis as { gc?: () => void }).gc
process.on('SIGUSR2', () => {
  gc?.()
  gc?.()
  process.stdout.write('GC\n')
})
