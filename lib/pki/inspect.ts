import { createHash } from 'node:crypto';
import { type ParsedCertificate, parseCertificateChain } from './certificate.ts';
import { isPkiError, PkiError, type PkiErrorCode } from './errors.ts';
import type { IssueRequest } from './issue.ts';
import { normalizeKeySpec, type ParsedPrivateKey, parsePrivateKeyPem, publicKeySpki } from './keys.ts';
import { canonicalIp } from './names.ts';
import { DEFAULT_USAGES, splitUsages } from './usages.ts';

/** A Secret's tls.crt read back, and whether its tls.key belongs to it. */
export interface ReadBack {
  leaf: ParsedCertificate;
  chain: ParsedCertificate[];
  keyMatches: boolean;
  /** The private key; absent when only its fingerprint was at hand (see keyFingerprint). */
  key?: ParsedPrivateKey | undefined;
}

/** A Secret's tls.crt and tls.key, read back. */
export interface KeyPair extends ReadBack {
  key: ParsedPrivateKey;
}

/**
 * What a cache keeps of a private key instead of the key: the SHA-256 of its public key (the DER
 * SubjectPublicKeyInfo), enough to tell whether it belongs to a certificate, or why it does not parse.
 */
export type KeyFingerprint = { spkiSha256: string } | { code: PkiErrorCode; error: string };

const spkiSha256 = (spki: Buffer) => createHash('sha256').update(spki).digest('hex');

/** The fingerprint of the PEM private key in `keyPem` (a Secret's tls.key, named by `where`). */
export function keyFingerprint(keyPem: string | Buffer, where = 'Secret'): KeyFingerprint {
  try {
    return {
      spkiSha256: spkiSha256(publicKeySpki(parsePrivateKeyPem(keyPem, `${where} tls.key`).keyObject)),
    };
  } catch (err) {
    if (!isPkiError(err)) throw err;
    return { code: err.code, error: err.message };
  }
}

/**
 * Parses tls.crt and checks it against a key known by its fingerprint; throws PkiError when tls.crt
 * is missing or malformed, or the key did not parse (its own message, as readKeyPair would throw).
 */
export function readCertificateForKey(
  certPem: string | Buffer,
  key: KeyFingerprint,
  where = 'Secret',
): ReadBack {
  const chain = parseCertificateChain(certPem, `${where} tls.crt`);
  if ('error' in key) throw new PkiError(key.code, key.error);
  const leaf = chain[0]!;
  return { leaf, chain, keyMatches: spkiSha256(leaf.spki) === key.spkiSha256 };
}

/** Parses tls.crt and tls.key; throws PkiError when either is missing or malformed. */
export function readKeyPair(certPem: string | Buffer, keyPem: string | Buffer, where = 'Secret'): KeyPair {
  const chain = parseCertificateChain(certPem, `${where} tls.crt`);
  const key = parsePrivateKeyPem(keyPem, `${where} tls.key`);
  const leaf = chain[0]!;
  return {
    leaf,
    chain,
    key,
    keyMatches: publicKeySpki(key.keyObject).equals(leaf.spki),
  };
}

function sameSet(a: readonly string[] | undefined, b: readonly string[]): boolean {
  const left = [...new Set(a ?? [])].sort();
  return left.length === b.length && left.every((v, i) => v === b[i]);
}

function show(values: readonly string[] | undefined): string {
  return values && values.length > 0 ? values.join(', ') : 'none';
}

/**
 * The ways an issued certificate no longer matches the request, as short
 * phrases ("DNS names differ (want a, b; have a)"). Empty when it matches.
 * Validity and issuer are checked elsewhere: this is about the content.
 */
export function requestMismatches(req: IssueRequest, leaf: ParsedCertificate): string[] {
  const f = leaf.facts;
  const out: string[] = [];
  if ((req.commonName ?? undefined) !== (f.subject.commonName ?? undefined)) {
    out.push(
      `common name differs (want ${req.commonName ?? 'none'}; have ${f.subject.commonName ?? 'none'})`,
    );
  }
  const lists: [string, string[] | undefined, string[]][] = [
    ['DNS names', req.dnsNames, f.dnsNames],
    ['IP addresses', req.ipAddresses?.map(canonicalIp), f.ipAddresses],
    ['URIs', req.uris, f.uris],
    ['email addresses', req.emailAddresses, f.emailAddresses],
    ['organizations', req.subject?.organizations, [...f.subject.organizations].sort()],
    ['organizational units', req.subject?.organizationalUnits, [...f.subject.organizationalUnits].sort()],
    ['countries', req.subject?.countries, [...f.subject.countries].sort()],
    ['localities', req.subject?.localities, [...f.subject.localities].sort()],
    ['provinces', req.subject?.provinces, [...f.subject.provinces].sort()],
  ];
  for (const [what, want, have] of lists) {
    if (!sameSet(want, have)) out.push(`${what} differ (want ${show(want)}; have ${show(have)})`);
  }
  const isCA = req.isCA ?? false;
  if (isCA !== f.isCA) out.push(`isCA differs (want ${isCA}; have ${f.isCA})`);
  const usages = splitUsages(req.usages && req.usages.length > 0 ? req.usages : DEFAULT_USAGES, isCA);
  if (
    (f.keyUsageFlags ?? 0) !== usages.keyUsageFlags ||
    !sameSet(usages.extendedKeyUsageOids, f.extendedKeyUsageOids)
  ) {
    out.push('usages differ');
  }
  const key = normalizeKeySpec(req.key);
  if (key.algorithm !== f.key.algorithm || key.size !== f.key.size) {
    out.push(`key differs (want ${key.algorithm} ${key.size}; have ${f.key.algorithm} ${f.key.size})`);
  }
  return out;
}
