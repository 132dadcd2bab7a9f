// The operator SIGKILLed at random moments, many times, while certificates are
// created and changed: after the last restart everything converges.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { type Certificate, findCondition, GROUP, Plural, VERSION } from '../../lib/api/types.ts';
import { installCrds } from '../../lib/kube/crds.ts';
import { readKeyPair, requestMismatches } from '../../lib/pki/inspect.ts';
import {
  type ControlPlaneState,
  removeDir,
  startControlPlane,
  stopControlPlane,
} from '../../lib/testing/controlplane.ts';
import { spawnOperator } from '../support/process.ts';
import { caSecretData } from '../support/sigil.ts';

let cp: ControlPlaneState;
let kc: KubeConfig;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sigil-kills-'));
  cp = await startControlPlane({ dir, persistent: false });
  kc = new KubeConfig();
  kc.loadFromFile(cp.kubeconfig);
  await installCrds(kc);
}, 120_000);

afterAll(async () => {
  if (cp) await stopControlPlane(cp);
  if (dir) removeDir(dir);
});

it('should converge after the operator is killed again and again mid-issuance', async () => {
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  await core.createNamespace({ body: { metadata: { name: 'sigil-system' } } });
  await core.createNamespace({ body: { metadata: { name: 'kills' } } });
  await core.createNamespacedSecret({
    namespace: 'sigil-system',
    body: { metadata: { name: 'sigil-ca' }, type: 'kubernetes.io/tls', data: await caSecretData('Kills CA') },
  });
  await custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: Plural.ClusterIssuer,
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'ClusterIssuer',
      metadata: { name: 'sigil-ca' },
      spec: { ca: { secretName: 'sigil-ca' }, policy: { allowedDNSNames: ['**.example.com'] } },
    },
  });

  let seed = 7;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const N = 150;
  const names = new Map<string, string[]>();
  const args = ['--no-leader-elect', '--no-webhook-tls', '--min-duration', '1m'];
  let operator = await spawnOperator(cp.kubeconfig, args);
  let created = 0;
  for (let round = 0; round < 8; round++) {
    const batch = Array.from({ length: Math.min(20, N - created) }, (_, i) => `k${created + i}`);
    created += batch.length;
    const creating = Promise.all(
      batch.map((name) => {
        names.set(name, [`${name}.example.com`]);
        return custom.createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: 'kills',
          plural: Plural.Certificate,
          body: {
            apiVersion: `${GROUP}/${VERSION}`,
            kind: 'Certificate',
            metadata: { name },
            spec: { secretName: `${name}-tls`, dnsNames: names.get(name) },
          },
        });
      }),
    );
    // Change a few earlier ones, so some re-issuances are in flight too.
    for (let i = 0; i < 3 && round > 0; i++) {
      const name = `k${Math.floor(random() * (created - batch.length))}`;
      const current = (await custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: 'kills',
        plural: Plural.Certificate,
        name,
      })) as Certificate;
      const dnsNames = [`${name}.example.com`, `r${round}.${name}.example.com`];
      names.set(name, dnsNames);
      await custom.replaceNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: 'kills',
        plural: Plural.Certificate,
        name,
        body: { ...current, spec: { ...current.spec, dnsNames } },
      });
    }
    await new Promise((r) => setTimeout(r, 100 + random() * 900));
    operator.child.kill('SIGKILL');
    await operator.exited;
    await creating;
    operator = await spawnOperator(cp.kubeconfig, args);
  }
  try {
    const deadline = Date.now() + 120_000;
    let certs: Certificate[] = [];
    for (;;) {
      certs = (
        (await custom.listNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: 'kills',
          plural: Plural.Certificate,
        })) as { items: Certificate[] }
      ).items;
      const settled = certs.filter(
        (c) =>
          findCondition(c.status?.conditions, 'Ready')?.status === 'True' &&
          findCondition(c.status?.conditions, 'Ready')?.observedGeneration === c.metadata.generation,
      );
      if (settled.length === N) break;
      if (Date.now() > deadline) throw new Error(`${settled.length} of ${N} settled`);
      await new Promise((r) => setTimeout(r, 250));
    }
    const secrets = (
      await core.listNamespacedSecret({ namespace: 'kills', labelSelector: 'sigil.dev/managed=true' })
    ).items;
    // One Secret per Certificate: none orphaned, none duplicated.
    expect(secrets.map((s) => s.metadata!.name).sort()).toEqual(certs.map((c) => c.spec.secretName).sort());
    for (const s of secrets) {
      const certName = s.metadata!.annotations!['sigil.dev/certificate-name']!;
      const pair = readKeyPair(
        Buffer.from(s.data!['tls.crt']!, 'base64'),
        Buffer.from(s.data!['tls.key']!, 'base64'),
      );
      expect(pair.keyMatches).toBe(true);
      expect(
        requestMismatches(
          { dnsNames: names.get(certName), durationMs: 86_400_000, usages: undefined },
          pair.leaf,
        ),
      ).toEqual([]);
    }
  } finally {
    operator.child.kill('SIGKILL');
  }
}, 300_000);
