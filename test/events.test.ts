// Events under a burst: Normal (Issued) Events stay within the budget and the
// rest are counted; Warnings are always recorded; every Certificate is Ready.
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { Operator } from '../operator/operator.ts';
import { createTestNamespace, eventually, testKubeConfig } from './support/kube.ts';
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
} from './support/sigil.ts';

const kc: KubeConfig = testKubeConfig();
const core = kc.makeApiClient(CoreV1Api);
let ns: string;
let operator: Operator;

beforeAll(async () => {
  await ensureCrds(kc);
  await ensureNamespace(kc, 'sigil-system');
  ns = await createTestNamespace(kc, 'events');
  await createSecret(kc, ns, 'ca-key-pair', await caSecretData('Events Test CA'));
  await createIssuer(
    kc,
    'Issuer',
    'ca',
    { ca: { secretName: 'ca-key-pair' }, policy: { allowedDNSNames: ['*.example.com'] } },
    ns,
  );
  // A budget of one Normal Event (rate 0.01/s, burst 10 x rate rounded up to 1).
  operator = await startTestOperator(kc, { watchNamespace: ns, eventQps: 0.01 });
  await waitForIssuer(kc, 'Issuer', 'ca', { status: 'True', reason: 'CAReady' }, ns);
});

afterAll(async () => {
  await operator?.stop();
});

const issuerRef = { name: 'ca', kind: 'Issuer' as const };

it('records Issued Events within the budget, counts the rest, and always records Warnings', async () => {
  const names = Array.from({ length: 6 }, (_, i) => `c${i}`);
  await Promise.all(
    names.map((n) =>
      createCertificate(kc, ns, n, { secretName: `${n}-tls`, issuerRef, dnsNames: [`${n}.example.com`] }),
    ),
  );
  await createCertificate(kc, ns, 'denied', {
    secretName: 'denied-tls',
    issuerRef,
    dnsNames: ['bank.example.org'],
  });
  for (const n of names) await waitForCertificate(kc, ns, n, { status: 'True' });
  await waitForCertificate(kc, ns, 'denied', { status: 'False', reason: 'PolicyDenied' });

  await eventually('one Issued Event and the PolicyDenied Warning', async () => {
    const events = (await core.listNamespacedEvent({ namespace: ns })).items;
    const issued = events.filter((e) => e.reason === 'Issued');
    expect(issued).toHaveLength(1);
    const denied = events.filter((e) => e.reason === 'PolicyDenied' && e.involvedObject.name === 'denied');
    expect(denied.length).toBeGreaterThanOrEqual(1);
    expect(denied[0]!.type).toBe('Warning');
    return true;
  });
  const dropped = (await operator.metrics.eventsDropped.get()).values;
  expect(dropped).toEqual([
    expect.objectContaining({ labels: { type: 'Normal', reason: 'Issued' }, value: 5 }),
  ]);
});
