import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import type { WsProxyOptions } from '../options/schema.js'
import type { OptionProblem } from '../options/problems.js'
import { parseUpstream } from '../options/upstream-url.js'

/** How long one host name may take to resolve before it counts as not resolving. */
const LOOKUP_TIMEOUT_MS = 5000

/** A host name and the option paths that name it. */
function hostsOf (options: WsProxyOptions): Map<string, string[]> {
  const hosts = new Map<string, string[]>()
  const add = (url: string, path: string): void => {
    const { hostname, socketPath } = parseUpstream(url, path)
    if (socketPath !== null || isIP(hostname) !== 0) return
    hosts.set(hostname, [...(hosts.get(hostname) ?? []), path])
  }
  const groups = options.upstreams ?? {}
  // A route naming a group has no host of its own; a group that re-resolves (`resolve`) expects names to come and go.
  const target = (url: string, path: string): void => {
    if (!Object.hasOwn(groups, parseUpstream(url, path).host)) add(url, path)
  }
  if (options.upstream !== undefined) target(options.upstream, 'upstream')
  options.routes?.forEach((route, i) => {
    target(route.upstream, `routes/${i}/upstream`)
    if (route.upgradeUpstream !== undefined) target(route.upgradeUpstream, `routes/${i}/upgradeUpstream`)
  })
  for (const [name, group] of Object.entries(groups)) {
    if (group.resolve === undefined) group.servers.forEach((server, i) => add(server.url, `upstreams/${name}/servers/${i}/url`))
  }
  return hosts
}

async function resolves (hostname: string): Promise<string | null> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<string>((resolve) => { timer = setTimeout(resolve, LOOKUP_TIMEOUT_MS, `no answer within ${LOOKUP_TIMEOUT_MS} ms`) })
  try {
    return await Promise.race([lookup(hostname).then(() => null, (err: NodeJS.ErrnoException) => String(err.code)), late])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * The upstream host names of valid options that do not resolve now, as nginx -t reports `host not found in
 * upstream`: an error for `--check`, a warning when the gateway starts (platforms often publish DNS names late).
 */
export async function unresolvedHosts (options: WsProxyOptions): Promise<OptionProblem[]> {
  const problems: OptionProblem[] = []
  await Promise.all([...hostsOf(options)].map(async ([hostname, paths]) => {
    const failure = await resolves(hostname)
    if (failure === null) return
    for (const path of paths) problems.push({ path, reason: `host ${JSON.stringify(hostname)} does not resolve (${failure}); requests to it get 502` })
  }))
  return problems
}
