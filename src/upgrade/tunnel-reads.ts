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
 * socket's next read goes into a buffer of its own, handed on as the chunk without a copy. While nothing holds that
 * chunk after the tunnel's handler (the peer's write went to the kernel at once), the socket reads into the same
 * buffer again: a bulk tunnel allocates a read buffer only when its peer's writes queue, and so sets off no V8
 * collections by external memory (docs/benchmarks.md, round 7). After a small read the socket goes back to the
 * shared buffer and keeps its own as a spare, which the next big read is copied into (no allocation); the sweep lets
 * go of the spare of a socket idle since the last sweep, and points one idle since a big read back at the shared
 * buffer (`dropReadBuffer`). */

const READ_SIZE = 64 * 1024
const BIG_READ = 16 * 1024
const SHARED = Buffer.allocUnsafe(READ_SIZE)

/** What a tunnel does with a chunk read from `this`; returns whether it let go of it (nothing holds the chunk any more). */
export type OnData<S extends Socket> = (this: S, chunk: Buffer) => boolean
/** What Node calls after reading `nread` bytes into `buffer`. */
export type OnRead<S extends Socket> = (this: S, nread: number, buffer: Buffer) => void

type Fields = Record<symbol, unknown>

/**
 * A socket's spare read buffer (its own buffer while it reads into the shared one), or null; set the first time a
 * socket goes back to the shared buffer, so that a tunnel that never reads big carries no field of ours for it.
 */
const kSpare = Symbol('fastify-ws-proxy.readSpare')

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
      if (nread < BIG_READ) {
        onData.call(this, chunkOf(buffer, nread))
        next = SHARED
        return
      }
      // Bulk starts (again): the bytes move to the socket's own buffer, its spare if it has one.
      const own = this as unknown as Fields
      const spare = own[kSpare] as Buffer | null | undefined
      buffer = spare ?? Buffer.allocUnsafe(READ_SIZE)
      if (spare !== undefined) own[kSpare] = null
      buffer.set(nread === READ_SIZE ? SHARED : SHARED.subarray(0, nread))
    }
    const free = onData.call(this, nread === READ_SIZE ? buffer : buffer.subarray(0, nread))
    if (!free) {
      next = Buffer.allocUnsafe(READ_SIZE)
    } else if (nread >= BIG_READ) {
      next = buffer
    } else {
      ;(this as unknown as Fields)[kSpare] = buffer
      next = SHARED
    }
  }
}

/** A copy of the `nread` bytes Node read into the shared buffer, the tunnel's to keep. */
export function chunkOf (buffer: Buffer, nread: number): Buffer {
  const chunk = Buffer.allocUnsafe(nread)
  chunk.set(buffer.subarray(0, nread))
  return chunk
}

/** How many times per tunnel the sweep calls `dropReadBuffer` successfully at most. */
export const MAX_DROPS = 8

/**
 * The sweep's call for a socket read in place that read nothing since the last sweep: it lets go of the socket's spare
 * read buffer, and with `redirect`, points a socket that reads into a buffer of its own (its last read was big) back
 * at the shared one, so that an idle tunnel keeps no 64 KiB buffer. Returns whether it redirected. Each redirect
 * leaves a few dozen bytes with Node until the socket closes (`useUserBuffer` stacks a reader on the handle), hence
 * `MAX_DROPS`.
 */
export function dropReadBuffer (socket: Socket, redirect: boolean): boolean {
  const own = socket as unknown as Fields
  const buffer = own[kBuffer as symbol]
  // Not read in place: Node's field is null.
  if (!Buffer.isBuffer(buffer)) return false
  if (own[kSpare] !== undefined) own[kSpare] = null
  const handle = (socket as unknown as { _handle?: StreamHandle | null })._handle
  if (!redirect || buffer === SHARED || typeof handle?.useUserBuffer !== 'function') return false
  handle.useUserBuffer(SHARED)
  own[kBuffer as symbol] = SHARED
  return true
}
