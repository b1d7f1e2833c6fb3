// What the two "floor" contenders share (floor.ts: a bare `http` server; floor-fastify.ts: Fastify in front): the
// least a Node proxy does, written for speed and not for safety. No checks, no X-Forwarded-*, no timeouts, no
// metrics; hop-by-hop filtering only where undici or Node needs it. The upstream is 127.0.0.1:<argv[2]>.
// - HTTP: `relay(req, res)` dispatches to an undici Pool (the plugin's settings: 128 connections, pipelining 1,
//   keep-alive 4 s) with one handler object per request (a class, no closures); the request body is `req` itself,
//   given to undici as the body stream; the upstream's status and headers go out with one `res.writeHead`, the body
//   with `res.write`, undici paused only once the client lags by 128 KiB (as the plugin does).
// - Upgrades: `tunnel(req, socket, head)` dials the upstream (`net.connect`, no-delay), writes the request head
//   rebuilt from `req.rawHeaders` and the `head` bytes, then relays both ways: the 101 goes through unparsed. Both
//   sockets are read in place with the plugin's own `readInPlace` (src/upgrade/tunnel-reads.ts, loaded from the
//   compiled plugin named by argv[3]), the cheapest read Node allows, and each chunk is written to the peer: no frame
//   tracking, counters or timers. (A `pipe` relay cost the floors 1.1–1.4× the plugin's tunnel per round trip, so it
//   was no floor for tunnels.) Without argv[3] the sockets are piped.
import { createRequire } from 'node:module'
import type { IncomingMessage, ServerResponse } from 'node:http'
import net, { type Socket } from 'node:net'
import { pathToFileURL } from 'node:url'
import type * as Undici from 'undici'
import type * as TunnelReads from '../../src/upgrade/tunnel-reads.js'

// Pool alone, as the plugin loads it (src/upstream/undici.ts): undici's index would add ~3 MB of heap to mark.
const UndiciPool = createRequire(import.meta.url)('undici/lib/dispatcher/pool.js') as typeof Undici.Pool

const port = Number(process.argv[2])
const plugin = process.argv[3]
const reads = plugin === undefined ? null : await import(new URL('upgrade/tunnel-reads.js', pathToFileURL(plugin)).href) as typeof TunnelReads
const pool = new UndiciPool(`http://127.0.0.1:${port}`, { connections: 128, pipelining: 1, keepAliveTimeout: 4_000 })

/** How far a response may run ahead of the client before undici is paused (the plugin's RELAY_BUFFER). */
const RELAY_BUFFER = 128 * 1024
const kRelay = Symbol('floor relay')
const kPeer = Symbol('floor peer')

interface RelayResponse extends ServerResponse { [kRelay]?: Relay }
interface PeerSocket extends Socket { [kPeer]?: Socket }

/** One proxied request: undici's handler, writing the answer to `res`. */
class Relay implements Undici.Dispatcher.DispatchHandler {
  readonly res: RelayResponse
  abort: ((err?: Error) => void) | null = null
  resume: (() => void) | null = null
  headSent = false

  constructor (res: ServerResponse) {
    this.res = res
  }

  onConnect (abort: (err?: Error) => void): void {
    this.abort = abort
  }

  onHeaders (statusCode: number, raw: Buffer[], resume: () => void, statusText: string): boolean {
    if (statusCode < 200) return true
    const headers: string[] = []
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i].toString('latin1')
      // Node writes its own Connection (and closes when the client asked it to).
      if (name.length === 10 && isConnectionField(name)) continue
      headers.push(name, raw[i + 1].toString('latin1'))
    }
    this.res.writeHead(statusCode, statusText, headers)
    this.headSent = true
    this.resume = resume
    return true
  }

  onData (chunk: Buffer): boolean {
    const res = this.res
    if (res.write(chunk) || res.writableLength < RELAY_BUFFER) return true
    // The client lags: undici waits for 'drain'; a client that leaves meanwhile aborts the upstream request.
    res.once('drain', this.resume as () => void)
    if (res[kRelay] === undefined) {
      res[kRelay] = this
      res.once('close', resClosed)
    }
    return false
  }

  onComplete (): void {
    this.res.end()
  }

  onError (): void {
    const res = this.res
    if (this.headSent) {
      res.destroy()
      return
    }
    res.writeHead(502, { 'content-length': 0 })
    res.end()
  }
}

function resClosed (this: RelayResponse): void {
  if (!this.writableFinished) this[kRelay]?.abort?.()
}

function isConnectionField (name: string): boolean {
  const lower = name.toLowerCase()
  return lower === 'connection' || lower === 'keep-alive'
}

/** Proxies one plain request: the client's header fields minus the ones undici refuses or reads as connection control. */
export function relay (req: IncomingMessage, res: ServerResponse): void {
  const raw = req.rawHeaders
  const headers: string[] = []
  let body = false
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]
    switch (name.length) {
      case 6: // expect (Node answers 100-continue itself)
      case 7: // upgrade
        if (name.toLowerCase() === 'expect' || name.toLowerCase() === 'upgrade') continue
        break
      case 10: // connection, keep-alive
        if (isConnectionField(name)) continue
        break
      case 14: // content-length
        if (name.toLowerCase() === 'content-length') body = true
        break
      case 17: // transfer-encoding: undici chunks a body of unknown length itself
        if (name.toLowerCase() === 'transfer-encoding') {
          body = true
          continue
        }
        break
    }
    headers.push(name, raw[i + 1])
  }
  pool.dispatch({ path: req.url as string, method: req.method as Undici.Dispatcher.HttpMethod, headers, body: body ? req : null }, new Relay(res))
}

/** Relays one upgrade: a connection of its own to the upstream, the head rebuilt, then `pipe` both ways. */
export function tunnel (req: IncomingMessage, socket: Socket, head: Buffer): void {
  const upstream: PeerSocket = net.connect({ port, host: '127.0.0.1', noDelay: true })
  const client = socket as PeerSocket
  const raw = req.rawHeaders
  let text = `${req.method as string} ${req.url as string} HTTP/1.1\r\n`
  for (let i = 0; i < raw.length; i += 2) text += `${raw[i]}: ${raw[i + 1]}\r\n`
  // Written at once: the socket queues it until connected.
  upstream.write(`${text}\r\n`, 'latin1')
  if (head.length > 0) upstream.write(head)
  upstream[kPeer] = client
  client[kPeer] = upstream
  upstream.on('error', destroyPeer)
  client.on('error', destroyPeer)
  if (inPlace === null) {
    client.pipe(upstream)
    upstream.pipe(client)
    return
  }
  client.setNoDelay(true)
  for (const side of [client, upstream]) {
    side.on('drain', resumePeer)
    side.on('end', endPeer)
    if (!inPlace.readInPlace(side, inPlace.onRead, relayChunk)) side.on('data', relayChunk)
  }
}

/** A chunk read from `this`, written to its peer; true when nothing holds it any more (tunnel-reads.ts' contract). */
function relayChunk (this: PeerSocket, chunk: Buffer): boolean {
  const to = this[kPeer] as Socket
  if (!to.write(chunk)) this.pause()
  return to.writableLength === 0
}

const inPlace = reads === null ? null : { readInPlace: reads.readInPlace, onRead: reads.inPlaceReader(relayChunk) }

function resumePeer (this: PeerSocket): void {
  this[kPeer]?.resume()
}

function endPeer (this: PeerSocket): void {
  this[kPeer]?.end()
}

function destroyPeer (this: PeerSocket): void {
  this.destroy()
  this[kPeer]?.destroy()
}
