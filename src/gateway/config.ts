import { readFile } from 'node:fs/promises'
import { Type, type Static } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { Value } from '@sinclair/typebox/value'
import { FST_WS_PROXY_INVALID_OPTION } from '../errors.js'
import { PluginOptionsSchema, type WsProxyOptions } from '../options/schema.js'
import { invalidOption, resolveOptions } from '../options/resolve.js'

/** The standalone gateway's JSON config: the plugin's options plus where to listen, the server's client limits and how much to log. */
const GatewayConfigSchema = Type.Object({
  ...PluginOptionsSchema.properties,
  listen: Type.Optional(Type.Object({
    host: Type.Optional(Type.String({ minLength: 1, default: '127.0.0.1', description: 'Address to listen on. Default 127.0.0.1.' })),
    port: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535, default: 8080, description: 'Port to listen on (0: any free port). Default 8080.' }))
  }, { additionalProperties: false, default: {} })),
  server: Type.Optional(Type.Object({
    maxHeaderSize: Type.Optional(Type.Integer({ minimum: 1024, default: 16_384, description: 'nginx `large_client_header_buffers`: most bytes of a client request head; beyond it Node answers 431. Default 16384.' })),
    headersTimeout: Type.Optional(Type.Integer({ minimum: 1, default: 60_000, description: 'nginx `client_header_timeout`: milliseconds a client has to send its whole request head; then Node answers 408 (slowloris). Default 60000.' }))
  }, { additionalProperties: false, default: {}, description: 'Client-side limits of the gateway\'s HTTP server (Node server options, see "Limits").' })),
  pidFile: Type.Optional(Type.String({ minLength: 1, description: 'nginx `pid`: the primary process writes its pid here; `--reload` signals it. Default: none.' })),
  logLevel: Type.Optional(Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)), {
    default: 'info', description: 'Fastify (pino) log level. Default info.'
  }))
}, { additionalProperties: false })

type GatewayConfig = Static<typeof GatewayConfigSchema>

const checker = TypeCompiler.Compile(GatewayConfigSchema)

export interface CheckedGatewayConfig {
  host: string
  port: number
  logLevel: string
  server: { maxHeaderSize: number, headersTimeout: number }
  pidFile: string | null
  proxy: WsProxyOptions
}

/** Validates a parsed JSON config with the same schema `register` uses; throws FST_WS_PROXY_INVALID_OPTION. */
export function checkGatewayConfig (value: unknown): CheckedGatewayConfig {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new FST_WS_PROXY_INVALID_OPTION('(root)', 'expected a JSON object')
  }
  const copy = Value.Clone(value)
  Value.Default(GatewayConfigSchema, copy)
  const first = checker.Errors(copy).First()
  if (first !== undefined) throw invalidOption(first)
  // The schema's defaults have filled listen.host, listen.port and logLevel.
  const { listen, logLevel, server, pidFile, ...proxy } = copy as GatewayConfig & {
    listen: { host: string, port: number }, logLevel: string, server: CheckedGatewayConfig['server']
  }
  return { host: listen.host, port: listen.port, logLevel, server, pidFile: pidFile ?? null, proxy }
}

/** Command-line values that replace the config's `listen`. */
export interface ListenOverrides {
  host?: string | undefined
  port?: string | undefined
}

/**
 * Reads, parses and fully validates a config file, the cross-field rules of `register` included (what `--check`,
 * start-up and every reload do); throws with the file name and the option path.
 */
export async function loadGatewayConfig (file: string, overrides: ListenOverrides = {}): Promise<CheckedGatewayConfig> {
  try {
    const parsed: unknown = JSON.parse(await readFile(file, 'utf8'))
    const config = checkGatewayConfig(withOverrides(parsed, overrides))
    resolveOptions(config.proxy)
    return config
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`, { cause: err })
  }
}

/** Applies `--host`/`--port` (and `PORT`) over the config's `listen`. */
export function withOverrides (parsed: unknown, { host, port }: ListenOverrides): unknown {
  if (parsed === null || typeof parsed !== 'object' || (host === undefined && port === undefined)) return parsed
  const config = parsed as { listen?: Record<string, unknown> }
  const listen = { ...config.listen }
  if (host !== undefined) listen.host = host
  if (port !== undefined) listen.port = Number(port)
  return { ...config, listen }
}

/** The tunnels' grace period of a checked config (the schema's default has filled it). */
export function gracePeriod (config: CheckedGatewayConfig): number {
  return config.proxy.closeGracePeriod as number
}
