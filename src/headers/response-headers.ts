import { connectionTokens, isHopByHop } from './hop-by-hop.js'

/**
 * The upstream's response headers as a flat [name, value, ...] array for `writeHead`, in the upstream's order
 * and case, without hop-by-hop fields or those named by its Connection header (RFC 9110 §7.6.1). Node then
 * frames the body for the client (Content-Length kept; chunked re-applied when the upstream chunked).
 * latin1 keeps every byte as the upstream sent it: Node writes header strings back as latin1.
 * `keepUpgrade` keeps `Upgrade` for a 101, which must name the protocol switched to.
 */
export function buildResponseHeaders (raw: Buffer[], keepUpgrade: boolean): string[] {
  let named: string[] | null = null
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 10 && raw[i].toString('latin1').toLowerCase() === 'connection') {
      const tokens = connectionTokens(raw[i + 1].toString('latin1'))
      if (tokens !== null) named = named === null ? tokens : named.concat(tokens)
    }
  }
  const out: string[] = []
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toString('latin1')
    const lower = name.toLowerCase()
    if ((isHopByHop(lower) || (named !== null && named.includes(lower))) && !(keepUpgrade && lower === 'upgrade')) continue
    out.push(name, raw[i + 1].toString('latin1'))
  }
  return out
}
