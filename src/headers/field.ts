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
