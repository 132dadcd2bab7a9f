// Leader election against the real API server: a leader stopped in the middle
// of a renewal still leaves the Lease free for the next replica.
import { CoordinationV1Api, type KubeConfig } from '@kubernetes/client-node';
import { LeaderElector } from '../lib/kube/leader.ts';
import { silentLogger } from '../lib/log.ts';
import { createTestNamespace, eventually, testKubeConfig } from './support/kube.ts';

const kc: KubeConfig = testKubeConfig();
const leases = kc.makeApiClient(CoordinationV1Api);

it('releases the lease on stop even when a renewal is in flight', async () => {
  const ns = await createTestNamespace(kc, 'leader');
  for (let round = 0; round < 10; round++) {
    let leading = false;
    const elector = new LeaderElector(kc, {
      namespace: ns,
      name: 'race',
      identity: `candidate-${round}`,
      // Renewing all the time, so stop() almost always meets a renewal on the wire.
      retryPeriodMs: 1,
      leaseDurationMs: 15_000,
      logger: silentLogger(),
      onStartedLeading: () => {
        leading = true;
      },
      onStoppedLeading: () => {
        leading = false;
      },
    });
    elector.start();
    await eventually(`candidate ${round} to lead`, async () => (leading ? true : undefined));
    // Let a few renewals go by, then stop at an arbitrary point in one.
    await new Promise((r) => setTimeout(r, 20 + round * 7));
    await elector.stop();
    expect(leading).toBe(false);
    const lease = await leases.readNamespacedLease({ name: 'race', namespace: ns });
    expect(lease.spec?.holderIdentity ?? '').toBe('');
  }
});
