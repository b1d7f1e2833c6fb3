import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { FST_WS_PROXY_BAD_RESPONSE } from '../errors.js'
import { ProxyExchange } from '../http/exchange.js'
import type { ProxyRoute } from '../routing/proxy-route.js'
import { wasOffered } from '../security/upgrade-protocols.js'
import type { VarContext } from '../vars/context.js'
import { acceptMatches, dropAcceptKey, h2TunnelClient, type ConnectRequest } from './h2-connect.js'
import { takeOverClientSocket } from './listener.js'
import { Tunnel } from './tunnel.js'
import type { TunnelSet } from './tunnel-registry.js'
import { dialUpgrade, upgradeHead, type DialRequest } from './dial.js'
import type { UpstreamServer } from '../upstream/server.js'

const EMPTY = Buffer.alloc(0)

/**
 * An upgrade handshake sent upstream: an exchange holding a tunnel slot (taken by admission.ts). A non-101 answer is
 * relayed as any other, and the slot given back when the exchange ends. The upstream's 101 is checked, relayed to the
 * client (a 101, or over HTTP/2 the RFC 8441 200), and the client and upstream sockets handed to a new tunnel, which
 * holds the slot from then on. Kept apart from the tunnel as ws keeps `completeUpgrade` apart from its WebSocket.
 */
export class UpgradeExchange extends ProxyExchange {
  /** The client address holding the tunnel slot, until the 101 hands it to the tunnel or the exchange ends; then null. */
  slotClient: string | null
  /** The registration's live tunnels, which the new tunnel joins. */
  readonly tunnels: TunnelSet

  constructor (route: ProxyRoute, request: FastifyRequest, reply: FastifyReply, vars: VarContext | null, tunnels: TunnelSet) {
    super(route, request, reply, vars)
    this.slotClient = request.ip
    this.tunnels = tunnels
  }

  /**
   * The handshake ended without a tunnel (the upstream refused or failed, or the client left): its slot goes back.
   * An exchange is released once, when it ends, and never after the 101 hand-off (it has ended by then).
   */
  override release (): void {
    super.release()
    this.route.slots.release(this.slotClient as string)
    this.slotClient = null
  }

  /**
   * Sends the handshake to `server` (first attempt or retry) over a connection of its own (upgrade/dial.ts), plain
   * or TLS. A request the dial's head would not carry (a second Host, a field undici manages, a byte it refuses) goes
   * to undici, which refuses it as before: a defence only, since the request's headers were checked before this
   * (a second Host or a bad byte is a 400, the fields undici manages are not forwarded) and no client can send one.
   */
  override send (server: UpstreamServer): void {
    const request = this.dialRequest()
    const head = upgradeHead(request, server)
    /* c8 ignore next: unreachable by a client, see above */
    if (head === null) return super.send(server)
    dialUpgrade(this, server, request, head)
  }

  dialRequest (): DialRequest {
    const options = this.options
    const settings = this.route.settings
    return { method: options.method, path: options.path, upgrade: options.upgrade as string, headers: options.headers as string[], connectTimeout: settings.connectTimeout, readTimeout: settings.readTimeout, headLimit: settings.responseHeadLimit }
  }

  /** The upstream answered 101: checked, then `completeUpgrade`. */
  onUpgrade (statusCode: number, rawHeaders: Buffer[] | string[] | null, upstream: Duplex): void {
    const socket = upstream as Socket
    const raw = rawHeaders as Buffer[]
    /* c8 ignore next 4: neither undici nor a dial (dial.ts) delivers a 101 after an abort; should one come, the socket is not leaked (the slot went back with the end) */
    if (this.finished) {
      socket.destroy()
      return
    }
    // RFC 9110 §7.8: a server must not switch to a protocol the client did not offer. Tunnelling one anyway would
    // pass upgradeProtocols (an h2c tunnel answering `Upgrade: foo`): garbage, as any other invalid answer.
    const protocol = upgradeProtocol(raw)
    if (!wasOffered(this.options.upgrade as string, protocol)) {
      socket.destroy()
      this.onError(new FST_WS_PROXY_BAD_RESPONSE(this.server.label, 'switched to a protocol the client did not offer'))
      return
    }
    // An RFC 8441 WebSocket (the client is an HTTP/2 stream, upgrade/h2-connect.ts): the upstream answered the
    // HTTP/1.1 handshake the proxy made with a key of its own.
    if (this.request.raw.httpVersionMajor === 2 && !acceptMatches(this.request.raw as ConnectRequest, raw)) {
      socket.destroy()
      this.onError(new FST_WS_PROXY_BAD_RESPONSE(this.server.label, 'Sec-WebSocket-Accept does not match the key sent'))
      return
    }
    this.completeUpgrade(statusCode, raw, socket, protocol)
  }

  /** Relays the 101 head (over HTTP/2, a 200 on the stream), then joins client and upstream in a tunnel. */
  completeUpgrade (statusCode: number, raw: Buffer[], socket: Socket, protocol: string): void {
    const req = this.request.raw
    const h2 = req.httpVersionMajor === 2
    const route = this.route
    const server = this.server
    this.endAttempt()
    route.group.attemptSucceeded(server)
    route.stats.head((performance.now() - this.startedAt) / 1000)
    // RFC 9110 §7.8: the 101 names the protocol switched to (the upstream's Upgrade, kept); Connection is ours.
    // Over HTTP/2 Upgrade and Connection are hop-by-hop (dropped), and the accept key is the HTTP/1.1 handshake's.
    const headers = this.responseHeaders(statusCode, raw, !h2)
    if (headers instanceof Error) {
      socket.destroy()
      return
    }
    if (h2) {
      dropAcceptKey(headers)
    } else {
      headers.push('Connection', 'Upgrade')
      this.res.sendDate = false
    }
    // Over HTTP/2 a hook's connection-specific fields are left out (setHookHeaders), as the upstream's hop-by-hop ones are.
    /* c8 ignore next 4: llhttp and the dial's parser reject every byte Node's writeHead would refuse before a 101 gets here; the socket is not leaked */
    if (this.writeHead(h2 ? 200 : statusCode, '', headers) !== null) {
      socket.destroy()
      return
    }
    this.reply.hijack()
    this.headSent = true
    this.finished = true
    // end() writes the head synchronously to the socket; the tunnel's bytes follow it in order. An HTTP/2 stream
    // stays open: it is the tunnel's client side.
    if (!h2) this.res.end()
    route.stats.answered(h2 ? 200 : 101)
    // The slot passes to the tunnel: the registry gives it back when the tunnel closes.
    this.slotClient = null
    const client = h2 ? h2TunnelClient(req as ConnectRequest) : req.socket
    const tunnel = new Tunnel(client, socket, route, server, this.request.ip, protocol, this.request.log, this.tunnels)
    if (h2) tunnel.httpVersion = '2'
    tunnel.start(h2 ? EMPTY : takeOverClientSocket(client))
    this.tunnels.add(tunnel)
    this.request.log.debug({ upstream: server.label }, h2 ? 'tunnel opened (HTTP/2 stream)' : 'tunnel opened')
  }
}

const WEBSOCKET = Buffer.from('websocket')

/** The protocol a 101 switched to (its `Upgrade` header), for logs and events. */
function upgradeProtocol (raw: Buffer[]): string {
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 7 && raw[i].toString('latin1').toLowerCase() === 'upgrade') {
      // The usual answer shares one string instead of each tunnel keeping its own copy.
      return raw[i + 1].equals(WEBSOCKET) ? 'websocket' : raw[i + 1].toString('latin1')
    }
  }
  /* c8 ignore start: undici and the dial refuse a 101 without Upgrade before it gets here */
  return ''
}
/* c8 ignore stop */
