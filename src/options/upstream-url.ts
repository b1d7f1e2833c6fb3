import { fail } from './problems.js'

/** An upstream URL as nginx's `proxy_pass` reads it. */
export interface ParsedUpstream {
  /** `scheme://host:port` (`http://localhost` for a unix socket). */
  readonly origin: string
  /** Host and port as written (nginx `$proxy_host`). */
  readonly host: string
  /** The host name alone, without port or IPv6 brackets (TLS server name, DNS name); `localhost` for a unix socket. */
  readonly hostname: string
  /** The URI after the authority, or null when there is none (the request URI then passes unchanged). */
  readonly path: string | null
  readonly socketPath: string | null
}

// nginx's unix socket form: "http://unix:/path/to.sock:" optionally followed by the URI ("http://unix:/s.sock:/base/").
const UNIX_UPSTREAM = /^http:\/\/unix:(\/[^:]+):(.*)$/

/**
 * nginx proxy_pass: "http://host" has no URI (pass the request URI as is), "http://host/" has one ("/").
 * WHATWG URL cannot tell them apart (both have pathname "/"), so the text after the authority is looked at.
 */
export function parseUpstream (text: string, path: string): ParsedUpstream {
  const unix = UNIX_UPSTREAM.exec(text)
  if (unix !== null) {
    const uri = unix[2]
    if (uri !== '' && !uri.startsWith('/')) fail(path, `the URI after the socket path must start with "/", got ${JSON.stringify(uri)}`)
    if (uri.includes('?') || uri.includes('#')) fail(path, 'the upstream URL must not have a query or fragment')
    // nginx sends "Host: localhost" to unix socket upstreams.
    return { origin: 'http://localhost', host: 'localhost', hostname: 'localhost', path: uri === '' ? null : uri, socketPath: unix[1] }
  }
  if (text.startsWith('http://unix:')) fail(path, `expected "http://unix:/path/to.sock:" followed by an optional URI, got ${JSON.stringify(text)}`)
  let url: URL
  try {
    url = new URL(text)
  } catch {
    fail(path, `expected an absolute http: or https: URL, got ${JSON.stringify(text)}`)
  }
  if (url.username !== '' || url.password !== '') fail(path, 'credentials in the upstream URL are not supported')
  if (url.search !== '' || url.hash !== '' || text.includes('?') || text.includes('#')) {
    fail(path, 'the upstream URL must not have a query or fragment')
  }
  const afterScheme = text.slice(text.indexOf('//') + 2)
  const slash = afterScheme.indexOf('/')
  const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
  return { origin: url.origin, host: url.host, hostname, path: slash === -1 ? null : url.pathname, socketPath: null }
}

/** nginx's `$upstream_addr`: `host:port` with the scheme's default port made explicit, or `unix:/path`. */
export function addressOf (origin: string, socketPath: string | null): string {
  if (socketPath !== null) return `unix:${socketPath}`
  const url = new URL(origin)
  return `${url.hostname}:${url.port === '' ? (url.protocol === 'https:' ? '443' : '80') : url.port}`
}
