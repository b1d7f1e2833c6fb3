// RFC 9110 §5.1 (token) and §5.5 (field-value): what may be written into an HTTP/1.1 head.

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
// HTAB, SP, VCHAR and obs-text; everything else (CR, LF, NUL and the other controls, DEL) is refused.
const NOT_FIELD_VALUE = /[^\t\x20-\x7e\x80-\xff]/

export function isToken (name: string): boolean {
  return TOKEN.test(name)
}

export function isFieldValue (value: string): boolean {
  return !NOT_FIELD_VALUE.test(value)
}

/**
 * The names among a reply's headers (as hooks set them) that may not be written into a head, or null: a name that is
 * not a token, or a value with CR, LF, NUL or another control. Node's HTTP/1.1 response refuses those only as it
 * writes them (after the upstream had the request); its HTTP/2 response (the compatibility API) writes them as they are.
 */
export function invalidFields (headers: Record<string, unknown>): string[] | null {
  let bad: string[] | null = null
  for (const name in headers) {
    const value = headers[name]
    if (isToken(name) && (Array.isArray(value) ? value.every(isFieldItem) : isFieldItem(value))) continue
    bad ??= []
    bad.push(name)
  }
  return bad
}

function isFieldItem (value: unknown): boolean {
  return isFieldValue(String(value))
}
