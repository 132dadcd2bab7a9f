// The CA rotation state machine of an issuer, as a pure function: from what the
// issuer's status says (the persisted state), the CA its spec points at and
// what the operator observes (bundles written, leaves left on the old CA), it
// decides which CA signs, which CAs the trust bundle holds, and the next
// status. It never changes the bundle and the signing CA in one step, except
// when asked to retire at once (RetireNow).
//
//   Prepare   bundle {old, new}, old signs   waits: every bundle object written, then propagationDelay
//   Activate  bundle {old, new}, new signs   waits: no leaf left on old, then propagationDelay
//   Retire    bundle {new},      new signs   waits: every bundle object written
//   (done)    lastRotation recorded
import {
  type CARef,
  type IssuerStatus,
  RotationPhase,
  type RotationPhaseName,
  type RotationStatus,
} from '../../lib/api/types.ts';
import type { CertificateAuthority } from '../../lib/pki/ca.ts';
import { formatDuration, parseDuration } from '../../lib/pki/renewal.ts';
import { isoString } from '../../lib/time.ts';

export interface RotationObservations {
  /** False until the operator has looked at every Certificate once: until then nothing is known to be written. */
  synced: boolean;
  /** How many bundle objects of the issuer (trust-bundle ConfigMaps, Secrets' ca.crt) do not hold these anchors yet. */
  bundleRemaining: (anchors: readonly string[]) => number;
  /**
   * Leaves of the issuer signed by the rotation's old CA and by its new one. `refreshing` counts
   * pod certificates (PodCertificateRequests) still on the old CA: nothing can re-issue them early,
   * the kubelet replaces them at the refresh time they carry, the latest of which is `refreshedBy`.
   * Their wait is bounded by that time, so it does not stall.
   */
  leaves: (
    from: CARef,
    to: CARef,
  ) => { onOld: number; onNew: number; refreshing?: number; refreshedBy?: Date | undefined };
  /** A short account of where the bundle is not written yet, for waitingFor. */
  bundleProgress: (anchors: readonly string[]) => string;
}

export interface RotationInput {
  now: Date;
  status: IssuerStatus | undefined;
  /** The CA spec.ca.secretName holds (valid and able to sign). */
  desired: CARef;
  /**
   * The CA the status says signs (status.secretName), when it is another Secret and still valid:
   * the old CA of a rotation that starts now. Undefined when it is gone or expired.
   */
  current: CARef | undefined;
  propagationMs: number;
  /** The issuer carries a RetireNow request not handled yet. */
  retireNow: boolean;
  /** Why a rotation that starts now starts (Automatic, Requested, SecretChanged). */
  trigger: string;
  /** Whether the CA with this fingerprint can sign now (its Secret is there, valid). */
  canSign: (fingerprint: string) => boolean;
  /**
   * A wait that makes no progress for this long (nothing more written, no leaf moved) stops holding the
   * rotation: it goes on, with a Warning naming what is behind. Default: 10 propagation delays, at least 5 minutes.
   */
  stallMs?: number | undefined;
  observe: RotationObservations;
}

export interface RotationEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface RotationDecision {
  /** The CA that signs now. */
  signing: CARef;
  /** The CAs whose trust anchors the bundle holds, in order (the one that signs first). */
  bundle: CARef[];
  rotation: RotationStatus | undefined;
  lastRotation: IssuerStatus['lastRotation'];
  events: RotationEvent[];
  /** Look again after this long (a wait in progress), or undefined. */
  recheckMs: number | undefined;
}

const short = (ref: CARef) => `${ref.secretName} (${ref.fingerprint.slice(0, 16)})`;

/** The anchors a bundle holds: the trust anchors' PEM, without repeats (two CAs under one root share it). */
export function bundlePem(bundle: readonly CARef[]): string {
  return `${[...new Set(bundle.map((r) => r.trustAnchor.trim()))].join('\n')}\n`;
}

/** The fingerprints naming a bundle (as status.bundle lists them). */
export function bundleAnchors(bundle: readonly CARef[]): string[] {
  return [...new Set(bundle.map((r) => r.fingerprint))];
}

function phaseBundle(phase: RotationPhaseName, from: CARef, to: CARef): CARef[] {
  return phase === RotationPhase.Retire ? [to] : [to, from];
}

function start(
  phase: RotationPhaseName,
  from: CARef,
  to: CARef,
  now: Date,
  trigger: string,
  startedAt = isoString(now),
): RotationStatus {
  return { phase, since: isoString(now), startedAt, waitingFor: '', from, to, trigger };
}

export function decideRotation(i: RotationInput): RotationDecision {
  const events: RotationEvent[] = [];
  const nowMs = i.now.getTime();
  const prev = i.status?.rotation;
  const last = i.status?.lastRotation;
  let rotation: RotationStatus | undefined = prev ? { ...prev } : undefined;
  /** No rotation in progress: `ref` signs and is the whole bundle. */
  const settled = (ref: CARef, lastRotation: IssuerStatus['lastRotation']): RotationDecision => ({
    signing: ref,
    bundle: [ref],
    rotation: undefined,
    lastRotation,
    events,
    recheckMs: undefined,
  });

  // No rotation in progress: steady, or one starts.
  if (!rotation) {
    const signingFp = i.status?.fingerprint;
    if (!signingFp || signingFp === i.desired.fingerprint) {
      return settled(i.desired, last);
    }
    if (!i.current || i.current.fingerprint !== signingFp || i.current.secretName === i.desired.secretName) {
      // The old CA is gone (its Secret replaced in place, deleted, or expired): nothing can keep signing
      // with it, so the new one takes over at once.
      events.push({
        type: 'Warning',
        reason: 'CAReplaced',
        message: `The CA changed from ${signingFp.slice(0, 16)} to ${short(i.desired)} without a rotation: ${
          i.current?.secretName === i.desired.secretName
            ? `Secret ${i.desired.secretName} was overwritten in place`
            : 'the old CA Secret is gone or expired'
        }, so leaves are re-issued from the new CA at once and peers that trust only the old CA refuse them until their bundle updates. To rotate without failed handshakes, put the new CA in a new Secret and point spec.ca.secretName at it`,
      });
      return settled(i.desired, last);
    }
    rotation = start(RotationPhase.Prepare, i.current, i.desired, i.now, i.trigger);
    events.push({
      type: 'Normal',
      reason: 'RotationStarted',
      message: `Rotating the CA from ${short(i.current)} to ${short(i.desired)} (${i.trigger}): the new CA joins every trust bundle first; the old one keeps signing until the bundle has reached every pod`,
    });
  } else if (i.retireNow) {
    if (rotation.phase === RotationPhase.Retire) {
      // Asked again while the bundles are still being rewritten: stop waiting for them.
      events.push({
        type: 'Warning',
        reason: 'RotationForced',
        message: `Finishing the retirement of CA ${short(rotation.from)} now, as requested by the sigil.dev/retire-now annotation, without waiting for every bundle to be rewritten`,
      });
      rotation = { ...rotation, bundleWrittenAt: rotation.bundleWrittenAt ?? isoString(i.now) };
    } else {
      events.push({
        type: 'Warning',
        reason: 'RotationForced',
        message: `Retiring CA ${short(rotation.from)} now, as requested by the sigil.dev/retire-now annotation, in phase ${rotation.phase}: peers still holding one of its leaves fail their handshakes until they get a new one`,
      });
      rotation = start(
        RotationPhase.Retire,
        rotation.from,
        rotation.to,
        i.now,
        rotation.trigger,
        rotation.startedAt,
      );
    }
  } else if (i.desired.fingerprint === rotation.from.fingerprint) {
    // Rolled back: spec points at the old CA again, which every bundle still trusts.
    const back = rotation.phase === RotationPhase.Prepare ? RotationPhase.Retire : RotationPhase.Activate;
    if (rotation.phase === RotationPhase.Retire) {
      // The old CA is leaving the bundles already: going back to it is a rotation of its own.
      rotation = start(RotationPhase.Prepare, rotation.to, rotation.from, i.now, 'Rollback');
    } else {
      rotation = start(back, rotation.to, rotation.from, i.now, 'Rollback');
    }
    events.push({
      type: 'Normal',
      reason: 'RotationRolledBack',
      message: `spec.ca.secretName points at ${short(rotation.to)} again: rolling back (${rotation.phase} with ${short(rotation.to)} as the CA to keep)`,
    });
  }

  // Advance through the phases while their waits are over.
  // The old CA's Secret went away before it stopped signing: the new one, already in every bundle
  // written so far, has to sign from now on.
  if (
    rotation?.phase === RotationPhase.Prepare &&
    !i.canSign(rotation.from.fingerprint) &&
    i.canSign(rotation.to.fingerprint)
  ) {
    events.push({
      type: 'Warning',
      reason: 'RotationOldCAGone',
      message: `The old CA ${short(rotation.from)} can no longer sign (its Secret is gone or changed) before the new bundle has reached every pod: activating ${short(rotation.to)} early. Peers that do not hold the new bundle yet refuse the leaves it signs until they do`,
    });
    rotation = start(
      RotationPhase.Activate,
      rotation.from,
      rotation.to,
      i.now,
      rotation.trigger,
      rotation.startedAt,
    );
  }

  // One step per look: each phase's bundle and signing CA are published before the next phase begins.
  let recheckMs: number | undefined;
  if (!i.observe.synced) recheckMs = 1000;
  const stallMs = i.stallMs ?? Math.max(10 * i.propagationMs, 5 * 60_000);
  const advance = (): RotationDecision | undefined => {
    if (!rotation || !i.observe.synced) return undefined;
    const r: RotationStatus = rotation;
    const bundle = phaseBundle(r.phase, r.from, r.to);
    const anchors = bundleAnchors(bundle);
    const remaining = i.observe.bundleRemaining(anchors);
    if (remaining === 0 && !r.bundleWrittenAt) r.bundleWrittenAt = isoString(i.now);
    const leaves = i.observe.leaves(r.from, r.to);
    r.leavesOnOld = leaves.onOld;
    r.leavesOnNew = leaves.onNew;
    /** Whether a wait on `count` things has made no progress for stallMs; progress resets the clock. */
    const stalled = (count: number): boolean => {
      if (r.remaining !== count || !r.progressAt) {
        r.remaining = count;
        r.progressAt = isoString(i.now);
      }
      return nowMs - Date.parse(r.progressAt) >= stallMs;
    };
    const stallWarning = (what: string) =>
      events.push({
        type: 'Warning',
        reason: 'RotationStalled',
        message: `No progress for ${formatDuration(stallMs)} waiting for ${what}; going on without them. Pods using what is behind may fail their handshakes: fix what keeps Sigil from writing there (an immutable Secret or ConfigMap, a quota, a Certificate that cannot be issued)`,
      });
    const later =
      i.desired.fingerprint !== r.to.fingerprint && i.desired.fingerprint !== r.from.fingerprint
        ? `; then rotates to ${short(i.desired)}, which spec.ca.secretName names now`
        : '';
    if (r.phase === RotationPhase.Prepare) {
      if (!r.bundleWrittenAt) {
        r.waitingFor = `the bundle with both CAs to be written: ${i.observe.bundleProgress(anchors)}${later}`;
        recheckMs = 2000;
        if (!stalled(remaining)) return undefined;
        stallWarning(r.waitingFor);
        r.bundleWrittenAt = isoString(i.now);
      }
      const due = Date.parse(r.bundleWrittenAt) + i.propagationMs;
      if (nowMs < due) {
        r.waitingFor = `the bundle with both CAs to reach every pod: ${formatDuration(due - nowMs)} left of the ${formatDuration(i.propagationMs)} propagation delay${later}`;
        recheckMs = due - nowMs;
        return undefined;
      }
      rotation = start(RotationPhase.Activate, r.from, r.to, i.now, r.trigger, r.startedAt);
      // Activate keeps Prepare's bundle: it is written already.
      rotation.bundleWrittenAt = r.bundleWrittenAt;
      rotation.leavesOnOld = leaves.onOld;
      rotation.leavesOnNew = leaves.onNew;
      rotation.waitingFor = `${leaves.onOld} leaves signed by the old CA to be re-issued`;
      events.push({
        type: 'Normal',
        reason: 'RotationActivated',
        message: `CA ${short(r.to)} signs from now on; leaves of ${short(r.from)} are re-issued early, at a bounded rate`,
      });
      recheckMs = 0;
      return undefined;
    }
    if (r.phase === RotationPhase.Activate) {
      if (leaves.onOld > 0) {
        r.leavesMovedAt = undefined;
        r.waitingFor = `${leaves.onOld} leaves still signed by the old CA to be re-issued (${leaves.onNew} on the new one)${later}`;
        recheckMs = 2000;
        if (!stalled(leaves.onOld)) return undefined;
        stallWarning(r.waitingFor);
        r.leavesMovedAt = isoString(nowMs - i.propagationMs);
      }
      if ((leaves.refreshing ?? 0) > 0) {
        r.leavesMovedAt = undefined;
        r.waitingFor = `${leaves.refreshing} pod certificates signed by the old CA to be refreshed by their kubelets${leaves.refreshedBy ? ` (the last by ${isoString(leaves.refreshedBy)})` : ''}${later}`;
        recheckMs = 2000;
        return undefined;
      }
      if (!r.leavesMovedAt) r.leavesMovedAt = isoString(i.now);
      const due = Date.parse(r.leavesMovedAt) + i.propagationMs;
      if (nowMs < due) {
        r.waitingFor = `the new leaves to reach every pod: ${formatDuration(due - nowMs)} left of the ${formatDuration(i.propagationMs)} propagation delay${later}`;
        recheckMs = due - nowMs;
        return undefined;
      }
      rotation = start(RotationPhase.Retire, r.from, r.to, i.now, r.trigger, r.startedAt);
      rotation.leavesOnOld = leaves.onOld;
      rotation.leavesOnNew = leaves.onNew;
      rotation.waitingFor = 'the bundle without the old CA to be written';
      events.push({
        type: 'Normal',
        reason: 'RotationRetiring',
        message: `No leaf of ${short(r.from)} is left: it leaves every trust bundle`,
      });
      recheckMs = 0;
      return undefined;
    }
    // Retire.
    if (!r.bundleWrittenAt) {
      r.waitingFor = `the bundle without the old CA to be written: ${i.observe.bundleProgress(anchors)}${later}`;
      recheckMs = 2000;
      if (!stalled(remaining)) return undefined;
      stallWarning(r.waitingFor);
    }
    events.push({
      type: 'Normal',
      reason: 'RotationDone',
      message: `Rotated the CA from ${short(r.from)} to ${short(r.to)} in ${formatDuration(nowMs - Date.parse(r.startedAt))}`,
    });
    const done = {
      from: r.from.fingerprint,
      to: r.to.fingerprint,
      startedAt: r.startedAt,
      completedAt: isoString(i.now),
      trigger: r.trigger,
    };
    return settled(r.to, done);
  };
  const finished = advance();
  if (finished) return finished;
  const r = rotation!;
  return {
    signing: r.phase === RotationPhase.Prepare ? r.from : r.to,
    bundle: phaseBundle(r.phase, r.from, r.to),
    rotation: r,
    lastRotation: last,
    events,
    recheckMs,
  };
}

/** The propagation delay from the spec (Go duration), 2 minutes when unset or unreadable. */
export function rotationDelay(text: string | undefined): number {
  const ms = text ? parseDuration(text) : undefined;
  return ms === undefined ? 120_000 : ms;
}

/** True once prepareAtPercent (default 50) of a CA's lifetime has passed. */
export function automaticRotationDue(
  notBefore: Date,
  notAfter: Date,
  now: Date,
  prepareAtPercent = 50,
): boolean {
  const life = notAfter.getTime() - notBefore.getTime();
  return now.getTime() >= notBefore.getTime() + (life * Math.min(100, Math.max(1, prepareAtPercent))) / 100;
}

export function caRef(secretName: string, ca: CertificateAuthority): CARef {
  return {
    secretName,
    fingerprint: ca.facts.fingerprint,
    notAfter: isoString(ca.facts.notAfter),
    certificate: ca.certificate.pem,
    trustAnchor: ca.trustAnchorPem,
  };
}

/**
 * Spreads the early re-issues of a rotation at `perSecond`: each leaf that asks gets the next free
 * time slot and is looked at again only then, so N leaves cost N looks, not N looks a second.
 */
export class ReissueSlots {
  readonly perSecond: number;
  private next = 0;
  private readonly held = new Map<string, number>();

  constructor(perSecond: number) {
    this.perSecond = perSecond;
  }

  /** 0 when `key` may re-issue now; otherwise how long until its slot. */
  claim(key: string, nowMs: number): number {
    const mine = this.held.get(key);
    if (mine !== undefined) {
      if (mine > nowMs) return mine - nowMs;
      this.held.delete(key);
      return 0;
    }
    const slot = Math.max(nowMs, this.next);
    this.next = slot + 1000 / this.perSecond;
    if (slot <= nowMs) return 0;
    this.held.set(key, slot);
    return slot - nowMs;
  }

  get waiting(): number {
    return this.held.size;
  }
}
