import type { TObject } from '@sinclair/typebox'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import { Value } from '@sinclair/typebox/value'
import { fail, ProblemList } from './problems.js'
import { buildResolved, type ResolvedOptions } from './resolved-options.js'
import { schemaProblems } from './schema-problems.js'
import { PluginOptionsSchema, type DefaultedOptions, type WsProxyOptions } from './schema.js'
import { putBack, setAside } from './set-aside.js'

// The one way in for options, as fastify's initial-config-validation.js: the raw options are copied, checked
// against the schema (every problem at once), given the schema's defaults, resolved (cross-field rules, compiled
// templates, rules, maps, origins) and frozen. `register` goes through here, and so does the gateway's config file.

export type { ResolvedOptions } from './resolved-options.js'
export type { ResolvedRoute } from './resolve-route.js'

/** A schema the options are read with: the plugin's, or one that adds keys of its own (the gateway's config file). */
export interface OptionsSchema {
  readonly schema: TObject
  /** Compiled once when the module that declares it loads; `register` only copies, applies defaults and checks. */
  readonly checker: TypeCheck<TObject>
  /** Keys of `schema` that are not the plugin's: checked and defaulted, then left out of what is resolved. */
  readonly ownKeys: readonly string[]
  /** Whether the options come from a JSON file: no functions, and the message for a non-object says so. */
  readonly json: boolean
}

/** Compiles `schema` for `resolveWith`. */
export function optionsSchema (schema: TObject, ownKeys: readonly string[] = [], json = false): OptionsSchema {
  return { schema, checker: TypeCompiler.Compile(schema), ownKeys, json }
}

const PLUGIN = optionsSchema(PluginOptionsSchema)

/** Options some caller already resolved (the gateway's checked config), by the object it registers the plugin with. */
const alreadyResolved = new WeakMap<object, ResolvedOptions>()

/** Checks `options` against the schema and the cross-field rules. Never mutates the caller's object. */
export function resolveOptions (options: unknown): ResolvedOptions {
  return alreadyResolved.get(options as object) ?? resolveWith(PLUGIN, options).resolved
}

/**
 * `options` (a frozen object no user holds) were resolved as `resolved`: registering the plugin with them takes those
 * instead of checking everything a second time (the gateway checks its config file, then registers its plugin part).
 */
export function rememberResolved (options: Readonly<Record<string, unknown>>, resolved: ResolvedOptions): void {
  alreadyResolved.set(options, resolved)
}

/**
 * The options read with `shape`: `options`, the checked copy with the schema's defaults (own keys included), and
 * `resolved`, the frozen resolved options of the plugin's part. Throws every problem as one FST_WS_PROXY_INVALID_OPTION.
 */
export function resolveWith (shape: OptionsSchema, options: unknown): { options: Record<string, unknown>, resolved: ResolvedOptions } {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    fail('', shape.json ? 'expected a JSON object' : 'expected an object')
  }
  const aside = setAside(shape.json ? options as Record<string, unknown> : stripFastifyKeys(options as Record<string, unknown>), shape.json)
  // Checked before the copy: Value.Clone throws its own uncoded error on a function or a bigint (say a hook from
  // another proxy plugin's options), which the check reports as the bad option it is. Defaults are valid, so
  // checking before they are applied accepts and rejects the same options.
  const problems = new ProblemList()
  problems.problems.push(...aside.problems, ...schemaProblems(shape.checker.Errors(aside.own)))
  problems.throwIfAny()
  const copy = Value.Clone(aside.own)
  Value.Default(shape.schema, copy)
  putBack(copy, aside)
  const plugin: Record<string, unknown> = { ...copy }
  for (const key of shape.ownKeys) delete plugin[key]
  // The schema's defaults have filled the plugin level.
  return { options: copy, resolved: buildResolved(plugin as WsProxyOptions as DefaultedOptions, aside.registry) }
}

// Fastify hands its own register options to the plugin too; `prefix` is in the schema, these two are not ours.
function stripFastifyKeys (options: Record<string, unknown>): Record<string, unknown> {
  const { logLevel, logSerializers, ...rest } = options
  return rest
}
