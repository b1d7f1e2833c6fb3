import { ATTEMPT_FAILURES, type AttemptFailure } from '../options/upstream-schema.js'
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

// The statuses the failures name (`http_503` → 503), and the lowest, below which an answer is never one.
const STATUS_FAILURES = new Map<number, AttemptFailure>(ATTEMPT_FAILURES.filter((f) => f.startsWith('http_')).map((f) => [Number(f.slice(5)), f]))
const LOWEST_STATUS_FAILURE = Math.min(...STATUS_FAILURES.keys())

/** The failure an answer's status is when the group counts it (`failOn`) or tries it again (`nextUpstream.on`), else undefined. */
export function statusFailure (policy: NextUpstreamPolicy, statusCode: number): AttemptFailure | undefined {
  const kind = statusCode < LOWEST_STATUS_FAILURE ? undefined : STATUS_FAILURES.get(statusCode)
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
