import { execFileSync } from 'node:child_process';
import { createPublicKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DAY, testCA } from '../testing/pki.ts';
import { x509 } from '../testing/x509.ts';
import { loadCertificateAuthority } from './ca.ts';
import {
  type CertificateFacts,
  displaySerial,
  isSignedBy,
  x509 as nodeX509,
  parseCertificateChain,
  publicKeyOf,
} from './certificate.ts';
import { issueCertificate } from './issue.ts';
import { describeKeyObject, type KeySpec } from './keys.ts';
import { canonicalIp } from './names.ts';

/** The same facts read with @peculiar/x509, an independent parser: the oracle. */
function peculiarFacts(pem: string): CertificateFacts {
  const cert = new x509.X509Certificate(pem);
  const field = (name: string) => cert.subjectName.getField(name);
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const names = san?.names.items ?? [];
  const of = (type: string) => [...new Set(names.filter((n) => n.type === type).map((n) => n.value))].sort();
  return {
    subject: {
      commonName: field('CN')[0],
      organizations: field('O'),
      organizationalUnits: field('OU'),
      countries: field('C'),
      localities: field('L'),
      provinces: field('ST'),
    },
    dnsNames: of('dns'),
    ipAddresses: [...new Set(of('ip').map(canonicalIp))].sort(),
    uris: of('url'),
    emailAddresses: of('email'),
    isCA: cert.getExtension(x509.BasicConstraintsExtension)?.ca ?? false,
    keyUsageFlags: cert.getExtension(x509.KeyUsagesExtension)?.usages,
    extendedKeyUsageOids: [
      ...new Set((cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages ?? []).map(String)),
    ].sort(),
    key: describeKeyObject(
      createPublicKey({ key: Buffer.from(cert.publicKey.rawData), format: 'der', type: 'spki' }),
    ),
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    serialNumber: cert.serialNumber.toLowerCase().replace(/^0+(?=.)/, ''),
    subjectKeyId: cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId,
    authorityKeyId: cert.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId,
    fingerprint: Buffer.from(cert.rawData).length > 0 ? expect.any(String) : '',
  } as CertificateFacts;
}

function expectSameFacts(pem: string) {
  const parsed = parseCertificateChain(pem)[0]!;
  expect(parsed.facts).toEqual(peculiarFacts(pem));
  expect(
    parsed.spki.equals(Buffer.from(new x509.X509Certificate(new Uint8Array(parsed.der)).publicKey.rawData)),
  ).toBe(true);
  expect(parsed.pem.trim()).toBe(new x509.X509Certificate(new Uint8Array(parsed.der)).toString('pem').trim());
}

describe('parseCertificateChain reads the same facts as @peculiar/x509', () => {
  it.each([
    ['ECDSA P-256', { algorithm: 'ECDSA', size: 256 }],
    ['RSA 2048', { algorithm: 'RSA', size: 2048 }],
    ['Ed25519', { algorithm: 'Ed25519' }],
  ] as [string, Partial<KeySpec>][])('for a self-signed %s CA', async (_n, key) => {
    const { certPem } = await testCA({ key });
    expectSameFacts(certPem);
  });

  it('for a leaf with every kind of name, subject fields and usages, and for an intermediate', async () => {
    const root = await testCA();
    const now = new Date();
    const issued = await issueCertificate(
      root.ca,
      {
        commonName: 'api',
        dnsNames: ['b.shop.svc', 'a.shop.svc'],
        ipAddresses: ['10.0.0.7', '2001:db8::1', '::ffff:1.2.3.4'],
        uris: ['spiffe://cluster.local/ns/shop/sa/api'],
        emailAddresses: ['ops@example.com'],
        subject: { organizations: ['Shop', 'Bank'], organizationalUnits: ['Payments'], countries: ['DE'] },
        usages: ['digital signature', 'key encipherment', 'content commitment', 'server auth', 'client auth'],
        durationMs: DAY,
      },
      now,
    );
    expectSameFacts(issued.certificatePem);
    const intermediate = await issueCertificate(
      root.ca,
      { commonName: 'Intermediate', isCA: true, durationMs: 30 * DAY, usages: ['cert sign', 'crl sign'] },
      now,
    );
    expectSameFacts(intermediate.certificatePem);
    const ca = loadCertificateAuthority(intermediate.certificatePem, intermediate.privateKeyPem, now);
    expect(ca.facts.isCA).toBe(true);
  });

  it.each([
    ['UTF-8 strings', ['-utf8']],
    ['a multi-valued RDN', ['-utf8', '-multivalue-rdn']],
  ])('for a certificate OpenSSL wrote with %s, IPv6 and more key usages', (_n, extra) => {
    const dir = mkdtempSync(join(tmpdir(), 'sigil-parse-'));
    try {
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:P-384',
          '-nodes',
          '-keyout',
          join(dir, 'key.pem'),
          '-out',
          join(dir, 'cert.pem'),
          '-days',
          '2',
          '-subj',
          '/C=DE/ST=Berlin/L=Kreuzberg/O=Zürich Größe/OU=a+OU=b/CN=ünïcødé',
          '-addext',
          'subjectAltName=DNS:a.example,IP:2001:db8::7,IP:10.1.2.3,URI:spiffe://td/ns/a/sa/b,email:a@b.example',
          '-addext',
          'keyUsage=critical,digitalSignature,keyAgreement,decipherOnly',
          '-addext',
          'extendedKeyUsage=serverAuth,codeSigning',
          ...extra,
        ],
        { stdio: 'ignore' },
      );
      expectSameFacts(readFileSync(join(dir, 'cert.pem'), 'utf8'));
      expect(
        parseCertificateChain(readFileSync(join(dir, 'cert.pem'), 'utf8'))[0]!.facts.subject.organizations,
      ).toEqual(['Zürich Größe']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('isSignedBy', () => {
  it('should accept a leaf its CA signed, and refuse one another CA of the same name signed', async () => {
    const { ca } = await testCA({ commonName: 'Same Name CA' });
    const { ca: impostor } = await testCA({ commonName: 'Same Name CA' });
    const { ca: other } = await testCA({ commonName: 'Other CA' });
    const issued = await issueCertificate(ca, { dnsNames: ['a.example.com'], durationMs: DAY }, new Date());
    const leaf = parseCertificateChain(issued.certificatePem)[0]!;
    expect(isSignedBy(leaf, ca.certificate)).toBe(true);
    // Same issuer name, other key: the signature decides.
    expect(leaf.issuerDer.equals(impostor.certificate.subjectDer)).toBe(true);
    expect(isSignedBy(leaf, impostor.certificate)).toBe(false);
    // Another name: refused before any signature is checked.
    expect(isSignedBy(leaf, other.certificate)).toBe(false);
    expect(isSignedBy(ca.certificate, ca.certificate)).toBe(true);
  });

  it('should accept an issuer name its CA writes in another string type, as OpenSSL prints both alike', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sigil-issuer-'));
    try {
      const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
      const config = join(dir, 'printable.cnf');
      // string_mask = default writes an ASCII name as PrintableString; utf8only, OpenSSL's default, as UTF8String.
      writeFileSync(
        config,
        '[req]\ndistinguished_name = dn\nstring_mask = default\nx509_extensions = v3\n[dn]\n[v3]\nbasicConstraints = critical,CA:true\nkeyUsage = critical,keyCertSign\n',
      );
      run('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key');
      const ca = (out: string, subject: string, ...extra: string[]) =>
        run('req', '-x509', '-new', '-key', 'ca.key', '-subj', subject, '-days', '2', '-out', out, ...extra);
      ca('utf8.pem', '/CN=Encoded CA', '-utf8', '-addext', 'basicConstraints=critical,CA:true');
      ca('printable.pem', '/CN=Encoded CA', '-config', config);
      ca('other.pem', '/CN=Other CA', '-utf8', '-addext', 'basicConstraints=critical,CA:true');
      run('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'leaf.key');
      run('req', '-new', '-key', 'leaf.key', '-subj', '/CN=leaf', '-out', 'leaf.csr');
      run(
        'x509',
        '-req',
        '-in',
        'leaf.csr',
        '-CA',
        'printable.pem',
        '-CAkey',
        'ca.key',
        '-days',
        '1',
        '-out',
        'leaf.pem',
      );
      const read = (f: string) => parseCertificateChain(readFileSync(join(dir, f), 'utf8'))[0]!;
      const leaf = read('leaf.pem');
      const utf8 = read('utf8.pem');
      // The leaf names its issuer as a PrintableString, the CA certificate itself as a UTF8String.
      expect(leaf.issuerDer.equals(read('printable.pem').subjectDer)).toBe(true);
      expect(leaf.issuerDer.equals(utf8.subjectDer)).toBe(false);
      expect(isSignedBy(leaf, utf8)).toBe(true);
      // The same key under another name is still refused.
      expect(isSignedBy(leaf, read('other.pem'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('should keep no node:crypto X509Certificate in a parsed certificate, and make its public key once', async () => {
    const { ca } = await testCA();
    const issued = await issueCertificate(ca, { dnsNames: ['a.example.com'], durationMs: DAY }, new Date());
    const leaf = parseCertificateChain(issued.certificatePem)[0]!;
    // Its OpenSSL structures are memory V8 does not count, held until a full collection.
    expect(Object.values(leaf).some((v) => v instanceof X509Certificate)).toBe(false);
    expect(nodeX509(leaf)).toBeInstanceOf(X509Certificate);
    expect(nodeX509(leaf).fingerprint256.replaceAll(':', '').toLowerCase()).toBe(leaf.facts.fingerprint);
    expect(nodeX509(leaf).issuer).toBe(nodeX509(ca.certificate).subject);
    const key = publicKeyOf(ca.certificate);
    expect(publicKeyOf(ca.certificate)).toBe(key);
    expect(key.export({ type: 'spki', format: 'der' }).equals(ca.certificate.spki)).toBe(true);
  });
});

describe('displaySerial', () => {
  it.each([
    ['0ffd2b', '0ffd2b'],
    ['ffd2b', '0ffd2b'],
    ['00ff', 'ff'],
    ['7F01', '7f01'],
    ['0', '00'],
  ])('should print %s as %s', (hex, shown) => {
    expect(displaySerial(hex)).toBe(shown);
  });

  it('should print serials as node:crypto and OpenSSL do, a leading zero included', async () => {
    const { ca } = await testCA();
    let lowNibble = 0;
    for (let i = 0; i < 300 && lowNibble < 3; i++) {
      const issued = await issueCertificate(ca, { dnsNames: ['a.example.com'], durationMs: DAY }, new Date());
      const shownByNode = new X509Certificate(issued.certificatePem).serialNumber.toLowerCase();
      const facts = parseCertificateChain(issued.certificatePem)[0]!.facts;
      expect(displaySerial(facts.serialNumber)).toBe(shownByNode);
      if (shownByNode.startsWith('0')) lowNibble++;
    }
    // Serials whose first byte is below 0x10 came up, the case that lost its zero before.
    expect(lowNibble).toBe(3);
  });
});
