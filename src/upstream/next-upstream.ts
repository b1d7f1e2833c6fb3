import type { AttemptFailure } from '../options/upstream-schema.js'
import type { UpstreamGroup } from './group.js'
import type { UpstreamServer } from './server.js'

// nginx `proxy_next_upstream`, kept apart from the exchange that relays the answer (as undici keeps its RetryHandler
// apart from the dispatcher): plain functions of the group's policy and one request's attempts. The exchange acts on
// what they return (counts the retry, aborts or dispatches the attempt).

/** The group settings the policy reads. */
export type NextUpstreamPolicy = Pick<UpstreamGroup, 'failOn' | 'retryOn' | 'nonIdempotent' | 'tries' | 'retryTimeout' | 'pick'>

/** What the policy reads of one request's attempts (the exchange holds them). */
export interface AttemptState {
  readonly method: string
  /** Whether the request can be sent again: bodies are streamed, not buffered, so once undici has read one it cannot. */
  readonly resendable: boolean
  /** The server of the attempt that failed. */
  readonly server: UpstreamServer
  /** The servers tried so far, once a retry has been considered (null before); the next one is added here. */
  tried: UpstreamServer[] | null
  /** The request's key hash (hash methods), and performance.now() at the first dispatch. */
  readonly hash: number
  readonly startedAt: number
}

// nginx: the methods not retried once the request reached a server, unless `non_idempotent`.
const NON_IDEMPOTENT = new Set(['POST', 'LOCK', 'PATCH'])

const STATUS_FAILURES = new Map<number, AttemptFailure>([[500, 'http_500'], [502, 'http_502'], [503, 'http_503'], [504, 'http_504'],
  [403, 'http_403'], [404, 'http_404'], [429, 'http_429']])

/** The failure an answer's status is when the group counts it (`failOn`) or tries it again (`nextUpstream.on`), else undefined. */
export function statusFailure (policy: NextUpstreamPolicy, statusCode: number): AttemptFailure | undefined {
  const kind = statusCode < 403 ? undefined : STATUS_FAILURES.get(statusCode)
  return kind !== undefined && (policy.failOn.has(kind) || policy.retryOn.has(kind)) ? kind : undefined
}

/**
 * The server for another attempt after one that failed with `kind` (`sent`: the request reached the server),
 * or null: nginx's proxy_next_upstream rules, bounded by tries and time, and only while the request can be sent again.
 */
export function nextServer (policy: NextUpstreamPolicy, attempt: AttemptState, kind: AttemptFailure, sent: boolean): UpstreamServer | null {
  if (!policy.retryOn.has(kind)) return null
  if (sent && !policy.nonIdempotent && NON_IDEMPOTENT.has(attempt.method)) return null
  if (!attempt.resendable) return null
  const tried = attempt.tried ??= [attempt.server]
  if (policy.tries > 0 && tried.length >= policy.tries) return null
  if (policy.retryTimeout > 0 && performance.now() - attempt.startedAt >= policy.retryTimeout) return null
  const next = policy.pick(attempt.hash, tried)
  if (next !== null) tried.push(next)
  return next
}
