// Unit tests of the canonical target (src/security/target.ts) and wsProxyRewriteUrl: what each spelling becomes,
// and why each refused one is refused.
import t from 'tap'
import type { IncomingMessage } from 'node:http'
import { wsProxyRewriteUrl } from '../../src/index.js'
import { canonicalTarget, isValidAuthority, looksCanonical, targetRefusal } from '../../src/security/target.js'

const CANONICAL: Array<[string, string, string | null]> = [
  // [target, canonical target, authority]
  ['/', '/', null],
  ['/api/x?q=1', '/api/x?q=1', null],
  ['/api/x/', '/api/x/', null],
  ['/.well-known/acme', '/.well-known/acme', null],
  ['/a..b/...', '/a..b/...', null],
  ['//api//x', '/api/x', null],
  ['/api//', '/api/', null],
  ['/api/./x', '/api/x', null],
  ['/api/x/.', '/api/x/', null],
  ['/api/x/..', '/api/', null],
  ['/a/b/../../c', '/c', null],
  ['/api/..', '/', null],
  ['/x#frag', '/x', null],
  ['/x?a#frag?b', '/x?a', null],
  ['/x?#', '/x?', null],
  ['/%61%62c', '/abc', null],
  ['/%7e%7E%2d%2E%5f', '/~~-._', null],
  ['/caf%c3%a9', '/caf%C3%A9', null],
  ['/a%20b%3bc', '/a%20b%3Bc', null],
  ['/%25%32%46', '/%252F', null],
  ['/x;p=1/y;q', '/x;p=1/y;q', null],
  ['/...;x', '/...;x', null],
  ['/x?q=..%2f/../%2e%5c\\', '/x?q=..%2f/../%2e%5c\\', null],
  ['http://h/api/x?q', '/api/x?q', 'h'],
  ['HTTP://Example.COM:8080/x', '/x', 'Example.COM:8080'],
  ['https://h', '/', 'h'],
  ['http://h?q=1', '/?q=1', 'h'],
  ['http://h#f', '/', 'h'],
  ['http://[::1]:81//a/./b', '/a/b', '[::1]:81'],
  ['hTTpS://h./x', '/x', 'h.']
]

t.test('canonicalTarget: what each spelling becomes', async (t) => {
  for (const [target, canonical, authority] of CANONICAL) {
    t.same(canonicalTarget(target), { target: canonical, authority }, target)
    // A segment starting with a dot always needs the closer look.
    t.equal(looksCanonical(target), target === canonical && authority === null && !/\/\./.test(target.split('?')[0]), `looksCanonical ${target}`)
    t.equal(targetRefusal(target), target === canonical && authority === null ? null : 'not in canonical form (see wsProxyRewriteUrl)', `targetRefusal ${target}`)
    // Idempotent: the canonical form is its own canonical form.
    t.same(canonicalTarget(canonical), { target: canonical, authority: null }, `${canonical} is canonical`)
  }
})

const REFUSED: Array<[string, string]> = [
  ['*', 'not in origin or absolute form'],
  ['', 'not in origin or absolute form'],
  ['api/x', 'not in origin or absolute form'],
  ['http:/x', 'not in origin or absolute form'],
  ['h:80', 'not in origin or absolute form'],
  ['1http://h/x', 'not in origin or absolute form'],
  ['ftp://h/x', 'unsupported scheme'],
  ['ws://h/x', 'unsupported scheme'],
  ['http+unix://h/x', 'unsupported scheme'],
  ['http://user:pw@h/x', 'invalid authority'],
  ['http://h:99999/x', 'invalid authority'],
  ['http:///x', 'invalid authority'],
  ['http://a..b/x', 'invalid authority'],
  ['http://X../static/x', 'invalid authority'],
  ['http://h%2e/x', 'invalid authority'],
  ['http://h\\x/y', 'invalid authority'],
  ['/%zz', 'invalid percent-encoding'],
  ['/a%', 'invalid percent-encoding'],
  ['/a%2', 'invalid percent-encoding'],
  ['/a%2g', 'invalid percent-encoding'],
  ['/a/%2f', 'encoded slash or backslash'],
  ['/a/x%2Fy', 'encoded slash or backslash'],
  ['/a/%5c', 'encoded slash or backslash'],
  ['/a/%5Cb', 'encoded slash or backslash'],
  ['/..%2fadmin', 'encoded slash or backslash'],
  ['/a/%2e', 'encoded dot segment'],
  ['/a/%2E%2e', 'encoded dot segment'],
  ['/a/.%2e/b', 'encoded dot segment'],
  ['/a/%2e%2e;x', 'encoded dot segment'],
  ['/a/..;/b', 'dot segment with parameters'],
  ['/a/.;x', 'dot segment with parameters'],
  ['/a/..;', 'dot segment with parameters'],
  ['/a\\b', 'backslash in path'],
  ['/a/..\\b', 'backslash in path'],
  ['/..', 'path above the root'],
  ['/a/../..', 'path above the root'],
  ['//..//x', 'path above the root'],
  ['http://h/../x', 'path above the root']
]

t.test('canonicalTarget: refused targets and why', async (t) => {
  for (const [target, reason] of REFUSED) {
    t.equal(canonicalTarget(target), reason, JSON.stringify(target))
    t.equal(targetRefusal(target), reason, JSON.stringify(target))
    t.equal(looksCanonical(target), false, JSON.stringify(target))
  }
})

t.test('looksCanonical: a quick yes only for targets that are canonical', async (t) => {
  t.equal(looksCanonical('/a/b?c=%2f//..#'), false, 'a fragment, even in the query')
  t.equal(looksCanonical('/a/b?c=%2f//..\\'), true, 'the query is not looked at')
  t.equal(looksCanonical('/a.b/c.'), true)
  t.equal(looksCanonical('/.x'), false, 'a segment starting with a dot needs a closer look')
  t.equal(looksCanonical('/a//b'), false)
  t.equal(looksCanonical('/a%41'), false)
  t.equal(looksCanonical('/a\\b'), false)
  t.equal(looksCanonical('http://h/'), false)
})

t.test('isValidAuthority: host[:port] only', async (t) => {
  for (const value of ['h', 'h:0', 'h:65535', 'h:00080', 'a.b.c', 'a-b_c.d', 'h.', '10.0.0.1', '10.0.0.1:8080', '[::1]', '[::1]:80', '[2001:db8::ffff:1.2.3.4]', 'UPPER.Example']) {
    t.ok(isValidAuthority(value), value)
  }
  for (const value of ['', ':80', 'h:', 'h:65536', 'h:123456', 'h:-1', 'a..b', '.a', 'h..', 'a b', 'a/b', 'a?b', 'a#b', 'u@h', 'u:p@h', '[::1', '::1', '[::g]', '[]', 'h:80:80', 'a%2eb', 'é.example', 'h\t']) {
    t.notOk(isValidAuthority(value), JSON.stringify(value))
  }
  // The last valid value is remembered (one compare for a repeated Host): a near copy is still checked in full, and a
  // refused value is never remembered.
  t.ok(isValidAuthority('api.example:8080'))
  t.ok(isValidAuthority('api.example:8080'), 'the remembered value again')
  t.notOk(isValidAuthority('api.example:8080/x'), 'the remembered value with a path')
  t.notOk(isValidAuthority('api.example:80800'), 'the remembered value with a port out of range')
  t.notOk(isValidAuthority('api.example:80800'), 'and again: a refusal is not remembered')
})

function fakeRequest (url: string, host?: string): IncomingMessage {
  return { url, headers: host === undefined ? {} : { host } } as unknown as IncomingMessage
}

t.test('wsProxyRewriteUrl: the canonical target; the authority replaces Host; a refused target is left as sent', async (t) => {
  const plain = fakeRequest('/api/x?q', 'h')
  t.equal(wsProxyRewriteUrl(plain), '/api/x?q')
  t.equal(plain.headers.host, 'h')
  const dotted = fakeRequest('/api/x/..//%61dmin#f', 'h')
  t.equal(wsProxyRewriteUrl(dotted), '/api/admin')
  t.equal(dotted.headers.host, 'h', 'origin form: Host unchanged')
  const absolute = fakeRequest('HTTP://Authority.Example:81/api/x?q', 'other')
  t.equal(wsProxyRewriteUrl(absolute), '/api/x?q')
  t.equal(absolute.headers.host, 'Authority.Example:81', 'RFC 9112 §3.2.2: the authority is the Host')
  const noHost = fakeRequest('http://a.example/x')
  t.equal(wsProxyRewriteUrl(noHost), '/x')
  t.equal(noHost.headers.host, 'a.example')
  for (const target of ['/api/..%2fadmin', 'http://user@h/x', '*', '/a/..;/b']) {
    const refused = fakeRequest(target, 'h')
    t.equal(wsProxyRewriteUrl(refused), target, `${target}: left for the proxy to refuse`)
    t.equal(refused.headers.host, 'h')
  }
})

t.test('properties over seeded hostile targets: the quick check never says yes wrongly; canonical forms are fixed points', async (t) => {
  // mulberry32, seeded: a failure replays exactly.
  let a = 0x7a7 >>> 0
  const random = (): number => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
  const pieces = ['/', '//', '.', '..', '%2e', '%2f', '%5C', '\\', '%61', '%7e', '%c3%a9', ';', '..;', '#f', '?q=..%2f', 'http://h', 'HTTP://h:1', 'a', 'api', '~', '%', '%zz', '.a', 'a.']
  let problems = 0
  for (let i = 0; i < 5000; i++) {
    let target = random() < 0.8 ? '/' : ''
    for (let n = 1 + Math.floor(random() * 6); n > 0; n--) target += pieces[Math.floor(random() * pieces.length)]
    const result = canonicalTarget(target)
    const quick = looksCanonical(target)
    let problem: string | null = null
    if (quick && (typeof result === 'string' || result.target !== target || result.authority !== null)) problem = 'looksCanonical said yes'
    else if (typeof result !== 'string') {
      const again = canonicalTarget(result.target)
      if (typeof again === 'string' || again.target !== result.target || again.authority !== null) problem = 'not a fixed point'
      else if (targetRefusal(result.target) !== null) problem = 'the canonical form is refused by the route check'
      else if (wsProxyRewriteUrl(fakeRequest(target, 'h')) !== result.target) problem = 'wsProxyRewriteUrl disagrees'
    } else if (wsProxyRewriteUrl(fakeRequest(target, 'h')) !== target) problem = 'a refused target was rewritten'
    if (problem !== null && ++problems <= 10) t.fail(`${problem}: ${JSON.stringify(target)} → ${JSON.stringify(result)}`)
  }
  t.equal(problems, 0)
})
