// The Certificate controller against the real API server: issuance, re-issuance
// for every reason, renewal, policy, and status reasons.
import { X509Certificate } from 'node:crypto';
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { Annotation, GROUP, Plural, VERSION } from '../lib/api/types.ts';
import { statusCode } from '../lib/kube/errors.ts';
import { createSelfSignedCA } from '../lib/pki/ca.ts';
import { displaySerial, parseCertificateChain } from '../lib/pki/certificate.ts';
import { readKeyPair } from '../lib/pki/inspect.ts';
import { opensslVerify } from '../lib/testing/pki.ts';
import type { Operator } from '../operator/operator.ts';
import { createTestNamespace, eventually, testKubeConfig } from './support/kube.ts';
import {
  caSecretData,
  createCertificate,
  createIssuer,
  createSecret,
  DAY,
  decode,
  ensureCrds,
  ensureNamespace,
  getCertificate,
  randomName,
  readSecret,
  replaceSecretData,
  startTestOperator,
  TEST_DNS_NAMES,
  waitForCertificate,
  waitForIssuer,
} from './support/sigil.ts';

const kc: KubeConfig = testKubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);
let ns: string;
let operator: Operator;
const issuerRef = { name: 'ca', kind: 'Issuer' as const };

async function patchCertificate(name: string, patch: object) {
  const current = await getCertificate(kc, ns, name);
  const body = { ...current, ...patch };
  await custom.replaceNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: ns,
    plural: Plural.Certificate,
    name,
    body,
  });
}

async function serialOf(secretName: string) {
  const s = await readSecret(kc, ns, secretName);
  return displaySerial(parseCertificateChain(decode(s, 'tls.crt'))[0]!.facts.serialNumber);
}

beforeAll(async () => {
  await ensureCrds(kc);
  await ensureNamespace(kc, 'sigil-system');
  ns = await createTestNamespace(kc, 'certs');
  await createSecret(kc, ns, 'ca-key-pair', await caSecretData('Certs Test CA'));
  // IP SANs need a policy listing their ranges (tenancy rule 3).
  await createIssuer(
    kc,
    'Issuer',
    'ca',
    {
      ca: { secretName: 'ca-key-pair' },
      policy: { allowedIPRanges: ['10.0.0.0/8'], allowedDNSNames: TEST_DNS_NAMES },
    },
    ns,
  );
  operator = await startTestOperator(kc, { watchNamespace: ns, minDurationMs: 30_000 });
  await waitForIssuer(kc, 'Issuer', 'ca', { status: 'True', reason: 'CAReady' }, ns);
});

afterAll(async () => {
  await operator?.stop();
});

describe('issuance', () => {
  it('should make a Certificate Ready with a Secret whose chain OpenSSL verifies and whose key matches', async () => {
    await createCertificate(kc, ns, 'api', {
      secretName: 'api-tls',
      issuerRef,
      commonName: `api.${ns}.svc`,
      dnsNames: [`api.${ns}.svc`, `api.${ns}.svc.cluster.local`],
      ipAddresses: ['10.0.0.10'],
      uris: [`spiffe://cluster.local/ns/${ns}/sa/api`],
      usages: ['digital signature', 'server auth', 'client auth'],
      secretTemplate: { labels: { team: 'shop' }, annotations: { 'example.com/owner': 'shop' } },
    });
    const cert = await waitForCertificate(kc, ns, 'api', { status: 'True' });
    const secret = await readSecret(kc, ns, 'api-tls');
    expect(secret.type).toBe('kubernetes.io/tls');
    expect(secret.metadata?.labels).toMatchObject({ 'sigil.dev/managed': 'true', team: 'shop' });
    expect(secret.metadata?.annotations).toMatchObject({
      [Annotation.CertificateName]: 'api',
      [Annotation.IssuerName]: 'ca',
      [Annotation.IssuerKind]: 'Issuer',
      [Annotation.SerialNumber]: cert.status?.serialNumber,
      'example.com/owner': 'shop',
    });
    const pair = readKeyPair(decode(secret, 'tls.crt'), decode(secret, 'tls.key'));
    expect(pair.keyMatches).toBe(true);
    expect(pair.leaf.facts.dnsNames).toEqual([`api.${ns}.svc`, `api.${ns}.svc.cluster.local`]);
    expect(pair.leaf.facts.ipAddresses).toEqual(['10.0.0.10']);
    expect(pair.leaf.facts.uris).toEqual([`spiffe://cluster.local/ns/${ns}/sa/api`]);
    expect(pair.leaf.facts.extendedKeyUsageOids).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    expect(opensslVerify(decode(secret, 'ca.crt'), decode(secret, 'tls.crt'), 'sslserver')).toContain('OK');
    expect(opensslVerify(decode(secret, 'ca.crt'), decode(secret, 'tls.crt'), 'sslclient')).toContain('OK');
    // As OpenSSL and node:crypto print it, leading zero included.
    expect(cert.status).toMatchObject({
      revision: 1,
      serialNumber: new X509Certificate(decode(secret, 'tls.crt')).serialNumber.toLowerCase(),
    });
    expect(new Date(cert.status!.notAfter!).getTime() - new Date(cert.status!.notBefore!).getTime()).toBe(
      DAY,
    );
    const renewal = new Date(cert.status!.renewalTime!).getTime();
    const twoThirds = new Date(cert.status!.notBefore!).getTime() + (2 / 3) * DAY;
    expect(renewal).toBeLessThanOrEqual(twoThirds);
    expect(renewal).toBeGreaterThan(twoThirds - 61_000);
    const events = await core.listNamespacedEvent({
      namespace: ns,
      fieldSelector: 'involvedObject.name=api',
    });
    expect(events.items.map((e) => e.reason)).toContain('Issued');
  });

  it.each([
    ['RSA', { algorithm: 'RSA' as const, size: 2048 }],
    ['Ed25519', { algorithm: 'Ed25519' as const }],
    ['ECDSA P-384 as PKCS1', { algorithm: 'ECDSA' as const, size: 384, encoding: 'PKCS1' as const }],
  ])('should issue a %s key', async (_n, privateKey) => {
    const name = randomName('key');
    await createCertificate(kc, ns, name, {
      secretName: `${name}-tls`,
      issuerRef,
      dnsNames: ['k.example.com'],
      privateKey,
    });
    await waitForCertificate(kc, ns, name, { status: 'True' });
    const secret = await readSecret(kc, ns, `${name}-tls`);
    const pair = readKeyPair(decode(secret, 'tls.crt'), decode(secret, 'tls.key'));
    expect(pair.key.description.algorithm).toBe(privateKey.algorithm);
    expect(pair.keyMatches).toBe(true);
  });
});

describe('re-issuance', () => {
  it('should re-issue when the spec changes', async () => {
    await createCertificate(kc, ns, 'spec', {
      secretName: 'spec-tls',
      issuerRef,
      dnsNames: ['a.example.com'],
    });
    await waitForCertificate(kc, ns, 'spec', { status: 'True' });
    const before = await serialOf('spec-tls');
    const current = await getCertificate(kc, ns, 'spec');
    await patchCertificate('spec', {
      spec: { ...current.spec, dnsNames: ['a.example.com', 'b.example.com'] },
    });
    const cert = await waitForCertificate(kc, ns, 'spec', { status: 'True', revision: 2 });
    const secret = await readSecret(kc, ns, 'spec-tls');
    const leaf = parseCertificateChain(decode(secret, 'tls.crt'))[0]!;
    expect(leaf.facts.dnsNames).toEqual(['a.example.com', 'b.example.com']);
    expect(leaf.facts.serialNumber).not.toBe(before);
    expect(cert.status?.serialNumber).toBe(displaySerial(leaf.facts.serialNumber));
  });

  it('should re-create the Secret when it is deleted', async () => {
    await createCertificate(kc, ns, 'deleted', {
      secretName: 'deleted-tls',
      issuerRef,
      dnsNames: ['d.example.com'],
    });
    await waitForCertificate(kc, ns, 'deleted', { status: 'True' });
    await core.deleteNamespacedSecret({ name: 'deleted-tls', namespace: ns });
    await waitForCertificate(kc, ns, 'deleted', { status: 'True', revision: 2 });
    const secret = await readSecret(kc, ns, 'deleted-tls');
    expect(readKeyPair(decode(secret, 'tls.crt'), decode(secret, 'tls.key')).keyMatches).toBe(true);
  });

  it.each([
    [
      'garbage in tls.crt',
      async (d: Record<string, string>) => ({ ...d, 'tls.crt': Buffer.from('garbage').toString('base64') }),
    ],
    [
      'garbage in tls.key',
      async (d: Record<string, string>) => ({ ...d, 'tls.key': Buffer.from('garbage').toString('base64') }),
    ],
    [
      // (a kubernetes.io/tls Secret must have the key, empty or not)
      'an empty tls.key',
      async (d: Record<string, string>) => ({ ...d, 'tls.key': '' }),
    ],
    [
      'no ca.crt',
      async (d: Record<string, string>) => ({ 'tls.crt': d['tls.crt']!, 'tls.key': d['tls.key']! }),
    ],
    [
      'the key of another certificate',
      async (d: Record<string, string>) => {
        const other = await readSecret(kc, ns, 'api-tls');
        return { ...d, 'tls.key': other.data!['tls.key']! };
      },
    ],
    [
      'another certificate and its key',
      async () => {
        const other = await readSecret(kc, ns, 'api-tls');
        return { ...other.data! };
      },
    ],
  ])('should re-issue when the Secret holds %s', async (_n, corrupt) => {
    const name = randomName('corrupt');
    await createCertificate(kc, ns, name, {
      secretName: `${name}-tls`,
      issuerRef,
      dnsNames: [`${name}.example.com`],
    });
    await waitForCertificate(kc, ns, name, { status: 'True' });
    const secret = await readSecret(kc, ns, `${name}-tls`);
    await replaceSecretData(kc, ns, `${name}-tls`, await corrupt(secret.data!));
    await waitForCertificate(kc, ns, name, { status: 'True', revision: 2 });
    const fixed = await readSecret(kc, ns, `${name}-tls`);
    const pair = readKeyPair(decode(fixed, 'tls.crt'), decode(fixed, 'tls.key'));
    expect(pair.keyMatches).toBe(true);
    expect(pair.leaf.facts.dnsNames).toEqual([`${name}.example.com`]);
  });

  it("should re-issue from the new CA when the issuer's CA Secret is replaced", async () => {
    await createSecret(kc, ns, 'rotating-ca', await caSecretData('Old CA'));
    await createIssuer(kc, 'Issuer', 'rotating', { ca: { secretName: 'rotating-ca' } }, ns);
    await createCertificate(kc, ns, 'rot', {
      secretName: 'rot-tls',
      issuerRef: { name: 'rotating', kind: 'Issuer' },
      dnsNames: ['r.example.com'],
    });
    await waitForCertificate(kc, ns, 'rot', { status: 'True' });
    await replaceSecretData(kc, ns, 'rotating-ca', await caSecretData('New CA'));
    await waitForCertificate(kc, ns, 'rot', { status: 'True', revision: 2 });
    const secret = await readSecret(kc, ns, 'rot-tls');
    const chain = parseCertificateChain(decode(secret, 'tls.crt'));
    expect(chain[1]!.facts.subject.commonName).toBe('New CA');
    expect(new X509Certificate(decode(secret, 'ca.crt')).subject).toBe('CN=New CA');
    expect(opensslVerify(decode(secret, 'ca.crt'), decode(secret, 'tls.crt'), 'sslserver')).toContain('OK');
  });

  it('should re-issue on a renewal request and record which request it answered', async () => {
    await createCertificate(kc, ns, 'manual', {
      secretName: 'manual-tls',
      issuerRef,
      dnsNames: ['m.example.com'],
    });
    await waitForCertificate(kc, ns, 'manual', { status: 'True' });
    const current = await getCertificate(kc, ns, 'manual');
    const at = new Date().toISOString();
    await patchCertificate('manual', {
      metadata: { ...current.metadata, annotations: { [Annotation.RenewRequestedAt]: at } },
    });
    await waitForCertificate(kc, ns, 'manual', { status: 'True', revision: 2 });
    const secret = await readSecret(kc, ns, 'manual-tls');
    expect(secret.metadata?.annotations?.[Annotation.RenewHandled]).toBe(at);
  });

  it('should keep labels and annotations other tools added to the Secret', async () => {
    await createCertificate(kc, ns, 'keep', {
      secretName: 'keep-tls',
      issuerRef,
      dnsNames: ['keep.example.com'],
    });
    await waitForCertificate(kc, ns, 'keep', { status: 'True' });
    const s = await readSecret(kc, ns, 'keep-tls');
    s.metadata!.labels = { ...s.metadata!.labels, 'other.tool/label': 'x' };
    s.metadata!.annotations = { ...s.metadata!.annotations, 'other.tool/annotation': 'y' };
    await core.replaceNamespacedSecret({ name: 'keep-tls', namespace: ns, body: s });
    await core.deleteNamespacedSecret({ name: 'manual-tls', namespace: ns }).catch(() => {});
    const cert = await getCertificate(kc, ns, 'keep');
    await patchCertificate('keep', {
      spec: { ...cert.spec, dnsNames: ['keep.example.com', 'keep2.example.com'] },
    });
    await waitForCertificate(kc, ns, 'keep', { status: 'True', revision: 2 });
    const after = await readSecret(kc, ns, 'keep-tls');
    expect(after.metadata?.labels?.['other.tool/label']).toBe('x');
    expect(after.metadata?.annotations?.['other.tool/annotation']).toBe('y');
  });
});

describe('renewal', () => {
  it('should renew before expiry with a new serial and key, and do nothing in between', async () => {
    await createCertificate(kc, ns, 'short', {
      secretName: 'short-tls',
      issuerRef,
      dnsNames: ['s.example.com'],
      duration: '45s',
    });
    const first = await waitForCertificate(kc, ns, 'short', { status: 'True' });
    const firstSecret = await readSecret(kc, ns, 'short-tls');
    const before = await activity();
    const renewalAt = new Date(first.status!.renewalTime!).getTime();
    const notAfter = new Date(first.status!.notAfter!).getTime();
    expect(renewalAt).toBeLessThan(notAfter);
    // Idle until the renewal time: no reconcile of this certificate is triggered by polling.
    await new Promise((r) => setTimeout(r, Math.max(0, renewalAt - Date.now() - 3000)));
    const idle = await activity();
    const second = await waitForCertificate(kc, ns, 'short', { status: 'True', revision: 2 }, 30_000);
    const renewedAt = Date.now();
    expect(renewedAt).toBeLessThan(notAfter);
    const secondSecret = await readSecret(kc, ns, 'short-tls');
    expect(second.status?.serialNumber).not.toBe(first.status?.serialNumber);
    expect(decode(secondSecret, 'tls.key')).not.toBe(decode(firstSecret, 'tls.key'));
    // Between issuance and renewal the operator wrote nothing and, apart from stray events
    // of earlier tests' objects, looked at nothing: renewal is a timer, not a poll.
    expect(idle.writes - before.writes).toBe(0);
    expect(idle.reconciles - before.reconciles).toBeLessThanOrEqual(2);
  }, 60_000);

  it('should keep the key on renewal under rotationPolicy Never', async () => {
    await createCertificate(kc, ns, 'stable', {
      secretName: 'stable-tls',
      issuerRef,
      dnsNames: ['stable.example.com'],
      privateKey: { rotationPolicy: 'Never' },
    });
    await waitForCertificate(kc, ns, 'stable', { status: 'True' });
    const key = decode(await readSecret(kc, ns, 'stable-tls'), 'tls.key');
    const current = await getCertificate(kc, ns, 'stable');
    const secretGets = async () =>
      (await operator.metrics.apiRequests.get()).values
        .filter((v) => v.labels.verb === 'get' && v.labels.resource === 'secrets')
        .reduce((n, v) => n + v.value, 0);
    const getsBefore = await secretGets();
    await patchCertificate('stable', {
      metadata: { ...current.metadata, annotations: { [Annotation.RenewRequestedAt]: 'now' } },
    });
    await waitForCertificate(kc, ns, 'stable', { status: 'True', revision: 2 });
    expect(decode(await readSecret(kc, ns, 'stable-tls'), 'tls.key')).toBe(key);
    // The cache keeps no private key: the one kept was read from the Secret.
    expect(await secretGets()).toBeGreaterThan(getsBefore);
  });
});

async function activity(): Promise<{ reconciles: number; writes: number }> {
  const reconciles = (await operator.metrics.reconcile.get()).values.reduce((n, v) => n + v.value, 0);
  const writes = (await operator.metrics.apiRequests.get()).values
    .filter((v) => !['list', 'watch'].includes(String(v.labels.verb)))
    .reduce((n, v) => n + v.value, 0);
  return { reconciles, writes };
}

describe('failures', () => {
  const b64 = (t: string) => Buffer.from(t).toString('base64');
  const brokenCAs: [string, (() => Promise<Record<string, string>>) | undefined, string, string][] = [
    ['is missing', undefined, 'SecretNotFound', 'does not exist'],
    [
      'holds garbage PEM',
      async () => ({ 'tls.crt': b64('nonsense'), 'tls.key': b64('nonsense') }),
      'MalformedCA',
      'is not PEM',
    ],
    [
      'holds a leaf certificate, not a CA',
      async () => {
        const leaf = await readSecret(kc, ns, 'api-tls');
        return { 'tls.crt': leaf.data!['tls.crt']!, 'tls.key': leaf.data!['tls.key']! };
      },
      'NotACA',
      'is not a CA',
    ],
    [
      'holds a key that belongs to another CA',
      async () => ({
        'tls.crt': (await caSecretData('A'))['tls.crt'],
        'tls.key': (await caSecretData('B'))['tls.key'],
      }),
      'KeyMismatch',
      'does not belong to the first certificate',
    ],
    [
      'holds an expired CA',
      async () => {
        const ca = await createSelfSignedCA({
          commonName: 'Old',
          notBefore: new Date(Date.now() - 10 * DAY),
          notAfter: new Date(Date.now() - DAY),
        });
        return { 'tls.crt': b64(ca.certPem), 'tls.key': b64(ca.keyPem) };
      },
      'Expired',
      'expired at',
    ],
    [
      'holds a CA that is not valid yet',
      async () => {
        const ca = await createSelfSignedCA({
          commonName: 'Future',
          notBefore: new Date(Date.now() + DAY),
          notAfter: new Date(Date.now() + 10 * DAY),
        });
        return { 'tls.crt': b64(ca.certPem), 'tls.key': b64(ca.keyPem) };
      },
      'NotYetValid',
      'is not valid until',
    ],
  ];

  it.each(brokenCAs)(
    'should report an issuer whose CA Secret %s, and the Certificates waiting on it',
    async (_n, make, reason, phrase) => {
      const issuer = randomName('broken');
      const data = make ? await make() : undefined;
      if (data) await createSecret(kc, ns, `${issuer}-ca`, data);
      await createIssuer(kc, 'Issuer', issuer, { ca: { secretName: `${issuer}-ca` } }, ns);
      const i = await waitForIssuer(kc, 'Issuer', issuer, { status: 'False', reason }, ns);
      expect(i.status?.conditions?.[0]?.message).toContain(phrase);
      await createCertificate(kc, ns, issuer, {
        secretName: `${issuer}-tls`,
        issuerRef: { name: issuer, kind: 'Issuer' },
        dnsNames: ['x.example.com'],
      });
      const c = await waitForCertificate(kc, ns, issuer, { status: 'False', reason: 'IssuerNotReady' });
      expect(c.status?.conditions?.find((x) => x.type === 'Ready')?.message).toContain(reason);
      // Fixing the CA unblocks the Certificate without touching it.
      if (data) await replaceSecretData(kc, ns, `${issuer}-ca`, await caSecretData('Fixed CA'));
      else await createSecret(kc, ns, `${issuer}-ca`, await caSecretData('Fixed CA'));
      await waitForCertificate(kc, ns, issuer, { status: 'True' });
    },
  );

  it('should refuse to overwrite a Secret of another type and say how to fix it', async () => {
    await createSecret(kc, ns, 'taken', { password: Buffer.from('hunter2').toString('base64') }, 'Opaque');
    await createCertificate(kc, ns, 'taken', { secretName: 'taken', issuerRef, dnsNames: ['t.example.com'] });
    const c = await waitForCertificate(kc, ns, 'taken', { status: 'False', reason: 'SecretConflict' });
    expect(c.status?.conditions?.find((x) => x.type === 'Ready')?.message).toContain(
      'choose another spec.secretName',
    );
    // Refused before anything is signed: not a failed issuance, nothing to back off from.
    expect(c.status?.failedIssuanceAttempts).toBeUndefined();
    const kept = await readSecret(kc, ns, 'taken');
    expect(decode(kept, 'password')).toBe('hunter2');
  });

  it('should report a Certificate whose issuer does not exist', async () => {
    await createCertificate(kc, ns, 'orphan', {
      secretName: 'orphan-tls',
      issuerRef: { name: 'nope', kind: 'Issuer' },
      dnsNames: ['o.example.com'],
    });
    const c = await waitForCertificate(kc, ns, 'orphan', { status: 'False', reason: 'IssuerNotFound' });
    expect(c.status?.conditions?.find((x) => x.type === 'Ready')?.message).toContain('does not exist');
  });

  it('should refuse a duration shorter than the operator minimum', async () => {
    await createCertificate(kc, ns, 'tiny', {
      secretName: 'tiny-tls',
      issuerRef,
      dnsNames: ['t.example.com'],
      duration: '10s',
    });
    const c = await waitForCertificate(kc, ns, 'tiny', { status: 'False', reason: 'InvalidSpec' });
    expect(c.status?.conditions?.find((x) => x.type === 'Ready')?.message).toContain(
      'shorter than the minimum',
    );
  });

  it('should deny what the issuer policy does not allow', async () => {
    await createSecret(kc, ns, 'strict-ca', await caSecretData('Strict CA'));
    await createIssuer(
      kc,
      'Issuer',
      'strict',
      {
        ca: { secretName: 'strict-ca' },
        policy: { allowedDNSNames: ['*.shop.svc'], maxDuration: '48h', allowedKeyAlgorithms: ['ECDSA'] },
      },
      ns,
    );
    const strict = { name: 'strict', kind: 'Issuer' as const };
    await createCertificate(kc, ns, 'p-ok', {
      secretName: 'p-ok',
      issuerRef: strict,
      dnsNames: ['api.shop.svc'],
    });
    await createCertificate(kc, ns, 'p-dns', {
      secretName: 'p-dns',
      issuerRef: strict,
      dnsNames: ['api.bank.example.com'],
    });
    await createCertificate(kc, ns, 'p-dur', {
      secretName: 'p-dur',
      issuerRef: strict,
      dnsNames: ['a.shop.svc'],
      duration: '72h',
    });
    await createCertificate(kc, ns, 'p-rsa', {
      secretName: 'p-rsa',
      issuerRef: strict,
      dnsNames: ['a.shop.svc'],
      privateKey: { algorithm: 'RSA' },
    });
    await createCertificate(kc, ns, 'p-spiffe', {
      secretName: 'p-spiffe',
      issuerRef: strict,
      uris: ['spiffe://cluster.local/ns/kube-system/sa/admin'],
    });
    await waitForCertificate(kc, ns, 'p-ok', { status: 'True' });
    for (const [name, phrase] of [
      ['p-dns', 'DNS name api.bank.example.com is an external name'],
      ['p-dur', "longer than Issuer strict's maximum 48h"],
      ['p-rsa', 'key algorithm RSA is not allowed'],
      ['p-spiffe', 'does not name namespace'],
    ]) {
      const c = await waitForCertificate(kc, ns, name!, { status: 'False', reason: 'PolicyDenied' });
      expect(c.status?.conditions?.find((x) => x.type === 'Ready')?.message).toContain(phrase);
      await expect(readSecret(kc, ns, name!)).rejects.toMatchObject({ code: 404 });
    }
  });

  it.each([
    ['a duration that is not a Go duration', { duration: '1 day' }, 'spec.duration'],
    [
      'renewBefore not shorter than duration',
      { duration: '2h', renewBefore: '3h' },
      'renewBefore must be shorter than duration',
    ],
    ['an invalid IP address', { ipAddresses: ['300.1.1.1'] }, 'must be an IPv4 or IPv6 address'],
    [
      'an RSA size on an ECDSA key',
      { privateKey: { algorithm: 'ECDSA' as const, size: 2048 } },
      'size must be',
    ],
    ['an upper-case DNS name', { dnsNames: ['API.example.com'] }, 'spec.dnsNames[0]'],
    ['no names at all', { dnsNames: [] }, 'the certificate names nothing'],
  ])('should be refused by the API server at apply time: %s', async (_n, spec, phrase) => {
    const err = await createCertificate(kc, ns, randomName('bad'), {
      secretName: 'bad',
      issuerRef,
      dnsNames: ['ok.example.com'],
      ...spec,
    }).catch((e: unknown) => e);
    expect(statusCode(err)).toBe(422);
    expect(String((err as { body?: string }).body)).toContain(phrase);
  });
});

describe('schema', () => {
  it('should publish descriptions for kubectl explain and the printer columns', async () => {
    const { rawRequest } = await import('../lib/kube/rest.ts');
    const doc = await rawRequest<{
      components: { schemas: Record<string, { properties?: Record<string, { description?: string }> }> };
    }>(kc, 'GET', '/openapi/v3/apis/sigil.dev/v1alpha1');
    const schema = doc.components.schemas['dev.sigil.v1alpha1.Certificate']!;
    expect(schema.properties?.spec?.description).toContain('What to issue');
    const crd = await rawRequest<{
      spec: {
        names: { shortNames: string[]; categories: string[] };
        versions: { additionalPrinterColumns: { name: string }[] }[];
      };
    }>(kc, 'GET', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/certificates.sigil.dev');
    expect(crd.spec.names.shortNames).toEqual(['scert']);
    expect(crd.spec.names.categories).toEqual(['sigil']);
    expect(crd.spec.versions[0]!.additionalPrinterColumns.map((c) => c.name)).toEqual(
      expect.arrayContaining(['Ready', 'Secret', 'Issuer', 'Expires', 'Renews', 'Age']),
    );
  });
});

describe('spec.duration', () => {
  const lifetime = (c: { status?: { notBefore?: string; notAfter?: string } }) =>
    new Date(c.status!.notAfter!).getTime() - new Date(c.status!.notBefore!).getTime();

  it.each([
    ['longer', '48h', 2 * DAY],
    ['shorter', '2h', 2 * 3_600_000],
  ])('should re-issue with the new lifetime when spec.duration is made %s', async (_n, duration, ms) => {
    const name = `duration-${duration}`;
    await createCertificate(kc, ns, name, {
      secretName: `${name}-tls`,
      issuerRef,
      dnsNames: [`${name}.${ns}.svc`],
      duration: '24h',
    });
    const first = await waitForCertificate(kc, ns, name, { status: 'True', revision: 1 });
    expect(lifetime(first)).toBe(DAY);
    const current = await getCertificate(kc, ns, name);
    await patchCertificate(name, { spec: { ...current.spec, duration } });
    const second = await waitForCertificate(kc, ns, name, { status: 'True', revision: 2 });
    expect(lifetime(second)).toBe(ms);
    expect(second.status!.serialNumber).not.toBe(first.status!.serialNumber);
    const issuing = second.status!.conditions!.find((c) => c.type === 'Issuing');
    // Done issuing: a reason that does not read as a fault, the cause in the message.
    expect(issuing).toMatchObject({ status: 'False', reason: 'Issued' });
    expect(issuing?.message).toContain(`Issued revision 2 (DurationChanged): `);
    expect(issuing?.message).toContain(`is not the ${duration} the spec asks for`);
    // The Secret holds the new certificate, and nothing more is issued for it.
    expect(await serialOf(`${name}-tls`)).toBe(second.status!.serialNumber);
    await new Promise((r) => setTimeout(r, 1500));
    expect((await getCertificate(kc, ns, name)).status!.revision).toBe(2);
  });

  it('should say in Ready and in a Warning Event when the CA expires before the duration asked, and not re-issue', async () => {
    await createSecret(
      kc,
      ns,
      'short-ca',
      await caSecretData('Short CA', new Date(Date.now() + 10 * 3_600_000)),
    );
    await createIssuer(
      kc,
      'Issuer',
      'short',
      { ca: { secretName: 'short-ca' }, policy: { allowedDNSNames: TEST_DNS_NAMES } },
      ns,
    );
    await waitForIssuer(kc, 'Issuer', 'short', { status: 'True' }, ns);
    await createCertificate(kc, ns, 'cut-short', {
      secretName: 'cut-short-tls',
      issuerRef: { name: 'short', kind: 'Issuer' },
      dnsNames: [`cut-short.${ns}.svc`],
      duration: '24h',
    });
    const cert = await waitForCertificate(kc, ns, 'cut-short', { status: 'True' });
    expect(lifetime(cert)).toBeLessThanOrEqual(10 * 3_600_000);
    const ready = cert.status!.conditions!.find((c) => c.type === 'Ready')!;
    expect(ready.message).toMatch(
      /Shortened to .* of the 24h asked: the issuer's CA expires at .*Rotate the issuer's CA/,
    );
    const events = await eventually('the Shortened Event', async () => {
      const list = await core.listNamespacedEvent({
        namespace: ns,
        fieldSelector: 'involvedObject.name=cut-short',
      });
      return list.items.some((e) => e.reason === 'Shortened') ? list.items : undefined;
    });
    expect(events.find((e) => e.reason === 'Shortened')!.type).toBe('Warning');
    await new Promise((r) => setTimeout(r, 1500));
    expect((await getCertificate(kc, ns, 'cut-short')).status!.revision).toBe(1);
  });
});

describe('kubectl get', () => {
  it('should show when a certificate expires and renews as times, not <invalid>, and the same for issuers', async () => {
    await createCertificate(kc, ns, 'columns', {
      secretName: 'columns-tls',
      issuerRef,
      dnsNames: [`columns.${ns}.svc`],
    });
    const cert = await waitForCertificate(kc, ns, 'columns', { status: 'True' });
    const { rawRequest } = await import('../lib/kube/rest.ts');
    // What kubectl prints: the API server's Table for the resource.
    type Table = { columnDefinitions: { name: string; type: string }[]; rows: { cells: unknown[] }[] };
    const table = (path: string) =>
      rawRequest<Table>(
        kc,
        'GET',
        path,
        undefined,
        undefined,
        'application/json;as=Table;v=v1;g=meta.k8s.io',
      );
    const cell = (t: Table, column: string) =>
      t.rows[0]!.cells[t.columnDefinitions.findIndex((c) => c.name === column)];
    const certificates = await table(`/apis/${GROUP}/${VERSION}/namespaces/${ns}/certificates/columns`);
    expect({ expires: cell(certificates, 'Expires'), renews: cell(certificates, 'Renews') }).toEqual({
      expires: cert.status!.notAfter,
      renews: cert.status!.renewalTime,
    });
    expect(cert.status!.notAfter).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(cell(certificates, 'Issuer')).toBe('Issuer/ca');
    // Without spec.issuerRef the column names the default issuer the operator uses, not a blank.
    await createCertificate(kc, ns, 'defaulted', {
      secretName: 'defaulted-tls',
      dnsNames: [`defaulted.${ns}.svc`],
    });
    await eventually('the default issuer in status', async () =>
      (await getCertificate(kc, ns, 'defaulted')).status?.issuer ? true : undefined,
    );
    const defaulted = await table(`/apis/${GROUP}/${VERSION}/namespaces/${ns}/certificates/defaulted`);
    expect(cell(defaulted, 'Issuer')).toBe('ClusterIssuer/sigil-ca');
    const issuer = (
      (await custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: Plural.Issuer,
        name: 'ca',
      })) as { status: { notAfter: string } }
    ).status;
    const issuers = await table(`/apis/${GROUP}/${VERSION}/namespaces/${ns}/issuers/ca`);
    expect(cell(issuers, 'CA Expires')).toBe(issuer.notAfter);
    expect(issuer.notAfter).toMatch(/^\d{4}-/);
  });
});

describe('caching', () => {
  it('should hold only labelled Secrets in memory, however many others exist', async () => {
    for (let i = 0; i < 25; i++) {
      await core.createNamespacedSecret({
        namespace: ns,
        body: { metadata: { name: `unrelated-${i}` }, stringData: { a: 'b' } },
      });
    }
    const managed = await core.listNamespacedSecret({
      namespace: ns,
      labelSelector: 'sigil.dev/managed=true',
    });
    const all = await core.listNamespacedSecret({ namespace: ns });
    await eventually('cache to settle', async () =>
      operator.certificates()!.secrets.size === managed.items.length ? true : undefined,
    );
    expect(all.items.length).toBeGreaterThanOrEqual(managed.items.length + 25);
    for (const s of operator.certificates()!.secrets.list()) {
      expect(s.metadata?.labels?.['sigil.dev/managed']).toBe('true');
    }
    // CA Secrets are watched one by one, by name.
    expect(operator.issuers()!.cachedSecretCount()).toBeLessThanOrEqual(10);
  });

  it('should keep objects without their managedFields, frozen', async () => {
    // The API server records managedFields on every write; the cache drops them.
    const fromServer = await core.listNamespacedSecret({
      namespace: ns,
      labelSelector: 'sigil.dev/managed=true',
    });
    expect(fromServer.items.some((s) => (s.metadata?.managedFields?.length ?? 0) > 0)).toBe(true);
    const cached = [
      ...operator.certificates()!.secrets.list(),
      ...operator.certificates()!.certificates.list(),
    ];
    expect(cached.length).toBeGreaterThan(0);
    for (const o of cached) {
      expect(o.metadata?.managedFields).toBeUndefined();
      expect(Object.isFrozen(o)).toBe(true);
    }
  });
});

describe('metrics', () => {
  it("should remove a deleted Certificate's expiration, renewal and ready series", async () => {
    await createCertificate(kc, ns, 'metered', {
      secretName: 'metered-tls',
      issuerRef,
      dnsNames: ['metered.example.com'],
    });
    await waitForCertificate(kc, ns, 'metered', { status: 'True' });
    const series = async () =>
      (await operator.metrics.registry.metrics())
        .split('\n')
        .filter((l) => l.startsWith('sigil_certificate_') && l.includes('name="metered"') && l.includes(ns));
    expect((await series()).length).toBe(4);
    await custom.deleteNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: Plural.Certificate,
      name: 'metered',
    });
    await eventually('the series to go', async () => ((await series()).length === 0 ? true : undefined));
  });
});
