// Bad input, on purpose: a corpus of invalid Certificates, Issuers and CA Secrets,
// each with the reason it must produce; seeded fuzzing of the PEM and
// AdmissionReview parsers; and tenancy across namespaces.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { type Certificate, findCondition, GROUP, Plural, VERSION } from '../../lib/api/types.ts';
import { installCrds } from '../../lib/kube/crds.ts';
import { statusCode } from '../../lib/kube/errors.ts';
import { createSelfSignedCA } from '../../lib/pki/ca.ts';
import { parseCertificateChain } from '../../lib/pki/certificate.ts';
import { isPkiError } from '../../lib/pki/errors.ts';
import { issueCertificate } from '../../lib/pki/issue.ts';
import { parsePrivateKeyPem } from '../../lib/pki/keys.ts';
import {
  type ControlPlaneState,
  removeDir,
  startControlPlane,
  stopControlPlane,
} from '../../lib/testing/controlplane.ts';
import { testCA } from '../../lib/testing/pki.ts';
import type { Operator } from '../../operator/operator.ts';
import { ReviewError } from '../../webhook/errors.ts';
import { planAdmission } from '../../webhook/review.ts';
import { startTestOperator } from '../support/sigil.ts';

let cp: ControlPlaneState;
let kc: KubeConfig;
let dir: string;
let operator: Operator;
const NS = 'corpus';
const b64 = (t: string | Buffer) => Buffer.from(t).toString('base64');

function seeded(seed: number) {
  return () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sigil-inputs-'));
  cp = await startControlPlane({ dir, persistent: false });
  kc = new KubeConfig();
  kc.loadFromFile(cp.kubeconfig);
  await installCrds(kc);
  const core = kc.makeApiClient(CoreV1Api);
  for (const ns of ['sigil-system', NS, 'other'])
    await core.createNamespace({ body: { metadata: { name: ns } } });
  const ca = await createSelfSignedCA({
    commonName: 'Corpus CA',
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000 * 30),
  });
  await core.createNamespacedSecret({
    namespace: NS,
    body: {
      metadata: { name: 'good-ca' },
      type: 'kubernetes.io/tls',
      data: { 'tls.crt': b64(ca.certPem), 'tls.key': b64(ca.keyPem) },
    },
  });
  const custom = kc.makeApiClient(CustomObjectsApi);
  await custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: NS,
    plural: Plural.Issuer,
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'Issuer',
      metadata: { name: 'good' },
      spec: { ca: { secretName: 'good-ca' } },
    },
  });
  operator = await startTestOperator(kc, { minDurationMs: 3_600_000 });
}, 120_000);

afterAll(async () => {
  await operator?.stop();
  if (cp) await stopControlPlane(cp);
  if (dir) removeDir(dir);
});

const custom = () => kc.makeApiClient(CustomObjectsApi);
const good = { secretName: 'x', issuerRef: { name: 'good', kind: 'Issuer' }, dnsNames: ['ok.example.com'] };

describe('a corpus of invalid input', () => {
  // Refused by the API server at apply time (schema and CEL), with the phrase the person sees.
  const refusedCertificates: [string, Record<string, unknown>, string][] = [
    ['duration in days', { duration: '1d' }, 'spec.duration'],
    ['duration with spaces', { duration: '1 h' }, 'spec.duration'],
    ['negative duration', { duration: '-1h' }, 'spec.duration'],
    ['empty duration', { duration: '' }, 'spec.duration'],
    ['renewBefore not a duration', { renewBefore: 'soon' }, 'spec.renewBefore'],
    [
      'renewBefore equal to duration',
      { duration: '2h', renewBefore: '2h' },
      'renewBefore must be shorter than duration',
    ],
    [
      'renewBefore longer than the default duration',
      { renewBefore: '48h' },
      'renewBefore must be shorter than duration',
    ],
    ['both renewBefore and percentage', { renewBefore: '1h', renewBeforePercentage: 20 }, 'not both'],
    ['percentage 0', { renewBeforePercentage: 0 }, 'spec.renewBeforePercentage'],
    ['percentage 100', { renewBeforePercentage: 100 }, 'spec.renewBeforePercentage'],
    ['IPv4 out of range', { ipAddresses: ['256.1.1.1'] }, 'must be an IPv4 or IPv6 address'],
    ['IP with a port', { ipAddresses: ['10.0.0.1:80'] }, 'must be an IPv4 or IPv6 address'],
    ['IP as a name', { ipAddresses: ['localhost'] }, 'must be an IPv4 or IPv6 address'],
    ['relative URI', { uris: ['ns/a/sa/b'] }, 'must be an absolute URI'],
    ['upper-case DNS name', { dnsNames: ['Api.example.com'] }, 'spec.dnsNames[0]'],
    ['DNS name with underscore', { dnsNames: ['a_b.example.com'] }, 'spec.dnsNames[0]'],
    ['wildcard in the middle', { dnsNames: ['a.*.example.com'] }, 'spec.dnsNames[0]'],
    ['DNS name ending with a dot', { dnsNames: ['a.example.com.'] }, 'spec.dnsNames[0]'],
    ['email without @', { emailAddresses: ['ops.example.com'] }, 'spec.emailAddresses[0]'],
    ['secretName with a slash', { secretName: 'a/b' }, 'spec.secretName'],
    ['secretName upper case', { secretName: 'Api' }, 'spec.secretName'],
    ['RSA size 1024', { privateKey: { algorithm: 'RSA', size: 1024 } }, 'size must be'],
    ['ECDSA size 521', { privateKey: { algorithm: 'ECDSA', size: 521 } }, 'size must be'],
    ['Ed25519 with a size', { privateKey: { algorithm: 'Ed25519', size: 256 } }, 'size must be'],
    [
      'Ed25519 as PKCS1',
      { privateKey: { algorithm: 'Ed25519', encoding: 'PKCS1' } },
      'only be encoded as PKCS8',
    ],
    ['unknown key algorithm', { privateKey: { algorithm: 'DSA' } }, 'spec.privateKey.algorithm'],
    [
      'unknown rotation policy',
      { privateKey: { rotationPolicy: 'Sometimes' } },
      'spec.privateKey.rotationPolicy',
    ],
    ['unknown usage', { usages: ['teleport'] }, 'spec.usages[0]'],
    ['issuer kind Vault', { issuerRef: { name: 'good', kind: 'Vault' } }, 'spec.issuerRef.kind'],
    ['issuerRef without a name', { issuerRef: { kind: 'Issuer' } }, 'spec.issuerRef.name'],
    ['country of three letters', { subject: { countries: ['DEU'] } }, 'spec.subject.countries[0]'],
    ['common name of 65 characters', { commonName: 'x'.repeat(65), dnsNames: [] }, 'spec.commonName'],
    ['no names at all', { dnsNames: [] }, 'the certificate names nothing'],
    [
      '101 DNS names',
      { dnsNames: Array.from({ length: 101 }, (_, i) => `n${i}.example.com`) },
      'spec.dnsNames',
    ],
  ];

  it.each(refusedCertificates)(
    'should refuse a Certificate with %s at apply time',
    async (_n, spec, phrase) => {
      const err = await custom()
        .createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: NS,
          plural: Plural.Certificate,
          body: {
            apiVersion: `${GROUP}/${VERSION}`,
            kind: 'Certificate',
            metadata: { name: 'bad' },
            spec: { ...good, ...spec },
          },
        })
        .catch((e: unknown) => e);
      expect(statusCode(err)).toBe(422);
      expect(String((err as { body?: string }).body)).toContain(phrase);
    },
  );

  const refusedIssuers: [string, Record<string, unknown>, string][] = [
    ['no ca', {}, 'spec.ca'],
    ['a CA secret name with spaces', { ca: { secretName: 'my ca' } }, 'spec.ca.secretName'],
    [
      'maxDuration in days',
      { ca: { secretName: 'x' }, policy: { maxDuration: '30d' } },
      'spec.policy.maxDuration',
    ],
    [
      'an unknown key algorithm in policy',
      { ca: { secretName: 'x' }, policy: { allowedKeyAlgorithms: ['DSA'] } },
      'spec.policy.allowedKeyAlgorithms[0]',
    ],
    [
      'a trust domain with a scheme',
      { ca: { secretName: 'x' }, trustDomain: 'spiffe://cluster.local' },
      'spec.trustDomain',
    ],
  ];

  it.each(refusedIssuers)('should refuse an Issuer with %s at apply time', async (_n, spec, phrase) => {
    const err = await custom()
      .createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: NS,
        plural: Plural.Issuer,
        body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'Issuer', metadata: { name: 'bad' }, spec },
      })
      .catch((e: unknown) => e);
    expect(statusCode(err)).toBe(422);
    expect(String((err as { body?: string }).body)).toContain(phrase);
  });

  async function brokenCAData(kind: string): Promise<Record<string, string> | undefined> {
    const now = Date.now();
    const { certPem, keyPem, ca } = await testCA();
    const other = await testCA();
    switch (kind) {
      case 'missing':
        return undefined;
      case 'garbage':
        return { 'tls.crt': b64('garbage'), 'tls.key': b64('garbage') };
      case 'key in tls.crt':
        return { 'tls.crt': b64(keyPem), 'tls.key': b64(keyPem) };
      case 'no tls.key':
        return { 'tls.crt': b64(certPem), 'tls.key': b64('') };
      case 'DER instead of PEM':
        return { 'tls.crt': b64(parseCertificateChain(certPem)[0]!.der), 'tls.key': b64(keyPem) };
      case 'oversized':
        return { 'tls.crt': b64(certPem.repeat(200)), 'tls.key': b64(keyPem) };
      case 'leaf': {
        const leaf = await issueCertificate(
          ca,
          { dnsNames: ['leaf.example.com'], durationMs: 3_600_000 },
          new Date(),
        );
        return { 'tls.crt': b64(leaf.certificatePem), 'tls.key': b64(leaf.privateKeyPem) };
      }
      case 'wrong key':
        return { 'tls.crt': b64(certPem), 'tls.key': b64(other.keyPem) };
      case 'expired': {
        const old = await createSelfSignedCA({
          commonName: 'old',
          notBefore: new Date(now - 10 * 86_400_000),
          notAfter: new Date(now - 86_400_000),
        });
        return { 'tls.crt': b64(old.certPem), 'tls.key': b64(old.keyPem) };
      }
      case 'not yet valid': {
        const future = await createSelfSignedCA({
          commonName: 'future',
          notBefore: new Date(now + 86_400_000),
          notAfter: new Date(now + 10 * 86_400_000),
        });
        return { 'tls.crt': b64(future.certPem), 'tls.key': b64(future.keyPem) };
      }
      case 'encrypted key':
        return {
          'tls.crt': b64(certPem),
          'tls.key': b64(
            '-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n',
          ),
        };
      case 'truncated certificate':
        return {
          'tls.crt': b64(`${certPem.slice(0, certPem.length / 2)}\n-----END CERTIFICATE-----\n`),
          'tls.key': b64(keyPem),
        };
    }
    throw new Error(kind);
  }

  const brokenCAs: [string, string][] = [
    ['missing', 'SecretNotFound'],
    ['garbage', 'MalformedCA'],
    ['key in tls.crt', 'MalformedCA'],
    ['no tls.key', 'MalformedCA'],
    ['DER instead of PEM', 'MalformedCA'],
    ['oversized', 'MalformedCA'],
    ['leaf', 'NotACA'],
    ['wrong key', 'KeyMismatch'],
    ['expired', 'Expired'],
    ['not yet valid', 'NotYetValid'],
    ['encrypted key', 'MalformedCA'],
    ['truncated certificate', 'MalformedCA'],
  ];

  it.each(brokenCAs)('should report a CA Secret that is %s with reason %s', async (kind, reason) => {
    const name = `ca-${brokenCAs.findIndex(([k]) => k === kind)}`;
    const data = await brokenCAData(kind);
    if (data) {
      await kc
        .makeApiClient(CoreV1Api)
        .createNamespacedSecret({ namespace: NS, body: { metadata: { name }, type: 'Opaque', data } });
    }
    await custom().createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: NS,
      plural: Plural.Issuer,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'Issuer',
        metadata: { name },
        spec: { ca: { secretName: name } },
      },
    });
    for (let i = 0; ; i++) {
      const issuer = (await custom().getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: NS,
        plural: Plural.Issuer,
        name,
      })) as Certificate;
      const ready = findCondition(issuer.status?.conditions, 'Ready');
      if (ready) {
        expect(ready).toMatchObject({ status: 'False', reason });
        expect(ready.message.length).toBeGreaterThan(20);
        return;
      }
      if (i > 100) throw new Error('no status');
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  const refusedByTheOperator: [string, Record<string, unknown>, string, string][] = [
    ['a duration below the minimum', { duration: '30m' }, 'InvalidSpec', 'shorter than the minimum'],
    [
      'an issuer that does not exist',
      { issuerRef: { name: 'ghost', kind: 'Issuer' } },
      'IssuerNotFound',
      'does not exist',
    ],
    [
      'a SPIFFE ID of another namespace',
      { uris: ['spiffe://cluster.local/ns/other/sa/admin'] },
      'PolicyDenied',
      'does not name namespace corpus',
    ],
    [
      'a SPIFFE ID of another trust domain',
      { uris: ['spiffe://evil.example/ns/corpus/sa/a'] },
      'PolicyDenied',
      "outside Issuer good's trust domain",
    ],
    [
      'a service name of another namespace',
      { dnsNames: ['api.other.svc'] },
      'PolicyDenied',
      'is a name of namespace other',
    ],
    [
      'a fully qualified service name of another namespace',
      { dnsNames: ['api.other.svc.cluster.local'] },
      'PolicyDenied',
      'is a name of namespace other',
    ],
  ];

  it.each(refusedByTheOperator)(
    'should refuse a Certificate with %s (%s)',
    async (_n, spec, reason, phrase) => {
      const name = `op-${Math.random().toString(36).slice(2, 8)}`;
      await custom().createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: NS,
        plural: Plural.Certificate,
        body: {
          apiVersion: `${GROUP}/${VERSION}`,
          kind: 'Certificate',
          metadata: { name },
          spec: { ...good, secretName: name, ...spec },
        },
      });
      for (let i = 0; ; i++) {
        const c = (await custom().getNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: NS,
          plural: Plural.Certificate,
          name,
        })) as Certificate;
        const ready = findCondition(c.status?.conditions, 'Ready');
        if (ready) {
          expect(ready).toMatchObject({ status: 'False', reason });
          expect(ready.message).toContain(phrase);
          await expect(
            kc.makeApiClient(CoreV1Api).readNamespacedSecret({ name, namespace: NS }),
          ).rejects.toMatchObject({ code: 404 });
          return;
        }
        if (i > 100) throw new Error('no status');
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  );

  it('should hold at least 50 cases', () => {
    expect(
      refusedCertificates.length + refusedIssuers.length + brokenCAs.length + refusedByTheOperator.length,
    ).toBeGreaterThanOrEqual(50);
  });
});

describe('seeded fuzzing', () => {
  it('should answer 5,000 mutated PEM bundles and keys with a result or a PkiError, each quickly', async () => {
    const { certPem, keyPem } = await testCA();
    const random = seeded(1234);
    const bundle = `${certPem}${certPem}`;
    let slowest = 0;
    for (let i = 0; i < 5000; i++) {
      const source = i % 2 === 0 ? bundle : keyPem;
      const chars = source.split('');
      const edits = 1 + Math.floor(random() * 8);
      for (let e = 0; e < edits; e++) {
        const at = Math.floor(random() * chars.length);
        const kind = random();
        if (kind < 0.4) chars[at] = String.fromCharCode(32 + Math.floor(random() * 95));
        else if (kind < 0.7) chars.splice(at, Math.floor(random() * 40));
        else chars.splice(at, 0, '-----BEGIN CERTIFICATE-----\n'.slice(0, Math.floor(random() * 28)));
      }
      const input = chars.join('');
      const started = performance.now();
      try {
        if (i % 2 === 0) parseCertificateChain(input);
        else parsePrivateKeyPem(input);
      } catch (err) {
        if (!isPkiError(err)) throw new Error(`case ${i}: ${(err as Error).message} is not a PkiError`);
      }
      slowest = Math.max(slowest, performance.now() - started);
    }
    // A guard against pathological inputs (catastrophic backtracking, quadratic loops), not a speed
    // figure: generous enough for a loaded 2-core machine; make bench measures speed.
    expect(slowest).toBeLessThan(1000);
  });

  it('should answer 5,000 mutated AdmissionReviews with a plan or a ReviewError, each quickly', () => {
    const random = seeded(99);
    const base = {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: {
        uid: 'u',
        kind: { group: '', version: 'v1', kind: 'Pod' },
        operation: 'CREATE',
        namespace: 'a',
        object: {
          metadata: { annotations: { 'sigil.dev/service': 'api', 'sigil.dev/dns-names': 'x.a.svc' } },
          spec: {
            serviceAccountName: 'web',
            containers: [{ name: 'c', image: 'i', env: [{ name: 'A', value: 'b' }] }],
          },
        },
      },
    };
    const junk = [
      null,
      0,
      -1,
      '',
      'x',
      [],
      {},
      true,
      'a/b',
      '../..',
      'Z'.repeat(300),
      [null],
      { kind: 'Pod' },
    ];
    const mutate = (v: unknown, depth: number): unknown => {
      if (typeof v !== 'object' || v === null || depth > 6)
        return random() < 0.15 ? junk[Math.floor(random() * junk.length)] : v;
      if (Array.isArray(v)) return v.map((x) => mutate(x, depth + 1));
      return Object.fromEntries(
        Object.entries(v)
          .filter(() => random() > 0.05)
          .map(([k, x]) => [
            k,
            random() < 0.1 ? junk[Math.floor(random() * junk.length)] : mutate(x, depth + 1),
          ]),
      );
    };
    let slowest = 0;
    let planned = 0;
    for (let i = 0; i < 5000; i++) {
      const started = performance.now();
      try {
        planAdmission(mutate(base, 0), { trustDomain: 'cluster.local', clusterDomain: 'cluster.local' });
        planned++;
      } catch (err) {
        if (!(err instanceof ReviewError))
          throw new Error(`case ${i}: ${(err as Error)?.message} is not a ReviewError`);
      }
      slowest = Math.max(slowest, performance.now() - started);
    }
    expect(planned).toBeGreaterThan(0);
    // As above: a guard against pathological inputs, not a speed figure.
    expect(slowest).toBeLessThan(1000);
  });
});
