import type { KeyObject } from 'node:crypto';
import { type CertificateAuthority, randomSerial } from './ca.ts';
import { PkiError, PkiErrorCode } from './errors.ts';
import {
  exportPrivateKeyPem,
  generateKey,
  type KeyDescription,
  KeyEncoding,
  type KeySpec,
  normalizeKeySpec,
  publicKeySpki,
} from './keys.ts';
import { dnsNameProblem, emailProblem, ipAddressProblem, uriProblem } from './names.ts';
import { subtle, x509 } from './provider.ts';
import { DEFAULT_USAGES, splitUsages, unknownUsages } from './usages.ts';

export interface SubjectSpec {
  organizations?: string[] | undefined;
  organizationalUnits?: string[] | undefined;
  countries?: string[] | undefined;
  localities?: string[] | undefined;
  provinces?: string[] | undefined;
}

/** What to issue, already resolved from a Certificate's spec (defaults applied by the caller or here). */
export interface IssueRequest {
  commonName?: string | undefined;
  dnsNames?: string[] | undefined;
  ipAddresses?: string[] | undefined;
  uris?: string[] | undefined;
  emailAddresses?: string[] | undefined;
  subject?: SubjectSpec | undefined;
  usages?: string[] | undefined;
  isCA?: boolean | undefined;
  durationMs: number;
  key?: (Partial<KeySpec> & { encoding?: KeyEncoding | undefined }) | undefined;
}

export interface IssuedCertificate {
  /** Leaf, then the CA chain. */
  certificatePem: string;
  privateKeyPem: string;
  /** The trust anchor (ca.crt). */
  caPem: string;
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
  key: KeyDescription;
}

const MAX_NAMES = 100;
const MAX_COMMON_NAME = 64;

/** Every problem with a request, as sentences; empty when it can be issued. */
export function requestProblems(req: IssueRequest): string[] {
  const problems: string[] = [];
  const check = (
    kind: string,
    values: string[] | undefined,
    problemOf: (v: string) => string | undefined,
  ) => {
    if (!values) return;
    if (values.length > MAX_NAMES)
      problems.push(`${kind} has ${values.length} entries, more than ${MAX_NAMES}`);
    for (const v of values.slice(0, MAX_NAMES)) {
      const p = problemOf(v);
      if (p) problems.push(`${kind} entry "${v}" ${p}`);
    }
  };
  check('dnsNames', req.dnsNames, dnsNameProblem);
  check('ipAddresses', req.ipAddresses, ipAddressProblem);
  check('uris', req.uris, uriProblem);
  check('emailAddresses', req.emailAddresses, emailProblem);
  if (
    req.commonName !== undefined &&
    (req.commonName.length === 0 || req.commonName.length > MAX_COMMON_NAME)
  ) {
    problems.push(`commonName must be 1 to ${MAX_COMMON_NAME} characters`);
  }
  const nameCount =
    (req.dnsNames?.length ?? 0) +
    (req.ipAddresses?.length ?? 0) +
    (req.uris?.length ?? 0) +
    (req.emailAddresses?.length ?? 0);
  if (nameCount === 0 && !req.commonName) {
    problems.push(
      'the certificate names nothing: set commonName or at least one of dnsNames, ipAddresses, uris, emailAddresses',
    );
  }
  const unknown = unknownUsages(req.usages ?? []);
  if (unknown.length > 0) problems.push(`usages ${unknown.map((u) => `"${u}"`).join(', ')} are not known`);
  if (!(req.durationMs > 0)) problems.push('duration must be positive');
  try {
    const key = normalizeKeySpec(req.key);
    if (req.key?.encoding === KeyEncoding.PKCS1 && key.algorithm === 'Ed25519') {
      problems.push('Ed25519 keys can only be encoded as PKCS8');
    }
  } catch (err) {
    problems.push((err as Error).message);
  }
  return problems;
}

function subjectName(req: IssueRequest): x509.JsonName {
  const name: x509.JsonName = [];
  const add = (type: string, values: string[] | undefined) => {
    if (values && values.length > 0) name.push({ [type]: values });
  };
  add('C', req.subject?.countries);
  add('ST', req.subject?.provinces);
  add('L', req.subject?.localities);
  add('O', req.subject?.organizations);
  add('OU', req.subject?.organizationalUnits);
  if (req.commonName) name.push({ CN: [req.commonName] });
  return name;
}

/** An existing key to sign for instead of generating one (rotationPolicy: Never). */
export interface ReusedKey {
  keyObject: KeyObject;
  description: KeyDescription;
}

/**
 * Issues a certificate for `req`, signed by `ca`. The key is generated here
 * unless one is passed to reuse. The leaf never outlives the CA.
 */
export async function issueCertificate(
  ca: CertificateAuthority,
  req: IssueRequest,
  now: Date,
  reuse?: ReusedKey,
): Promise<IssuedCertificate> {
  const problems = requestProblems(req);
  if (problems.length > 0) throw new PkiError(PkiErrorCode.InvalidRequest, `${problems.join('; ')}`);
  const spec = normalizeKeySpec(req.key);
  let keyObject: KeyObject;
  let publicKey: CryptoKey;
  let description: KeyDescription;
  if (reuse && reuse.description.algorithm === spec.algorithm && reuse.description.size === spec.size) {
    keyObject = reuse.keyObject;
    description = reuse.description;
    publicKey = await subtle.importKey(
      'spki',
      new Uint8Array(publicKeySpki(keyObject)),
      description.algorithm === 'ECDSA'
        ? { name: 'ECDSA', namedCurve: description.size === 384 ? 'P-384' : 'P-256' }
        : description.algorithm === 'RSA'
          ? { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }
          : { name: 'Ed25519' },
      true,
      ['verify'],
    );
  } else {
    const generated = await generateKey(spec);
    keyObject = generated.keyObject;
    publicKey = generated.publicKey;
    description = generated.description;
  }

  const notBefore = new Date(Math.floor(now.getTime() / 1000) * 1000);
  const notAfter = new Date(Math.min(notBefore.getTime() + req.durationMs, ca.facts.notAfter.getTime()));
  const isCA = req.isCA ?? false;
  const usages = splitUsages(req.usages && req.usages.length > 0 ? req.usages : DEFAULT_USAGES, isCA);
  const subject = subjectName(req);

  const sans: x509.JsonGeneralName[] = [
    ...(req.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(req.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
    ...(req.uris ?? []).map((value) => ({ type: 'url' as const, value })),
    ...(req.emailAddresses ?? []).map((value) => ({ type: 'email' as const, value })),
  ];
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(isCA, undefined, true),
    new x509.KeyUsagesExtension(usages.keyUsageFlags, true),
    await x509.SubjectKeyIdentifierExtension.create(publicKey),
  ];
  if (usages.extendedKeyUsageOids.length > 0) {
    extensions.push(new x509.ExtendedKeyUsageExtension(usages.extendedKeyUsageOids, false));
  }
  if (ca.facts.subjectKeyId)
    extensions.push(new x509.AuthorityKeyIdentifierExtension(ca.facts.subjectKeyId, false));
  // RFC 5280: with an empty subject the SAN extension must be critical.
  if (sans.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(sans, subject.length === 0));

  const serialNumber = randomSerial();
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber,
    subject,
    issuer: ca.certificate.cert.subjectName,
    notBefore,
    notAfter,
    publicKey,
    signingKey: ca.signingKey,
    signingAlgorithm: ca.signingAlgorithm,
    extensions,
  });
  const leafPem = leaf.toString('pem');
  return {
    certificatePem: `${leafPem.trimEnd()}\n${ca.chainPem}`,
    privateKeyPem: exportPrivateKeyPem(keyObject, req.key?.encoding ?? KeyEncoding.PKCS8),
    caPem: ca.trustAnchorPem,
    // As certificates print it: hex without leading zeros.
    serialNumber: serialNumber.replace(/^0+/, ''),
    notBefore,
    notAfter,
    key: description,
  };
}
