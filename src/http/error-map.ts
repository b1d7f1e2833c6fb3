import {
  FST_WS_PROXY_BAD_RESPONSE,
  FST_WS_PROXY_CONNECT_FAILED,
  FST_WS_PROXY_CONNECT_TIMEOUT,
  FST_WS_PROXY_READ_TIMEOUT,
  FST_WS_PROXY_REQUEST_NOT_SENT,
  FST_WS_PROXY_UPSTREAM_RESET
} from '../errors.js'
import type { AttemptFailure } from '../options/upstream-schema.js'

// System errors raised while the connection is being made: nothing reached the upstream.
const CONNECT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ENOENT'])

// The upstream's certificate was refused (verification is on by default): the connection was never established.
const TLS_VERIFY_CODES = new Set(['DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_GET_ISSUER_CERT', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'CERT_UNTRUSTED',
  'CERT_REVOKED', 'ERR_TLS_CERT_ALTNAME_INVALID'])

interface CodedError extends Error { code?: string }

// undici refused the request itself before sending anything: the proxy built something invalid (its own bug).
const NOT_SENT_CODES = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED', 'UND_ERR_INVALID_RETURN_VALUE'])

/**
 * Maps an undici/system error met before the response head to the coded error the client gets,
 * with nginx's statuses: 504 for timeouts, 502 for everything the upstream did wrong. The original is `cause`.
 */
export function upstreamError (err: CodedError, origin: string, connectTimeout: number, readTimeout: number): Error {
  const code = err.code ?? ''
  if (code.startsWith('FST_WS_PROXY_')) return err
  const cause = { cause: err }
  if (code === 'UND_ERR_CONNECT_TIMEOUT') return new FST_WS_PROXY_CONNECT_TIMEOUT(origin, connectTimeout, cause)
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return new FST_WS_PROXY_READ_TIMEOUT(origin, readTimeout, cause)
  if (CONNECT_CODES.has(code)) return new FST_WS_PROXY_CONNECT_FAILED(origin, code, cause)
  if (NOT_SENT_CODES.has(code)) return new FST_WS_PROXY_REQUEST_NOT_SENT(origin, `${code}: ${err.message}`, cause)
  if (TLS_VERIFY_CODES.has(code)) return new FST_WS_PROXY_CONNECT_FAILED(origin, `${code} (${err.message})`, cause)
  // undici 7 leaves an HTTPParserError's `code` undefined (it looks llhttp's error number up in the name → number
  // table), so llhttp's rejections of a garbage head are recognised by name.
  if (err.name === 'HTTPParserError' || code.startsWith('HPE_') || code === 'UND_ERR_HEADERS_OVERFLOW' || code === 'UND_ERR_INFO' ||
      (code === 'UND_ERR_SOCKET' && (err.message === 'bad upgrade' || err.message === 'bad response'))) {
    // undici's 'bad upgrade' (a 101 nobody asked for) and 'bad response' (e.g. a bare 100) land here.
    return new FST_WS_PROXY_BAD_RESPONSE(origin, err.message, cause)
  }
  // undici's parser asserts on some heads llhttp lets through (status 099, a 101 without Upgrade): garbage too,
  // and the assertion's text (undici's source) is no message for a client.
  if (code === 'ERR_ASSERTION') return new FST_WS_PROXY_BAD_RESPONSE(origin, 'malformed response head', cause)
  return new FST_WS_PROXY_UPSTREAM_RESET(origin, code === '' ? err.message : code, cause)
}

/**
 * What a failed attempt was, in nginx `proxy_next_upstream` words (null: not the upstream's doing, e.g. a body
 * over `limits.body`), and whether the request had reached the server (a connection was made).
 */
export function attemptFailure (err: CodedError): { kind: AttemptFailure | null, sent: boolean } {
  const code = err.code ?? ''
  if (code === 'UND_ERR_CONNECT_TIMEOUT') return { kind: 'timeout', sent: false }
  if (CONNECT_CODES.has(code) || TLS_VERIFY_CODES.has(code)) return { kind: 'error', sent: false }
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'FST_WS_PROXY_SEND_TIMEOUT') return { kind: 'timeout', sent: true }
  if (code.startsWith('FST_WS_PROXY_')) return { kind: null, sent: true }
  // Not the server's doing, and another server would be handed the same invalid request.
  if (NOT_SENT_CODES.has(code)) return { kind: null, sent: false }
  const mapped = upstreamError(err, '', 0, 0) as CodedError
  return { kind: mapped.code === 'FST_WS_PROXY_BAD_RESPONSE' ? 'invalid_header' : 'error', sent: true }
}

// What a client is told of an upstream failure: what happened, never where (addresses, ports, socket paths, system
// errors stay in the log, as the error's cause).
const PUBLIC_MESSAGES: Readonly<Record<string, string>> = {
  FST_WS_PROXY_CONNECT_FAILED: 'Could not connect to the upstream',
  FST_WS_PROXY_CONNECT_TIMEOUT: 'Connecting to the upstream timed out',
  FST_WS_PROXY_READ_TIMEOUT: 'The upstream did not respond in time',
  FST_WS_PROXY_UPSTREAM_RESET: 'The upstream closed the connection before responding',
  FST_WS_PROXY_BAD_RESPONSE: 'The upstream sent an invalid response',
  FST_WS_PROXY_REQUEST_NOT_SENT: 'The proxy could not send the request to the upstream',
  FST_WS_PROXY_SEND_TIMEOUT: 'The upstream did not take the request body in time',
  FST_WS_PROXY_NO_LIVE_UPSTREAM: 'No live upstream server'
}

/**
 * The error a client gets for an upstream failure (unless `exposeErrors`): same code and status, a message without
 * internal addresses plus the request id to find the log line, and the detailed error as its cause (logged).
 */
export function publicError (err: Error, requestId: string): Error {
  const coded = err as Error & { code?: string, statusCode?: number }
  // Every error upstreamError() returns is coded; those that name nothing internal (413 limits.body) go as they are.
  const text = PUBLIC_MESSAGES[coded.code as string]
  if (text === undefined) return err
  const safe = new Error(`${text} (request ${requestId})`, { cause: err }) as Error & { code?: string, statusCode?: number }
  safe.name = err.name
  safe.code = coded.code
  safe.statusCode = coded.statusCode
  return safe
}
