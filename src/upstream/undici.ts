import { createRequire } from 'node:module'
import type * as Undici from 'undici'

// The parts of undici the plugin runs, each loaded from its own module. undici's index loads all of undici
// (fetch, WebSocket, EventSource, the cache, mock and proxy agents): about 3 MB more heap for the life of the process,
// which V8 marks again in every major GC. undici 7 has no `exports` map, so these paths resolve; the types are undici's.
const load = createRequire(import.meta.url)

export const UndiciPool = load('undici/lib/dispatcher/pool.js') as typeof Undici.Pool
export const buildConnector = load('undici/lib/core/connect.js') as typeof Undici.buildConnector
export const errors = load('undici/lib/core/errors.js') as typeof Undici.errors
/** `dispatcher.request()`: the index is what adds it to Dispatcher.prototype, so it is called on a pool, `request.call(pool, ...)`. */
export const request = load('undici/lib/api/api-request.js') as
  (this: Undici.Dispatcher, options: Undici.Dispatcher.RequestOptions) => Promise<Undici.Dispatcher.ResponseData>
