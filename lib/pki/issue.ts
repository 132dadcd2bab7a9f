import { createHash, type KeyObject, sign } from 'node:crypto';
import type { CertificateAuthority } from './ca.ts';
import * as der from './der.ts';
import { PkiError, PkiErrorCode } from './errors.ts';
import {
  exportPrivateKeyPem,
  generatePrivateKey,
  type KeyDescription,
  KeyEncoding,
  type KeySpec,
  normalizeKeySpec,
  publicKeySpki,
} from './keys.ts';
import { dnsNameProblem, emailProblem, ipAddressProblem, uriProblem } from './names.ts';
import { encodePem } from './pem.ts';
import { DEFAULT_USAGES, KeyUsageFlag, splitUsages, unknownUsages } from './usages.ts';

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
  /** For a CA: the names it may sign (RFC 5280 name constraints); the tenancy module computes them. */
  nameConstraints?: NameConstraints | undefined;
  durationMs: number;
  key?: (Partial<KeySpec> & { encoding?: KeyEncoding | undefined }) | undefined;
}

/** Permitted subtrees of a subordinate CA, per name type. An empty list leaves that type unconstrained. */
export interface NameConstraints {
  /** DNS subtrees: "ns.svc" permits it and every name below; ".example.com" only names below. */
  permittedDNS: string[];
  /** CIDR ranges. */
  permittedIPRanges: string[];
  /** URI hosts, same form as DNS subtrees. */
  permittedURIHosts: string[];
  /** Email domains, same form as DNS subtrees. */
  permittedEmailDomains: string[];
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

/** The subject Name: one RDN per value, in the order OpenSSL prints (C, ST, L, O, OU, CN). */
function subjectName(req: IssueRequest): { der: der.Der; empty: boolean } {
  const rdns: der.Der[] = [];
  const add = (type: keyof typeof der.AttributeOid, values: string[] | undefined) => {
    for (const v of values ?? [])
      rdns.push(
        der.setOfOne(der.sequence(der.oid(der.AttributeOid[type]), der.directoryString(v, type === 'C'))),
      );
  };
  add('C', req.subject?.countries);
  add('ST', req.subject?.provinces);
  add('L', req.subject?.localities);
  add('O', req.subject?.organizations);
  add('OU', req.subject?.organizationalUnits);
  if (req.commonName) add('CN', [req.commonName]);
  return { der: der.sequence(...rdns), empty: rdns.length === 0 };
}

function extension(id: string, critical: boolean, value: der.Der): der.Der {
  return critical
    ? der.sequence(der.oid(id), der.booleanTrue(), der.octetString(value))
    : der.sequence(der.oid(id), der.octetString(value));
}

/** How the CA's key signs: the hash node:crypto uses and the AlgorithmIdentifier that names it. */
function signatureAlgorithm(key: KeyDescription): { hash: string | null; id: der.Der } {
  switch (key.algorithm) {
    case 'ECDSA': {
      const [hash, id] =
        key.size === 384
          ? ['sha384', '1.2.840.10045.4.3.3']
          : key.size === 521
            ? ['sha512', '1.2.840.10045.4.3.4']
            : ['sha256', '1.2.840.10045.4.3.2'];
      return { hash, id: der.sequence(der.oid(id)) };
    }
    case 'RSA':
      return { hash: 'sha256', id: der.sequence(der.oid('1.2.840.113549.1.1.11'), der.nullValue()) };
    case 'Ed25519':
      return { hash: null, id: der.sequence(der.oid('1.3.101.112')) };
  }
}

/** NameConstraints ::= SEQUENCE { permittedSubtrees [0] GeneralSubtrees } */
function nameConstraintsDer(c: NameConstraints): der.Der {
  const subtree = (generalName: der.Der) => der.sequence(generalName);
  const ipSubtree = (cidr: string) => {
    const [address, prefixText] = cidr.split('/') as [string, string];
    const bytes = der.ipBytes(address);
    const prefix = Number(prefixText);
    const mask = Buffer.alloc(bytes.length);
    for (let i = 0; i < mask.length * 8 && i < prefix; i++)
      mask[i >> 3] = (mask[i >> 3] ?? 0) | (0x80 >> (i & 7));
    const network = Buffer.from(bytes.map((b, i) => b & mask[i]!));
    return subtree(der.implicit(7, Buffer.concat([network, mask])));
  };
  const permitted = [
    ...c.permittedDNS.map((d) => subtree(der.implicit(2, d))),
    ...c.permittedIPRanges.map(ipSubtree),
    ...c.permittedURIHosts.map((h) => subtree(der.implicit(6, h))),
    ...c.permittedEmailDomains.map((h) => subtree(der.implicit(1, h))),
  ];
  return der.sequence(der.tlv(0xa0, permitted));
}

const signAsync = (hash: string | null, data: Buffer, key: KeyObject) =>
  new Promise<Buffer>((resolve, reject) =>
    sign(hash, data, key, (err, signature) => (err ? reject(err) : resolve(signature))),
  );

/** An existing key to sign for instead of generating one (rotationPolicy: Never). */
export interface ReusedKey {
  keyObject: KeyObject;
  description: KeyDescription;
}

/**
 * Issues a certificate for `req`, signed by `ca`. The key is generated here
 * unless one is passed to reuse. The leaf never outlives the CA. The DER is
 * written directly (see der.ts for why); key generation and signing run on
 * the thread pool.
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
  const { keyObject, description } =
    reuse && reuse.description.algorithm === spec.algorithm && reuse.description.size === spec.size
      ? reuse
      : await generatePrivateKey(spec);
  const signed = await signLeaf(ca, req, publicKeySpki(keyObject), now);
  const { leafPem: _, ...rest } = signed;
  return {
    ...rest,
    privateKeyPem: exportPrivateKeyPem(keyObject, req.key?.encoding ?? KeyEncoding.PKCS8),
    key: description,
  };
}

/** A certificate signed for a public key whose private key Sigil never sees (a PodCertificateRequest's). */
export interface SignedCertificate {
  /** Leaf, then the CA chain. */
  certificatePem: string;
  /** The leaf alone. */
  leafPem: string;
  /** The trust anchor (ca.crt). */
  caPem: string;
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
}

/**
 * Signs `req` for the public key `spki` (DER SubjectPublicKeyInfo): the
 * requester holds the private key. The key itself must already be one the
 * caller accepts; `req.key` describes it for the request checks.
 */
export async function signPublicKey(
  ca: CertificateAuthority,
  req: IssueRequest,
  spki: Buffer,
  now: Date,
): Promise<SignedCertificate> {
  const problems = requestProblems(req);
  if (problems.length > 0) throw new PkiError(PkiErrorCode.InvalidRequest, `${problems.join('; ')}`);
  return signLeaf(ca, req, spki, now);
}

async function signLeaf(
  ca: CertificateAuthority,
  req: IssueRequest,
  spki: Buffer,
  now: Date,
): Promise<SignedCertificate> {
  const notBefore = new Date(Math.floor(now.getTime() / 1000) * 1000);
  const notAfter = new Date(
    Math.floor(Math.min(notBefore.getTime() + req.durationMs, ca.facts.notAfter.getTime()) / 1000) * 1000,
  );
  const isCA = req.isCA ?? false;
  const usages = splitUsages(req.usages && req.usages.length > 0 ? req.usages : DEFAULT_USAGES, isCA);
  const subject = subjectName(req);

  const names: der.Der[] = [
    ...(req.dnsNames ?? []).map((v) => der.implicit(2, v)),
    ...(req.ipAddresses ?? []).map((v) => der.implicit(7, der.ipBytes(v))),
    ...(req.uris ?? []).map((v) => der.implicit(6, v)),
    ...(req.emailAddresses ?? []).map((v) => der.implicit(1, v)),
  ];
  // A CA issued here is a subordinate CA for one tenant: it may sign leaves only (pathLenConstraint 0).
  const extensions: der.Der[] = [
    extension(
      der.ExtensionOid.basicConstraints,
      true,
      isCA ? der.sequence(der.booleanTrue(), der.smallInteger(0)) : der.sequence(),
    ),
  ];
  if (isCA && req.nameConstraints) {
    extensions.push(
      extension(der.ExtensionOid.nameConstraints, true, nameConstraintsDer(req.nameConstraints)),
    );
  }
  // RFC 5280: a KeyUsage extension names at least one usage; with none it is left out.
  if (usages.keyUsageFlags !== 0)
    extensions.push(extension(der.ExtensionOid.keyUsage, true, der.namedBits(usages.keyUsageFlags)));
  extensions.push(
    extension(
      der.ExtensionOid.subjectKeyId,
      false,
      der.octetString(createHash('sha1').update(der.spkiPublicKeyBits(spki)).digest()),
    ),
  );
  if (usages.extendedKeyUsageOids.length > 0) {
    extensions.push(
      extension(
        der.ExtensionOid.extKeyUsage,
        false,
        der.sequence(...usages.extendedKeyUsageOids.map((o) => der.oid(o))),
      ),
    );
  }
  if (ca.facts.subjectKeyId) {
    extensions.push(
      extension(
        der.ExtensionOid.authorityKeyId,
        false,
        der.sequence(der.implicit(0, Buffer.from(ca.facts.subjectKeyId, 'hex'))),
      ),
    );
  }
  // RFC 5280: with an empty subject the SAN extension must be critical.
  if (names.length > 0)
    extensions.push(extension(der.ExtensionOid.subjectAltName, subject.empty, der.sequence(...names)));

  const serialNumber = der.randomSerial();
  const algorithm = signatureAlgorithm(ca.keyDescription);
  const tbs = der.sequence(
    der.explicit(0, der.smallInteger(2)),
    der.unsignedInteger(Buffer.from(serialNumber, 'hex')),
    algorithm.id,
    der.raw(ca.certificate.subjectDer),
    der.sequence(der.time(notBefore), der.time(notAfter)),
    subject.der,
    der.raw(spki),
    der.explicit(3, der.sequence(...extensions)),
  );
  const tbsDer = der.encode(tbs);
  const signature = await signAsync(algorithm.hash, tbsDer, ca.signingKey);
  const leafPem = encodePem(
    'CERTIFICATE',
    der.encode(der.sequence(der.raw(tbsDer), algorithm.id, der.bitString(signature))),
  );
  return {
    certificatePem: `${leafPem}${ca.chainPem}`,
    leafPem,
    caPem: ca.trustAnchorPem,
    // As certificates print it: hex without leading zeros.
    serialNumber: serialNumber.replace(/^0+/, ''),
    notBefore,
    notAfter,
  };
}

export interface SelfSignedOptions {
  commonName: string;
  organization?: string | undefined;
  key?: Partial<KeySpec> | undefined;
  notBefore: Date;
  notAfter: Date;
  /** pathLenConstraint; none when undefined. */
  pathLength?: number | undefined;
}

/**
 * A self-signed root CA certificate (the bootstrap CA, the webhook's internal
 * CA, its first serving certificate) with a new key: basicConstraints CA
 * (critical), keyUsage certSign, cRLSign and digitalSignature (critical), and
 * a subject key identifier.
 */
export async function selfSignedCertificate(
  o: SelfSignedOptions,
): Promise<{ certPem: string; keyPem: string; keyObject: KeyObject }> {
  if (!o.commonName)
    throw new PkiError(PkiErrorCode.InvalidRequest, 'a root CA needs a common name (its issuer name)');
  if (
    o.pathLength !== undefined &&
    !(Number.isInteger(o.pathLength) && o.pathLength >= 0 && o.pathLength <= 255)
  )
    throw new PkiError(
      PkiErrorCode.InvalidRequest,
      `pathLength ${o.pathLength} is not an integer from 0 to 255`,
    );
  const { keyObject, description } = await generatePrivateKey(o.key);
  const spki = publicKeySpki(keyObject);
  const subject = subjectName({
    commonName: o.commonName,
    ...(o.organization ? { subject: { organizations: [o.organization] } } : {}),
  } as IssueRequest);
  const keyId = createHash('sha1').update(der.spkiPublicKeyBits(spki)).digest();
  const constraints =
    o.pathLength === undefined
      ? der.sequence(der.booleanTrue())
      : der.sequence(der.booleanTrue(), der.smallInteger(o.pathLength));
  const extensions = [
    extension(der.ExtensionOid.basicConstraints, true, constraints),
    extension(
      der.ExtensionOid.keyUsage,
      true,
      der.namedBits(KeyUsageFlag.keyCertSign | KeyUsageFlag.cRLSign | KeyUsageFlag.digitalSignature),
    ),
    extension(der.ExtensionOid.subjectKeyId, false, der.octetString(keyId)),
  ];
  const algorithm = signatureAlgorithm(description);
  const tbs = der.sequence(
    der.explicit(0, der.smallInteger(2)),
    der.unsignedInteger(Buffer.from(der.randomSerial(), 'hex')),
    algorithm.id,
    subject.der,
    der.sequence(der.time(o.notBefore), der.time(o.notAfter)),
    subject.der,
    der.raw(spki),
    der.explicit(3, der.sequence(...extensions)),
  );
  const tbsDer = der.encode(tbs);
  const signature = await signAsync(algorithm.hash, tbsDer, keyObject);
  return {
    certPem: encodePem(
      'CERTIFICATE',
      der.encode(der.sequence(der.raw(tbsDer), algorithm.id, der.bitString(signature))),
    ),
    keyPem: exportPrivateKeyPem(keyObject, KeyEncoding.PKCS8),
    keyObject,
  };
}
