/** pino's levels and their numbers; `silent` logs nothing. The one list behind `logLevel` and `tunnelLogLevel`. */
export const LOG_LEVEL_NUMBERS = Object.freeze({ trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity })

export type LogLevel = keyof typeof LOG_LEVEL_NUMBERS

export const LOG_LEVELS = Object.keys(LOG_LEVEL_NUMBERS) as readonly LogLevel[]
