/**
 * glibc's malloc gives the top of its heap back to the kernel whenever more than its trim threshold (128 KiB at
 * start) is free there, and the next allocations fault fresh, zeroed pages in. A proxy streaming bodies allocates
 * a Buffer per socket read (Node's HTTP parser copies each body chunk, each read of an upstream socket is a new
 * Buffer) and V8 frees them by megabytes at each collection: without this, a 1 MiB upload echoed through the proxy
 * took 14–200 minor faults and up to twice the kernel time of one with it (docs/benchmarks.md, "Uploads").
 *
 * glibc raises its thresholds by itself the first time the process frees a block it had mapped (mallopt(3),
 * M_MMAP_THRESHOLD's dynamic adjustment): blocks up to that size then come from the heap, and the trim threshold
 * becomes twice it. Most long-running processes get there sooner or later; `tuneMalloc` has it happen at the first
 * registration, with one 16 MiB Buffer that is never touched and is freed at the next collection (or just after it:
 * V8 may free ArrayBuffer memory on a helper thread): the heap then keeps up to 32 MiB of freed memory for reuse.
 * Off with the plugin's `tuneMalloc: false`; elsewhere than glibc, nothing is done.
 */

const BLOCK = 16 * 1024 * 1024

let tuned = false

/** The header of `process.report.getReport()`, as far as it is read here. */
export interface ReportHeader {
  glibcVersionRuntime?: string
}

/** Whether the process runs on glibc, from the header of a diagnostic report. */
export function onGlibc (header: ReportHeader | undefined): boolean {
  return typeof header?.glibcVersionRuntime === 'string'
}

/** This process's report header (a diagnostic report is built for it: call once). */
export function reportHeader (): ReportHeader | undefined {
  return (process.report.getReport() as { header?: ReportHeader }).header
}

/** Whether a registration has asked for the tuning in this process (done if on glibc). */
export function mallocTuned (): boolean {
  return tuned
}

/**
 * Raises glibc's mmap and trim thresholds, once per process; returns whether this call did. `header` stands for the
 * process's own report header (another C library's, in the tests).
 */
export function tuneMalloc (header?: ReportHeader): boolean {
  if (tuned) return false
  tuned = true
  if (!onGlibc(header ?? reportHeader())) return false
  Buffer.allocUnsafeSlow(BLOCK)
  return true
}
