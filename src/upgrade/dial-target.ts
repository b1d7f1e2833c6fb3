import { connect, isIP, type NetConnectOpts, type Socket } from 'node:net'
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls'
import type { UpstreamServer } from '../upstream/server.js'

// Where an upgrade dial (dial.ts) connects to: a server's socket options, plain or TLS, and its TLS session.

/** Where a server is dialled, worked out once per server. */
export interface DialTarget {
  /** net.connect's or tls.connect's options (as undici's connector passes them, the read buffer too), shared by every dial. */
  readonly options: object
  /** https: the socket is made by tls.connect, and connected once its TLS handshake is done. */
  readonly tls: boolean
  /** undici's Host line when the request names none. */
  readonly hostLine: string
  /** https: the server's last TLS session, resumed by the next dial (undici's connector keeps sessions too). */
  session: Buffer | undefined
}

const targets = new WeakMap<UpstreamServer, DialTarget>()

export function targetOf (server: UpstreamServer): DialTarget {
  let target = targets.get(server)
  if (target === undefined) {
    // `addr` is `host:port` (an IPv6 address in brackets, the port always there) or `unix:/path`.
    const addr = server.addr
    const colon = addr.lastIndexOf(':')
    const url = new URL(server.origin)
    const where = server.socketPath !== null
      ? { path: server.socketPath }
      : { host: addr.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(addr.slice(colon + 1)) }
    const sni = server.sni
    let options: object
    if (sni === null) {
      // As undici's connector sets them (the socket becomes a long-lived tunnel), applied once connected: set by calls
      // before then, Node would make the same five setsockopt calls again when the connection completes.
      options = { ...where, highWaterMark: 64 * 1024, noDelay: true, keepAlive: true, keepAliveInitialDelay: 60e3 }
    } else {
      // As the pool's connector (upstream/pools.ts) and undici's: the group's TLS settings, the server's name as SNI
      // (none for an IP address: the certificate is then checked against the address), HTTP/1.1 by ALPN.
      const tls = server.tls
      options = {
        host: url.hostname.replace(/^\[|\]$/g, ''),
        ...where,
        highWaterMark: 16384,
        ca: tls?.ca,
        cert: tls?.cert,
        key: tls?.key,
        rejectUnauthorized: tls?.rejectUnauthorized ?? true,
        servername: isIP(sni) === 0 ? sni : undefined,
        ALPNProtocols: ['http/1.1']
      }
    }
    target = { options, tls: sni !== null, hostLine: `host: ${url.host}\r\n`, session: undefined }
    targets.set(server, target)
  }
  return target
}

const kTarget = Symbol('dialTarget')
interface TargetSocket extends TLSSocket {
  [kTarget]: DialTarget
}

/** A new connection to a server; it is ready for the request at `readyEvent(target)`. */
export function openSocket (target: DialTarget): Socket {
  if (!target.tls) return connect(target.options as NetConnectOpts)
  const socket = tlsConnect({ ...target.options, session: target.session } as ConnectionOptions) as TargetSocket
  socket[kTarget] = target
  // tls.connect takes no socket options: a TLS socket gets undici's once its handshake is done.
  socket.once('secureConnect', onSecureConnect)
  // Kept for the socket's life: a TLS 1.3 server sends its session tickets after the handshake, maybe after the 101.
  socket.on('session', onSession)
  return socket
}

/** When a socket from `openSocket` can take the request: connected, and over TLS its handshake done. */
export function readyEvent (target: DialTarget): 'connect' | 'secureConnect' {
  return target.tls ? 'secureConnect' : 'connect'
}

function onSecureConnect (this: TargetSocket): void {
  this.setKeepAlive(true, 60e3)
  this.setNoDelay(true)
}

function onSession (this: TargetSocket, session: Buffer): void {
  this[kTarget].session = session
}
