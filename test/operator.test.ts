// The operator as a process: restarts re-issue nothing, and two replicas elect
// one leader that hands over when killed.
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { readKeyPair } from '../lib/pki/inspect.ts';
import { createTestNamespace, eventually, kubeconfigPath, testKubeConfig } from './support/kube.ts';
import { metricValue, type OperatorProcess, spawnOperator } from './support/process.ts';
import {
  caSecretData,
  createCertificate,
  createIssuer,
  createSecret,
  decode,
  ensureCrds,
  getCertificate,
  startTestOperator,
  waitForCertificate,
  waitForIssuer,
} from './support/sigil.ts';

const kc: KubeConfig = testKubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const issuerRef = { name: 'ca', kind: 'Issuer' as const };

async function namespaceWithIssuer(prefix: string): Promise<string> {
  await ensureCrds(kc);
  const ns = await createTestNamespace(kc, prefix);
  await createSecret(kc, ns, 'ca-key-pair', await caSecretData(`${prefix} CA`));
  await createIssuer(kc, 'Issuer', 'ca', { ca: { secretName: 'ca-key-pair' } }, ns);
  return ns;
}

async function allReady(ns: string, count: number) {
  return eventually(
    `${count} Certificates Ready in ${ns}`,
    async () => {
      const list = (await import('@kubernetes/client-node')).CustomObjectsApi;
      const custom = kc.makeApiClient(list);
      const res = (await custom.listNamespacedCustomObject({
        group: 'sigil.dev',
        version: 'v1alpha1',
        namespace: ns,
        plural: 'certificates',
      })) as {
        items: { status?: { conditions?: { type: string; status: string }[]; revision?: number } }[];
      };
      const ready = res.items.filter((c) =>
        c.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True'),
      );
      return ready.length === count ? res.items : undefined;
    },
    60_000,
  );
}

async function secretsMatch(ns: string): Promise<number> {
  const secrets = await core.listNamespacedSecret({ namespace: ns, labelSelector: 'sigil.dev/managed=true' });
  for (const s of secrets.items) {
    expect(readKeyPair(decode(s, 'tls.crt'), decode(s, 'tls.key')).keyMatches).toBe(true);
  }
  return secrets.items.length;
}

describe('operator restarts', () => {
  it('should re-issue none of 100 Ready certificates after a restart', async () => {
    const ns = await namespaceWithIssuer('restart');
    const first = await startTestOperator(kc, { watchNamespace: ns });
    await waitForIssuer(kc, 'Issuer', 'ca', { status: 'True' }, ns);
    await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        createCertificate(kc, ns, `c${i}`, {
          secretName: `c${i}-tls`,
          issuerRef,
          dnsNames: [`c${i}.example.com`],
        }),
      ),
    );
    const before = await allReady(ns, 100);
    await first.stop();

    const second = await startTestOperator(kc, { watchNamespace: ns });
    try {
      await second.whenRunning();
      await second.certificates()!.queue.idle();
      const issued = (await second.metrics.issuance.get()).values.reduce((n, v) => n + v.value, 0);
      const reconciled = (await second.metrics.reconcile.get()).values.reduce((n, v) => n + v.value, 0);
      expect(reconciled).toBeGreaterThanOrEqual(100);
      expect(issued).toBe(0);
      // Nothing changed, so nothing is written: not a Secret, not a status.
      const writes = (await second.metrics.apiRequests.get()).values.filter((v) =>
        ['create', 'update', 'patch'].includes(String(v.labels.verb)),
      );
      expect(writes.reduce((n, v) => n + v.value, 0)).toBe(0);
      const after = await allReady(ns, 100);
      expect(after.map((c) => c.status?.revision)).toEqual(before.map(() => 1));
      expect(await secretsMatch(ns)).toBe(100);
    } finally {
      await second.stop();
    }
  }, 120_000);
});

describe('leader election', () => {
  const procs: OperatorProcess[] = [];
  afterAll(() => {
    for (const p of procs) p.child.kill('SIGKILL');
  });

  it('should let only the leader write, and hand over within the lease duration when it is killed', async () => {
    const ns = await namespaceWithIssuer('leader');
    const leaseNs = await createTestNamespace(kc, 'lease');
    const args = [
      '--namespace',
      leaseNs,
      '--watch-namespace',
      ns,
      '--lease-duration',
      '4s',
      '--min-duration',
      '1m',
    ];
    procs.push(await spawnOperator(kubeconfigPath(), args), await spawnOperator(kubeconfigPath(), args));
    // Undefined until both replicas serve metrics: on a loaded machine the standby starts later.
    const leaderOf = async () => {
      const texts = await Promise.all(procs.map((p) => p.metrics().catch(() => undefined)));
      if (texts.some((t) => t === undefined)) return undefined;
      return texts.map((t) => metricValue(t!, 'sigil_leader_election_is_leader'));
    };
    const leaders = await eventually('one leader, both replicas up', async () => {
      const v = await leaderOf();
      return v && v.filter((x) => x === 1).length === 1 ? v : undefined;
    });
    const leaderIndex = leaders.indexOf(1);
    const leader = procs[leaderIndex]!;
    const standby = procs[1 - leaderIndex]!;

    for (let i = 0; i < 10; i++)
      await createCertificate(kc, ns, `l${i}`, {
        secretName: `l${i}-tls`,
        issuerRef,
        dnsNames: [`l${i}.example.com`],
      });
    await allReady(ns, 10);
    expect(metricValue(await leader.metrics(), 'sigil_issuance_total')).toBe(10);
    expect(metricValue(await standby.metrics(), 'sigil_issuance_total')).toBe(0);

    // Kill the leader mid-issuance; the standby must take over within the lease duration.
    const burst = Array.from({ length: 20 }, (_, i) =>
      createCertificate(kc, ns, `m${i}`, {
        secretName: `m${i}-tls`,
        issuerRef,
        dnsNames: [`m${i}.example.com`],
      }),
    );
    leader.child.kill('SIGKILL');
    const killedAt = Date.now();
    await Promise.all(burst);
    await eventually(
      'standby to lead',
      async () =>
        metricValue(await standby.metrics(), 'sigil_leader_election_is_leader') === 1 ? true : undefined,
      10_000,
    );
    const tookOverMs = Date.now() - killedAt;
    expect(tookOverMs).toBeLessThan(4_000 + 2_000);
    await allReady(ns, 30);
    expect(await secretsMatch(ns)).toBe(30);
    const c = await getCertificate(kc, ns, 'm0');
    expect(c.status?.revision).toBe(1);
  }, 120_000);

  it('should hand over at once when the leader is stopped with SIGTERM', async () => {
    const ns = await namespaceWithIssuer('handover');
    const leaseNs = await createTestNamespace(kc, 'lease');
    const args = ['--namespace', leaseNs, '--watch-namespace', ns, '--lease-duration', '15s'];
    const a = await spawnOperator(kubeconfigPath(), args);
    procs.push(a);
    await eventually('a to lead', async () =>
      metricValue(await a.metrics().catch(() => ''), 'sigil_leader_election_is_leader') === 1
        ? true
        : undefined,
    );
    const b = await spawnOperator(kubeconfigPath(), args);
    procs.push(b);
    await eventually('b to serve metrics', async () =>
      (await b.metrics().catch(() => '')) ? true : undefined,
    );
    a.child.kill('SIGTERM');
    const stoppedAt = Date.now();
    expect(await a.exited).toBe(0);
    await eventually(
      'b to lead',
      async () =>
        metricValue(await b.metrics(), 'sigil_leader_election_is_leader') === 1 ? true : undefined,
      15_000,
    );
    // Far sooner than the 15 s lease: the leader released it.
    expect(Date.now() - stoppedAt).toBeLessThan(5_000);
    await createCertificate(kc, ns, 'after', {
      secretName: 'after-tls',
      issuerRef,
      dnsNames: ['after.example.com'],
    });
    await waitForCertificate(kc, ns, 'after', { status: 'True' });
  }, 60_000);
});
