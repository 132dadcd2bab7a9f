// The API server and etcd restarted in the middle of issuance: the operator and
// the webhook recover without a restart of their own.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { type Certificate, findCondition, GROUP, Plural, VERSION } from '../../lib/api/types.ts';
import { readKeyPair } from '../../lib/pki/inspect.ts';
import {
  type ControlPlaneState,
  removeDir,
  restartComponent,
  startControlPlane,
  stopControlPlane,
} from '../../lib/testing/controlplane.ts';
import { createPod, type InjectionSetup, pod, setupInjection } from '../support/webhook.ts';

let cp: ControlPlaneState;
let kc: KubeConfig;
let setup: InjectionSetup;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sigil-faults-'));
  cp = await startControlPlane({ dir, persistent: false });
  kc = new KubeConfig();
  kc.loadFromFile(cp.kubeconfig);
  setup = await setupInjection(kc);
}, 120_000);

afterAll(async () => {
  await setup?.stop().catch(() => {});
  if (cp) await stopControlPlane(cp);
  if (dir) removeDir(dir);
});

async function allReadyAndMatching(ns: string, count: number, timeoutMs = 120_000) {
  const custom = kc.makeApiClient(CustomObjectsApi);
  const core = kc.makeApiClient(CoreV1Api);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const list = (await custom.listNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: Plural.Certificate,
      })) as { items: Certificate[] };
      const ready = list.items.filter((c) => findCondition(c.status?.conditions, 'Ready')?.status === 'True');
      if (list.items.length === count && ready.length === count) break;
    } catch {}
    if (Date.now() > deadline) throw new Error(`not all ${count} Certificates in ${ns} became Ready`);
    await new Promise((r) => setTimeout(r, 250));
  }
  const secrets = await core.listNamespacedSecret({ namespace: ns, labelSelector: 'sigil.dev/managed=true' });
  for (const s of secrets.items) {
    const pair = readKeyPair(
      Buffer.from(s.data!['tls.crt']!, 'base64'),
      Buffer.from(s.data!['tls.key']!, 'base64'),
    );
    expect(pair.keyMatches).toBe(true);
  }
  return secrets.items.length;
}

async function createMany(ns: string, prefix: string, n: number) {
  const custom = kc.makeApiClient(CustomObjectsApi);
  for (let i = 0; i < n; i += 10) {
    await Promise.all(
      Array.from({ length: Math.min(10, n - i) }, (_, j) =>
        custom.createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: ns,
          plural: Plural.Certificate,
          body: {
            apiVersion: `${GROUP}/${VERSION}`,
            kind: 'Certificate',
            metadata: { name: `${prefix}${i + j}` },
            spec: { secretName: `${prefix}${i + j}`, dnsNames: [`${prefix}${i + j}.example.com`] },
          },
        }),
      ),
    );
  }
}

describe.each([
  ['kube-apiserver', 'apiserver' as const],
  ['etcd', 'etcd' as const],
])('%s restarted in the middle of issuance', (_name, which) => {
  it('should let the operator and the webhook recover on their own', async () => {
    const ns = `restart-${which}`;
    await kc
      .makeApiClient(CoreV1Api)
      .createNamespace({ body: { metadata: { name: ns, labels: { 'sigil.dev/inject': 'enabled' } } } });
    const creating = createMany(ns, 'a', 60);
    await new Promise((r) => setTimeout(r, 300));
    await restartComponent(cp, which, 2_000);
    await creating.catch(() => undefined); // some creates may fail while it is down; they are retried below
    const existing = (await kc.makeApiClient(CustomObjectsApi).listNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: Plural.Certificate,
    })) as { items: Certificate[] };
    await createMany(ns, 'b', 20);
    const total = existing.items.length + 20;
    expect(await allReadyAndMatching(ns, total)).toBe(total);
    // The operator and the webhook were never restarted; injection still works.
    const p = await createPod(kc, ns, pod(`after-${which}`, { serviceAccountName: 'after' }));
    expect(p.metadata?.annotations?.['sigil.dev/status']).toBe('injected');
  }, 240_000);
});
