// How long a pod waits for its certificate: pods of distinct identities are
// created through the API server into an injected namespace; for each, the
// time the API server took to admit it (including the webhook) and the time
// from the admitted pod to its identity Secret existing. Prints figures and
// the machine; asserts nothing.

import { mkdtempSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, Watch } from '@kubernetes/client-node';
import { loadKubeConfig } from '../lib/kube/config.ts';
import { removeDir, startControlPlane, stopControlPlane } from '../lib/testing/controlplane.ts';
import { setupInjection } from '../test/support/webhook.ts';

const COUNT = Number(process.env.COUNT ?? 200);
const dir = mkdtempSync(join(tmpdir(), 'sigil-bench-'));
const cp = await startControlPlane({ dir, persistent: false });
try {
  const kc = loadKubeConfig(cp.kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  const setup = await setupInjection(kc);
  const ns = `bench-${Date.now()}`;
  await core.createNamespace({ body: { metadata: { name: ns, labels: { 'sigil.dev/inject': 'enabled' } } } });
  const secretSeen = new Map<string, number>();
  const waiters = new Map<string, () => void>();
  const watch = await new Watch(kc).watch(
    `/api/v1/namespaces/${ns}/secrets`,
    { labelSelector: 'sigil.dev/managed=true' },
    (phase: string, obj: { metadata: { name: string } }) => {
      if (phase !== 'ADDED') return;
      secretSeen.set(obj.metadata.name, performance.now());
      waiters.get(obj.metadata.name)?.();
    },
    () => {},
  );
  const admission: number[] = [];
  const toSecret: number[] = [];
  for (let i = 0; i < COUNT; i++) {
    const started = performance.now();
    const p = await core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: `p${i}` },
        spec: { serviceAccountName: `sa${i}`, containers: [{ name: 'app', image: 'example.com/app:1' }] },
      },
    });
    const admitted = performance.now();
    admission.push(admitted - started);
    const name = p.metadata!.annotations!['sigil.dev/certificate']!;
    if (!secretSeen.has(name)) await new Promise<void>((r) => waiters.set(name, r));
    toSecret.push(Math.max(0, secretSeen.get(name)! - admitted));
  }
  watch.abort();
  const q = (xs: number[], p: number) =>
    [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
  const row = (label: string, xs: number[]) =>
    `${label.padEnd(44)} p50 ${q(xs, 50).toFixed(1).padStart(7)} ms   p99 ${q(xs, 99).toFixed(1).padStart(7)} ms   max ${Math.max(
      ...xs,
    )
      .toFixed(1)
      .padStart(7)} ms`;
  console.log(
    `machine: ${cpus().length} cores (${cpus()[0]?.model}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`,
  );
  console.log(`${COUNT} pods, each a new identity (ECDSA P-256), created one after another`);
  console.log(row('pod create through the API server + webhook', admission));
  console.log(row('admitted pod -> its Secret exists', toSecret));
  await setup.stop();
} finally {
  await stopControlPlane(cp);
  removeDir(dir);
}
