import type { CARef, IssuerStatus } from '../../lib/api/types.ts';
import { createSelfSignedCA, loadCertificateAuthority } from '../../lib/pki/ca.ts';
import {
  automaticRotationDue,
  bundleAnchors,
  bundlePem,
  caRef,
  decideRotation,
  ReissueSlots,
  type RotationDecision,
  type RotationInput,
  rotationDelay,
} from './rotation.ts';

const T0 = new Date('2026-06-01T00:00:00Z');
const MINUTE = 60_000;

async function ca(name: string, secretName: string): Promise<CARef> {
  const g = await createSelfSignedCA({
    commonName: name,
    notBefore: new Date(T0.getTime() - 3_600_000),
    notAfter: new Date(T0.getTime() + 365 * 86_400_000),
  });
  return caRef(secretName, loadCertificateAuthority(g.certPem, g.keyPem, T0));
}

let oldCa: CARef;
let newCa: CARef;
beforeAll(async () => {
  oldCa = await ca('old root', 'ca-old');
  newCa = await ca('new root', 'ca-new');
});

/** What the operator would observe: which bundle every object holds, and where the leaves are. */
interface World {
  written: string[];
  onOld: number;
  onNew: number;
  synced: boolean;
  /** Pod certificates (kubelet path) on the old CA, refreshed by their kubelets by `refreshedBy`. */
  refreshing?: number;
  refreshedBy?: Date;
}

function input(status: IssuerStatus | undefined, desired: CARef, world: World, now: Date): RotationInput {
  return {
    now,
    status,
    desired,
    current:
      status?.secretName === oldCa.secretName
        ? oldCa
        : status?.secretName === newCa.secretName
          ? newCa
          : undefined,
    propagationMs: 2 * MINUTE,
    retireNow: false,
    trigger: 'SecretChanged',
    canSign: () => true,
    observe: {
      synced: world.synced,
      bundleRemaining: (anchors) => (anchors.join() === world.written.join() ? 0 : 1),
      bundleProgress: () => 'progress',
      leaves: (from) =>
        from.fingerprint === oldCa.fingerprint
          ? {
              onOld: world.onOld,
              onNew: world.onNew,
              refreshing: world.refreshing,
              refreshedBy: world.refreshedBy,
            }
          : { onOld: world.onNew, onNew: world.onOld },
    },
  };
}

/** The status the controller writes after a decision. */
function statusAfter(d: RotationDecision): IssuerStatus {
  return {
    fingerprint: d.signing.fingerprint,
    secretName: d.signing.secretName,
    bundle: bundleAnchors(d.bundle),
    ...(d.rotation ? { rotation: d.rotation } : {}),
    ...(d.lastRotation ? { lastRotation: d.lastRotation } : {}),
  };
}

const steady = (ref: CARef): IssuerStatus => ({
  fingerprint: ref.fingerprint,
  secretName: ref.secretName,
  bundle: [ref.fingerprint],
});

describe('decideRotation', () => {
  it('should sign with the CA the spec names and trust only it when nothing rotates', () => {
    const world = { written: [], onOld: 0, onNew: 0, synced: true };
    for (const status of [undefined, steady(oldCa)]) {
      const d = decideRotation(input(status, oldCa, world, T0));
      expect({
        signing: d.signing.fingerprint,
        bundle: bundleAnchors(d.bundle),
        rotation: d.rotation,
        events: d.events,
      }).toEqual({
        signing: oldCa.fingerprint,
        bundle: [oldCa.fingerprint],
        rotation: undefined,
        events: [],
      });
    }
  });

  it('should run Prepare, Activate and Retire in order, never changing the bundle and the signing CA in one step', () => {
    const world: World = { written: [oldCa.fingerprint], onOld: 3, onNew: 0, synced: true };
    let status: IssuerStatus = steady(oldCa);
    let now = T0;
    const trace: string[] = [];
    let last = { signing: oldCa.fingerprint, bundle: [oldCa.fingerprint].join() };
    for (let step = 0; step < 200; step++) {
      const d = decideRotation(input(status, newCa, world, now));
      const next = { signing: d.signing.fingerprint, bundle: bundleAnchors(d.bundle).join() };
      expect(next.signing !== last.signing && next.bundle !== last.bundle).toBe(false);
      last = next;
      const phase = d.rotation?.phase ?? 'Done';
      if (trace[trace.length - 1] !== phase) trace.push(phase);
      status = statusAfter(d);
      if (!d.rotation && d.lastRotation) break;
      // The world follows a few seconds later: bundles get written, then leaves move once the new CA signs.
      now = new Date(now.getTime() + 5_000);
      world.written = bundleAnchors(d.bundle);
      if (d.signing.fingerprint === newCa.fingerprint && world.onOld > 0) {
        world.onOld--;
        world.onNew++;
      }
    }
    expect(trace).toEqual(['Prepare', 'Activate', 'Retire', 'Done']);
    expect(status).toMatchObject({
      fingerprint: newCa.fingerprint,
      secretName: 'ca-new',
      bundle: [newCa.fingerprint],
      lastRotation: { from: oldCa.fingerprint, to: newCa.fingerprint, trigger: 'SecretChanged' },
    });
    // Two propagation delays at least: Prepare's and Activate's.
    expect(
      Date.parse(status.lastRotation!.completedAt) - Date.parse(status.lastRotation!.startedAt),
    ).toBeGreaterThanOrEqual(4 * MINUTE);
  });

  it('should keep the old CA signing in Prepare until the bundle is written everywhere and the propagation delay has passed', () => {
    const world: World = { written: [oldCa.fingerprint], onOld: 1, onNew: 0, synced: true };
    const d1 = decideRotation(input(steady(oldCa), newCa, world, T0));
    expect(d1.rotation).toMatchObject({
      phase: 'Prepare',
      waitingFor: expect.stringContaining('to be written'),
    });
    expect(d1.signing.fingerprint).toBe(oldCa.fingerprint);
    expect(bundleAnchors(d1.bundle)).toEqual([newCa.fingerprint, oldCa.fingerprint]);
    expect(d1.events.map((e) => e.reason)).toEqual(['RotationStarted']);
    world.written = bundleAnchors(d1.bundle);
    const d2 = decideRotation(input(statusAfter(d1), newCa, world, new Date(T0.getTime() + 1000)));
    expect(d2.rotation).toMatchObject({
      phase: 'Prepare',
      waitingFor: expect.stringContaining('left of the 2m'),
    });
    expect(d2.recheckMs).toBe(2 * MINUTE);
    const d3 = decideRotation(
      input(statusAfter(d2), newCa, world, new Date(T0.getTime() + 1000 + 2 * MINUTE)),
    );
    expect(d3.rotation?.phase).toBe('Activate');
    expect(d3.signing.fingerprint).toBe(newCa.fingerprint);
  });

  it('should not advance before every Certificate has been looked at once', () => {
    const world: World = { written: [], onOld: 0, onNew: 0, synced: false };
    const d1 = decideRotation(input(steady(oldCa), newCa, world, T0));
    // Nothing observed is trusted: with nothing indexed yet, "no leaf on the old CA" would be a lie.
    const d2 = decideRotation(input(statusAfter(d1), newCa, world, new Date(T0.getTime() + 10 * MINUTE)));
    expect(d2.rotation).toMatchObject({ phase: 'Prepare' });
    expect(d2.rotation?.bundleWrittenAt).toBeUndefined();
    expect(d2.recheckMs).toBe(1000);
  });

  it('should roll back from Prepare by retiring the new CA, the old one never having stopped signing', () => {
    const world: World = { written: [], onOld: 2, onNew: 0, synced: true };
    const d1 = decideRotation(input(steady(oldCa), newCa, world, T0));
    const d2 = decideRotation(input(statusAfter(d1), oldCa, world, new Date(T0.getTime() + 1000)));
    expect(d2.rotation).toMatchObject({
      phase: 'Retire',
      trigger: 'Rollback',
      from: { fingerprint: newCa.fingerprint },
      to: { fingerprint: oldCa.fingerprint },
    });
    expect(d2.signing.fingerprint).toBe(oldCa.fingerprint);
    expect(bundleAnchors(d2.bundle)).toEqual([oldCa.fingerprint]);
    expect(d2.events.map((e) => e.reason)).toEqual(['RotationRolledBack']);
  });

  it('should roll back from Activate by signing with the old CA again while both stay trusted', () => {
    const world: World = {
      written: [newCa.fingerprint, oldCa.fingerprint],
      onOld: 2,
      onNew: 0,
      synced: true,
    };
    const start = decideRotation(input(steady(oldCa), newCa, world, T0));
    const activated = decideRotation(
      input(statusAfter(start), newCa, world, new Date(T0.getTime() + 3 * MINUTE)),
    );
    expect(activated.rotation?.phase).toBe('Activate');
    const back = decideRotation(
      input(statusAfter(activated), oldCa, world, new Date(T0.getTime() + 4 * MINUTE)),
    );
    expect(back.rotation).toMatchObject({
      phase: 'Activate',
      trigger: 'Rollback',
      to: { fingerprint: oldCa.fingerprint },
    });
    expect(back.signing.fingerprint).toBe(oldCa.fingerprint);
    expect(bundleAnchors(back.bundle).sort()).toEqual([newCa.fingerprint, oldCa.fingerprint].sort());
  });

  it('should retire the old CA at once when asked, saying handshakes will fail', () => {
    const world: World = { written: [], onOld: 5, onNew: 0, synced: true };
    const d1 = decideRotation(input(steady(oldCa), newCa, world, T0));
    const d2 = decideRotation({
      ...input(statusAfter(d1), newCa, world, new Date(T0.getTime() + 1000)),
      retireNow: true,
    });
    expect(d2.rotation?.phase).toBe('Retire');
    expect(d2.signing.fingerprint).toBe(newCa.fingerprint);
    expect(bundleAnchors(d2.bundle)).toEqual([newCa.fingerprint]);
    expect(d2.events).toEqual([
      expect.objectContaining({
        type: 'Warning',
        reason: 'RotationForced',
        message: expect.stringContaining('fail their handshakes'),
      }),
    ]);
  });

  it('should wait in Activate while leaves remain on the old CA, then for them to reach the pods', () => {
    const world: World = {
      written: [newCa.fingerprint, oldCa.fingerprint],
      onOld: 4,
      onNew: 1,
      synced: true,
    };
    const start = decideRotation(input(steady(oldCa), newCa, world, T0));
    let status = statusAfter(
      decideRotation(input(statusAfter(start), newCa, world, new Date(T0.getTime() + 3 * MINUTE))),
    );
    let d = decideRotation(input(status, newCa, world, new Date(T0.getTime() + 4 * MINUTE)));
    expect(d.rotation).toMatchObject({
      phase: 'Activate',
      leavesOnOld: 4,
      leavesOnNew: 1,
      waitingFor: expect.stringContaining('4 leaves still signed by the old CA'),
    });
    world.onOld = 0;
    world.onNew = 5;
    status = statusAfter(d);
    d = decideRotation(input(status, newCa, world, new Date(T0.getTime() + 5 * MINUTE)));
    expect(d.rotation).toMatchObject({
      phase: 'Activate',
      leavesMovedAt: new Date(T0.getTime() + 5 * MINUTE).toISOString(),
    });
    d = decideRotation(input(statusAfter(d), newCa, world, new Date(T0.getTime() + 7 * MINUTE)));
    expect(d.rotation?.phase).toBe('Retire');
  });

  it('should switch at once, with a Warning saying how to rotate, when the CA Secret was overwritten in place', () => {
    const world: World = { written: [], onOld: 0, onNew: 0, synced: true };
    const overwritten = { ...newCa, secretName: oldCa.secretName };
    const d = decideRotation({ ...input(steady(oldCa), overwritten, world, T0), current: undefined });
    expect(d.rotation).toBeUndefined();
    expect(d.signing.fingerprint).toBe(newCa.fingerprint);
    expect(d.events).toEqual([
      expect.objectContaining({
        type: 'Warning',
        reason: 'CAReplaced',
        message: expect.stringContaining('point spec.ca.secretName at it'),
      }),
    ]);
  });

  it('should finish the rotation in progress before starting one to a third CA the spec names meanwhile', async () => {
    const third = await ca('third root', 'ca-third');
    const world: World = { written: [], onOld: 1, onNew: 0, synced: true };
    const d1 = decideRotation(input(steady(oldCa), newCa, world, T0));
    const d2 = decideRotation(input(statusAfter(d1), third, world, new Date(T0.getTime() + 1000)));
    expect(d2.rotation).toMatchObject({
      phase: 'Prepare',
      to: { fingerprint: newCa.fingerprint },
      waitingFor: expect.stringContaining('then rotates to ca-third'),
    });
  });
});

describe('decideRotation when something is stuck', () => {
  it('should take one phase per look even with no propagation delay, so the bundle and the signing CA never change together', () => {
    const world: World = { written: [], onOld: 0, onNew: 0, synced: true };
    let status: IssuerStatus = steady(oldCa);
    const seen: [string, string][] = [];
    for (let i = 0; i < 10; i++) {
      const d = decideRotation({
        ...input(status, newCa, world, new Date(T0.getTime() + i * 1000)),
        propagationMs: 0,
      });
      world.written = bundleAnchors(d.bundle);
      seen.push([
        d.signing.secretName,
        bundleAnchors(d.bundle).length === 2 ? 'both' : d.bundle[0]!.secretName,
      ]);
      status = statusAfter(d);
      if (!d.rotation) break;
    }
    for (let i = 1; i < seen.length; i++)
      expect(seen[i]![0] !== seen[i - 1]![0] && seen[i]![1] !== seen[i - 1]![1]).toBe(false);
    expect(seen[seen.length - 1]).toEqual(['ca-new', 'ca-new']);
  });

  it('should keep the old CA trusted until every pod certificate on it is refreshed by its kubelet, for as long as that takes', () => {
    const refreshedBy = new Date(T0.getTime() + 16 * 60 * MINUTE);
    const world: World = {
      written: [newCa.fingerprint, oldCa.fingerprint],
      onOld: 0,
      onNew: 2,
      synced: true,
      refreshing: 3,
      refreshedBy,
    };
    let status = statusAfter(decideRotation(input(steady(oldCa), newCa, world, T0)));
    status = statusAfter(decideRotation(input(status, newCa, world, new Date(T0.getTime() + 3 * MINUTE))));
    expect(status.rotation?.phase).toBe('Activate');
    // Hours without a change: no leaf can be re-issued early, and their refresh time bounds the wait,
    // so it is not a stall.
    for (let h = 1; h < 16; h++) {
      const d = decideRotation(input(status, newCa, world, new Date(T0.getTime() + h * 60 * MINUTE)));
      expect(d.events).toEqual([]);
      expect(d.rotation).toMatchObject({
        phase: 'Activate',
        waitingFor: `3 pod certificates signed by the old CA to be refreshed by their kubelets (the last by ${refreshedBy.toISOString()})`,
      });
      status = statusAfter(d);
    }
    world.refreshing = 0;
    const t = T0.getTime() + 16 * 60 * MINUTE;
    let d = decideRotation(input(status, newCa, world, new Date(t)));
    expect(d.rotation?.phase).toBe('Activate');
    d = decideRotation(input(statusAfter(d), newCa, world, new Date(t + 2 * MINUTE)));
    expect(d.rotation?.phase).toBe('Retire');
  });

  it('should go on with a Warning naming what is behind when a wait makes no progress for the stall time', () => {
    const world: World = { written: [], onOld: 1, onNew: 0, synced: true };
    const d1 = decideRotation(input(steady(oldCa), newCa, world, T0));
    // One bundle object never takes the new bundle (an immutable Secret, say).
    const d2 = decideRotation(input(statusAfter(d1), newCa, world, new Date(T0.getTime() + 1000)));
    expect(d2.rotation?.phase).toBe('Prepare');
    const late = new Date(T0.getTime() + 1000 + 20 * MINUTE);
    const d3 = decideRotation(input(statusAfter(d2), newCa, world, late));
    expect(d3.events.map((e) => [e.type, e.reason])).toEqual([['Warning', 'RotationStalled']]);
    expect(d3.events[0]!.message).toContain('progress');
    expect(d3.rotation?.bundleWrittenAt).toBe(late.toISOString());
  });

  it('should not call a wait stalled while it is making progress', () => {
    const world: World = {
      written: [newCa.fingerprint, oldCa.fingerprint],
      onOld: 30,
      onNew: 0,
      synced: true,
    };
    let status = statusAfter(decideRotation(input(steady(oldCa), newCa, world, T0)));
    status = statusAfter(decideRotation(input(status, newCa, world, new Date(T0.getTime() + 3 * MINUTE))));
    expect(status.rotation?.phase).toBe('Activate');
    for (let m = 4; m < 30; m++) {
      world.onOld--;
      const d = decideRotation(input(status, newCa, world, new Date(T0.getTime() + m * MINUTE)));
      expect(d.events.filter((e) => e.reason === 'RotationStalled')).toEqual([]);
      status = statusAfter(d);
    }
  });

  it('should activate the new CA early, with a Warning, when the old one can no longer sign in Prepare', () => {
    const world: World = { written: [], onOld: 2, onNew: 0, synced: true };
    const d1 = decideRotation(input(steady(oldCa), newCa, world, T0));
    const d2 = decideRotation({
      ...input(statusAfter(d1), newCa, world, new Date(T0.getTime() + 1000)),
      canSign: (fp) => fp === newCa.fingerprint,
    });
    expect(d2.rotation?.phase).toBe('Activate');
    expect(d2.signing.fingerprint).toBe(newCa.fingerprint);
    expect(d2.events.map((e) => e.reason)).toEqual(['RotationOldCAGone']);
  });

  it('should finish Retire at once when retire-now is asked again while bundles are still being rewritten', () => {
    const world: World = { written: [], onOld: 2, onNew: 0, synced: true };
    const d1 = decideRotation(input(steady(oldCa), newCa, world, T0));
    const d2 = decideRotation({
      ...input(statusAfter(d1), newCa, world, new Date(T0.getTime() + 1000)),
      retireNow: true,
    });
    expect(d2.rotation?.phase).toBe('Retire');
    const d3 = decideRotation({
      ...input(statusAfter(d2), newCa, world, new Date(T0.getTime() + 2000)),
      retireNow: true,
    });
    expect(d3.rotation).toBeUndefined();
    expect(d3.lastRotation?.to).toBe(newCa.fingerprint);
  });
});

describe('ReissueSlots', () => {
  it('should hand out one slot per 1/rate seconds and let each key through at its own slot only', () => {
    const slots = new ReissueSlots(10);
    const waits = ['a', 'b', 'c', 'd'].map((k) => slots.claim(k, 1000));
    expect(waits).toEqual([0, 100, 200, 300]);
    // Asking again before its slot says how long is left; at the slot it goes, once.
    expect(slots.claim('c', 1100)).toBe(100);
    expect(slots.claim('c', 1200)).toBe(0);
    expect(slots.waiting).toBe(2);
    expect(slots.claim('e', 1250)).toBe(150);
  });
});

describe('bundles and triggers', () => {
  it('should list each trust anchor once, two CAs under one root sharing it', () => {
    const sameRoot = { ...newCa, fingerprint: 'f'.repeat(64), trustAnchor: oldCa.trustAnchor };
    expect(bundlePem([oldCa, sameRoot]).match(/BEGIN CERTIFICATE/g)).toHaveLength(1);
    expect(bundlePem([newCa, oldCa]).match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
  });

  it('should prepare the successor of a generated CA once the given share of its life has passed', () => {
    const nb = new Date('2026-01-01T00:00:00Z');
    const na = new Date('2026-01-11T00:00:00Z');
    expect(automaticRotationDue(nb, na, new Date('2026-01-05T23:59:00Z'))).toBe(false);
    expect(automaticRotationDue(nb, na, new Date('2026-01-06T00:00:00Z'))).toBe(true);
    expect(automaticRotationDue(nb, na, new Date('2026-01-03T00:00:00Z'), 20)).toBe(true);
  });

  it('should read the propagation delay as a Go duration, 2m when unset', () => {
    expect([rotationDelay(undefined), rotationDelay('15s'), rotationDelay('1m30s')]).toEqual([
      120_000, 15_000, 90_000,
    ]);
  });
});
