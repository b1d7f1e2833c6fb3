// nginx `server_name` entries of a route's `host`, compiled at register time into what the host table matches
// (routing/hosts.ts).

/** One `host` entry compiled: how it matches and the key routes listing it share. */
export type HostPattern =
  | { readonly kind: 'exact', readonly key: string, readonly name: string }
  | { readonly kind: 'wildcard', readonly key: string, readonly suffix: string, readonly bare: string | null }
  | { readonly kind: 'regex', readonly key: string, readonly re: RegExp }

const LABELS = /^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$/

/** Compiles one `host` entry, or returns why it is invalid. */
export function compileHost (entry: string): HostPattern | string {
  if (entry.startsWith('~')) {
    try {
      return { kind: 'regex', key: entry, re: new RegExp(entry.slice(1)) }
    } catch (err) {
      return `invalid regular expression: ${(err as Error).message}`
    }
  }
  const name = entry.toLowerCase().replace(/\.$/, '')
  // nginx: `*.example.com` is every subdomain at any depth; `.example.com` is that and `example.com` itself.
  if (name.startsWith('*.') || name.startsWith('.')) {
    const suffix = name.slice(name.indexOf('.'))
    if (!LABELS.test(suffix.slice(1))) return 'expected a host name, `*.domain`, `.domain` or `~regex`'
    return { kind: 'wildcard', key: name, suffix, bare: name.startsWith('.') ? suffix.slice(1) : null }
  }
  if (!LABELS.test(name)) return 'expected a host name, `*.domain`, `.domain` or `~regex`'
  return { kind: 'exact', key: name, name }
}
