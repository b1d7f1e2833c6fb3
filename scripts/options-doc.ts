// Writes docs/options.md from the TypeBox schemas' descriptions (the single source) and the gateway config's JSON
// Schema (fastify-ws-proxy.schema.json, shipped in the package for editors). `npm run docs` rewrites both;
// test/docs.test.ts fails when either is stale.
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { TSchema } from '@sinclair/typebox'
import { gatewayJsonSchema } from '../src/gateway/config.js'
import { PluginOptionsSchema, RouteSchema } from '../src/options/schema.js'
import { VARIABLE_DOCS } from '../src/vars/builtins.js'

export const OPTIONS_PAGE = new URL('../docs/options.md', import.meta.url)
export const SCHEMA_FILE = new URL('../fastify-ws-proxy.schema.json', import.meta.url)

interface Node extends TSchema {
  type?: string
  properties?: Record<string, Node>
  patternProperties?: Record<string, Node>
  items?: Node | Node[]
  anyOf?: Node[]
  title?: string
  const?: unknown
  default?: unknown
  description?: string
  required?: string[]
}

/** A readable type: literals, unions, arrays, records (`{ [name]: T }`) and objects. */
function typeOf (schema: Node): string {
  if (schema.const !== undefined) return JSON.stringify(schema.const)
  // A long union of literals (methods, failure kinds) or a function reads better as its name.
  if (schema.title !== undefined) return schema.title
  if (schema.anyOf !== undefined) return schema.anyOf.map(typeOf).join(' | ')
  if (Array.isArray(schema.items)) return `[${schema.items.map(typeOf).join(', ')}]`
  if (schema.type === 'array') {
    const item = typeOf(schema.items as Node)
    return item.includes('|') ? `(${item})[]` : `${item}[]`
  }
  if (schema.type === 'object' && schema.patternProperties !== undefined) {
    return `{ [name]: ${typeOf(Object.values(schema.patternProperties)[0])} }`
  }
  // An untyped schema is an object passed through unchecked (the prom-client Registry).
  return schema.type ?? 'object'
}

/** The object schema an option's rows continue into (an object, an array of objects, a record or union of them). */
function nested (schema: Node): { node: Node, suffix: string } | null {
  if (schema.type === 'object' && schema.properties !== undefined) return { node: schema, suffix: '' }
  if (schema.type === 'object' && schema.patternProperties !== undefined) {
    const inner = nested(Object.values(schema.patternProperties)[0])
    return inner === null ? null : { node: inner.node, suffix: `.<name>${inner.suffix}` }
  }
  if (schema.type === 'array') {
    const inner = nested(schema.items as Node)
    return inner === null ? null : { node: inner.node, suffix: `[]${inner.suffix}` }
  }
  for (const member of schema.anyOf ?? []) {
    const inner = nested(member)
    if (inner !== null) return inner
  }
  return null
}

const cell = (text: string): string => text.replace(/\|/g, '\\|')

/** Rows for the keys of `schema` kept by `keep`; `expand` false stops at the key (its own section documents the rest). */
function rows (schema: Node, path: string, out: string[], keep: (key: string) => boolean = () => true, expand: (key: string) => boolean = () => true): void {
  const required = new Set(schema.required ?? [])
  for (const [name, child] of Object.entries(schema.properties as Record<string, Node>)) {
    if (!keep(name)) continue
    const at = path === '' ? name : `${path}.${name}`
    const inner = nested(child)
    const type = inner !== null && child.type === 'object' && inner.suffix === '' ? 'object' : typeOf(child)
    // Every option has a description (an empty cell would show).
    out.push(`| \`${at}\` | ${cell(type)} | ${required.has(name) ? 'yes' : ''} | ${cell(child.description as string)} |`)
    if (inner !== null && expand(name)) rows(inner.node, `${at}${inner.suffix}`, out)
  }
}

const HEADER = ['| option | type | required | meaning |', '|---|---|---|---|']
const plugin = PluginOptionsSchema as unknown as Node
const route = RouteSchema as unknown as Node
/** Keys a route has with its own meaning (the plugin's `prefix`, `upstream`, `rewritePrefix` and `limits` differ; `host`, `config` and the functions are a route's only). */
const ROUTE_ONLY = new Set(['prefix', 'upstream', 'upgradeUpstream', 'rewritePrefix', 'limits', 'host', 'config', 'getUpstream', 'rewriteRequestHeaders'])
/** Settings written at the plugin level (the default of every route) or on a route. */
export function sharedKeys (): string[] {
  return Object.keys(route.properties as object).filter((key) => !ROUTE_ONLY.has(key))
}

function table (build: (out: string[]) => void): string {
  const out = [...HEADER]
  build(out)
  return out.join('\n')
}

export function pluginTable (): string {
  const shared = new Set(sharedKeys())
  return table((out) => rows(plugin, '', out, (key) => !shared.has(key), (key) => key !== 'routes' && key !== 'upstreams'))
}

export function routeTable (): string {
  return table((out) => rows(route, 'routes[]', out, (key) => ROUTE_ONLY.has(key)))
}

export function sharedTable (): string {
  const shared = new Set(sharedKeys())
  return table((out) => rows(plugin, '', out, (key) => shared.has(key)))
}

export function groupTable (): string {
  const groups = nested((plugin.properties as Record<string, Node>).upstreams) as { node: Node }
  return table((out) => rows(groups.node, 'upstreams.<name>', out))
}

export function gatewayTable (): string {
  const own = new Set(Object.keys(plugin.properties as object))
  return table((out) => rows(gatewayJsonSchema() as unknown as Node, '', out, (key) => !own.has(key)))
}

export function variablesTable (): string {
  const out = ['| variable | value |', '|---|---|']
  for (const [name, meaning] of VARIABLE_DOCS) out.push(`| \`${name}\` | ${cell(meaning)} |`)
  return out.join('\n')
}

/** The whole of docs/options.md. */
export function optionsPage (): string {
  return `# Options reference

<!-- Generated by \`npm run docs\` (scripts/options-doc.ts) from the TypeBox schemas in src/options/; edit the
descriptions there, not this file. test/docs.test.ts fails when this page is stale. -->

\`fastify.register(wsProxyPlugin, options)\` takes the [plugin options](#plugin-options); each of
\`options.routes\` takes the [route options](#route-options); the [shared settings](#settings-for-the-plugin-or-a-route)
go at either level. The gateway's config file is the same object plus [a few keys of its own](#gateway-config-file).
TypeScript types: \`WsProxyOptions\`, \`RouteOptions\`, \`UpstreamGroupOptions\`, \`ServerOptions\`, \`TimeoutOptions\`, ...
(all exported).

Invalid options make \`register\` (and \`fastify-ws-proxy --check\`) fail with one \`FST_WS_PROXY_INVALID_OPTION\`
error listing every problem, sorted by path, with the closest valid name for a misspelt one:

\`\`\`text
Invalid fastify-ws-proxy option routes/0/upstrem: unexpected property, got "http://x"; did you mean "upstream"?
  routes/1/timeouts/read: expected integer, got "60s"
  upstreams/chat/balance: expected one of round-robin, least-conn, ip-hash, hash, got "round_robin"; did you mean "round-robin"?
\`\`\`

The error's \`problems\` holds them all as \`{ path, reason }\`. The caller's object is never mutated. A route whose
\`upstream\` host is one typo away from a group's name (\`http://chatt\` beside a group \`chat\`) is an error; write the
port (\`http://chatt:80\`) to mean a host of that name. A group no route names is logged as a warning.

## Plugin options

${pluginTable()}

## Route options

Each entry of \`routes\` is one nginx \`location\` with its \`proxy_pass\`.

${routeTable()}

## Settings for the plugin or a route

Written at the plugin level, they are the default of every route; a route's own value wins. \`requestHeaders\` and
\`responseHeaders\` merge per header name: a route's rule for a name (set, add or remove) replaces the plugin's rules
for that name, and the plugin's rules for other names still apply (nginx instead drops every inherited
\`proxy_set_header\` as soon as a location has one). \`redirect\`, \`cookieDomain\`, \`cookiePath\`, \`methods\` and
\`allowedOrigins\` are taken whole from the route when it sets them.

${sharedTable()}

## Upstream groups

\`upstreams\` maps a name to a group (nginx \`upstream name { ... }\`); a route names it as \`http://name\`. See
[upstream groups](upstream-groups.md) for how balancing, failures, retries and membership behave.

${groupTable()}

## Gateway config file

The CLI's JSON config (\`fastify-ws-proxy --config FILE\`) holds the plugin options above plus these keys. Its JSON
Schema ships in the package: \`"$schema": "./node_modules/fastify-ws-proxy/fastify-ws-proxy.schema.json"\` lets an
editor complete and check the file. \`fastify-ws-proxy --print-config -c FILE\` prints it with every default filled in.

${gatewayTable()}

## Variables

Header templates, map sources and values, redirect and cookie rules and hash keys use nginx's variables. An
unknown variable fails \`register\`, with the closest built-in name.

${variablesTable()}
`
}

/** The JSON Schema file, as written. */
export function schemaFile (): string {
  return JSON.stringify(gatewayJsonSchema(), null, 2) + '\n'
}

/* c8 ignore next 4: the `npm run docs` entry point; the tests compare the files with optionsPage() and schemaFile() */
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(OPTIONS_PAGE, optionsPage())
  writeFileSync(SCHEMA_FILE, schemaFile())
}
