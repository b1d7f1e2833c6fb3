// "Did you mean": the closest of the valid names to a misspelt one, for option keys, enum values, variables,
// group names and command-line flags.

/** Edit distance between `a` and `b`: insertions, deletions, substitutions and swaps of two neighbours (`hots` → `host`) count one each. */
export function editDistance (a: string, b: string): number {
  // Optimal string alignment: Levenshtein's table plus a transposition step.
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i])
  for (let j = 1; j <= b.length; j++) d[0][j] = j
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1)
    }
  }
  return d[a.length][b.length]
}

/**
 * The candidate closest to `word` (ignoring case), if close enough to be a likely typo: at most one edit per three
 * characters (at least one). Null when none is, or when `word` is itself a candidate.
 */
export function closest (word: string, candidates: Iterable<string>): string | null {
  const lower = word.toLowerCase()
  let best: string | null = null
  let bestDistance = Math.max(1, Math.floor(word.length / 3)) + 1
  for (const candidate of candidates) {
    if (candidate === word) return null
    const distance = editDistance(lower, candidate.toLowerCase())
    if (distance < bestDistance) {
      best = candidate
      bestDistance = distance
    }
  }
  return best
}

/** `; did you mean "x"?` for the closest candidate, or `''`. */
export function didYouMean (word: string, candidates: Iterable<string>, show: (name: string) => string = JSON.stringify): string {
  const best = closest(word, candidates)
  return best === null ? '' : `; did you mean ${show(best)}?`
}
