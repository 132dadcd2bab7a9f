// Attacks on the operator's memory and on what it deletes, by tenants of
// namespace `a`: a developer who may write Secrets and pods, and a user who
// may only manage Certificates. A label anyone can set must not make the
// operator hold whatever they like (it would crash for every namespace), no
// Certificate may be made larger than the schema allows, and relabelling a
// pod must not make identity garbage collection delete an identity in use.

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { API_VERSION, GROUP, Label, Plural, VERSION } from '../../lib/api/types.ts';
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
  startTestOperator,
  waitForCertificate,
  waitForIssuer,
} from '../support/sigil.ts';
import { CERTIFICATES_ONLY, createTenant, NAMESPACE_DEVELOPER, type Tenant } from '../support/tenant.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const admin: KubeConfig = testKubeConfig();
const core = admin.makeApiClient(CoreV1Api);
const custom = admin.makeApiClient(CustomObjectsApi);
let a: string;
let developer: Tenant;
let certificatesOnly: Tenant;
let operator: Operator | undefined;
const issuerRef = { name: 'ca', kind: 'Issuer' as const };
const GRACE_MS = 2_000;
const MiB = 1024 * 1024;

function heapMiB(): number {
  const m = process.memoryUsage();
  return (m.heapUsed + m.external + m.arrayBuffers) / MiB;
}

/** The heap once garbage is collected: the last response's buffers go a moment after it is read. */
async function settledHeapMiB(): Promise<number> {
  await new Promise((r) => setTimeout(r, 1_000));
  gc();
  gc();
  return heapMiB();
}

beforeAll(async () => {
  await ensureCrds(admin);
  await ensureNamespace(admin, 'sigil-system');
  a = await createTestNamespace(admin, 'a-limits');
  await createSecret(admin, a, 'ca-key-pair', await caSecretData('Limits Test CA'));
  await createIssuer(admin, 'Issuer', 'ca', { ca: { secretName: 'ca-key-pair' } }, a);
  developer = await createTenant(admin, a, NAMESPACE_DEVELOPER, 'developer');
  certificatesOnly = await createTenant(admin, a, CERTIFICATES_ONLY);
});

afterEach(async () => {
  await operator?.stop();
  operator = undefined;
});

describe('a tenant who may write Secrets', () => {
  it("should not make the operator's start-up hold the data of Secrets it labelled managed", async () => {
    operator = await startTestOperator(admin, { watchNamespace: a });
    await waitForIssuer(admin, 'Issuer', 'ca', { status: 'True' }, a);
    await createCertificate(admin, a, 'real', {
      secretName: 'real-tls',
      issuerRef,
      dnsNames: [`real.${a}.svc`],
    });
    const issued = await waitForCertificate(admin, a, 'real', { status: 'True' });
    await operator.stop();
    operator = undefined;

    // 40 Secrets of ~700 KiB, shaped like Sigil's (TLS keys, managed label, a certificate-name annotation).
    const third = Buffer.alloc(233 * 1024, 'x').toString('base64');
    const own = developer.kc.makeApiClient(CoreV1Api);
    const FLOOD = 40;
    for (let i = 0; i < FLOOD; i += 8) {
      await Promise.all(
        Array.from({ length: Math.min(8, FLOOD - i) }, (_, j) =>
          own.createNamespacedSecret({
            namespace: a,
            body: {
              metadata: {
                name: `flood-${i + j}`,
                labels: { [Label.Managed]: 'true' },
                annotations: { 'sigil.dev/certificate-name': `flood-${i + j}` },
              },
              type: 'kubernetes.io/tls',
              data: { 'tls.crt': third, 'tls.key': third, 'ca.crt': third },
            },
          }),
        ),
      );
    }
    const floodMiB = (FLOOD * 3 * third.length) / MiB;

    // The restart: the operator lists every labelled Secret of the namespace.
    const before = await settledHeapMiB();
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, heapMiB());
    }, 5);
    operator = await startTestOperator(admin, { watchNamespace: a });
    await operator.whenRunning();
    clearInterval(sampler);
    peak = Math.max(peak, heapMiB());
    const cache = operator.certificates()!.secrets;
    const cachedMiB = JSON.stringify(cache.list()).length / MiB;
    const retained = (await settledHeapMiB()) - before;
    console.log(
      `Secret flood of ${FLOOD} x ~700 KiB (${floodMiB.toFixed(0)} MiB of data): operator cache ${cachedMiB.toFixed(2)} MiB, heap retained +${retained.toFixed(1)} MiB, peak while starting +${(peak - before).toFixed(1)} MiB`,
    );

    expect(cache.size).toBeGreaterThanOrEqual(FLOOD + 1);
    const withData = cache
      .list()
      .filter((s) => s.metadata?.name?.startsWith('flood-') && s.data !== undefined);
    expect(withData.map((s) => s.metadata?.name)).toEqual([]);
    expect(cachedMiB).toBeLessThan(1);
    // Before, every labelled Secret's TLS data was kept while the Certificates were not yet listed.
    expect(retained).toBeLessThan(floodMiB / 4);
    // What Sigil wrote it keeps (tls.key as its fingerprint), and the restart re-issues nothing.
    const real = cache.get(`${a}/real-tls`)!;
    expect(Object.keys(real.data ?? {}).sort()).toEqual(['ca.crt', 'tls.crt']);
    expect(cachedKeyOf(real)).toHaveProperty('spkiSha256');
    const after = await waitForCertificate(admin, a, 'real', { status: 'True' });
    expect(after.status?.revision).toBe(issued.status?.revision);
  }, 120_000);
});

describe('a Certificate-only tenant', () => {
  async function tenantCreates(name: string, secretTemplate: unknown) {
    return certificatesOnly.kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: a,
      plural: Plural.Certificate,
      body: {
        apiVersion: API_VERSION,
        kind: 'Certificate',
        metadata: { name },
        spec: { secretName: `${name}-tls`, issuerRef, dnsNames: [`${name}.example.com`], secretTemplate },
      },
    });
  }

  async function refusal(name: string, secretTemplate: unknown): Promise<string> {
    const err = await tenantCreates(name, secretTemplate).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(statusCode(err)).toBe(422);
    await expect(getCertificate(admin, a, name)).rejects.toMatchObject({ code: 404 });
    return JSON.parse((err as { body: string }).body).message as string;
  }

  const many = (n: number, value: string) =>
    Object.fromEntries(Array.from({ length: n }, (_, i) => [`example.com/k${i}`, value]));

  it.each([
    [
      'annotations of 1.2 MiB',
      { annotations: many(20, 'x'.repeat(60_000)) },
      'must add up to at most 64 KiB',
    ],
    ['65 labels', { labels: many(65, 'v') }, 'must have at most 64 items'],
    ['a label value of 64 characters', { labels: { app: 'x'.repeat(64) } }, 'may not be more than 63'],
    [
      'a label key that is not a qualified name',
      { labels: { 'Not A Key': 'v' } },
      'must be a qualified name',
    ],
    [
      'an annotation key with a 64-character name',
      { annotations: { [`example.com/${'n'.repeat(64)}`]: 'v' } },
      'must be a qualified name',
    ],
  ])(
    'should not be able to create a Certificate whose secretTemplate has %s',
    async (_n, template, message) => {
      const name = `big-${Math.random().toString(36).slice(2, 8)}`;
      expect(await refusal(name, template)).toContain(message);
    },
  );

  it('should still create a Certificate with a Kubernetes-shaped secretTemplate', async () => {
    await tenantCreates('shaped', {
      labels: { app: 'web', 'example.com/tier': 'front' },
      annotations: { 'example.com/owner': 'x'.repeat(60_000) },
    });
    await getCertificate(admin, a, 'shaped');
  });
});

describe('identity garbage collection', () => {
  /** A Certificate of the webhook's shape for service account `sa`. */
  async function identity(sa: string): Promise<string> {
    const name = `${sa}-sigil-${Buffer.from(sa).toString('hex').padEnd(10, '0').slice(0, 10)}`;
    await custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: a,
      plural: Plural.Certificate,
      body: {
        apiVersion: API_VERSION,
        kind: 'Certificate',
        metadata: { name, labels: { [Label.Identity]: 'true' } },
        spec: { secretName: name, issuerRef, uris: [`spiffe://cluster.local/ns/${a}/sa/${sa}`] },
      },
    });
    return name;
  }

  async function pod(name: string, identityName: string) {
    await developer.kc.makeApiClient(CoreV1Api).createNamespacedPod({
      namespace: a,
      body: {
        metadata: { name, labels: { 'sigil.dev/identity': identityName } },
        spec: { containers: [{ name: 'app', image: 'example.invalid/app' }] },
      },
    });
  }

  it('should not delete an identity in use when a pod relabelled to it is deleted', async () => {
    operator = await startTestOperator(admin, { watchNamespace: a, identityGracePeriodMs: GRACE_MS });
    const x = await identity('xsa');
    const y = await identity('ysa');
    await waitForCertificate(admin, a, y, { status: 'True' });
    await pod('mover', x);
    await pod('stayer', y);
    await operator.whenRunning();
    await new Promise((r) => setTimeout(r, 500));
    // The attack: a pod labelled X, relabelled to Y, then deleted, while Y's own pod runs on.
    const own = developer.kc.makeApiClient(CoreV1Api);
    const mover = await own.readNamespacedPod({ name: 'mover', namespace: a });
    mover.metadata!.labels = { 'sigil.dev/identity': y };
    await own.replaceNamespacedPod({ name: 'mover', namespace: a, body: mover });
    await new Promise((r) => setTimeout(r, 500));
    await own.deleteNamespacedPod({ name: 'mover', namespace: a });

    // X lost its only pod when it was relabelled: it is collected, which shows the collector ran.
    await eventually(
      'the unused identity X to be collected',
      async () =>
        getCertificate(admin, a, x).then(
          () => undefined,
          (err) => (statusCode(err) === 404 ? true : undefined),
        ),
      GRACE_MS + 20_000,
    );
    await new Promise((r) => setTimeout(r, GRACE_MS + 1_000));
    const stillY = await getCertificate(admin, a, y);
    expect(stillY.metadata.annotations?.['sigil.dev/last-used']).toBeUndefined();
    await expect(core.readNamespacedSecret({ name: y, namespace: a })).resolves.toBeDefined();
  }, 60_000);
});
