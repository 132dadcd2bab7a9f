import { createPublicKey, X509Certificate as NodeX509 } from 'node:crypto';
import { PkiError, PkiErrorCode } from './errors.ts';
import { describeKeyObject, type KeyDescription } from './keys.ts';
import { canonicalIp } from './names.ts';
import { decodePem, MAX_CHAIN_CERTIFICATES, MAX_PEM_BUNDLE_BYTES } from './pem.ts';
import { x509 } from './provider.ts';

export interface SubjectFields {
  commonName?: string | undefined;
  organizations: string[];
  organizationalUnits: string[];
  countries: string[];
  localities: string[];
  provinces: string[];
}

/** Everything Sigil compares between a certificate and the spec that asked for it. */
export interface CertificateFacts {
  subject: SubjectFields;
  dnsNames: string[];
  ipAddresses: string[];
  uris: string[];
  emailAddresses: string[];
  isCA: boolean;
  /** Key usage bits; undefined when the extension is absent. */
  keyUsageFlags: number | undefined;
  extendedKeyUsageOids: string[];
  key: KeyDescription;
  notBefore: Date;
  notAfter: Date;
  /** Lower-case hex, no separators. */
  serialNumber: string;
  subjectKeyId: string | undefined;
  authorityKeyId: string | undefined;
  /** SHA-256 of the DER, lower-case hex. */
  fingerprint: string;
}

export interface ParsedCertificate {
  pem: string;
  der: Buffer;
  cert: x509.X509Certificate;
  node: NodeX509;
  facts: CertificateFacts;
}

function sortedUnique(values: string[]): string[] {
  return [...new Set(values)].sort();
}

function factsOf(cert: x509.X509Certificate, node: NodeX509): CertificateFacts {
  const field = (name: string) => cert.subjectName.getField(name);
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const names = san?.names.items ?? [];
  const of = (type: string) => names.filter((n) => n.type === type).map((n) => n.value);
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
  const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
  const aki = cert.getExtension(x509.AuthorityKeyIdentifierExtension);
  return {
    subject: {
      commonName: field('CN')[0],
      organizations: field('O'),
      organizationalUnits: field('OU'),
      countries: field('C'),
      localities: field('L'),
      provinces: field('ST'),
    },
    dnsNames: sortedUnique(of('dns')),
    ipAddresses: sortedUnique(of('ip').map(canonicalIp)),
    uris: sortedUnique(of('url')),
    emailAddresses: sortedUnique(of('email')),
    isCA: bc?.ca ?? false,
    keyUsageFlags: ku?.usages,
    extendedKeyUsageOids: sortedUnique((eku?.usages ?? []).map(String)),
    key: describeKeyObject(
      createPublicKey({ key: Buffer.from(cert.publicKey.rawData), format: 'der', type: 'spki' }),
    ),
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    serialNumber: cert.serialNumber.toLowerCase().replace(/^0+(?=.)/, ''),
    subjectKeyId: ski?.keyId,
    authorityKeyId: aki?.keyId,
    fingerprint: node.fingerprint256.replaceAll(':', '').toLowerCase(),
  };
}

function parseOne(der: Buffer, what: string, index: number): ParsedCertificate {
  let cert: x509.X509Certificate;
  let node: NodeX509;
  try {
    cert = new x509.X509Certificate(new Uint8Array(der));
    node = new NodeX509(der);
  } catch (err) {
    throw new PkiError(
      PkiErrorCode.MalformedPem,
      `${what}: certificate ${index + 1} is not a valid X.509 certificate (${(err as Error).message})`,
    );
  }
  try {
    return { pem: cert.toString('pem'), der, cert, node, facts: factsOf(cert, node) };
  } catch (err) {
    if (err instanceof PkiError) throw err;
    throw new PkiError(
      PkiErrorCode.MalformedPem,
      `${what}: certificate ${index + 1} has an extension Sigil cannot read (${(err as Error).message})`,
    );
  }
}

/**
 * Recently parsed certificates by DER. Parsing with @peculiar/x509 costs about
 * a millisecond, and the same certificates come back again and again: the CA
 * certificate at the end of every issued chain, and a leaf read back right
 * after it was written. Entries are shared: treat a ParsedCertificate as
 * read-only. Bounded, least recently used first out.
 */
const parsed = new Map<string, ParsedCertificate>();
const MAX_PARSED = 256;

function parseCached(der: Buffer, what: string, index: number): ParsedCertificate {
  const key = der.toString('base64');
  const hit = parsed.get(key);
  if (hit) {
    parsed.delete(key);
    parsed.set(key, hit);
    return hit;
  }
  const fresh = parseOne(der, what, index);
  parsed.set(key, fresh);
  if (parsed.size > MAX_PARSED) parsed.delete(parsed.keys().next().value!);
  return fresh;
}

/** Parses every CERTIFICATE block, first one first. Other blocks are an error: a key stored in tls.crt is a mistake worth reporting. */
export function parseCertificateChain(pem: string | Buffer, what = 'certificate'): ParsedCertificate[] {
  const blocks = decodePem(pem, what, MAX_PEM_BUNDLE_BYTES);
  const foreign = blocks.find((b) => b.label !== 'CERTIFICATE');
  if (foreign) {
    throw new PkiError(
      foreign.label.endsWith('PRIVATE KEY') ? PkiErrorCode.NoCertificate : PkiErrorCode.MalformedPem,
      `${what} holds a ${foreign.label} block; it must hold only CERTIFICATE blocks`,
    );
  }
  if (blocks.length > MAX_CHAIN_CERTIFICATES) {
    throw new PkiError(
      PkiErrorCode.PemTooLarge,
      `${what} holds ${blocks.length} certificates, more than the ${MAX_CHAIN_CERTIFICATES} allowed in a chain`,
    );
  }
  return blocks.map((b, i) => parseCached(b.der, what, i));
}

/**
 * A one-line name for messages: the subject DN, or for a certificate with an
 * empty subject (common for SPIFFE identities) its first SAN.
 */
export function displayName(cert: ParsedCertificate): string {
  // node:crypto reports an empty subject as undefined.
  const subject = (cert.node.subject as string | undefined)?.replaceAll('\n', ', ');
  if (subject) return subject;
  const f = cert.facts;
  return f.uris[0] ?? f.dnsNames[0] ?? f.ipAddresses[0] ?? f.emailAddresses[0] ?? `serial ${f.serialNumber}`;
}

/** True when `child` names `parent` as its issuer and its signature verifies with parent's key. */
export function isSignedBy(child: ParsedCertificate, parent: ParsedCertificate): boolean {
  if ((child.node.issuer ?? '') !== (parent.node.subject ?? '')) return false;
  try {
    return child.node.verify(parent.node.publicKey);
  } catch {
    return false;
  }
}

export function toPemBundle(certs: readonly ParsedCertificate[]): string {
  return `${certs.map((c) => c.pem.trimEnd()).join('\n')}\n`;
}
