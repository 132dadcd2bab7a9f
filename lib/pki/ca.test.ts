import { DAY, HOUR, testCA } from '../testing/pki.ts';
import { loadCertificateAuthority } from './ca.ts';
import { PkiErrorCode } from './errors.ts';
import { issueCertificate } from './issue.ts';
import { generateKey, signingAlgorithmFor } from './keys.ts';
import { MAX_PEM_BUNDLE_BYTES } from './pem.ts';
import { x509 } from './provider.ts';

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
