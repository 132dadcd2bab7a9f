import { type KeyObject, X509Certificate as NodeX509 } from 'node:crypto';
import { BoundedCache } from '../lru.ts';
import {
  AttributeOid,
  children,
  contentHex,
  ExtensionOid,
  readCertificate,
  readElement,
  readIp,
  readOid,
} from './der.ts';
import { PkiError, PkiErrorCode } from './errors.ts';
import { describeKeyObject, type KeyDescription } from './keys.ts';
import { canonicalIp } from './names.ts';
import { decodePem, encodePem, MAX_CHAIN_CERTIFICATES, MAX_PEM_BUNDLE_BYTES } from './pem.ts';

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

/**
 * A certificate OpenSSL accepted, and its facts. It keeps no node:crypto
 * X509Certificate: that object's OpenSSL structures (about 1.5 KiB of native
 * memory that V8 does not count) live until a full collection once the
 * object has been cached, and in a burst of 1,000 issuances about 800 of
 * them were waiting for one. `x509()` parses again where one is needed.
 */
export interface ParsedCertificate {
  pem: string;
  der: Buffer;
  /** The DER SubjectPublicKeyInfo. */
  spki: Buffer;
  /** The DER subject Name, byte for byte. */
  subjectDer: Buffer;
  /** The DER issuer Name, byte for byte. */
  issuerDer: Buffer;
  facts: CertificateFacts;
}

/** A node:crypto view of the certificate, parsed from its DER for this use: keep it no longer than the use. */
export function x509(cert: ParsedCertificate): NodeX509 {
  return new NodeX509(cert.der);
}

/** One public key object per certificate that signs others (a CA's stays for as long as the CA does). */
const publicKeys = new WeakMap<ParsedCertificate, KeyObject>();

/** The certificate's public key as a node:crypto KeyObject, made once. */
export function publicKeyOf(cert: ParsedCertificate): KeyObject {
  let key = publicKeys.get(cert);
  if (!key) {
    // From OpenSSL's own parse of the certificate, not from the DER walk's view of it.
    key = x509(cert).publicKey;
    publicKeys.set(cert, key);
  }
  return key;
}

function sortedUnique(values: string[]): string[] {
  return [...new Set(values)].sort();
}

/**
 * The facts, read natively: OpenSSL (node:crypto) has already accepted the
 * certificate, and the fields it does not expose (key usage bits, key
 * identifiers, names) are read by walking the DER. @peculiar/x509 took about
 * a millisecond per certificate for the same, which dominated a restart.
 */
function factsOf(
  der: Buffer,
  node: NodeX509,
): { facts: CertificateFacts; spki: Buffer; subjectDer: Buffer; issuerDer: Buffer } {
  const f = readCertificate(der);
  const field = (oid: string) => f.subject.get(oid) ?? [];
  const ext = (oid: string) => {
    const e = f.extensions.get(oid);
    return e ? { value: e.value, root: readElement(e.value, 0) } : undefined;
  };
  const names: Record<'dns' | 'ip' | 'uri' | 'email', string[]> = { dns: [], ip: [], uri: [], email: [] };
  const san = ext(ExtensionOid.subjectAltName);
  if (san) {
    for (const n of children(san.value, san.root)) {
      const bytes = san.value.subarray(n.contentStart, n.end);
      if (n.tag === 0x81) names.email.push(bytes.toString('utf8'));
      else if (n.tag === 0x82) names.dns.push(bytes.toString('utf8'));
      else if (n.tag === 0x86) names.uri.push(bytes.toString('utf8'));
      else if (n.tag === 0x87) names.ip.push(canonicalIp(readIp(bytes)));
    }
  }
  const bc = ext(ExtensionOid.basicConstraints);
  const bcFirst = bc ? children(bc.value, bc.root)[0] : undefined;
  const ku = ext(ExtensionOid.keyUsage);
  let keyUsageFlags: number | undefined;
  if (ku) {
    keyUsageFlags = 0;
    const bits = ku.value.subarray(ku.root.contentStart + 1, ku.root.end);
    for (let i = 0; i < bits.length * 8 && i < 16; i++)
      if (bits[i >> 3]! & (0x80 >> (i & 7))) keyUsageFlags |= 1 << i;
  }
  const eku = ext(ExtensionOid.extKeyUsage);
  const ski = ext(ExtensionOid.subjectKeyId);
  const aki = ext(ExtensionOid.authorityKeyId);
  const akiId = aki ? children(aki.value, aki.root).find((e) => e.tag === 0x80) : undefined;
  return {
    spki: f.spki,
    subjectDer: f.subjectDer,
    issuerDer: f.issuerDer,
    facts: {
      subject: {
        commonName: field(AttributeOid.CN)[0],
        organizations: field(AttributeOid.O),
        organizationalUnits: field(AttributeOid.OU),
        countries: field(AttributeOid.C),
        localities: field(AttributeOid.L),
        provinces: field(AttributeOid.ST),
      },
      dnsNames: sortedUnique(names.dns),
      ipAddresses: sortedUnique(names.ip),
      uris: sortedUnique(names.uri),
      emailAddresses: sortedUnique(names.email),
      isCA: bcFirst?.tag === 0x01 && bc!.value[bcFirst.contentStart] !== 0,
      keyUsageFlags,
      extendedKeyUsageOids: sortedUnique(
        eku ? children(eku.value, eku.root).map((o) => readOid(eku.value, o)) : [],
      ),
      key: describeKeyObject(node.publicKey),
      notBefore: node.validFromDate,
      notAfter: node.validToDate,
      // Without leading zeros: the stable key renewal jitter is derived from (displaySerial shows it).
      serialNumber: f.serialHex.replace(/^0+(?=.)/, ''),
      subjectKeyId: ski ? contentHex(ski.value, ski.root) : undefined,
      authorityKeyId: akiId && aki ? contentHex(aki.value, akiId) : undefined,
      fingerprint: node.fingerprint256.replaceAll(':', '').toLowerCase(),
    },
  };
}

function parseOne(der: Buffer, what: string, index: number): ParsedCertificate {
  let node: NodeX509;
  try {
    node = new NodeX509(der);
  } catch (err) {
    throw new PkiError(
      PkiErrorCode.MalformedPem,
      `${what}: certificate ${index + 1} is not a valid X.509 certificate (${(err as Error).message})`,
    );
  }
  let read: ReturnType<typeof factsOf>;
  try {
    read = factsOf(der, node);
  } catch (err) {
    if (err instanceof PkiError) throw err;
    throw new PkiError(
      PkiErrorCode.MalformedPem,
      `${what}: certificate ${index + 1} has a field Sigil cannot read (${(err as Error).message})`,
    );
  }
  return {
    pem: encodePem('CERTIFICATE', der),
    der,
    spki: read.spki,
    subjectDer: read.subjectDer,
    issuerDer: read.issuerDer,
    facts: read.facts,
  };
}

/**
 * Recently parsed certificates by DER. The same certificates come back again
 * and again: the CA certificate at the end of every issued chain, and a leaf
 * read back right after it was written. Entries are shared: treat a
 * ParsedCertificate as read-only. Bounded, least recently used first out: an
 * entry holds a few KiB (the DER, the PEM and the facts), and in a burst a
 * leaf is read back only after the rest of the queue, so a larger cache holds
 * more without hitting more.
 */
const parsed = new BoundedCache<string, ParsedCertificate>(32);

function parseCached(der: Buffer, what: string, index: number): ParsedCertificate {
  const key = der.toString('base64');
  const hit = parsed.get(key);
  if (hit) return hit;
  const fresh = parseOne(der, what, index);
  parsed.set(key, fresh);
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
  const subject = (x509(cert).subject as string | undefined)?.replaceAll('\n', ', ');
  if (subject) return subject;
  const f = cert.facts;
  return f.uris[0] ?? f.dnsNames[0] ?? f.ipAddresses[0] ?? f.emailAddresses[0] ?? `serial ${f.serialNumber}`;
}

/** True when `child` names `parent` as its issuer and its signature verifies with parent's key. */
export function isSignedBy(child: ParsedCertificate, parent: ParsedCertificate): boolean {
  try {
    const node = x509(child);
    // The same bytes name the same issuer; other encodings of one name are compared as OpenSSL prints them.
    if (!child.issuerDer.equals(parent.subjectDer) && (node.issuer ?? '') !== (x509(parent).subject ?? ''))
      return false;
    return node.verify(publicKeyOf(parent));
  } catch {
    return false;
  }
}

export function toPemBundle(certs: readonly ParsedCertificate[]): string {
  return `${certs.map((c) => c.pem.trimEnd()).join('\n')}\n`;
}

/**
 * A serial as OpenSSL and node:crypto print it (lower-cased): the integer in hex, a whole
 * number of bytes, so a leading zero stays where the first byte is below 0x10 ("0ffd2b...").
 */
export function displaySerial(hex: string): string {
  const digits = hex.toLowerCase().replace(/^0+(?=.)/, '');
  return digits.length % 2 === 1 ? `0${digits}` : digits;
}
