import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { Type, type Static } from '@sinclair/typebox'
import { LOG_LEVELS } from '../telemetry/log-levels.js'
import { PluginOptionsSchema, type WsProxyOptions } from '../options/schema.js'
import { optionsSchema, rememberResolved, resolveWith } from '../options/resolve.js'
import { invalidOptions, type OptionProblem } from '../options/problems.js'

/** The standalone gateway's JSON config: the plugin's options plus where to listen, the server's client limits and how much to log. */
const GatewayConfigSchema = Type.Object({
  $schema: Type.Optional(Type.String({ description: 'The JSON Schema this file follows, for editors (e.g. `./node_modules/fastify-ws-proxy/fastify-ws-proxy.schema.json`); ignored.' })),
  ...PluginOptionsSchema.properties,
  listen: Type.Optional(Type.Object({
    host: Type.Optional(Type.String({ minLength: 1, default: '127.0.0.1', description: 'Address to listen on. Default 127.0.0.1.' })),
    port: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535, default: 8080, description: 'Port to listen on (0: any free port). Default 8080.' })),
    tls: Type.Optional(Type.Object({
      cert: Type.String({ minLength: 1, description: 'nginx `ssl_certificate`: PEM file of the certificate, then its chain (leaf first).' }),
      key: Type.String({ minLength: 1, description: 'nginx `ssl_certificate_key`: PEM file of the certificate\'s private key (unencrypted).' }),
      ca: Type.Optional(Type.String({ minLength: 1, description: 'PEM file of CA certificates, Node\'s TLS `ca` option (intermediates belong in `cert`, after the leaf). Default: none.' }))
    }, {
      additionalProperties: false,
      description: 'Serve HTTPS (nginx `listen ... ssl`). File paths, relative to the config file\'s directory; read at start and ' +
        'again on every reload, and checked by `--check` (PEM, the key matching the certificate). Default: plain HTTP.'
    })),
    http2: Type.Optional(Type.Boolean({
      default: false,
      description: 'nginx `http2 on`: with `tls`, ALPN offers `h2` and `http/1.1` (clients pick; HTTP/1.1 clients and WebSockets ' +
        'over HTTP/1.1 keep working). Without `tls`, h2c with prior knowledge only: HTTP/1.1 clients (and browsers) cannot ' +
        'connect, for use behind an h2c-speaking load balancer. Default false.'
    }))
  }, { additionalProperties: false, default: {}, description: 'Where and how the gateway listens; `--host`, `--port` and `PORT` override host and port.' })),
  server: Type.Optional(Type.Object({
    maxHeaderSize: Type.Optional(Type.Integer({ minimum: 1024, default: 16_384, description: 'nginx `large_client_header_buffers`: most bytes of a client request head; beyond it Node answers 431. Default 16384.' })),
    headersTimeout: Type.Optional(Type.Integer({ minimum: 1, default: 60_000, description: 'nginx `client_header_timeout`: milliseconds a client has to send its whole request head; then Node answers 408 (slowloris). Default 60000.' })),
    trustProxy: Type.Optional(Type.Union([
      Type.Boolean(), Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })
    ], {
      description: 'Fastify\'s `trustProxy` (nginx `set_real_ip_from` + `real_ip_header X-Forwarded-For`): behind a load balancer, which ' +
        'hops to trust so `$remote_addr`, `ip-hash` and per-client limits see the client: the balancers\' addresses or CIDRs ' +
        '(`"10.0.0.0/8"`, comma-separated or a list), or `true` (every hop: only when nothing else can reach the gateway). Default: trust none.'
    }))
  }, { additionalProperties: false, default: {}, description: 'Client-side limits of the gateway\'s HTTP server (Node server options; docs/semantics.md, "Limits").' })),
  pidFile: Type.Optional(Type.String({ minLength: 1, description: 'nginx `pid`: the primary process writes its pid here; `--reload` signals it. Default: none.' })),
  logLevel: Type.Optional(Type.Union(LOG_LEVELS.map((level) => Type.Literal(level)), {
    default: 'info', description: 'Fastify (pino) log level. Default info.'
  }))
}, { additionalProperties: false, description: 'The config of the fastify-ws-proxy gateway (`fastify-ws-proxy --config FILE`): the plugin\'s options plus `listen`, `server`, `pidFile` and `logLevel`.' })

type GatewayConfig = Static<typeof GatewayConfigSchema>

/** The gateway's keys beside the plugin's options: checked and defaulted with them, not handed to the plugin. */
const GATEWAY_KEYS = Object.keys(GatewayConfigSchema.properties).filter((key) => !(key in PluginOptionsSchema.properties))

// Read the way `register` reads the plugin's options (options/resolve.ts), in one pass over the whole file.
const GATEWAY = optionsSchema(GatewayConfigSchema, GATEWAY_KEYS, true)

/** `listen.tls` as written: file paths. */
export interface TlsFiles {
  cert: string
  key: string
  ca?: string
}

/** What the files of `listen.tls` hold, read and checked (PEM text). */
export interface TlsCredentials {
  cert: string
  key: string
  ca?: string
}

export interface CheckedGatewayConfig {
  host: string
  port: number
  /** `listen.tls` as written (null: plain HTTP). */
  tls: TlsFiles | null
  /** The contents of `tls`'s files, read by `loadTls()` (null until then, and without `tls`). */
  credentials: TlsCredentials | null
  http2: boolean
  logLevel: string
  server: { maxHeaderSize: number, headersTimeout: number, trustProxy?: boolean | string | string[] }
  pidFile: string | null
  /** The plugin's options, checked, with the schema's defaults: what the gateway registers the plugin with. */
  proxy: WsProxyOptions
  /** The tunnels' grace period at a drain (`closeGracePeriod`, resolved). */
  closeGracePeriod: number
  /** What `register` would warn about (a group no route names), as `<path>: <reason>`. */
  warnings: readonly string[]
}

/**
 * Validates a parsed JSON config the way `register` validates its options, cross-field rules included, in one pass;
 * throws FST_WS_PROXY_INVALID_OPTION with every problem.
 */
export function checkGatewayConfig (value: unknown): CheckedGatewayConfig {
  const { options, resolved } = resolveWith(GATEWAY, value)
  // The schema's defaults have filled listen.host, listen.port and logLevel.
  const { $schema, listen, logLevel, server, pidFile, ...proxy } = options as GatewayConfig & {
    listen: { host: string, port: number, tls?: TlsFiles, http2: boolean }, logLevel: string, server: CheckedGatewayConfig['server']
  }
  // The plugin registered with `proxy` takes these resolved options as they are: the config is checked once.
  rememberResolved(Object.freeze(proxy), resolved)
  return {
    host: listen.host,
    port: listen.port,
    tls: listen.tls ?? null,
    credentials: null,
    http2: listen.http2,
    logLevel,
    server,
    pidFile: pidFile ?? null,
    proxy,
    closeGracePeriod: resolved.closeGracePeriod,
    warnings: resolved.warnings
  }
}

/** What `--check` and the start say of `listen.http2` without `listen.tls`. */
export const H2C_WARNING = 'listen/http2: without listen.tls this is h2c (HTTP/2 with prior knowledge): HTTP/1.1 clients, browsers and ' +
  'most health checkers cannot connect (docs/tls.md)'

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
    if (config.http2 && config.tls === null) config.warnings = [...config.warnings, H2C_WARNING]
    await loadTls(config, dirname(file))
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

/** The effective config, defaults filled in, as a config file would say it (`--print-config`, like `nginx -T`). */
export function effectiveConfig (config: CheckedGatewayConfig): Record<string, unknown> {
  const { host, port, tls, http2, logLevel, server, pidFile, proxy } = config
  return { listen: { host, port, ...(tls === null ? {} : { tls }), http2 }, server, ...(pidFile === null ? {} : { pidFile }), logLevel, ...proxy }
}

/** The JSON Schema of the config file, for editors and the package (`npm run docs` writes fastify-ws-proxy.schema.json). */
export function gatewayJsonSchema (): Record<string, unknown> {
  // What only code can pass (a prom-client Registry, a resolver function) has no place in a JSON file.
  const schema = JSON.parse(JSON.stringify(GatewayConfigSchema, (_key, value: unknown) =>
    (value as { description?: unknown } | null)?.description?.toString().includes('(not in a JSON config)') === true ? undefined : value))
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: 'https://unpkg.com/fastify-ws-proxy/fastify-ws-proxy.schema.json',
    title: 'fastify-ws-proxy gateway config',
    ...schema
  }
}

/** The tunnels' grace period of a checked config. */
export function gracePeriod (config: CheckedGatewayConfig): number {
  return config.closeGracePeriod
}

/**
 * Reads the files of `listen.tls` (relative paths from `dir`, the config file's) into `config.credentials`, and
 * checks them: a PEM certificate, a PEM private key that matches it, PEM CA certificates. Throws every problem at
 * once as FST_WS_PROXY_INVALID_OPTION, naming `listen/tls/cert` etc. Start-up, `--check` and every reload call it,
 * so a replaced certificate is read again on reload.
 */
export async function loadTls (config: CheckedGatewayConfig, dir: string): Promise<void> {
  const files = config.tls
  if (files === null) return
  const problems: OptionProblem[] = []
  const read = async (name: keyof TlsFiles, path: string): Promise<string | null> => {
    try {
      return await readFile(resolve(dir, path), 'utf8')
    } catch (err) {
      // fs errors always carry a code (ENOENT, EACCES, EISDIR...).
      problems.push({ path: `listen/tls/${name}`, reason: `cannot read ${JSON.stringify(path)}: ${String((err as NodeJS.ErrnoException).code)}` })
      return null
    }
  }
  const [cert, key, ca] = await Promise.all([read('cert', files.cert), read('key', files.key), files.ca === undefined ? null : read('ca', files.ca)])
  const certificate = cert === null ? null : parsed(problems, 'cert', files.cert, 'a PEM certificate', () => new X509Certificate(cert))
  const privateKey = key === null ? null : parsed(problems, 'key', files.key, 'an unencrypted PEM private key', () => createPrivateKey(key))
  if (ca !== null) parsed(problems, 'ca', files.ca as string, 'PEM certificates', () => new X509Certificate(ca))
  if (certificate !== null && privateKey !== null && !certificate.checkPrivateKey(privateKey)) {
    problems.push({ path: 'listen/tls/key', reason: `${JSON.stringify(files.key)} is not the private key of the certificate in listen/tls/cert (${JSON.stringify(files.cert)})` })
  }
  if (problems.length > 0) throw invalidOptions(problems)
  config.credentials = { cert: cert as string, key: key as string, ...(ca === null ? {} : { ca }) }
}

/** Parses one file's PEM, recording a problem when it is not what `what` says. */
function parsed<T extends X509Certificate | KeyObject> (problems: OptionProblem[], name: keyof TlsFiles, path: string, what: string, parse: () => T): T | null {
  try {
    return parse()
  } catch {
    problems.push({ path: `listen/tls/${name}`, reason: `${JSON.stringify(path)} does not hold ${what}` })
    return null
  }
}
