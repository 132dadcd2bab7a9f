import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IssuerPolicy } from '../api/types.ts';
import { spiffeIdOf, spiffeMatcher } from '../mtls/index.ts';
import { loadCertificateAuthority } from '../pki/ca.ts';
import { type IssueRequest, issueCertificate, requestProblems } from '../pki/issue.ts';
import { DAY, opensslVerify, testCA } from '../testing/pki.ts';
import {
  dnsNameOwner,
  secretNameViolation,
  subordinateCaConstraints,
  type TenancyContext,
  TenancyReason,
  tenancyViolation,
} from './index.ts';
import { spiffeIdProblem } from './spiffe.ts';

const ctx = (policy?: IssuerPolicy, namespace = 'shop'): TenancyContext => ({
  namespace,
  trustDomain: 'cluster.local',
  clusterDomain: 'cluster.local',
  policy,
  issuer: 'ClusterIssuer sigil-ca',
});
const request = (r: Partial<IssueRequest>): IssueRequest => ({ durationMs: DAY, ...r });

describe('dnsNameOwner', () => {
  it.each([
    ['api.shop', 'shop'],
    ['api.shop.svc', 'shop'],
    ['api.shop.svc.cluster.local', 'shop'],
    ['API.Shop.SVC.cluster.local.', 'shop'],
    ['web-0.api.shop.svc.cluster.local', 'shop'],
    ['*.shop.svc', 'shop'],
    ['*.api.shop.svc.cluster.local', 'shop'],
    ['10-0-0-1.shop.pod.cluster.local', 'shop'],
    ['10-0-0-1.shop.pod', 'shop'],
    ['kubernetes.default', 'default'],
    ['web-0.db.bank', 'bank'],
    ['api.example.com', 'com'],
    ['kubernetes.default.svc.cluster.local', 'default'],
  ])('should say %s belongs to namespace %s', (name, namespace) => {
    expect(dnsNameOwner(name, 'cluster.local')).toEqual({ kind: 'namespace', namespace });
  });

  it.each([
    'api',
    '*.svc',
    '*.svc.cluster.local',
    'svc.cluster.local',
    'cluster.local',
    '*.cluster.local',
    'evil.cluster.local',
    '*.pod.cluster.local',
  ])('should say %s belongs to the whole cluster', (name) => {
    expect(dnsNameOwner(name, 'cluster.local').kind).toBe('cluster');
  });

  it.each(['www.api.example.com', 'api.shop.svc.example.com'])('should say %s is external', (name) => {
    expect(dnsNameOwner(name, 'cluster.local')).toEqual({ kind: 'external' });
  });
});

describe('tenancyViolation', () => {
  it.each<[string, Partial<IssueRequest>, IssuerPolicy | undefined]>([
    [
      'its own service names',
      { dnsNames: ['api.shop', 'api.shop.svc', 'api.shop.svc.cluster.local'] },
      undefined,
    ],
    ['a wildcard of its own namespace', { dnsNames: ['*.shop.svc.cluster.local'] }, undefined],
    [
      'an external name the policy lists',
      { dnsNames: ['api.example.com'] },
      { allowedDNSNames: ['**.example.com'] },
    ],
    [
      'its own names when the policy lists only external ones',
      { dnsNames: ['api.shop.svc', 'web-0.api.shop'] },
      { allowedDNSNames: ['**.example.com'] },
    ],
    [
      'an organization the policy lists',
      { commonName: 'Shop X', subject: { organizations: ['Shop'] } },
      { allowedOrganizations: ['Shop'] },
    ],
    ['its own SPIFFE ID', { uris: ['spiffe://cluster.local/ns/shop/sa/api'] }, undefined],
    [
      'a common name with a colon that is no URI',
      { commonName: 'Team: Payments', dnsNames: ['a.shop.svc'] },
      undefined,
    ],
    ['a free-text common name', { commonName: 'Shop API', dnsNames: ['api.shop.svc'] }, undefined],
    ['a common name of its own namespace', { commonName: 'api.shop.svc' }, undefined],
    [
      'the default usages',
      { dnsNames: ['a.shop.svc'], usages: ['digital signature', 'server auth'] },
      undefined,
    ],
    ['an IP inside the allowed ranges', { ipAddresses: ['10.1.2.3'] }, { allowedIPRanges: ['10.0.0.0/8'] }],
    [
      'an IPv4-mapped IPv6 inside the ranges',
      { ipAddresses: ['::ffff:10.1.2.3'] },
      { allowedIPRanges: ['10.0.0.0/8'] },
    ],
    [
      'a CA when its namespace is allowed CAs',
      { commonName: 'Shop CA', isCA: true },
      { allowedCANamespaces: ['sho*'] },
    ],
    [
      'code signing when the policy lists it',
      { commonName: 'Shop X', usages: ['code signing'] },
      { allowedUsages: ['code signing'] },
    ],
    [
      'another namespace name the policy lists',
      { dnsNames: ['api.bank.svc'] },
      { allowedDNSNames: ['*.bank.svc'] },
    ],
    [
      'an email of an allowed domain',
      { emailAddresses: ['ops@example.com'] },
      { allowedEmailAddresses: ['*@example.com'] },
    ],
    [
      'a listed URI prefix',
      { uris: ['https://shop.example.com/x'] },
      { allowedURIs: ['https://shop.example.com/*'] },
    ],
  ])('should allow %s', (_case, req, policy) => {
    expect(tenancyViolation(ctx(policy), request(req))).toBeUndefined();
  });

  it.each<[string, Partial<IssueRequest>, IssuerPolicy | undefined, TenancyReason, string]>([
    [
      'isCA without policy',
      { commonName: 'Evil CA', isCA: true },
      undefined,
      TenancyReason.CANotAllowed,
      'allowedCANamespaces',
    ],
    [
      'cert sign without isCA',
      { commonName: 'Shop X', usages: ['cert sign'] },
      undefined,
      TenancyReason.CANotAllowed,
      '"cert sign"',
    ],
    [
      'crl sign',
      { commonName: 'Shop X', usages: ['crl sign', 'server auth'] },
      undefined,
      TenancyReason.CANotAllowed,
      '"crl sign"',
    ],
    [
      'isCA for another namespace than the one allowed',
      { commonName: 'Shop X', isCA: true },
      { allowedCANamespaces: ['bank'] },
      TenancyReason.CANotAllowed,
      'shop is not',
    ],
    [
      'code signing without policy',
      { commonName: 'Shop X', usages: ['code signing'] },
      undefined,
      TenancyReason.UsageNotAllowed,
      'allowedUsages',
    ],
    [
      'ocsp signing',
      { commonName: 'Shop X', usages: ['ocsp signing'] },
      undefined,
      TenancyReason.UsageNotAllowed,
      '"ocsp signing"',
    ],
    [
      'timestamping',
      { commonName: 'Shop X', usages: ['timestamping'] },
      undefined,
      TenancyReason.UsageNotAllowed,
      'timestamping',
    ],
    [
      'an upper-case SPIFFE scheme',
      { uris: ['SPIFFE://cluster.local/ns/bank/sa/x'] },
      undefined,
      TenancyReason.SpiffeIdNotCanonical,
      'lower-case scheme',
    ],
    [
      'a mixed-case SPIFFE scheme',
      { uris: ['Spiffe://cluster.local/ns/shop/sa/x'] },
      undefined,
      TenancyReason.SpiffeIdNotCanonical,
      'spiffe://',
    ],
    [
      'a dot-dot segment',
      { uris: ['spiffe://cluster.local/ns/shop/../bank/sa/x'] },
      undefined,
      TenancyReason.SpiffeIdNotCanonical,
      '".."',
    ],
    [
      'a percent-encoded dot-dot',
      { uris: ['spiffe://cluster.local/ns/shop/%2e%2e/bank'] },
      undefined,
      TenancyReason.SpiffeIdNotCanonical,
      'percent',
    ],
    [
      'an empty segment',
      { uris: ['spiffe://cluster.local/ns//shop/sa/x'] },
      undefined,
      TenancyReason.SpiffeIdNotCanonical,
      'empty',
    ],
    [
      'a trailing slash',
      { uris: ['spiffe://cluster.local/ns/shop/sa/x/'] },
      undefined,
      TenancyReason.SpiffeIdNotCanonical,
      'empty',
    ],
    [
      'a non-ASCII segment',
      { uris: ['spiffe://cluster.local/ns/shop/sa/ä'] },
      undefined,
      TenancyReason.SpiffeIdNotCanonical,
      'non-ASCII',
    ],
    [
      'an upper-case trust domain',
      { uris: ['spiffe://Cluster.local/ns/shop/sa/x'] },
      undefined,
      TenancyReason.SpiffeIdNotCanonical,
      'trust domain',
    ],
    [
      'a port in the trust domain',
      { uris: ['spiffe://cluster.local:443/ns/shop/sa/x'] },
      undefined,
      TenancyReason.SpiffeIdNotCanonical,
      'no port',
    ],
    [
      'a query',
      { uris: ['spiffe://cluster.local/ns/shop/sa/x?y'] },
      undefined,
      TenancyReason.SpiffeIdNotCanonical,
      'query',
    ],
    [
      'another namespace SPIFFE ID',
      { uris: ['spiffe://cluster.local/ns/bank/sa/x'] },
      undefined,
      TenancyReason.SpiffeIdNotOwned,
      'namespace shop',
    ],
    [
      'the bare namespace ID',
      { uris: ['spiffe://cluster.local/ns/shop'] },
      undefined,
      TenancyReason.SpiffeIdNotOwned,
      'not of the form',
    ],
    [
      'another trust domain',
      { uris: ['spiffe://other.example/ns/shop/sa/x'] },
      undefined,
      TenancyReason.SpiffeIdNotOwned,
      'trust domain',
    ],
    [
      'a non-SPIFFE URI',
      { uris: ['https://bank.example.com/'] },
      undefined,
      TenancyReason.URINotAllowed,
      'allowedURIs',
    ],
    [
      'another namespace short name',
      { dnsNames: ['api.bank'] },
      undefined,
      TenancyReason.DNSNameNotAllowed,
      'namespace bank',
    ],
    [
      'another namespace service name',
      { dnsNames: ['api.bank.svc'] },
      undefined,
      TenancyReason.DNSNameNotAllowed,
      'namespace bank',
    ],
    [
      'another namespace FQDN',
      { dnsNames: ['api.bank.svc.cluster.local'] },
      undefined,
      TenancyReason.DNSNameNotAllowed,
      'namespace bank',
    ],
    [
      'a StatefulSet pod of another namespace',
      { dnsNames: ['db-0.db.bank.svc.cluster.local'] },
      undefined,
      TenancyReason.DNSNameNotAllowed,
      'bank',
    ],
    [
      'a pod name of another namespace',
      { dnsNames: ['10-0-0-1.bank.pod.cluster.local'] },
      undefined,
      TenancyReason.DNSNameNotAllowed,
      'bank',
    ],
    [
      'a wildcard over another namespace',
      { dnsNames: ['*.bank.svc.cluster.local'] },
      undefined,
      TenancyReason.DNSNameNotAllowed,
      'bank',
    ],
    [
      'a wildcard over every namespace',
      { dnsNames: ['*.svc.cluster.local'] },
      undefined,
      TenancyReason.DNSNameNotAllowed,
      'every namespace',
    ],
    [
      'the cluster API server',
      { dnsNames: ['kubernetes.default.svc.cluster.local'] },
      undefined,
      TenancyReason.DNSNameNotAllowed,
      'namespace default',
    ],
    [
      'a bare service name',
      { dnsNames: ['api'] },
      undefined,
      TenancyReason.DNSNameNotAllowed,
      'api.shop.svc instead',
    ],
    [
      'a name under the cluster domain',
      { dnsNames: ['x.cluster.local'] },
      undefined,
      TenancyReason.DNSNameNotAllowed,
      'cluster domain',
    ],
    [
      'another namespace in commonName',
      { commonName: 'api.bank.svc' },
      undefined,
      TenancyReason.DNSNameNotAllowed,
      'commonName api.bank.svc',
    ],
    [
      'an upper-case commonName of another namespace',
      { commonName: 'API.BANK.SVC.' },
      undefined,
      TenancyReason.DNSNameNotAllowed,
      'namespace bank',
    ],
    [
      'an external name outside the policy',
      { dnsNames: ['www.api.example.com'] },
      { allowedDNSNames: ['*.shop.example.org'] },
      TenancyReason.DNSNameNotAllowed,
      'allowedDNSNames',
    ],
    [
      'a bare commonName even beside DNS names',
      { commonName: 'api', dnsNames: ['api.shop.svc'] },
      undefined,
      TenancyReason.DNSNameNotAllowed,
      'commonName api',
    ],
    [
      'a bare commonName without DNS names',
      { commonName: 'api', uris: ['spiffe://cluster.local/ns/shop/sa/a'] },
      undefined,
      TenancyReason.DNSNameNotAllowed,
      'commonName api',
    ],
    [
      'a SPIFFE ID of another namespace as commonName',
      { commonName: 'spiffe://cluster.local/ns/bank/sa/x', dnsNames: ['a.shop.svc'] },
      undefined,
      TenancyReason.SpiffeIdNotOwned,
      'commonName',
    ],
    [
      'an external name without a policy',
      { dnsNames: ['www.api.example.com'] },
      undefined,
      TenancyReason.DNSNameNotAllowed,
      'external name',
    ],
    [
      'a three-label name another namespace resolves as an endpoint',
      { dnsNames: ['web-0.db.bank'] },
      undefined,
      TenancyReason.DNSNameNotAllowed,
      'namespace bank',
    ],
    [
      'a wildcard over another namespace endpoints',
      { dnsNames: ['*.db.bank'] },
      undefined,
      TenancyReason.DNSNameNotAllowed,
      'namespace bank',
    ],
    [
      'a SPIFFE path deeper than ns/sa',
      { uris: ['spiffe://cluster.local/ns/shop/sa/x/ns/bank/sa/y'] },
      undefined,
      TenancyReason.SpiffeIdNotOwned,
      '/sa/<service account>',
    ],
    [
      'a SPIFFE path without sa',
      { uris: ['spiffe://cluster.local/ns/shop/admin'] },
      undefined,
      TenancyReason.SpiffeIdNotOwned,
      'not of the form',
    ],
    [
      'a SPIFFE service account in upper case',
      { uris: ['spiffe://cluster.local/ns/shop/sa/Admin'] },
      undefined,
      TenancyReason.SpiffeIdNotOwned,
      'not of the form',
    ],
    [
      'usages without an extended usage',
      { commonName: 'Shop X', usages: ['digital signature', 'key encipherment'] },
      undefined,
      TenancyReason.UsageNotAllowed,
      'every purpose',
    ],
    [
      'an organization without a policy',
      { commonName: 'Shop X', subject: { organizations: ['system:masters'] } },
      undefined,
      TenancyReason.SubjectNotAllowed,
      'system:masters',
    ],
    [
      'an organizational unit the policy leaves out',
      { commonName: 'Shop X', subject: { organizationalUnits: ['admins'] } },
      { allowedOrganizations: ['Shop'] },
      TenancyReason.SubjectNotAllowed,
      'admins',
    ],
    [
      'an IP without a policy',
      { ipAddresses: ['10.0.0.1'] },
      undefined,
      TenancyReason.IPAddressNotAllowed,
      'allowedIPRanges',
    ],
    [
      'an IP outside the ranges',
      { ipAddresses: ['192.168.1.1'] },
      { allowedIPRanges: ['10.0.0.0/8'] },
      TenancyReason.IPAddressNotAllowed,
      '10.0.0.0/8',
    ],
    [
      'an email without a policy',
      { emailAddresses: ['ceo@example.com'] },
      undefined,
      TenancyReason.EmailNotAllowed,
      'allowedEmailAddresses',
    ],
    [
      'an email of a sub-domain',
      { emailAddresses: ['a@evil.example.com'] },
      { allowedEmailAddresses: ['*@example.com'] },
      TenancyReason.EmailNotAllowed,
      'a@evil',
    ],
    [
      'a namespace outside allowedNamespaces',
      { commonName: 'Shop X' },
      { allowedNamespaces: ['bank'] },
      TenancyReason.NamespaceNotAllowed,
      'allowedNamespaces',
    ],
    [
      'a duration over the maximum',
      { commonName: 'Shop X', durationMs: 2 * DAY },
      { maxDuration: '24h' },
      TenancyReason.DurationTooLong,
      'maxDuration',
    ],
    [
      'an RSA size the policy leaves out',
      { commonName: 'Shop X', key: { algorithm: 'RSA', size: 4096 } },
      { allowedKeySizes: [2048, 256] },
      TenancyReason.KeyNotAllowed,
      '4096',
    ],
    [
      'an algorithm the policy leaves out',
      { commonName: 'Shop X', key: { algorithm: 'RSA' } },
      { allowedKeyAlgorithms: ['ECDSA'] },
      TenancyReason.KeyNotAllowed,
      'RSA',
    ],
  ])('should refuse %s', (_case, req, policy, reason, phrase) => {
    const v = tenancyViolation(ctx(policy), request(req));
    expect(v?.reason).toBe(reason);
    expect(v?.message).toContain(phrase);
  });
});

describe('the names a certificate carries are checked as written', () => {
  it.each([
    'spiffe://cluster.local/ns/shop/sa/\u0430pi',
    ' spiffe://cluster.local/ns/bank/sa/x',
    'https://bank.example.com/\u00e4',
  ])('should refuse URI %j before anything is signed', (uri) => {
    expect(requestProblems(request({ uris: [uri] })).join()).toMatch(/non-ASCII|spaces/);
  });

  it('should refuse a non-ASCII email', () => {
    expect(requestProblems(request({ emailAddresses: ['ö@example.com'] })).join()).toContain('non-ASCII');
  });

  it.each([
    ['spiffe://cluster.local/ns/shop/sa/api', undefined],
    ['spiffe://cluster.local', undefined],
    ['spiffe://td/ns/shop/sa/a.b_c-d', undefined],
    ['spiffe:/cluster.local/ns/shop', 'spiffe://'],
    ['spiffe://user@cluster.local/ns/shop', 'trust domain'],
    ['spiffe://cluster.local/ns/shop#frag', 'path segment'],
    [`spiffe://cluster.local/${'a'.repeat(2048)}`, 'longer than 2048'],
  ])('should judge %s canonical or say why not', (id, phrase) => {
    const problem = spiffeIdProblem(id);
    if (phrase === undefined) expect(problem).toBeUndefined();
    else expect(problem).toContain(phrase);
  });
});

describe('an allowed subordinate CA', () => {
  it('should carry pathLenConstraint 0 and name constraints that OpenSSL enforces on what it signs', async () => {
    const { ca } = await testCA();
    const tenancy = ctx({
      allowedCANamespaces: ['shop'],
      allowedDNSNames: ['**.shop.example.com', '*.shop.svc'],
    });
    const subRequest = request({
      commonName: 'Shop CA',
      isCA: true,
      nameConstraints: subordinateCaConstraints(tenancy),
    });
    expect(tenancyViolation(tenancy, subRequest)).toBeUndefined();
    const sub = await issueCertificate(ca, subRequest, new Date());
    const text = (await import('node:child_process')).execFileSync('openssl', ['x509', '-noout', '-text'], {
      input: `${sub.certificatePem.split('-----END CERTIFICATE-----')[0]}-----END CERTIFICATE-----\n`,
      encoding: 'utf8',
    });
    expect(text).toMatch(/CA:TRUE, pathlen:0/);
    expect(text).toContain('X509v3 Name Constraints: critical');
    expect(text).toContain('DNS:shop.svc.cluster.local');
    expect(text).toContain('DNS:.shop.example.com');

    const subCa = loadCertificateAuthority(sub.certificatePem, sub.privateKeyPem, new Date());
    const own = await issueCertificate(
      subCa,
      request({ dnsNames: ['api.shop.svc.cluster.local'] }),
      new Date(),
    );
    expect(opensslVerify(ca.trustAnchorPem, own.certificatePem, 'sslserver')).toContain('OK');
    const external = await issueCertificate(
      subCa,
      request({ dnsNames: ['a.b.shop.example.com'] }),
      new Date(),
    );
    expect(opensslVerify(ca.trustAnchorPem, external.certificatePem, 'sslserver')).toContain('OK');

    for (const forged of [
      request({ dnsNames: ['api.bank.svc.cluster.local'] }),
      request({ uris: ['spiffe://cluster.local/ns/shop/sa/api'] }),
      request({ uris: ['spiffe://cluster.local/ns/bank/sa/api'] }),
      request({ ipAddresses: ['10.0.0.1'] }),
      request({ commonName: 'api.bank.svc.cluster.local' }),
    ]) {
      const leaf = await issueCertificate(subCa, forged, new Date());
      expect(() => opensslVerify(ca.trustAnchorPem, leaf.certificatePem, 'sslserver')).toThrow(
        /name constraint|permitted/i,
      );
    }
    // pathlen 0: a CA below it is refused.
    const grandchild = await issueCertificate(
      subCa,
      request({ commonName: 'deeper', isCA: true }),
      new Date(),
    );
    const leafBelow = await issueCertificate(
      loadCertificateAuthority(grandchild.certificatePem, grandchild.privateKeyPem, new Date()),
      request({ dnsNames: ['api.shop.svc.cluster.local'] }),
      new Date(),
    );
    expect(() => opensslVerify(ca.trustAnchorPem, leafBelow.certificatePem, 'sslserver')).toThrow(
      /path length/i,
    );
  });
});

/** A self-signed certificate with exactly these SANs, made by OpenSSL (Sigil itself refuses to write them). */
function forgedPeer(san: string): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-forged-'));
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        'k.pem',
        '-out',
        'c.der',
        '-outform',
        'DER',
        '-days',
        '1',
        '-subj',
        '/CN=peer',
        '-addext',
        `subjectAltName=${san}`,
      ],
      { cwd: dir, stdio: 'ignore' },
    );
    return readFileSync(join(dir, 'c.der'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('sigil/mtls reads peer IDs by the same rule', () => {
  const allowed = spiffeMatcher(['spiffe://cluster.local/ns/bank/sa/*']);
  it('should accept a canonical peer', () => {
    const id = spiffeIdOf({ raw: forgedPeer('URI:spiffe://cluster.local/ns/bank/sa/api') } as never);
    expect(id).toBe('spiffe://cluster.local/ns/bank/sa/api');
    expect(allowed(id)).toBe(true);
  });

  it.each([
    'URI:SPIFFE://cluster.local/ns/bank/sa/api',
    'URI:spiffe://CLUSTER.LOCAL/ns/bank/sa/api',
    'URI:spiffe://cluster.local/ns/bank/sa/%61pi',
    'URI:spiffe://cluster.local/ns/shop/../bank/sa/api',
    'URI:spiffe://cluster.local/ns/bank//sa/api',
    'URI:spiffe://cluster.local/ns/bank/sa/api,URI:spiffe://cluster.local/ns/shop/sa/x',
    'URI:spiffe://cluster.local/ns/shop/sa/x,URI:spiffe://cluster.local/ns/bank/sa/api',
  ])('should refuse a peer presenting %s', (san) => {
    const id = spiffeIdOf({ raw: forgedPeer(san) } as never);
    expect(id).toBeUndefined();
    expect(allowed(id)).toBe(false);
  });

  it('should never match a non-canonical ID passed to the matcher directly', () => {
    expect(
      spiffeMatcher(['spiffe://cluster.local/ns/bank/**'])('spiffe://cluster.local/ns/bank/../shop'),
    ).toBe(false);
    expect(spiffeMatcher(['spiffe://cluster.local/ns/*/sa/x'])('spiffe://cluster.local/ns/%2e%2e/sa/x')).toBe(
      false,
    );
  });
});

describe('secretNameViolation', () => {
  it('should reserve identity-shaped Secret names for the Certificate of that name', () => {
    expect(secretNameViolation('api-sigil-c47f1a6b5d', 'api-sigil-c47f1a6b5d')).toBeUndefined();
    expect(secretNameViolation('innocent', 'api-tls')).toBeUndefined();
    expect(secretNameViolation('innocent', 'api-sigil-c47f1a6b5d')?.reason).toBe(
      TenancyReason.SecretNameReserved,
    );
  });
});
