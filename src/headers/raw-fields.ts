/**
 * An upstream's raw header fields (undici hands them over as Buffers) as latin1 strings, without decoding the same
 * bytes again on every response. An upstream answers with the same names and mostly the same short values each time
 * (`Content-Type: text/plain`, `Connection: keep-alive`, one `Date` a second), and each `toString` costs 100-200 ns
 * and a new string. A fixed table keyed by the bytes gives back the string decoded the first time: SLOTS entries,
 * each replaced by the next field that hashes to it, fields over MAX_CACHED bytes decoded every time.
 */
const SLOTS = 512
const MAX_CACHED = 64

// A slot's text is its key too: latin1 maps each byte to the character of the same code.
const texts: string[] = new Array<string>(SLOTS).fill('')
const lowers: string[] = new Array<string>(SLOTS).fill('')

/** The slot of `raw` (decoded and stored on a miss), or -1 for a field too long (or empty) to keep. */
export function fieldSlot (raw: Buffer): number {
  const length = raw.length
  if (length === 0 || length > MAX_CACHED) return -1
  // Length and three bytes: cheap, and fields that collide still decode correctly (they take turns in the slot).
  const slot = (((length * 31 + raw[0]) * 31 + raw[length >> 1]) * 31 + raw[length - 1]) & (SLOTS - 1)
  const key = texts[slot]
  if (key.length === length) {
    let i = 0
    while (i < length && key.charCodeAt(i) === raw[i]) i++
    if (i === length) return slot
  }
  // A string, not the Buffer: undici's Buffers are views of the socket's read chunk, which must not be kept alive.
  const text = raw.toString('latin1')
  texts[slot] = text
  lowers[slot] = text.toLowerCase()
  return slot
}

/** The field (a name or a value) as Node writes it back: latin1, every byte kept. */
export function fieldText (raw: Buffer): string {
  return textOf(fieldSlot(raw), raw)
}

/** The text of `raw`, whose slot is `slot`. */
export function textOf (slot: number, raw: Buffer): string {
  return slot === -1 ? raw.toString('latin1') : texts[slot]
}

/** A field name in lower case (for comparisons), whose slot is `slot`. */
export function lowerOf (slot: number, raw: Buffer): string {
  return slot === -1 ? raw.toString('latin1').toLowerCase() : lowers[slot]
}
