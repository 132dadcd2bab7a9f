// Attacks on Secrets by tenants of namespace `a`: one who may only manage
// Certificates, and a namespace developer who may also write Secrets. No
// Certificate may make the operator write or delete a Secret its author could
// not write or delete, or make it cache data of Secrets it did not write. Each
// refusal must say what to do; the victims' bytes must not change.
import { CoreV1Api, CustomObjectsApi, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import {
  Annotation,
  API_VERSION,
  type CertificateSpec,
  findCondition,
  GROUP,
  Plural,
  VERSION,
} from '../../lib/api/types.ts';
import { statusCode } from '../../lib/kube/errors.ts';
import { cachedKeyOf } from '../../operator/certificates/secret.ts';
import type { Operator } from '../../operator/operator.ts';
import { createTestNamespace, eventually, testKubeConfig } from '../support/kube.ts';
import {
  caSecretData,
  createCertificate,
  createIssuer,
  createSecret,
  ensureCrds,
  ensureNamespace,
  getCertificate,
  readSecret,
  startTestOperator,
  waitForCertificate,
  waitForIssuer,
} from '../support/sigil.ts';
import { CERTIFICATES_ONLY, createTenant, NAMESPACE_DEVELOPER, type Tenant } from '../support/tenant.ts';

const admin: KubeConfig = testKubeConfig();
const core = admin.makeApiClient(CoreV1Api);
let a: string;
let tenant: Tenant;
let developer: Tenant;
let operator: Operator;
const issuerRef = { name: 'ca', kind: 'Issuer' as const };
const GRACE_MS = 2_000;

async function tenantCreates(
  who: Tenant,
  name: string,
  spec: Omit<CertificateSpec, 'issuerRef'>,
  labels?: Record<string, string>,
): Promise<void> {
  await who.kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: a,
    plural: Plural.Certificate,
    body: {
      apiVersion: API_VERSION,
      kind: 'Certificate',
      metadata: { name, labels },
      spec: { issuerRef, ...spec },
    },
  });
}

/** What must not change about a victim Secret. */
function fingerprint(s: V1Secret) {
  return { uid: s.metadata?.uid, resourceVersion: s.metadata?.resourceVersion, data: s.data };
}

function readyMessage(c: { status?: { conditions?: { type: string; message: string }[] } }): string {
  return c.status?.conditions?.find((x) => x.type === 'Ready')?.message ?? '';
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  await ensureCrds(admin);
  await ensureNamespace(admin, 'sigil-system');
  a = await createTestNamespace(admin, 'a-secrets');
  await createSecret(admin, a, 'ca-key-pair', await caSecretData('Secrets Test CA'));
  await createIssuer(admin, 'Issuer', 'ca', { ca: { secretName: 'ca-key-pair' } }, a);
  tenant = await createTenant(admin, a, CERTIFICATES_ONLY);
  developer = await createTenant(admin, a, NAMESPACE_DEVELOPER, 'developer');
  operator = await startTestOperator(admin, { watchNamespace: a, identityGracePeriodMs: GRACE_MS });
  await waitForIssuer(admin, 'Issuer', 'ca', { status: 'True' }, a);
});

afterAll(async () => {
  await operator?.stop();
});

describe('a Certificate-only tenant', () => {
  it('cannot write, read or delete Secrets itself (the premise of every attack here)', async () => {
    const own = tenant.kc.makeApiClient(CoreV1Api);
    await expect(own.listNamespacedSecret({ namespace: a })).rejects.toMatchObject({ code: 403 });
    await expect(own.deleteNamespacedSecret({ name: 'ca-key-pair', namespace: a })).rejects.toMatchObject({
      code: 403,
    });
  });

  it("should not overwrite another Certificate's Secret by naming the same secretName", async () => {
    await createCertificate(admin, a, 'orig', {
      secretName: 'shared-tls',
      issuerRef,
      dnsNames: ['orig.example.com'],
    });
    const orig = await waitForCertificate(admin, a, 'orig', { status: 'True' });
    const before = fingerprint(await readSecret(admin, a, 'shared-tls'));

    await tenantCreates(tenant, 'dup', { secretName: 'shared-tls', dnsNames: ['dup.example.com'] });
    const dup = await waitForCertificate(admin, a, 'dup', { status: 'False', reason: 'DuplicateSecretName' });
    expect(readyMessage(dup)).toContain('Certificate orig already uses Secret shared-tls');
    expect(readyMessage(dup)).toContain('set another spec.secretName');

    await sleep(1500);
    expect(fingerprint(await readSecret(admin, a, 'shared-tls'))).toEqual(before);
    const still = await waitForCertificate(admin, a, 'orig', { status: 'True' });
    expect(still.status?.revision).toBe(orig.status?.revision);
    expect(
      (await readSecret(admin, a, 'shared-tls')).metadata?.annotations?.[Annotation.CertificateName],
    ).toBe('orig');
    // The newcomer stays refused, and an event says why.
    const events = await core.listNamespacedEvent({ namespace: a, fieldSelector: 'involvedObject.name=dup' });
    expect(events.items.map((e) => e.reason)).toContain('DuplicateSecretName');
  });

  it.each([
    ['a TLS Secret Sigil never wrote', {}, {}],
    ['a Secret whose managed label a Secret writer forged', { 'sigil.dev/managed': 'true' }, {}],
    [
      'a Secret Sigil wrote for a Certificate that is gone',
      { 'sigil.dev/managed': 'true' },
      { [Annotation.CertificateName]: 'gone' },
    ],
  ])('should not take over %s', async (_n, labels, annotations) => {
    const name = `victim-${Object.keys(labels).length}${Object.keys(annotations).length}`;
    await core.createNamespacedSecret({
      namespace: a,
      body: {
        metadata: { name, labels, annotations },
        type: 'kubernetes.io/tls',
        data: {
          'tls.crt': Buffer.from('theirs').toString('base64'),
          'tls.key': Buffer.from('key').toString('base64'),
        },
      },
    });
    const before = fingerprint(await readSecret(admin, a, name));
    await tenantCreates(tenant, `thief-${name}`, { secretName: name, dnsNames: ['thief.example.com'] });
    const c = await waitForCertificate(admin, a, `thief-${name}`, {
      status: 'False',
      reason: 'SecretNotOwned',
    });
    expect(readyMessage(c)).toContain(
      `kubectl annotate secret ${name} -n ${a} ${Annotation.AllowTakeover}=thief-${name}`,
    );
    await sleep(1500);
    expect(fingerprint(await readSecret(admin, a, name))).toEqual(before);
  });

  it('should take over an existing Secret once someone who may write it opts in', async () => {
    await createSecret(admin, a, 'handover-tls', {
      'tls.crt': Buffer.from('old').toString('base64'),
      'tls.key': Buffer.from('old').toString('base64'),
    });
    await tenantCreates(tenant, 'handover', {
      secretName: 'handover-tls',
      dnsNames: ['handover.example.com'],
    });
    await waitForCertificate(admin, a, 'handover', { status: 'False', reason: 'SecretNotOwned' });
    const s = await readSecret(admin, a, 'handover-tls');
    s.metadata!.annotations = { ...s.metadata?.annotations, [Annotation.AllowTakeover]: 'handover' };
    await core.replaceNamespacedSecret({ name: 'handover-tls', namespace: a, body: s });
    await waitForCertificate(admin, a, 'handover', { status: 'True' }, 30_000);
    const after = await readSecret(admin, a, 'handover-tls');
    expect(after.metadata?.labels?.['sigil.dev/managed']).toBe('true');
    expect(after.metadata?.annotations?.[Annotation.CertificateName]).toBe('handover');
  });

  it('should not make identity garbage collection delete a Secret it could not delete', async () => {
    // A Sigil Secret of someone else's Certificate, and a Secret Sigil never wrote with a webhook-like name.
    await createCertificate(admin, a, 'payments', {
      secretName: 'payments-tls',
      issuerRef,
      dnsNames: ['pay.example.com'],
    });
    await waitForCertificate(admin, a, 'payments', { status: 'True' });
    const payments = fingerprint(await readSecret(admin, a, 'payments-tls'));
    const squatName = 'web-sigil-0123456789';
    await createSecret(admin, a, squatName, {
      'tls.crt': Buffer.from('not sigil').toString('base64'),
      'tls.key': Buffer.from('not sigil').toString('base64'),
    });
    const squat = fingerprint(await readSecret(admin, a, squatName));

    const identity = { 'sigil.dev/identity': 'true' };
    await tenantCreates(
      tenant,
      'gc-bait',
      { secretName: 'payments-tls', dnsNames: ['bait.example.com'] },
      identity,
    );
    await tenantCreates(
      tenant,
      squatName,
      { secretName: squatName, uris: [`spiffe://cluster.local/ns/${a}/sa/web`] },
      identity,
    );
    // A genuine-looking, unused identity Certificate with its own Secret: the collector still removes both.
    const ownName = 'api-sigil-00000000aa';
    await tenantCreates(
      tenant,
      ownName,
      { secretName: ownName, uris: [`spiffe://cluster.local/ns/${a}/sa/api`] },
      identity,
    );
    await waitForCertificate(admin, a, ownName, { status: 'True' });

    await eventually(
      'the unused identity Certificate and its own Secret to be collected',
      async () => {
        const gone = await readSecret(admin, a, ownName).then(
          () => false,
          (err) => statusCode(err) === 404,
        );
        return gone ? true : undefined;
      },
      GRACE_MS + 15_000,
    );
    await sleep(GRACE_MS);
    expect(fingerprint(await readSecret(admin, a, 'payments-tls'))).toEqual(payments);
    expect(fingerprint(await readSecret(admin, a, squatName))).toEqual(squat);
    // The bait is not the webhook's shape, so it is not collected at all; payments stays Ready.
    await getCertificate(admin, a, 'gc-bait');
    await waitForCertificate(admin, a, 'payments', { status: 'True' });
  }, 60_000);
});

describe('a tenant who may write Secrets', () => {
  it("should not make the operator cache a junk Secret's data by labelling it managed", async () => {
    const big = Buffer.alloc(512 * 1024, 'x').toString('base64');
    const own = developer.kc.makeApiClient(CoreV1Api);
    for (const [name, annotations] of [
      ['junk', {}],
      ['junk-named', { [Annotation.CertificateName]: 'no-such-certificate' }],
    ] as const) {
      await own.createNamespacedSecret({
        namespace: a,
        body: {
          metadata: { name, labels: { 'sigil.dev/managed': 'true' }, annotations },
          type: 'Opaque',
          data: { blob: big },
        },
      });
    }
    const cache = operator.certificates()!.secrets;
    for (const name of ['junk', 'junk-named']) {
      const cached = await eventually(`${name} in the operator's cache`, async () =>
        cache.get(`${a}/${name}`),
      );
      expect(cached.data).toBeUndefined();
      expect(JSON.stringify(cached).length).toBeLessThan(2_000);
    }
    // What it wrote itself, it keeps, but for the private key: only its public key's fingerprint.
    const ours = cache.get(`${a}/shared-tls`)!;
    expect(Object.keys(ours.data ?? {}).sort()).toEqual(['ca.crt', 'tls.crt']);
    expect(cachedKeyOf(ours)).toHaveProperty('spkiSha256');
    const key = (await readSecret(admin, a, 'shared-tls')).data!['tls.key']!;
    expect(JSON.stringify(ours)).not.toContain(key);
  });

  it('should still let a Certificate refuse a Secret whose managed label alone is forged', async () => {
    const own = developer.kc.makeApiClient(CoreV1Api);
    await own.createNamespacedSecret({
      namespace: a,
      body: {
        metadata: { name: 'forged-tls', labels: { 'sigil.dev/managed': 'true' } },
        type: 'kubernetes.io/tls',
        data: {
          'tls.crt': Buffer.from('mine').toString('base64'),
          'tls.key': Buffer.from('k').toString('base64'),
        },
      },
    });
    await tenantCreates(tenant, 'forged', { secretName: 'forged-tls', dnsNames: ['forged.example.com'] });
    const c = await waitForCertificate(admin, a, 'forged', { status: 'False', reason: 'SecretNotOwned' });
    expect(findCondition(c.status?.conditions, 'Ready')?.message).toContain(Annotation.AllowTakeover);
    expect(
      Buffer.from((await readSecret(admin, a, 'forged-tls')).data!['tls.crt']!, 'base64').toString(),
    ).toBe('mine');
  });
});
