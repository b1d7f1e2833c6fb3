import { Socket } from 'node:net'

/**
 * Reading a tunnel's sockets in place. By default Node reads a socket into a fresh 64 KiB allocation per read, wraps
 * it in a Buffer and pushes it through the Readable machinery ('data', flowing state, read-more ticks): for a 64-byte
 * WebSocket message most of the cost of a read. A socket built with the `onread` option (net.connect) instead reads
 * into a buffer it is given and calls back with the byte count. The tunnel's sockets were built by Node's HTTP server
 * and by undici, so the option is applied afterwards, the way `net` applies it at construction: the socket's own
 * `onread` fields (found on a probe socket built with the option, matched by value) and its handle's
 * `useUserBuffer`. A socket where any of that is missing (another Node version, TLS, an HTTP/2 stream) is read with
 * 'data' events as before (see `readInPlace`).
 *
 * Every socket reads into one shared buffer, and a chunk is copied out of it (from Node's pool when small) before the
 * tunnel sees it, so nothing keeps the shared memory past the callback. A read of `BIG_READ` or more means bulk: the
 * socket's next read goes into a buffer of its own, handed on as the chunk (no copy), as long as reads stay big. When
 * nothing holds that chunk after the tunnel's handler (the peer's write went to the kernel at once), the socket reads
 * into the same buffer again, whatever the size of the read: a bulk tunnel allocates a read buffer only when its peer's
 * writes queue, and so sets off no V8 collections by external memory (see docs/benchmarks.md, round 7). A socket
 * keeps its own buffer while it reads; one idle since the last sweep is pointed back at the shared buffer
 * (`dropReadBuffer`).
 */

const READ_SIZE = 64 * 1024
const BIG_READ = 16 * 1024
const SHARED = Buffer.allocUnsafe(READ_SIZE)

/**
 * What a tunnel does with a chunk read from `this`; returns what became of it: `HELD` (something still holds it, such
 * as the peer's write queue) or what `released` says once nothing does.
 */
export type OnData<S extends Socket> = (this: S, chunk: Buffer) => ReadOutcome
/** See `OnData`. */
export type ReadOutcome = 0 | 1 | 2
export const HELD = 0
const FREE = 1
const SETTLED = 2

/**
 * What became of `chunk`, which nothing holds any more, `previous` being the chunk read before it from the same side
 * (null when unknown): two small reads in a row mean the side reads small again (`SETTLED`), and its socket goes back
 * to the shared buffer; otherwise it keeps reading into its own (`FREE`).
 */
export function released (chunk: Buffer, previous: Buffer | null): ReadOutcome {
  return chunk.length < BIG_READ && previous !== null && previous.length < BIG_READ ? SETTLED : FREE
}
/** What Node calls after reading `nread` bytes into `buffer`. */
export type OnRead<S extends Socket> = (this: S, nread: number, buffer: Buffer) => void

type Fields = Record<symbol, unknown>

/** The buffer the socket that just read reads into next (set by `chunkOf`, returned to Node by `nextBuffer`). */
let next: Buffer = SHARED

function nextBuffer (): Buffer {
  return next
}

// Node keeps a socket's `onread` option in three symbol-keyed fields: the buffer (`true` when given as a function),
// the function making the next buffer, the callback. A probe socket (never connected) built with two functions of
// ours shows which is which. (`onread` is a documented option of `new net.Socket()`; @types/node lists it for
// `connect` only.)
const probe = new Socket({ onread: { buffer: nextBuffer, callback: chunkOf } } as ConstructorParameters<typeof Socket>[0]) as unknown as Fields
const fields = Object.getOwnPropertySymbols(probe)
const kBuffer = fields.find((s) => s.description === 'kBuffer' && probe[s] === true)
const kBufferGen = fields.find((s) => probe[s] === nextBuffer)
const kBufferCb = fields.find((s) => probe[s] === chunkOf)

interface StreamHandle {
  useUserBuffer?: (buffer: Uint8Array) => void
}

/**
 * Has `socket` read in place from now on, calling `onRead` (made by `inPlaceReader(onData)`), or returns false when
 * this Node or this socket does not allow it. What the socket read before and holds is passed to `onData` first
 * (undici puts back the bytes that followed the 101).
 */
export function readInPlace<S extends Socket> (socket: S, onRead: OnRead<S>, onData: OnData<S>): boolean {
  const handle = (socket as unknown as { _handle?: StreamHandle | null })._handle
  const own = socket as unknown as Fields
  if (kBuffer === undefined || kBufferGen === undefined || kBufferCb === undefined || !(socket instanceof Socket) ||
    (socket as { encrypted?: boolean }).encrypted === true || typeof handle?.useUserBuffer !== 'function' || own[kBuffer] !== null) return false
  own[kBuffer] = SHARED
  own[kBufferGen] = nextBuffer
  own[kBufferCb] = onRead
  handle.useUserBuffer(SHARED)
  for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) onData.call(socket, chunk)
  return true
}

/** The `onRead` for `onData` (one per direction, made once). */
export function inPlaceReader<S extends Socket> (onData: OnData<S>): OnRead<S> {
  return function onRead (this: S, nread: number, buffer: Buffer): void {
    if (buffer === SHARED) {
      onData.call(this, chunkOf(buffer, nread))
      return
    }
    // A read into the socket's own buffer: handed on as it is, read into again if the tunnel let go of it.
    const outcome = onData.call(this, nread === READ_SIZE ? buffer : buffer.subarray(0, nread))
    next = outcome === FREE ? buffer : outcome === HELD && nread >= BIG_READ ? Buffer.allocUnsafe(READ_SIZE) : SHARED
  }
}

/** A copy of the `nread` bytes Node read into the shared buffer, the tunnel's to keep; chooses the buffer of the next read. */
export function chunkOf (buffer: Buffer, nread: number): Buffer {
  next = nread >= BIG_READ ? Buffer.allocUnsafe(READ_SIZE) : SHARED
  const chunk = Buffer.allocUnsafe(nread)
  chunk.set(nread === READ_SIZE ? buffer : buffer.subarray(0, nread))
  return chunk
}

/** How many times per tunnel the sweep calls `dropReadBuffer` successfully at most. */
export const MAX_DROPS = 8

/**
 * Points a socket read in place that holds a read buffer of its own (its last read was big) back at the shared one,
 * so that an idle tunnel keeps no 64 KiB buffer. Returns whether it did. Each time leaves a few dozen bytes with
 * Node until the socket closes (`useUserBuffer` stacks a reader on the handle), hence `MAX_DROPS`.
 */
export function dropReadBuffer (socket: Socket): boolean {
  const own = socket as unknown as Fields
  const handle = (socket as unknown as { _handle?: StreamHandle | null })._handle
  const buffer = own[kBuffer as symbol]
  if (buffer === SHARED || !Buffer.isBuffer(buffer) || typeof handle?.useUserBuffer !== 'function') return false
  handle.useUserBuffer(SHARED)
  own[kBuffer as symbol] = SHARED
  return true
}
