import type { IncomingMessage } from 'node:http'
import type { TLSSocket } from 'node:tls'
import { connectionTokens, isHopByHop } from './hop-by-hop.js'

/** The per-route settings the request headers depend on. */
export interface RequestHeaderSettings {
  readonly proxyHost: string
  readonly preserveHost: boolean
  readonly xForwarded: boolean
}

/**
 * The header list sent upstream, as a flat [name, value, ...] array in the client's order and case.
 * Dropped: hop-by-hop fields and those named by Connection (RFC 9110 §7.6.1, the Upgrade intent travels as
 * undici's `upgrade` option), `Expect` (Node already answered 100-continue; undici refuses it), and `Host`
 * and `X-Forwarded-*`, which are rebuilt. `TE: trailers` is kept, as Caddy does, for gRPC-style upstreams.
 */
export function buildRequestHeaders (settings: RequestHeaderSettings, req: IncomingMessage): string[] {
  const raw = req.rawHeaders
  const named = connectionTokens(req.headers.connection)
  const out: string[] = []
  let forwardedFor: string | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]
    const lower = name.toLowerCase()
    if (isHopByHop(lower)) {
      if (lower === 'te' && raw[i + 1].trim().toLowerCase() === 'trailers') out.push(name, 'trailers')
      continue
    }
    if (lower === 'host' || lower === 'expect') continue
    if (named !== null && named.includes(lower)) continue
    if (settings.xForwarded && lower.startsWith('x-forwarded-')) {
      // The client's X-Forwarded-For chain is kept and extended; Proto and Host are ours to state.
      if (lower === 'x-forwarded-for') forwardedFor = forwardedFor === undefined ? raw[i + 1] : `${forwardedFor}, ${raw[i + 1]}`
      if (lower === 'x-forwarded-for' || lower === 'x-forwarded-proto' || lower === 'x-forwarded-host') continue
    }
    out.push(name, raw[i + 1])
  }
  const clientHost = req.headers.host
  out.push('host', settings.preserveHost && clientHost !== undefined ? clientHost : settings.proxyHost)
  if (settings.xForwarded) {
    const address = req.socket.remoteAddress ?? ''
    out.push('x-forwarded-for', forwardedFor === undefined ? address : `${forwardedFor}, ${address}`)
    out.push('x-forwarded-proto', (req.socket as TLSSocket).encrypted === true ? 'https' : 'http')
    if (clientHost !== undefined) out.push('x-forwarded-host', clientHost)
  }
  return out
}
