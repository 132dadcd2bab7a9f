// Builders for PKI tests: real keys, real certificates.
import { execFileSync } from 'node:child_process';
import type { KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CertificateAuthority, createSelfSignedCA, loadCertificateAuthority } from '../pki/ca.ts';
import type { KeySpec } from '../pki/keys.ts';

export const HOUR = 3_600_000;
export const DAY = 24 * HOUR;

export async function testCA(
  options: {
    commonName?: string;
    key?: Partial<KeySpec>;
    notBefore?: Date;
    notAfter?: Date;
    now?: Date;
  } = {},
): Promise<{ ca: CertificateAuthority; certPem: string; keyPem: string }> {
  const now = options.now ?? new Date();
  const generated = await createSelfSignedCA({
    commonName: options.commonName ?? 'Test Root CA',
    key: options.key ?? { algorithm: 'ECDSA', size: 256 },
    notBefore: options.notBefore ?? new Date(now.getTime() - HOUR),
    notAfter: options.notAfter ?? new Date(now.getTime() + 365 * DAY),
  });
  return {
    ca: loadCertificateAuthority(generated.certPem, generated.keyPem, now),
    certPem: generated.certPem,
    keyPem: generated.keyPem,
  };
}

/**
 * Runs `openssl verify` with the machine's OpenSSL; returns its combined output, or throws with it.
 * `at` checks validity at that time instead of now: a test with a fixed clock must pass it.
 */
export function opensslVerify(
  caPem: string,
  chainPem: string,
  purpose: 'sslserver' | 'sslclient',
  at?: Date,
): string {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-verify-'));
  try {
    const certs = (chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []).map(
      (c) => `${c}\n`,
    );
    writeFileSync(join(dir, 'ca.pem'), caPem);
    writeFileSync(join(dir, 'leaf.pem'), certs[0]!);
    writeFileSync(join(dir, 'untrusted.pem'), certs.slice(1).join('') || certs[0]!);
    return execFileSync(
      'openssl',
      [
        'verify',
        ...(at ? ['-attime', String(Math.floor(at.getTime() / 1000))] : []),
        '-CAfile',
        'ca.pem',
        '-untrusted',
        'untrusted.pem',
        '-purpose',
        purpose,
        'leaf.pem',
      ],
      { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A stub PKCS#10 request as a 1.36+ kubelet sends one (empty subject, signed by `privateKey`), base64 DER, made by OpenSSL. */
export function stubCsr(privateKey: KeyObject): string {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-csr-'));
  try {
    writeFileSync(join(dir, 'key.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
    return execFileSync('openssl', ['req', '-new', '-key', 'key.pem', '-subj', '/', '-outform', 'DER'], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
    }).toString('base64');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
