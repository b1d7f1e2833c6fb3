import { OriginAllowList } from '../security/origins.js'
import { fail } from './problems.js'

// Register time for `allowedOrigins` (the check itself, per upgrade, is security/origins.ts).

// `scheme://` and an authority, nothing else: no path (even a lone "/"), query, fragment, credentials or "\\",
// which URL would read as "/".
const ORIGIN_SHAPE = /^https?:\/\/[^/?#@\\]+$/i
const SCHEME = /^[a-z][a-z0-9+.-]*:/i
// One or more DNS labels in front of a pattern's domain, as browsers serialize them (IDNs in xn-- punycode).
const SUBDOMAINS = '(?:[a-z0-9_-]+\\.)+'
const DOMAIN = /^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?$/

/**
 * Compiles `allowedOrigins` (`at` is its option path). `false` and undefined turn the check off (null).
 * An entry is `scheme://host[:port]`, or `scheme://*.domain[:port]` for every subdomain of `domain` at any depth
 * (not `domain` itself), with an `http:` or `https:` scheme: an Origin names the page's scheme, never `ws:`.
 */
export function compileOrigins (entries: readonly string[] | false | undefined, at: string): OriginAllowList | null {
  if (entries === undefined || entries === false) return null
  const exact = new Set<string>()
  const patterns: string[] = []
  entries.forEach((entry, i) => {
    const path = `${at}/${i}`
    const scheme = SCHEME.exec(entry)?.[0].toLowerCase()
    if (scheme !== undefined && scheme !== 'http:' && scheme !== 'https:') {
      fail(path, `expected an http: or https: origin (a browser sends the page's origin, not a ws: URL), got ${JSON.stringify(entry)}`)
    }
    if (!ORIGIN_SHAPE.test(entry)) {
      fail(path, `expected scheme://host[:port] without path, query, fragment or credentials, got ${JSON.stringify(entry)}`)
    }
    let url: URL
    try {
      url = new URL(entry)
    } catch {
      fail(path, `expected an origin such as "https://app.example.com", got ${JSON.stringify(entry)}`)
    }
    const host = url.hostname
    if (!host.includes('*')) {
      exact.add(url.origin)
      return
    }
    const domain = host.slice(2)
    if (!host.startsWith('*.') || !DOMAIN.test(domain)) {
      fail(path, `"*" may only stand for the leftmost labels, followed by a domain name ("https://*.example.com"), got ${JSON.stringify(entry)}`)
    }
    // The domain is DNS characters only (checked above): its dots are all that needs escaping.
    patterns.push(`${url.protocol}//${SUBDOMAINS}${domain.replace(/\./g, '\\.')}${url.port === '' ? '' : `:${url.port}`}`)
  })
  return new OriginAllowList(exact, patterns.length === 0 ? null : new RegExp(`^(?:${patterns.join('|')})$`))
}
