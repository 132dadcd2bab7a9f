import { execFileSync } from 'node:child_process';
import { DAY, HOUR, opensslVerify, testCA } from '../testing/pki.ts';
import { x509 } from '../testing/x509.ts';
import { loadCertificateAuthority } from './ca.ts';
import { parseCertificateChain } from './certificate.ts';
import { PkiErrorCode } from './errors.ts';
import { readKeyPair, requestMismatches } from './inspect.ts';
import { type IssueRequest, issueCertificate, requestProblems } from './issue.ts';
import { KeyEncoding, type KeySpec } from './keys.ts';

const now = new Date();

function request(overrides: Partial<IssueRequest> = {}): IssueRequest {
  return {
    commonName: 'api',
    dnsNames: ['api.shop.svc', 'api.shop.svc.cluster.local'],
    ipAddresses: ['10.0.0.7', '2001:db8::1'],
    uris: ['spiffe://cluster.local/ns/shop/sa/api'],
    emailAddresses: ['ops@example.com'],
    subject: {
      organizations: ['Shop'],
      organizationalUnits: ['Payments'],
      countries: ['DE'],
      localities: ['Berlin'],
      provinces: ['BE'],
    },
    durationMs: DAY,
    ...overrides,
  };
}

describe('issueCertificate', () => {
  const keys: [string, Partial<KeySpec>][] = [
    ['ECDSA P-256', { algorithm: 'ECDSA', size: 256 }],
    ['ECDSA P-384', { algorithm: 'ECDSA', size: 384 }],
    ['RSA 2048', { algorithm: 'RSA', size: 2048 }],
    ['RSA 3072', { algorithm: 'RSA', size: 3072 }],
    ['RSA 4096', { algorithm: 'RSA', size: 4096 }],
    ['Ed25519', { algorithm: 'Ed25519' }],
  ];

  it.each(keys)(
    'should issue a %s leaf that OpenSSL verifies for server and client use',
    async (_name, key) => {
      const { ca } = await testCA();
      const issued = await issueCertificate(ca, request({ key }), now);
      const pair = readKeyPair(issued.certificatePem, issued.privateKeyPem);
      expect(pair.keyMatches).toBe(true);
      expect(pair.leaf.facts.key).toEqual({ algorithm: key.algorithm, size: key.size ?? 256 });
      expect(opensslVerify(issued.caPem, issued.certificatePem, 'sslserver')).toContain('leaf.pem: OK');
      expect(opensslVerify(issued.caPem, issued.certificatePem, 'sslclient')).toContain('leaf.pem: OK');
      expect(requestMismatches(request({ key }), pair.leaf)).toEqual([]);
    },
    30_000,
  );

  it.each([
    ['RSA', { algorithm: 'RSA', size: 2048 }],
    ['ECDSA P-384', { algorithm: 'ECDSA', size: 384 }],
    ['Ed25519', { algorithm: 'Ed25519' }],
  ] as [string, Partial<KeySpec>][])(
    'should sign with a %s CA',
    async (_name, key) => {
      const { ca } = await testCA({ key });
      const issued = await issueCertificate(ca, request(), now);
      expect(opensslVerify(issued.caPem, issued.certificatePem, 'sslserver')).toContain('OK');
    },
    30_000,
  );

  it('should carry every name, the subject, usages and the key identifiers', async () => {
    const { ca } = await testCA();
    const issued = await issueCertificate(ca, request(), now);
    const [leaf, caCert] = parseCertificateChain(issued.certificatePem);
    const f = leaf!.facts;
    expect(f.subject).toEqual({
      commonName: 'api',
      organizations: ['Shop'],
      organizationalUnits: ['Payments'],
      countries: ['DE'],
      localities: ['Berlin'],
      provinces: ['BE'],
    });
    expect(f.dnsNames).toEqual(['api.shop.svc', 'api.shop.svc.cluster.local']);
    expect(f.ipAddresses).toEqual(['10.0.0.7', '2001:db8::1']);
    expect(f.uris).toEqual(['spiffe://cluster.local/ns/shop/sa/api']);
    expect(f.emailAddresses).toEqual(['ops@example.com']);
    expect(f.isCA).toBe(false);
    expect(f.keyUsageFlags).toBe(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment);
    expect(f.extendedKeyUsageOids).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    expect(f.subjectKeyId).toMatch(/^[0-9a-f]{40}$/);
    expect(f.authorityKeyId).toBe(ca.facts.subjectKeyId);
    expect(caCert!.facts.fingerprint).toBe(ca.facts.fingerprint);
    expect(f.serialNumber).toBe(issued.serialNumber);
    expect(f.notAfter.getTime() - f.notBefore.getTime()).toBe(DAY);
  });

  it('should derive the subject key identifier as RFC 5280 method 1 does', async () => {
    const { ca } = await testCA();
    const issued = await issueCertificate(ca, request(), now);
    const leaf = parseCertificateChain(issued.certificatePem)[0]!;
    const publicKey = await new x509.X509Certificate(new Uint8Array(leaf.der)).publicKey.export();
    const expected = await x509.SubjectKeyIdentifierExtension.create(publicKey);
    expect(leaf.facts.subjectKeyId).toBe(expected.keyId);
  });

  it('should leave out the key usage extension when only extended usages are asked for', async () => {
    const { ca } = await testCA();
    const issued = await issueCertificate(ca, request({ usages: ['server auth'] }), now);
    const leaf = parseCertificateChain(issued.certificatePem)[0]!;
    expect(leaf.facts.keyUsageFlags).toBeUndefined();
    expect(leaf.facts.extendedKeyUsageOids).toEqual(['1.3.6.1.5.5.7.3.1']);
    expect(requestMismatches(request({ usages: ['server auth'] }), leaf)).toEqual([]);
    expect(opensslVerify(issued.caPem, issued.certificatePem, 'sslserver')).toContain('leaf.pem: OK');
  });

  it('should write dates from 2050 on as GeneralizedTime and read them back exactly', async () => {
    const { ca } = await testCA({ notAfter: new Date('2061-01-01T00:00:00Z') });
    const issued = await issueCertificate(ca, request({ durationMs: 30 * 365 * DAY }), now);
    const leaf = parseCertificateChain(issued.certificatePem)[0]!;
    expect(leaf.facts.notAfter.getTime()).toBe(issued.notAfter.getTime());
    expect(issued.notAfter.getUTCFullYear()).toBeGreaterThanOrEqual(2050);
    expect(opensslVerify(issued.caPem, issued.certificatePem, 'sslclient')).toContain('leaf.pem: OK');
  });

  it('should make the SAN extension critical when the subject is empty', async () => {
    const { ca } = await testCA();
    const req = { uris: ['spiffe://cluster.local/ns/a/sa/b'], durationMs: DAY };
    const issued = await issueCertificate(ca, req, now);
    const leaf = parseCertificateChain(issued.certificatePem)[0]!;
    expect(
      new x509.X509Certificate(new Uint8Array(leaf.der)).getExtension(x509.SubjectAlternativeNameExtension)
        ?.critical,
    ).toBe(true);
    expect(leaf.facts.subject.commonName).toBeUndefined();
    expect(opensslVerify(issued.caPem, issued.certificatePem, 'sslclient')).toContain('leaf.pem: OK');
  });

  it('should put the chain after the leaf and the root in ca.crt when the CA is an intermediate', async () => {
    const root = await testCA({ commonName: 'Root' });
    const intermediate = await issueCertificate(
      root.ca,
      { commonName: 'Intermediate', isCA: true, durationMs: 30 * DAY, usages: ['cert sign', 'crl sign'] },
      now,
    );
    const ca = loadCertificateAuthority(intermediate.certificatePem, intermediate.privateKeyPem, now);
    const leaf = await issueCertificate(ca, request(), now);
    const chain = parseCertificateChain(leaf.certificatePem);
    expect(chain.map((c) => c.facts.subject.commonName)).toEqual(['api', 'Intermediate', 'Root']);
    expect(leaf.caPem).toBe(root.ca.certificate.pem);
    expect(opensslVerify(leaf.caPem, leaf.certificatePem, 'sslserver')).toContain('leaf.pem: OK');
  });

  it('should never outlive the CA', async () => {
    const { ca } = await testCA({ notAfter: new Date(now.getTime() + 2 * HOUR) });
    const issued = await issueCertificate(ca, request({ durationMs: 90 * DAY }), now);
    expect(issued.notAfter.getTime()).toBe(ca.facts.notAfter.getTime());
  });

  it.each([
    [KeyEncoding.PKCS8, { algorithm: 'RSA', size: 2048 }, 'PRIVATE KEY'],
    [KeyEncoding.PKCS1, { algorithm: 'RSA', size: 2048 }, 'RSA PRIVATE KEY'],
    [KeyEncoding.PKCS1, { algorithm: 'ECDSA', size: 256 }, 'EC PRIVATE KEY'],
    [KeyEncoding.PKCS8, { algorithm: 'Ed25519' }, 'PRIVATE KEY'],
  ] as [KeyEncoding, Partial<KeySpec>, string][])(
    'should encode the key as %s for %j',
    async (encoding, key, label) => {
      const { ca } = await testCA();
      const issued = await issueCertificate(ca, request({ key: { ...key, encoding } }), now);
      expect(issued.privateKeyPem.startsWith(`-----BEGIN ${label}-----`)).toBe(true);
      // OpenSSL reads it back.
      execFileSync('openssl', ['pkey', '-noout'], { input: issued.privateKeyPem });
      expect(readKeyPair(issued.certificatePem, issued.privateKeyPem).keyMatches).toBe(true);
    },
  );

  it('should reuse a key when asked and the algorithm still fits', async () => {
    const { ca } = await testCA();
    const first = await issueCertificate(ca, request(), now);
    const pair = readKeyPair(first.certificatePem, first.privateKeyPem);
    const second = await issueCertificate(ca, request(), now, {
      keyObject: pair.key.keyObject,
      description: pair.key.description,
    });
    expect(second.privateKeyPem).toBe(first.privateKeyPem);
    expect(second.serialNumber).not.toBe(first.serialNumber);
  });

  it.each([
    ['an upper-case DNS name', { dnsNames: ['API.shop'] }, 'dnsNames entry "API.shop" must be lower case'],
    [
      'a bad IP',
      { ipAddresses: ['10.0.0.300'] },
      'ipAddresses entry "10.0.0.300" is not an IPv4 or IPv6 address',
    ],
    ['a relative URI', { uris: ['ns/shop'] }, 'uris entry "ns/shop" is not an absolute URI'],
    ['a bad email', { emailAddresses: ['nobody'] }, 'emailAddresses entry "nobody" is not an email address'],
    [
      'no names',
      { commonName: undefined, dnsNames: [], ipAddresses: [], uris: [], emailAddresses: [] },
      'names nothing',
    ],
    ['an unknown usage', { usages: ['teleport'] }, 'usages "teleport" are not known'],
    ['an RSA size of 1024', { key: { algorithm: 'RSA', size: 1024 } }, 'RSA key size 1024 is not supported'],
    [
      'Ed25519 as PKCS1',
      { key: { algorithm: 'Ed25519', encoding: 'PKCS1' } },
      'Ed25519 keys can only be encoded as PKCS8',
    ],
  ] as [string, Partial<IssueRequest>, string][])(
    'should refuse a request with %s',
    async (_name, overrides, message) => {
      expect(requestProblems(request(overrides)).join('; ')).toContain(message);
      const { ca } = await testCA();
      await expect(issueCertificate(ca, request(overrides), now)).rejects.toMatchObject({
        code: PkiErrorCode.InvalidRequest,
        message: expect.stringContaining(message),
      });
    },
  );
});

describe('requestMismatches', () => {
  it.each([
    ['should report changed DNS names', { dnsNames: ['other.shop.svc'] }, 'DNS names differ'],
    ['should report a changed common name', { commonName: 'web' }, 'common name differs'],
    ['should report a changed key algorithm', { key: { algorithm: 'RSA', size: 2048 } }, 'key differs'],
    ['should report changed usages', { usages: ['server auth'] }, 'usages differ'],
    [
      'should report a changed organization',
      { subject: { organizations: ['Other'] } },
      'organizations differ',
    ],
    ['should report a changed URI', { uris: ['spiffe://cluster.local/ns/shop/sa/web'] }, 'URIs differ'],
    ['should report isCA', { isCA: true }, 'isCA differs'],
  ] as [string, Partial<IssueRequest>, string][])('%s', async (_name, overrides, phrase) => {
    const { ca } = await testCA();
    const issued = await issueCertificate(ca, request(), now);
    const leaf = parseCertificateChain(issued.certificatePem)[0]!;
    expect(requestMismatches(request(overrides), leaf).join('; ')).toContain(phrase);
  });

  it('should treat names in another order or IPv6 in another spelling as the same', async () => {
    const { ca } = await testCA();
    const issued = await issueCertificate(ca, request(), now);
    const leaf = parseCertificateChain(issued.certificatePem)[0]!;
    const reordered = request({
      dnsNames: ['api.shop.svc.cluster.local', 'api.shop.svc'],
      ipAddresses: ['2001:0db8:0:0::1', '10.0.0.7'],
    });
    expect(requestMismatches(reordered, leaf)).toEqual([]);
  });
});
