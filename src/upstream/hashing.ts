import { createHash } from 'node:crypto'

/**
 * A 32-bit hash of a key: FNV-1a over its UTF-16 code units, then murmur3's finaliser to spread close keys.
 * Plain arithmetic, so every process on every machine computes the same value for the same key.
 */
export function hashKey (key: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return mix(h)
}

/** murmur3 fmix32: every input bit affects every output bit. Also derives the next probe of a rehash. */
export function mix (h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** nginx ip_hash: the first three octets of an IPv4 address (a /24 shares a server), a whole IPv6 address. */
export function ipHashKey (ip: string): string {
  const mapped = ip.startsWith('::ffff:') ? ip.slice(7) : ip
  const last = mapped.lastIndexOf('.')
  return last === -1 || mapped.includes(':') ? mapped : mapped.slice(0, last)
}

/** Points per unit of weight on a consistent-hash ring (nginx and libketama use 160). */
export const POINTS_PER_WEIGHT = 160

/** Items placed on a ring: what identifies them (the same everywhere) and how many points they get. */
export interface RingMember {
  readonly url: string
  readonly weight: number
}

/**
 * A ketama continuum: each member gets 160 points per unit of weight, at positions derived from its URL alone
 * (MD5 of `url-n`, four points per digest, as libketama). The ring depends neither on the order members are
 * listed in nor on the process, so instances agree; removing a member moves only the keys its points held.
 */
export class HashRing<T extends RingMember> {
  readonly points: Uint32Array
  readonly owners: T[]

  constructor (members: readonly T[]) {
    const placed: Array<[number, T]> = []
    // Placed in URL order and sorted stably by position: members sharing a position (rare) keep URL order, so that
    // every instance orders them alike whatever order they are listed in.
    for (const member of [...members].sort((a, b) => a.url < b.url ? -1 : 1)) {
      const count = POINTS_PER_WEIGHT * member.weight
      for (let n = 0; n * 4 < count; n++) {
        const digest = createHash('md5').update(`${member.url}-${n}`).digest()
        for (let k = 0; k < 4 && n * 4 + k < count; k++) placed.push([digest.readUInt32LE(k * 4), member])
      }
    }
    placed.sort((a, b) => a[0] - b[0])
    this.points = Uint32Array.from(placed, (p) => p[0])
    this.owners = placed.map((p) => p[1])
  }

  /** Index of the first point at or after `hash`, wrapping around. */
  first (hash: number): number {
    const points = this.points
    let lo = 0
    let hi = points.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (points[mid] < hash) lo = mid + 1
      else hi = mid
    }
    // Past the last point the ring wraps around to the first.
    return lo % points.length
  }
}
