import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** A self-signed certificate for `--demo --tls`, in a temporary directory of its own. */
export interface DemoCertificate {
  /** Paths as `listen.tls` takes them. */
  readonly files: { readonly cert: string, readonly key: string }
  /** Removes the directory. */
  remove (): Promise<void>
}

/**
 * Makes a self-signed certificate for `localhost`, `127.0.0.1` and `::1` (P-256, valid 30 days) with the `openssl`
 * command (Node cannot issue certificates). Throws a readable error when `openssl` is missing or fails.
 */
export async function demoCertificate (): Promise<DemoCertificate> {
  const dir = await mkdtemp(join(tmpdir(), 'fastify-ws-proxy-demo-tls-'))
  const files = { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') }
  try {
    await run('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '30',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1',
      '-keyout', files.key, '-out', files.cert
    ], { timeout: 10_000 })
  } catch (err) {
    await rm(dir, { recursive: true, force: true })
    const failed = err as NodeJS.ErrnoException & { stderr: string }
    const reason = failed.code === 'ENOENT' ? 'the openssl command was not found' : `openssl failed: ${failed.stderr.trim().split('\n')[0]}`
    throw new Error(`--demo --tls generates a self-signed certificate with the openssl command (1.1.1 or later): ${reason}. ` +
      'Install OpenSSL, or run a config with "listen": { "tls": { "cert": ..., "key": ... } }', { cause: err })
  }
  return { files, remove: async () => { await rm(dir, { recursive: true, force: true }) } }
}
