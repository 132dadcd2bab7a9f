// Events under a burst: Normal (Issued) Events stay within the budget and the
// rest are counted; Warnings are always recorded; every Certificate is Ready.
import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { rawRequest } from '../lib/kube/rest.ts';
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
  // Repeats written at once, so the count can be watched moving.
  operator = await startTestOperator(kc, { watchNamespace: ns, eventQps: 0.01, eventRepeatIntervalMs: 0 });
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

/** The Warning Events on one object, by reason. */
async function warnings(name: string, namespace = ns) {
  const list = await core.listNamespacedEvent({ namespace, fieldSelector: `involvedObject.name=${name}` });
  return list.items.filter((e) => e.type === 'Warning');
}

it.each([
  ['InvalidSpec', { secretName: 'bad-tls', issuerRef, dnsNames: ['bad.example.com'], duration: '1s' }],
  [
    'IssuerNotFound',
    { secretName: 'lost-tls', issuerRef: { name: 'nope', kind: 'Issuer' }, dnsNames: ['lost.example.com'] },
  ],
  [
    'IssuerNotReady',
    { secretName: 'waiting-tls', issuerRef: { name: 'broken', kind: 'Issuer' }, dnsNames: ['w.example.com'] },
  ],
])('should record a Warning Event for %s, as status gives it', async (reason, spec) => {
  if (reason === 'IssuerNotReady')
    await createIssuer(kc, 'Issuer', 'broken', { ca: { secretName: 'absent' } }, ns);
  const name = reason.toLowerCase();
  await createCertificate(kc, ns, name, spec as Parameters<typeof createCertificate>[3]);
  const cert = await waitForCertificate(kc, ns, name, { status: 'False', reason });
  const ready = cert.status!.conditions!.find((c) => c.type === 'Ready')!;
  const events = await eventually(`a ${reason} Event`, async () => {
    const found = (await warnings(name)).filter((e) => e.reason === reason);
    return found.length > 0 ? found : undefined;
  });
  expect(events).toHaveLength(1);
  expect(events[0]!.message).toBe(ready.message);
});

it('should record an Issuer that is not ready as a Warning Event on it', async () => {
  await createSecret(kc, ns, 'leaf-only', {
    'tls.crt': Buffer.from('not pem').toString('base64'),
    'tls.key': Buffer.from('x').toString('base64'),
  });
  await createIssuer(kc, 'Issuer', 'not-a-ca', { ca: { secretName: 'leaf-only' } }, ns);
  const issuerEvents = await eventually('an Event on Issuer not-a-ca', async () => {
    const found = await warnings('not-a-ca');
    return found.length > 0 ? found : undefined;
  });
  expect(issuerEvents[0]).toMatchObject({ involvedObject: { kind: 'Issuer', name: 'not-a-ca' } });
  expect(issuerEvents[0]!.message).toContain('is not PEM');
});

it('should record a ClusterIssuer that is not ready as a Warning Event in the default namespace', async () => {
  const name = `missing-ca-${ns}`;
  await createIssuer(kc, 'ClusterIssuer', name, { ca: { secretName: 'no-such-secret' } });
  const events = await eventually('an Event on the ClusterIssuer', async () => {
    const found = await warnings(name, 'default');
    return found.length > 0 ? found : undefined;
  });
  expect(events[0]).toMatchObject({
    reason: 'SecretNotFound',
    involvedObject: { kind: 'ClusterIssuer', name },
  });
  // Cluster-scoped: other test files see it.
  await rawRequest(kc, 'DELETE', `/apis/sigil.dev/v1alpha1/clusterissuers/${name}`);
});

it('should count a repeated failure on one Event instead of recording it again and again', async () => {
  // Someone else's Secret holds the name: SecretConflict, retried by the operator with backoff.
  await core.createNamespacedSecret({
    namespace: ns,
    body: { metadata: { name: 'taken-tls' }, stringData: { password: 'not Sigil' } },
  });
  await createCertificate(kc, ns, 'conflicted', {
    secretName: 'taken-tls',
    issuerRef,
    dnsNames: ['c.example.com'],
  });
  const cert = await waitForCertificate(kc, ns, 'conflicted', { status: 'False' });
  const reason = cert.status!.conditions!.find((c) => c.type === 'Ready')!.reason;
  // Each change to the Certificate makes the operator look again and meet the same conflict.
  const custom = kc.makeApiClient(CustomObjectsApi);
  for (let i = 0; i < 4; i++) {
    await custom.patchNamespacedCustomObject(
      {
        group: 'sigil.dev',
        version: 'v1alpha1',
        namespace: ns,
        plural: 'certificates',
        name: 'conflicted',
        body: { metadata: { annotations: { poke: String(i) } } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await new Promise((r) => setTimeout(r, 400));
  }
  const events = await eventually('one Event counting the repeats', async () => {
    const found = (await warnings('conflicted')).filter((e) => e.reason === reason);
    return found.length === 1 && (found[0]!.count ?? 1) >= 3 ? found : undefined;
  });
  expect(events).toHaveLength(1);
  expect(events[0]!.lastTimestamp!.getTime()).toBeGreaterThan(events[0]!.firstTimestamp!.getTime());
});
