import type { Expr } from '../vars/builtins.js'

// Header rules as request time applies them (request-headers.ts, response-headers.ts, rewrites.ts). They are
// compiled and checked from the options at register time (options/header-rules.ts).

/** One header a rule writes: its value is a compiled template. */
export interface HeaderRule {
  readonly name: string
  readonly lower: string
  readonly value: Expr
  /** False when the value is a constant already checked at register time. */
  readonly check: boolean
  /** Whether the value needs the request's context (a constant does not). */
  readonly variable: boolean
}

export interface RequestHeaderRules {
  /** Lowercased names dropped from the client's headers and from those the proxy adds itself. */
  readonly drop: ReadonlySet<string>
  readonly set: readonly HeaderRule[]
  readonly add: readonly HeaderRule[]
  /** `Host`, `Connection` and `Upgrade` are not plain headers: they steer the request (see request-headers.ts). */
  readonly host: HeaderRule | null
  readonly connection: HeaderRule | null
  readonly upgrade: HeaderRule | null
}

/** A `from` → `to` rewrite of a header value (nginx `proxy_redirect`, `proxy_cookie_domain`, `proxy_cookie_path`). */
export interface RewriteRule {
  /** Prefix (or whole domain) matched, or null for a regex rule. */
  readonly text: string | null
  readonly re: RegExp | null
  readonly to: Expr
  readonly variable: boolean
}

/** Response header rules: names dropped (hidden or set), headers set and added. */
export interface ResponseRules {
  readonly drop: ReadonlySet<string>
  readonly set: readonly HeaderRule[]
  readonly add: readonly HeaderRule[]
}

/** The upstream request's header fields as `rewriteRequestHeaders` gets them: lower-case names, repeated fields as arrays. */
export type UpstreamRequestHeaders = Record<string, string | string[]>
