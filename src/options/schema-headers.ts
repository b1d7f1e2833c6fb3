import { Type, type Static } from '@sinclair/typebox'

// Header rules (nginx `proxy_set_header`, `proxy_hide_header`, `add_header`), `Location`/`Set-Cookie` rewrite rules
// and user maps: the options whose values are templates.

const headerName = Type.String({ minLength: 1 })
const templates = (description: string) => Type.Optional(Type.Record(Type.String(), Type.String(), { description }))
const templateLists = (description: string) =>
  Type.Optional(Type.Record(Type.String(), Type.Union([Type.String(), Type.Array(Type.String())]), { description }))
const names = (description: string) => Type.Optional(Type.Array(headerName, { uniqueItems: true, description }))

export const RequestHeadersSchema = Type.Object({
  set: templates('nginx `proxy_set_header`: header name → template. Replaces the client\'s value; a value that evaluates ' +
    'to `""` is not sent. `Host`, `Connection` and `Upgrade` may be set (docs/semantics.md, "Header templates").'),
  add: templateLists('Header name → template (or list of templates) appended after the client\'s values; empty results are not sent.'),
  remove: names('Headers not forwarded upstream.')
}, { additionalProperties: false, description: 'Request header rules. A route\'s rules override the plugin\'s per header name.' })

export const ResponseHeadersSchema = Type.Object({
  set: templates('Header name → template, replacing the upstream\'s value; `""` removes it. Response variables allowed.'),
  add: templateLists('Header name → template (or list) appended to the upstream\'s values (nginx `add_header ... always`).'),
  hide: names('nginx `proxy_hide_header`: upstream headers not passed to the client.')
}, { additionalProperties: false, description: 'Response header rules (101 answers included; `Sec-WebSocket-*` cannot be touched).' })

export const RewriteRuleSchema = Type.Object({
  from: Type.String({ minLength: 1, description: 'Prefix to replace, or a regular expression starting with `~` (`~*` ignores case).' }),
  to: Type.String({ description: 'Template replacing it; regex captures are `$1`..`$9` and named groups.' })
}, { additionalProperties: false })

export const MapSchema = Type.Object({
  source: Type.String({ description: 'Template whose value is looked up, e.g. `$http_upgrade`.' }),
  cases: Type.Optional(Type.Record(Type.String(), Type.String(), {
    description: 'Key → value template. Keys match ignoring case; `~regex` / `~*regex` keys are tried in order after them ' +
      '(their captures are `$1`..`$9` and named groups in the value); `\\` escapes a leading `~`.'
  })),
  default: Type.Optional(Type.String({ description: 'Value template when no key matches. Default `""`.' }))
}, { additionalProperties: false, description: 'One map (nginx `map SOURCE $name { ... }`).' })

/** Request header rules (nginx `proxy_set_header`). */
export type RequestHeaderOptions = Static<typeof RequestHeadersSchema>
/** Response header rules (nginx `proxy_hide_header`, `add_header`). */
export type ResponseHeaderOptions = Static<typeof ResponseHeadersSchema>
/** One `Location`/`Set-Cookie` rewrite rule (nginx `proxy_redirect`, `proxy_cookie_*`). */
export type RewriteRuleOptions = Static<typeof RewriteRuleSchema>
/** One user map (nginx `map`). */
export type MapOptions = Static<typeof MapSchema>
