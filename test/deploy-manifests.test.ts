import t from 'tap'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, posix } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { checkGatewayConfig, withOverrides, type CheckedGatewayConfig } from '../src/gateway/config.js'
import { main } from '../src/gateway/cli-main.js'
import { resolveOptions } from '../src/options/resolve.js'
import { DEFAULTS } from '../src/options/schema.js'

// examples/kubernetes: the manifests, the gateway config inside the ConfigMap and the Dockerfile must agree with
// each other and pass the gateway's own checks. deploymentProblems() lists every disagreement; the shipped files
// have none, and each mutation below makes it report the one it introduces (so the checks are not vacuous).

const DIR = new URL('../examples/kubernetes/', import.meta.url)
const MANIFESTS = ['configmap.yaml', 'deployment.yaml', 'service.yaml', 'upstream.yaml'] as const
type ManifestFile = typeof MANIFESTS[number]

/** What the gateway's supervisor waits past closeGracePeriod before it kills a worker (src/gateway/supervisor.ts). */
const KILL_MARGIN_SECONDS = 5
/** Kubernetes' defaults. */
const DEFAULT_TERMINATION_GRACE_SECONDS = 30
const DEFAULT_PROBE_PERIOD_SECONDS = 10
const CLUSTER_DOMAIN = 'svc.cluster.local'

// The parts of the Kubernetes objects the checks read; everything is optional, as in any YAML.
type Labels = Record<string, string>
interface HttpGet { path?: string, port?: number | string, scheme?: string }
interface Probe { httpGet?: HttpGet, periodSeconds?: number, timeoutSeconds?: number, failureThreshold?: number }
interface ContainerPort { name?: string, containerPort?: number, protocol?: string }
interface SecurityContext {
  runAsNonRoot?: boolean
  runAsUser?: number
  readOnlyRootFilesystem?: boolean
  allowPrivilegeEscalation?: boolean
}
interface Container {
  name?: string
  image?: string
  imagePullPolicy?: string
  command?: string[]
  args?: string[]
  env?: Array<{ name?: string, value?: string }>
  ports?: ContainerPort[]
  readinessProbe?: Probe
  livenessProbe?: Probe
  lifecycle?: { preStop?: { exec?: { command?: string[] }, sleep?: { seconds?: number } } }
  volumeMounts?: Array<{ name?: string, mountPath?: string, subPath?: string }>
  resources?: { requests?: Record<string, string | number>, limits?: Record<string, string | number> }
  securityContext?: SecurityContext
}
interface Volume { name?: string, configMap?: { name?: string, items?: Array<{ key?: string, path?: string }> } }
interface PodSpec {
  containers?: Container[]
  volumes?: Volume[]
  securityContext?: SecurityContext
  terminationGracePeriodSeconds?: number
}
interface ServicePort { name?: string, port?: number, targetPort?: number | string, protocol?: string }
interface K8sObject {
  apiVersion?: string
  kind?: string
  metadata?: { name?: string, namespace?: string, labels?: Labels }
  data?: Record<string, string>
  spec?: {
    // Deployment
    selector?: { matchLabels?: Labels } | Labels
    template?: { metadata?: { labels?: Labels }, spec?: PodSpec }
    // Service
    type?: string
    clusterIP?: string
    ports?: ServicePort[]
  }
}

interface DockerInstruction { op: string, arg: string }
interface Bundle {
  manifests: Record<ManifestFile, K8sObject[]>
  dockerfile: string
}

function loadBundle (): Bundle {
  const manifests = {} as Record<ManifestFile, K8sObject[]>
  for (const file of MANIFESTS) {
    const text = readFileSync(new URL(file, DIR), 'utf8')
    const docs = parseAllDocuments(text)
    if (!Array.isArray(docs)) throw new Error(`${file}: no YAML document`)
    manifests[file] = docs.map((doc, i) => {
      const trouble = [...doc.errors, ...doc.warnings]
      if (trouble.length > 0) throw new Error(`${file} document ${i}: ${trouble.map((e) => e.message).join('; ')}`)
      return doc.toJS() as K8sObject
    })
  }
  return { manifests, dockerfile: readFileSync(new URL('Dockerfile', DIR), 'utf8') }
}

/** The Dockerfile's stages: each FROM and the instructions after it (continuation lines joined, comments dropped). */
function dockerStages (text: string): Array<{ from: string, instructions: DockerInstruction[] }> {
  const logical: string[] = []
  let current = ''
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (current === '' && (line === '' || line.startsWith('#'))) continue
    if (line.endsWith('\\')) {
      current += line.slice(0, -1) + ' '
      continue
    }
    logical.push(current + line)
    current = ''
  }
  if (current !== '') logical.push(current)
  const stages: Array<{ from: string, instructions: DockerInstruction[] }> = []
  for (const line of logical) {
    const match = /^(\w+)\s+(.*)$/s.exec(line)
    if (match === null) continue
    const op = match[1].toUpperCase()
    const arg = match[2].trim()
    if (op === 'FROM') stages.push({ from: arg, instructions: [] })
    else stages.at(-1)?.instructions.push({ op, arg })
  }
  return stages
}

/** An exec-form (JSON array) instruction's words, or null for the shell form. */
function execForm (arg: string): string[] | null {
  if (!arg.startsWith('[')) return null
  try {
    const words: unknown = JSON.parse(arg)
    return Array.isArray(words) && words.every((w) => typeof w === 'string') ? words : null
  } catch {
    return null
  }
}

/** The gateway CLI's flags as src/gateway/cli-main.ts parses them (long and short, `--flag value` and `--flag=value`). */
function cliFlags (args: readonly string[]): Map<string, string> {
  const short: Record<string, string> = { '-c': '--config', '-p': '--port', '-w': '--workers', '-h': '--help' }
  const boolean = new Set(['--check', '--reload', '--demo', '--help'])
  const flags = new Map<string, string>()
  for (let i = 0; i < args.length; i++) {
    const [word, inline] = args[i].split(/=(.*)/s, 2)
    const name = short[word] ?? word
    if (boolean.has(name)) flags.set(name, 'true')
    else if (inline !== undefined) flags.set(name, inline)
    else flags.set(name, args[++i] ?? '')
  }
  return flags
}

/** A port given by number or by the name of one of `ports` (an IntOrString), as its number. */
function portNumber (ref: number | string | undefined, ports: readonly ContainerPort[]): number | undefined {
  if (typeof ref === 'number') return ref
  if (typeof ref === 'string') return ports.find((p) => p.name === ref)?.containerPort
  return undefined
}

/** Whether a non-empty selector picks these labels. */
function selects (selector: Labels | undefined, labels: Labels | undefined): boolean {
  const wanted = Object.entries(selector ?? {})
  return wanted.length > 0 && wanted.every(([k, v]) => labels?.[k] === v)
}

function matchLabels (deployment: K8sObject): Labels | undefined {
  return (deployment.spec?.selector as { matchLabels?: Labels } | undefined)?.matchLabels
}

function podLabels (deployment: K8sObject): Labels | undefined {
  return deployment.spec?.template?.metadata?.labels
}

/** Seconds the preStop hook sleeps: `sleep N` (exec, or through a shell) or the `sleep` action; null when none. */
function preStopSleep (container: Container): number | null {
  const preStop = container.lifecycle?.preStop
  if (typeof preStop?.sleep?.seconds === 'number') return preStop.sleep.seconds
  const command = preStop?.exec?.command
  if (command === undefined) return null
  const match = /^(?:\S*\/)?sleep\s+(\d+)$/.exec(command.join(' ')) ?? /(?:^|\s)sleep\s+(\d+)\s*$/.exec(command.at(-1) ?? '')
  return match === null ? null : Number(match[1])
}

function cpuCores (value: string | number | undefined): number {
  if (typeof value === 'number') return value
  if (value === undefined) return 0
  return value.endsWith('m') ? Number(value.slice(0, -1)) / 1000 : Number(value)
}

/** Every way the manifests, the embedded gateway.json and the Dockerfile disagree (empty: they agree). */
function deploymentProblems (bundle: Bundle): string[] {
  const problems: string[] = []
  const report = (message: string): void => { problems.push(message) }
  const { manifests } = bundle

  const all = MANIFESTS.flatMap((file) => manifests[file].map((doc) => ({ file, doc })))
  for (const { file, doc } of all) {
    if (doc?.apiVersion === undefined || doc.kind === undefined || doc.metadata?.name === undefined) {
      report(`${file}: a document lacks apiVersion, kind or metadata.name`)
    }
  }
  const namespaces = new Set(all.map(({ doc }) => doc?.metadata?.namespace ?? 'default'))
  if (namespaces.size !== 1) report(`the manifests span several namespaces: ${[...namespaces].join(', ')}`)
  const namespace = [...namespaces][0]

  const only = (file: ManifestFile, kind: string): K8sObject | undefined => {
    const found = manifests[file].filter((doc) => doc?.kind === kind)
    if (found.length !== 1) report(`${file}: expected one ${kind}, found ${found.length}`)
    return found[0]
  }
  const configMap = only('configmap.yaml', 'ConfigMap')
  const gateway = only('deployment.yaml', 'Deployment')
  const service = only('service.yaml', 'Service')
  const upstreamDeployments = manifests['upstream.yaml'].filter((doc) => doc?.kind === 'Deployment')
  const upstreamServices = manifests['upstream.yaml'].filter((doc) => doc?.kind === 'Service')
  if (upstreamDeployments.length === 0 || upstreamServices.length === 0) report('upstream.yaml: expected a Deployment and a Service')
  if (configMap === undefined || gateway === undefined || service === undefined) return problems

  // Selectors pick their own pods, and only those.
  for (const deployment of [gateway, ...upstreamDeployments]) {
    if (!selects(matchLabels(deployment), podLabels(deployment))) {
      report(`Deployment ${deployment.metadata?.name}: spec.selector.matchLabels does not match its pod template labels`)
    }
  }
  const gatewayLabels = podLabels(gateway)
  if (!selects(service.spec?.selector as Labels | undefined, gatewayLabels)) report(`Service ${service.metadata?.name}: its selector does not pick the gateway pods`)
  for (const upstream of upstreamDeployments) {
    if (selects(service.spec?.selector as Labels | undefined, podLabels(upstream))) report(`Service ${service.metadata?.name}: its selector also picks the ${upstream.metadata?.name} pods`)
  }

  const pod = gateway.spec?.template?.spec
  const containers = pod?.containers ?? []
  if (containers.length !== 1) report(`deployment.yaml: expected one container, found ${containers.length}`)
  const container = containers[0]
  if (pod === undefined || container === undefined) return problems
  const ports = container.ports ?? []

  // What the container runs: the image's ENTRYPOINT (node dist/cli.js) with `args`.
  if (container.command !== undefined && !container.command.includes('dist/cli.js')) {
    report(`container ${container.name}: "command" replaces the image's ENTRYPOINT and does not run dist/cli.js`)
  }
  const flags = cliFlags(container.args ?? [])
  const configPath = flags.get('--config')
  if (configPath === undefined) report(`container ${container.name}: no --config argument`)
  const workers = flags.get('--workers')
  if (workers === undefined || !/^[1-9]\d*$/.test(workers) || Number(workers) > 1024) {
    report(`container ${container.name}: --workers must be a number from 1 to 1024 (the default and "auto" count the node's cores), got ${JSON.stringify(workers)}`)
  }
  if (flags.has('--check') || flags.has('--reload') || flags.has('--demo')) report(`container ${container.name}: --check, --reload and --demo do not run the gateway`)
  const envPort = container.env?.find((e) => e.name === 'PORT')?.value
  // cli-main.ts: --host and --port (default: PORT from the environment) override the config's listen.
  const overrides = { host: flags.get('--host'), port: flags.get('--port') ?? envPort }

  // --config names a file of the mounted ConfigMap.
  let configText: string | undefined
  if (configPath !== undefined) {
    const mount = (container.volumeMounts ?? []).find((m) => m.mountPath !== undefined &&
      (m.subPath !== undefined ? m.mountPath === configPath : configPath.startsWith(m.mountPath.replace(/\/?$/, '/'))))
    if (mount === undefined) {
      report(`container ${container.name}: no volume mount holds --config ${configPath}`)
    } else {
      const inVolume = mount.subPath ?? posix.relative(mount.mountPath ?? '', configPath)
      const volume = pod.volumes?.find((v) => v.name === mount.name)
      const source = volume?.configMap
      if (source === undefined) {
        report(`volume ${mount.name} mounted at ${mount.mountPath} is not a ConfigMap volume`)
      } else if (source.name !== configMap.metadata?.name) {
        report(`volume ${mount.name} mounts ConfigMap ${source.name}, not ${configMap.metadata?.name}`)
      } else {
        const key = source.items === undefined ? inVolume : source.items.find((item) => item.path === inVolume)?.key
        configText = key === undefined ? undefined : configMap.data?.[key]
        if (configText === undefined) report(`--config ${configPath}: ConfigMap ${source.name} has no key that is mounted as ${inVolume}`)
      }
    }
  }
  if (configText === undefined) return problems

  // The embedded config passes the checks of `--check` (loadGatewayConfig), with the container's overrides.
  let config: CheckedGatewayConfig
  try {
    config = checkGatewayConfig(withOverrides(JSON.parse(configText), overrides))
    resolveOptions(config.proxy)
  } catch (err) {
    report(`gateway.json: ${(err as Error).message}`)
    return problems
  }

  if (config.host !== '0.0.0.0') report(`gateway.json: listen.host is ${config.host}; in a pod it must be 0.0.0.0 to be reachable`)
  const port = config.port
  if (!ports.some((p) => p.containerPort === port)) report(`container ${container.name}: no containerPort equals listen.port ${port}`)

  // Probes: the config's health paths on the listen port.
  const health = config.proxy.health
  if (health === undefined) report('gateway.json: no "health" endpoints for the probes')
  const paths = { livenessProbe: health?.live ?? '/healthz', readinessProbe: health?.ready ?? '/readyz' }
  for (const probe of ['livenessProbe', 'readinessProbe'] as const) {
    const get = container[probe]?.httpGet
    if (get === undefined) {
      report(`container ${container.name}: ${probe} is not an httpGet probe`)
      continue
    }
    if (paths[probe] === false || get.path !== paths[probe]) report(`${probe}: path ${get.path} is not the config's ${JSON.stringify(paths[probe])}`)
    if (portNumber(get.port, ports) !== port) report(`${probe}: port ${get.port} is not listen.port ${port}`)
    if (get.scheme !== undefined && get.scheme !== 'HTTP') report(`${probe}: scheme ${get.scheme}; the gateway listens in plain HTTP`)
  }

  // The Service reaches the listen port.
  const servicePorts = service.spec?.ports ?? []
  if (service.spec?.clusterIP === 'None' || (service.spec?.type ?? 'ClusterIP') !== 'ClusterIP') report(`Service ${service.metadata?.name}: expected a ClusterIP Service`)
  if (servicePorts.length === 0) report(`Service ${service.metadata?.name}: no ports`)
  for (const sp of servicePorts) {
    const target = portNumber(sp.targetPort ?? sp.port, ports)
    if (target !== port) report(`Service ${service.metadata?.name}: targetPort ${sp.targetPort} is ${target ?? 'no container port'}, not listen.port ${port}`)
  }

  // Shutdown: endpoints go before SIGTERM, and the kubelet's SIGKILL comes after the gateway's own deadlines.
  const sleep = preStopSleep(container)
  const closeGrace = (config.proxy.closeGracePeriod ?? DEFAULTS.closeGracePeriod) / 1000
  const grace = pod.terminationGracePeriodSeconds ?? DEFAULT_TERMINATION_GRACE_SECONDS
  if (sleep === null) {
    report(`container ${container.name}: no preStop sleep`)
  } else {
    if (!(grace > sleep + closeGrace + KILL_MARGIN_SECONDS)) {
      report(`terminationGracePeriodSeconds ${grace} is not more than preStop sleep ${sleep} + closeGracePeriod ${closeGrace} + kill margin ${KILL_MARGIN_SECONDS}`)
    }
    const period = container.readinessProbe?.periodSeconds ?? DEFAULT_PROBE_PERIOD_SECONDS
    if (period > sleep) report(`readinessProbe periodSeconds ${period} is longer than the preStop sleep ${sleep}`)
  }

  // Groups that follow DNS name a headless Service of upstream.yaml, and balance by a consistent hash.
  const followed = Object.entries(config.proxy.upstreams ?? {}).filter(([, group]) => group.resolve !== undefined)
  if (followed.length === 0) report('gateway.json: no upstream group follows a headless Service (resolve)')
  for (const [name, group] of followed) {
    if (group.balance !== 'hash' || group.hash === undefined || group.consistent !== true) {
      report(`group ${name}: replicas agree without shared state only with balance "hash", a hash key and consistent: true`)
    }
    for (const server of group.servers) {
      const url = new URL(server.url)
      const host = new RegExp(`^([a-z0-9-]+)\\.([a-z0-9-]+)\\.${CLUSTER_DOMAIN.replaceAll('.', '\\.')}$`).exec(url.hostname)
      if (host === null) {
        report(`group ${name}: server ${server.url} is not <service>.<namespace>.${CLUSTER_DOMAIN}`)
        continue
      }
      const [, serviceName, serviceNamespace] = host
      if (serviceNamespace !== namespace) report(`group ${name}: server ${server.url} names namespace ${serviceNamespace}, the manifests use ${namespace}`)
      const headless = upstreamServices.find((s) => s.metadata?.name === serviceName)
      if (headless === undefined) {
        report(`group ${name}: no Service ${serviceName} in upstream.yaml`)
        continue
      }
      if (headless.spec?.clusterIP !== 'None') report(`Service ${serviceName}: not headless (clusterIP: None), so its name resolves to one virtual IP, not to the pods`)
      const urlPort = Number(url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : url.port)
      const sp = headless.spec?.ports?.find((p) => p.port === urlPort)
      if (sp === undefined) report(`Service ${serviceName}: no port ${urlPort} (the port of ${server.url})`)
      const backends = upstreamDeployments.filter((d) => selects(headless.spec?.selector as Labels | undefined, podLabels(d)))
      if (backends.length === 0) report(`Service ${serviceName}: its selector picks no Deployment's pods`)
      for (const backend of backends) {
        const backendContainers = backend.spec?.template?.spec?.containers ?? []
        const backendPorts = backendContainers.flatMap((c) => c.ports ?? [])
        // The gateway dials the pod addresses at the URL's port: the Service's targetPort must be that port.
        if (sp !== undefined && portNumber(sp.targetPort ?? sp.port, backendPorts) !== urlPort) {
          report(`Service ${serviceName}: targetPort ${sp.targetPort} is not the pods' port ${urlPort} that the gateway dials`)
        }
        if (!backendContainers.some((c) => c.readinessProbe !== undefined)) {
          report(`Deployment ${backend.metadata?.name}: no readinessProbe, so its pods are in the DNS answer before they serve`)
        }
      }
    }
  }

  // The image: what it exposes and runs, and as whom.
  const stages = dockerStages(bundle.dockerfile)
  const final = stages.at(-1)
  if (final === undefined) {
    report('Dockerfile: no FROM')
    return problems
  }
  if (!/^node:20(\b|-)/.test(final.from)) report(`Dockerfile: the runtime stage is FROM ${final.from}, not node:20`)
  const last = (op: string): string | undefined => final.instructions.filter((i) => i.op === op).at(-1)?.arg
  const exposed = final.instructions.filter((i) => i.op === 'EXPOSE').flatMap((i) => i.arg.split(/\s+/)).map((p) => Number(p.split('/')[0]))
  if (!exposed.includes(port)) report(`Dockerfile: EXPOSE ${exposed.join(' ')} is not listen.port ${port}`)
  const entrypoint = execForm(last('ENTRYPOINT') ?? '')
  if (entrypoint === null || entrypoint[0] !== 'node' || entrypoint[1] !== 'dist/cli.js') {
    report(`Dockerfile: ENTRYPOINT ${last('ENTRYPOINT')} is not the exec form ["node", "dist/cli.js"] (node must be PID 1 to get SIGTERM)`)
  }
  const cmd = execForm(last('CMD') ?? '')
  if (cmd === null || cliFlags(cmd).get('--config') !== configPath) report(`Dockerfile: CMD ${last('CMD')} does not point --config at ${configPath}`)
  const user = last('USER')?.split(':')[0]
  if (user === undefined || user === 'root' || user === '0') report('Dockerfile: the runtime stage runs as root (no USER)')

  // Security: non-root, read-only root, and a user the kubelet can check.
  const security = { ...pod.securityContext, ...container.securityContext }
  if (security.runAsNonRoot !== true) report(`container ${container.name}: runAsNonRoot is not true`)
  if (security.runAsNonRoot === true && user !== undefined && !/^\d+$/.test(user) && !(typeof security.runAsUser === 'number' && security.runAsUser > 0)) {
    report(`container ${container.name}: runAsNonRoot with the image's non-numeric USER ${user} needs a numeric runAsUser`)
  }
  if (security.readOnlyRootFilesystem !== true) report(`container ${container.name}: readOnlyRootFilesystem is not true`)
  if (security.allowPrivilegeEscalation !== false) report(`container ${container.name}: allowPrivilegeEscalation is not false`)
  if (port < 1024) report(`listen.port ${port}: a non-root process cannot bind below 1024`)
  const requests = container.resources?.requests
  if (requests?.cpu === undefined || requests.memory === undefined) report(`container ${container.name}: no cpu and memory requests`)
  else if (workers !== undefined && Number(workers) > 2 * Math.max(1, Math.ceil(cpuCores(requests.cpu)))) report(`--workers ${workers} is more than two per CPU requested (${requests.cpu})`)
  if (container.image?.endsWith(':latest') === true && (container.imagePullPolicy ?? 'Always') === 'Always') {
    report(`container ${container.name}: a locally built :latest image needs imagePullPolicy IfNotPresent or Never`)
  }
  return problems
}

// ---------------------------------------------------------------------------------------------------------------

const shipped = loadBundle()

/** The gateway Deployment's container in `bundle` (the object itself, for mutations of a copy). */
function gatewayContainer (bundle: Bundle): Container {
  const deployment = bundle.manifests['deployment.yaml'].find((d) => d.kind === 'Deployment')
  const container = deployment?.spec?.template?.spec?.containers?.[0]
  if (container === undefined) throw new Error('deployment.yaml: no container')
  return container
}

function find (bundle: Bundle, file: ManifestFile, kind: string, name?: string): K8sObject {
  const found = bundle.manifests[file].find((d) => d.kind === kind && (name === undefined || d.metadata?.name === name))
  if (found === undefined) throw new Error(`${file}: no ${kind} ${name ?? ''}`)
  return found
}

function configOf (bundle: Bundle): Record<string, unknown> & { upstreams: Record<string, Record<string, unknown> & { servers: Array<{ url: string }> }> } {
  return JSON.parse(find(bundle, 'configmap.yaml', 'ConfigMap').data?.['gateway.json'] ?? '{}')
}

function editConfig (bundle: Bundle, edit: (config: ReturnType<typeof configOf>) => void): void {
  const config = configOf(bundle)
  edit(config)
  const data = find(bundle, 'configmap.yaml', 'ConfigMap').data
  if (data !== undefined) data['gateway.json'] = JSON.stringify(config)
}

function podSpec (bundle: Bundle, file: ManifestFile): PodSpec {
  const spec = find(bundle, file, 'Deployment').spec?.template?.spec
  if (spec === undefined) throw new Error(`${file}: no pod spec`)
  return spec
}

t.test('every manifest parses as YAML, one or more Kubernetes objects each', async (t) => {
  for (const file of MANIFESTS) {
    t.ok(shipped.manifests[file].length > 0, `${file} has documents`)
  }
  t.same(shipped.manifests['upstream.yaml'].map((d) => d.kind), ['Deployment', 'Service'])
})

t.test('the manifests, the embedded gateway.json and the Dockerfile agree', async (t) => {
  t.same(deploymentProblems(shipped), [])
  // The values the checks compared, as shipped.
  const container = gatewayContainer(shipped)
  const config = checkGatewayConfig(configOf(shipped))
  const resolved = resolveOptions(config.proxy)
  t.equal(config.host, '0.0.0.0')
  t.same(resolved.health, { live: container.livenessProbe?.httpGet?.path, ready: container.readinessProbe?.httpGet?.path })
  t.same(container.ports?.map((p) => p.containerPort), [config.port])
  const chat = resolved.groups.find((g) => g.name === 'chat')
  t.match(chat, { balance: 'hash', consistent: true, discovery: { interval: Number } })
  t.equal(chat?.servers[0].hostname, 'chat.default.svc.cluster.local')
  t.equal(find(shipped, 'upstream.yaml', 'Service', 'chat').spec?.clusterIP, 'None')
})

t.test('the container\'s arguments and the image\'s CMD pass the real `--check`', async (t) => {
  const file = join(mkdtempSync(join(tmpdir(), 'fastify-ws-proxy-deploy-')), 'gateway.json')
  writeFileSync(file, find(shipped, 'configmap.yaml', 'ConfigMap').data?.['gateway.json'] ?? '')
  const cmd = execForm(dockerStages(shipped.dockerfile).at(-1)?.instructions.filter((i) => i.op === 'CMD').at(-1)?.arg ?? '')
  for (const [what, args] of [['Deployment args', gatewayContainer(shipped).args ?? []], ['Dockerfile CMD', cmd ?? []]] as const) {
    const path = cliFlags(args).get('--config')
    t.equal(path, '/etc/fastify-ws-proxy/gateway.json', `${what}: --config`)
    // Captured only while main() runs: TAP itself writes to stdout.
    const out = t.capture(process.stdout, 'write')
    const code = await main(['--check', ...args.map((a) => a === path ? file : a)])
    out.restore()
    t.equal(code, 0, `${what}: exit 0`)
    t.match(out().map((c) => String(c.args[0])).join(''), /^config ok: /, `${what}: config ok`)
  }
})

/** Each mutation of a copy of the shipped files, and what deploymentProblems() must then say. */
const mutations: Array<[string, (b: Bundle) => void, RegExp]> = [
  ['a readiness path that is not health.ready', (b) => { gatewayContainer(b).readinessProbe = { httpGet: { path: '/ready', port: 'http' }, periodSeconds: 5 } }, /readinessProbe: path \/ready /],
  ['a liveness path that is not health.live', (b) => { (gatewayContainer(b).livenessProbe?.httpGet ?? {}).path = '/live' }, /livenessProbe: path \/live /],
  ['health.ready changed in the config only', (b) => editConfig(b, (c) => { c.health = { live: '/healthz', ready: '/ready' } }), /readinessProbe: path \/readyz is not the config's "\/ready"/],
  ['no health endpoints in the config', (b) => editConfig(b, (c) => { delete c.health }), /no "health" endpoints/],
  ['a liveness probe on another port', (b) => { (gatewayContainer(b).livenessProbe?.httpGet ?? {}).port = 9090 }, /livenessProbe: port 9090 is not listen\.port 8080/],
  ['a containerPort that is not listen.port', (b) => { (gatewayContainer(b).ports ?? [])[0].containerPort = 8081 }, /no containerPort equals listen\.port 8080/],
  ['listen.port changed in the config only', (b) => editConfig(b, (c) => { c.listen = { host: '0.0.0.0', port: 9000 } }), /EXPOSE 8080 is not listen\.port 9000/],
  ['PORT in the container environment', (b) => { gatewayContainer(b).env = [{ name: 'PORT', value: '9999' }] }, /no containerPort equals listen\.port 9999/],
  ['listen.host 127.0.0.1', (b) => editConfig(b, (c) => { c.listen = { host: '127.0.0.1', port: 8080 } }), /listen\.host is 127\.0\.0\.1/],
  ['--host 127.0.0.1 in the args', (b) => { gatewayContainer(b).args?.push('--host', '127.0.0.1') }, /listen\.host is 127\.0\.0\.1/],
  ['an option the schema does not know', (b) => editConfig(b, (c) => { c.bogus = true }), /^gateway\.json: .*bogus/],
  ['balance "hash" without a key (a cross-field rule of resolveOptions)', (b) => editConfig(b, (c) => { delete c.upstreams.chat.hash }), /^gateway\.json: .*hash/],
  ['a round-robin group', (b) => editConfig(b, (c) => { Object.assign(c.upstreams.chat, { balance: 'round-robin', hash: undefined, consistent: undefined }) }), /balance "hash", a hash key and consistent: true/],
  ['a group that does not follow DNS', (b) => editConfig(b, (c) => { delete c.upstreams.chat.resolve }), /no upstream group follows a headless Service/],
  ['a Service targetPort naming no container port', (b) => { (find(b, 'service.yaml', 'Service').spec?.ports ?? [])[0].targetPort = 'web' }, /targetPort web is no container port/],
  ['a Service selector that misses the gateway pods', (b) => { (find(b, 'service.yaml', 'Service').spec ?? {}).selector = { app: 'gateway' } }, /does not pick the gateway pods/],
  ['a ConfigMap key renamed', (b) => {
    const cm = find(b, 'configmap.yaml', 'ConfigMap')
    cm.data = { 'config.json': cm.data?.['gateway.json'] ?? '' }
  }, /has no key that is mounted as gateway\.json/],
  ['a ConfigMap renamed', (b) => { (find(b, 'configmap.yaml', 'ConfigMap').metadata ?? {}).name = 'gateway-config' }, /mounts ConfigMap fastify-ws-proxy, not gateway-config/],
  ['a mount path that is not --config\'s directory', (b) => { (gatewayContainer(b).volumeMounts ?? [])[0].mountPath = '/config' }, /no volume mount holds --config/],
  ['--config elsewhere', (b) => { gatewayContainer(b).args = ['--config=/etc/gateway.json', '--workers', '2'] }, /no volume mount holds --config \/etc\/gateway\.json/],
  ['--workers auto', (b) => { gatewayContainer(b).args = ['-c', '/etc/fastify-ws-proxy/gateway.json', '-w', 'auto'] }, /--workers must be a number/],
  ['more workers than the CPU request can run', (b) => { gatewayContainer(b).args = ['--config', '/etc/fastify-ws-proxy/gateway.json', '--workers=8'] }, /--workers 8 is more than two per CPU requested \(1\)/],
  ['a grace period too short for preStop + closeGracePeriod + kill margin', (b) => { podSpec(b, 'deployment.yaml').terminationGracePeriodSeconds = 20 }, /terminationGracePeriodSeconds 20 is not more than preStop sleep 5 \+ closeGracePeriod 10 \+ kill margin 5/],
  ['a closeGracePeriod raised in the config only', (b) => editConfig(b, (c) => { c.closeGracePeriod = 25_000 }), /terminationGracePeriodSeconds 30 is not more than/],
  ['no preStop hook', (b) => { delete gatewayContainer(b).lifecycle }, /no preStop sleep/],
  ['a readiness period longer than the preStop sleep', (b) => { (gatewayContainer(b).readinessProbe ?? {}).periodSeconds = 10 }, /readinessProbe periodSeconds 10 is longer than the preStop sleep 5/],
  ['a chat Service that is not headless', (b) => { delete find(b, 'upstream.yaml', 'Service', 'chat').spec?.clusterIP }, /Service chat: not headless/],
  ['a server in another namespace', (b) => editConfig(b, (c) => { c.upstreams.chat.servers = [{ url: 'http://chat.prod.svc.cluster.local:8080' }] }), /names namespace prod, the manifests use default/],
  ['a server on another port', (b) => editConfig(b, (c) => { c.upstreams.chat.servers = [{ url: 'http://chat.default.svc.cluster.local:9090' }] }), /Service chat: no port 9090/],
  ['a server by short name', (b) => editConfig(b, (c) => { c.upstreams.chat.servers = [{ url: 'http://chat:8080' }] }), /is not <service>\.<namespace>\.svc\.cluster\.local/],
  ['a headless Service whose targetPort is not the pods\' port', (b) => { (find(b, 'upstream.yaml', 'Service', 'chat').spec?.ports ?? [])[0].targetPort = 9000 }, /targetPort 9000 is not the pods' port 8080/],
  ['a chat Deployment selector that misses its pods', (b) => { (find(b, 'upstream.yaml', 'Deployment').spec ?? {}).selector = { matchLabels: { app: 'chat' } } }, /Deployment chat: spec\.selector\.matchLabels does not match/],
  ['a gateway Deployment selector that misses its pods', (b) => { (find(b, 'deployment.yaml', 'Deployment').spec ?? {}).selector = { matchLabels: { app: 'x' } } }, /Deployment fastify-ws-proxy: spec\.selector\.matchLabels does not match/],
  ['chat pods without a readiness probe', (b) => { delete podSpec(b, 'upstream.yaml').containers?.[0].readinessProbe }, /Deployment chat: no readinessProbe/],
  ['a Dockerfile exposing another port', (b) => { b.dockerfile = b.dockerfile.replace(/^EXPOSE 8080$/m, 'EXPOSE 3000') }, /Dockerfile: EXPOSE 3000 is not listen\.port 8080/],
  ['a shell-form ENTRYPOINT', (b) => { b.dockerfile = b.dockerfile.replace(/^ENTRYPOINT .*$/m, 'ENTRYPOINT node dist/cli.js') }, /Dockerfile: ENTRYPOINT node dist\/cli\.js is not the exec form/],
  ['a CMD pointing elsewhere', (b) => { b.dockerfile = b.dockerfile.replace(/^CMD .*$/m, 'CMD ["--config", "/gateway.json"]') }, /Dockerfile: CMD .* does not point --config/],
  ['an image running as root', (b) => { b.dockerfile = b.dockerfile.replace(/^USER .*$/m, '') }, /runs as root/],
  ['runAsNonRoot with a named USER and no runAsUser', (b) => { delete podSpec(b, 'deployment.yaml').securityContext?.runAsUser }, /needs a numeric runAsUser/],
  ['a writable root file system', (b) => { (gatewayContainer(b).securityContext ?? {}).readOnlyRootFilesystem = false }, /readOnlyRootFilesystem is not true/],
  ['no resource requests', (b) => { delete gatewayContainer(b).resources }, /no cpu and memory requests/],
  ['a :latest image pulled Always', (b) => { delete gatewayContainer(b).imagePullPolicy }, /imagePullPolicy IfNotPresent or Never/],
  ['a manifest in another namespace', (b) => { (find(b, 'service.yaml', 'Service').metadata ?? {}).namespace = 'edge' }, /several namespaces/]
]

t.test('each mutation of a copy is reported (the checks are not vacuous)', async (t) => {
  for (const [what, mutate, expected] of mutations) {
    const copy = structuredClone(shipped)
    mutate(copy)
    const problems = deploymentProblems(copy)
    t.ok(problems.some((p) => expected.test(p)), `${what}: reported`, { problems, expected })
  }
  t.same(deploymentProblems(shipped), [], 'the shipped files were not changed by the mutations')
})
