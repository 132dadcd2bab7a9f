// Attacks on the operator's memory by a tenant of namespace `a` who may write
// Secrets: a label anyone can set must not make the operator hold whatever
// they like, or it crashes for every namespace.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { Label } from '../../lib/api/types.ts';
import type { Operator } from '../../operator/operator.ts';
import { createTestNamespace, testKubeConfig } from '../support/kube.ts';
import {
  caSecretData,
  createCertificate,
  createIssuer,
  createSecret,
  ensureCrds,
  ensureNamespace,
  startTestOperator,
  waitForCertificate,
  waitForIssuer,
} from '../support/sigil.ts';
import { createTenant, NAMESPACE_DEVELOPER, type Tenant } from '../support/tenant.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const admin: KubeConfig = testKubeConfig();
let a: string;
let developer: Tenant;
let operator: Operator | undefined;
const issuerRef = { name: 'ca', kind: 'Issuer' as const };
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
    // What Sigil wrote it keeps, and the restart re-issues nothing.
    expect(Object.keys(cache.get(`${a}/real-tls`)?.data ?? {}).sort()).toEqual([
      'ca.crt',
      'tls.crt',
      'tls.key',
    ]);
    const after = await waitForCertificate(admin, a, 'real', { status: 'True' });
    expect(after.status?.revision).toBe(issued.status?.revision);
  }, 120_000);
});
