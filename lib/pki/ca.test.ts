import { execFileSync } from 'node:child_process';
import { DAY, HOUR, opensslVerify, testCA } from '../testing/pki.ts';
import { x509 } from '../testing/x509.ts';
import { createSelfSignedCA, loadCertificateAuthority } from './ca.ts';
import { PkiErrorCode } from './errors.ts';
import { issueCertificate } from './issue.ts';
import { generateKey, signingAlgorithmFor } from './keys.ts';
import { MAX_PEM_BUNDLE_BYTES } from './pem.ts';

const now = new Date();

async function caWithoutCertSign(): Promise<{ certPem: string; keyPem: string }> {
  const key = await generateKey({ algorithm: 'ECDSA' });
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: [{ CN: ['No Cert Sign'] }],
    notBefore: new Date(now.getTime() - HOUR),
    notAfter: new Date(now.getTime() + DAY),
    keys: { publicKey: key.publicKey, privateKey: key.privateKey },
    signingAlgorithm: signingAlgorithmFor(key.description),
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    ],
  });
  return {
    certPem: cert.toString('pem'),
    keyPem: key.keyObject.export({ type: 'pkcs8', format: 'pem' }) as string,
  };
}

describe('loadCertificateAuthority', () => {
  it('should load a valid CA and describe it', async () => {
    const { certPem, keyPem } = await testCA({ commonName: 'Shop CA' });
    const ca = loadCertificateAuthority(certPem, keyPem, now);
    expect(ca.facts.subject.commonName).toBe('Shop CA');
    expect(ca.facts.isCA).toBe(true);
    expect(ca.trustAnchorPem).toBe(ca.certificate.pem);
    expect(ca.keyDescription).toEqual({ algorithm: 'ECDSA', size: 256 });
  });

  const cases: [string, () => Promise<[string | undefined, string | undefined, Date?]>, string, string][] = [
    ['a missing tls.crt', async () => [undefined, 'x'], PkiErrorCode.NoCertificate, 'has no tls.crt'],
    [
      'a missing tls.key',
      async () => [(await testCA()).certPem, ''],
      PkiErrorCode.NoPrivateKey,
      'has no tls.key',
    ],
    [
      'garbage instead of PEM',
      async () => ['not a certificate', 'nope'],
      PkiErrorCode.MalformedPem,
      'is not PEM',
    ],
    [
      'a certificate block whose DER is garbage',
      async () => ['-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', (await testCA()).keyPem],
      PkiErrorCode.MalformedPem,
      'is not a valid X.509 certificate',
    ],
    [
      'a key in tls.crt',
      async () => {
        const { keyPem } = await testCA();
        return [keyPem, keyPem];
      },
      PkiErrorCode.NoCertificate,
      'must hold only CERTIFICATE blocks',
    ],
    [
      'a key that belongs to another CA',
      async () => [(await testCA()).certPem, (await testCA()).keyPem],
      PkiErrorCode.KeyMismatch,
      'does not belong to the first certificate',
    ],
    [
      'a leaf certificate instead of a CA',
      async () => {
        const { ca } = await testCA();
        const leaf = await issueCertificate(ca, { commonName: 'leaf', durationMs: DAY }, now);
        return [leaf.certificatePem, leaf.privateKeyPem];
      },
      PkiErrorCode.NotACA,
      'is not a CA',
    ],
    [
      'a SPIFFE leaf with an empty subject instead of a CA',
      async () => {
        const { ca } = await testCA();
        const leaf = await issueCertificate(
          ca,
          { uris: ['spiffe://cluster.local/ns/a/sa/b'], durationMs: DAY },
          now,
        );
        return [leaf.certificatePem, leaf.privateKeyPem];
      },
      PkiErrorCode.NotACA,
      '"spiffe://cluster.local/ns/a/sa/b" is not a CA',
    ],
    [
      'a CA whose key usage lacks cert sign',
      async () => {
        const { certPem, keyPem } = await caWithoutCertSign();
        return [certPem, keyPem];
      },
      PkiErrorCode.NoCertSignUsage,
      'does not include keyCertSign',
    ],
    [
      'an expired CA',
      async () => {
        const { certPem, keyPem } = await testCA({
          notBefore: new Date(now.getTime() - 10 * DAY),
          notAfter: new Date(now.getTime() - DAY),
          now: new Date(now.getTime() - 5 * DAY),
        });
        return [certPem, keyPem];
      },
      PkiErrorCode.Expired,
      'expired at',
    ],
    [
      'a CA that is not valid yet',
      async () => {
        const { certPem, keyPem } = await testCA({
          notBefore: new Date(now.getTime() + DAY),
          notAfter: new Date(now.getTime() + 10 * DAY),
          now: new Date(now.getTime() + 2 * DAY),
        });
        return [certPem, keyPem];
      },
      PkiErrorCode.NotYetValid,
      'is not valid until',
    ],
    [
      'an oversized tls.crt',
      async () => ['A'.repeat(MAX_PEM_BUNDLE_BYTES + 1), 'x'],
      PkiErrorCode.PemTooLarge,
      'more than the',
    ],
    [
      'an encrypted key',
      async () => [
        (await testCA()).certPem,
        '-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n',
      ],
      PkiErrorCode.UnsupportedKey,
      'encrypted or unknown key formats are not supported',
    ],
  ];

  it.each(cases)('should refuse %s with its own code', async (_name, make, code, phrase) => {
    const [cert, key] = await make();
    let thrown: unknown;
    try {
      loadCertificateAuthority(cert, key, now);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toMatchObject({ code, message: expect.stringContaining(phrase) });
  });
});

describe('createSelfSignedCA', () => {
  it.each([
    ['ECDSA P-256', { algorithm: 'ECDSA', size: 256 }, 'ecdsa-with-SHA256'],
    ['ECDSA P-384', { algorithm: 'ECDSA', size: 384 }, 'ecdsa-with-SHA384'],
    ['RSA 2048', { algorithm: 'RSA', size: 2048 }, 'sha256WithRSAEncryption'],
    ['Ed25519', { algorithm: 'Ed25519' }, 'ED25519'],
  ] as const)(
    'should write a root CA OpenSSL and @peculiar/x509 read as one (%s)',
    async (_name, key, signature) => {
      const generated = await createSelfSignedCA({
        commonName: 'Root Under Test',
        organization: 'sigil',
        key,
        notBefore: new Date(now.getTime() - HOUR),
        notAfter: new Date(now.getTime() + DAY),
        pathLength: 1,
      });
      const cert = new x509.X509Certificate(generated.certPem);
      expect(await cert.verify({ signatureOnly: true })).toBe(true);
      expect(cert.subject).toBe(cert.issuer);
      expect(cert.subject).toContain('CN=Root Under Test');
      expect(cert.subject).toContain('O=sigil');
      const constraints = cert.getExtension(x509.BasicConstraintsExtension)!;
      expect({
        ca: constraints.ca,
        pathLength: constraints.pathLength,
        critical: constraints.critical,
      }).toEqual({
        ca: true,
        pathLength: 1,
        critical: true,
      });
      const usages = cert.getExtension(x509.KeyUsagesExtension)!;
      expect(usages.critical).toBe(true);
      expect(usages.usages).toBe(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature,
      );
      const keyId = await x509.SubjectKeyIdentifierExtension.create(await cert.publicKey.export());
      expect(cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId).toBe(keyId.keyId);
      const text = opensslText(generated.certPem);
      expect(text).toContain(`Signature Algorithm: ${signature}`);
      expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:1/);
      // It signs what Sigil issues, and OpenSSL accepts the chain.
      const ca = loadCertificateAuthority(generated.certPem, generated.keyPem, now);
      const leaf = await issueCertificate(
        ca,
        { commonName: 'leaf', dnsNames: ['leaf.example'], durationMs: HOUR },
        now,
      );
      expect(opensslVerify(generated.certPem, leaf.certificatePem, 'sslserver')).toContain('leaf.pem: OK');
      expect(ca.facts.subjectKeyId).toBe(keyId.keyId);
    },
  );

  it('should leave pathLenConstraint out unless asked for', async () => {
    const generated = await createSelfSignedCA({
      commonName: 'No Path Length',
      notBefore: now,
      notAfter: new Date(now.getTime() + DAY),
    });
    const constraints = new x509.X509Certificate(generated.certPem).getExtension(
      x509.BasicConstraintsExtension,
    )!;
    expect(constraints.ca).toBe(true);
    expect(constraints.pathLength).toBeUndefined();
    expect(opensslText(generated.certPem)).toMatch(/X509v3 Basic Constraints: critical\s+CA:TRUE\n/);
  });
});

function opensslText(pem: string): string {
  return execFileSync('openssl', ['x509', '-noout', '-text'], { input: pem, encoding: 'utf8' });
}

describe('createSelfSignedCA refuses', () => {
  it.each([
    ['an empty common name', { commonName: '' }, 'a root CA needs a common name'],
    [
      'a path length above 255',
      { commonName: 'x', pathLength: 256 },
      'pathLength 256 is not an integer from 0 to 255',
    ],
    [
      'a negative path length',
      { commonName: 'x', pathLength: -1 },
      'pathLength -1 is not an integer from 0 to 255',
    ],
  ])('%s', async (_name, options, message) => {
    await expect(
      createSelfSignedCA({ ...options, notBefore: now, notAfter: new Date(now.getTime() + DAY) }),
    ).rejects.toThrow(message);
  });
});
