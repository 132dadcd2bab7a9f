// Leader election on a coordination.k8s.io/v1 Lease, as client-go's
// leaderelection does it: acquire when the lease is free or its holder has not
// renewed within leaseDuration; renew every retryPeriod; give up leadership if
// a renewal has not succeeded within renewDeadline; release on shutdown so a
// standby takes over at once. All writes carry the resourceVersion read, so
// two candidates can never both succeed.
import { CoordinationV1Api, type KubeConfig, type V1Lease, V1MicroTime } from '@kubernetes/client-node';
import type { Logger } from 'winston';
import { isConflict, isNotFound } from './errors.ts';

export interface LeaderElectorOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  logger: Logger;
  now?: () => Date;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
}

export class LeaderElector {
  private readonly api: CoordinationV1Api;
  private readonly o: Required<Omit<LeaderElectorOptions, 'now'>> & { now: () => Date };
  private leading = false;
  private stopped = false;
  /** The acquire-or-renew round in flight, if any. */
  private ticking: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastRenew = 0;
  /** What we last saw of the lease: holder and when we first saw its current renewTime. */
  private observed: { holder: string; renewTime: string; seenAt: number } | undefined;

  constructor(kc: KubeConfig, options: LeaderElectorOptions) {
    this.api = kc.makeApiClient(CoordinationV1Api);
    this.o = {
      leaseDurationMs: 15_000,
      renewDeadlineMs: 10_000,
      retryPeriodMs: 2_000,
      now: () => new Date(),
      ...options,
    };
  }

  isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    this.stopped = false;
    void this.tick();
  }

  /** Stops campaigning; a leader releases the lease so another replica can take over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    // A renewal in flight would land after the release and hold the lease again for its whole duration.
    await this.ticking;
    if (this.leading) this.setLeading(false);
    // Even when not leading: a round that stop() waited for may just have acquired the lease.
    for (let attempt = 1; ; attempt++) {
      try {
        const lease = await this.api.readNamespacedLease({ name: this.o.name, namespace: this.o.namespace });
        if (lease.spec?.holderIdentity !== this.o.identity) return;
        lease.spec = {
          ...lease.spec,
          holderIdentity: undefined,
          leaseDurationSeconds: 1,
          renewTime: this.microNow(),
        };
        await this.api.replaceNamespacedLease({
          name: this.o.name,
          namespace: this.o.namespace,
          body: lease,
        });
        this.o.logger.info('released leadership', { lease: `${this.o.namespace}/${this.o.name}` });
        return;
      } catch (err) {
        if (isNotFound(err)) return;
        if (isConflict(err) && attempt < 3) continue;
        this.o.logger.warn('could not release the lease; another replica takes over when it expires', {
          error: (err as Error).message,
        });
        return;
      }
    }
  }

  private microNow(): V1MicroTime {
    return new V1MicroTime(this.o.now().getTime());
  }

  private setLeading(value: boolean) {
    if (this.leading === value) return;
    this.leading = value;
    if (value) {
      this.o.logger.info('became leader', {
        lease: `${this.o.namespace}/${this.o.name}`,
        identity: this.o.identity,
      });
      this.o.onStartedLeading();
    } else {
      this.o.logger.warn('lost leadership', {
        lease: `${this.o.namespace}/${this.o.name}`,
        identity: this.o.identity,
      });
      this.o.onStoppedLeading();
    }
  }

  private schedule(delayMs: number) {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), delayMs);
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    this.ticking = this.campaign();
    await this.ticking;
    this.ticking = undefined;
    // Retry sooner while not leading so a released lease is picked up fast.
    this.schedule(this.leading ? this.o.retryPeriodMs : Math.max(250, this.o.retryPeriodMs / 2));
  }

  /** One round: acquire or renew, and step down once renewals have failed past the deadline. Never throws. */
  private async campaign(): Promise<void> {
    try {
      const acquired = await this.tryAcquireOrRenew();
      if (acquired) this.lastRenew = Date.now();
      if (acquired && !this.stopped) this.setLeading(true);
      else if (this.leading) this.setLeading(false);
    } catch (err) {
      this.o.logger.warn('lease update failed', { error: (err as Error).message });
      if (this.leading && Date.now() - this.lastRenew > this.o.renewDeadlineMs) this.setLeading(false);
    }
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const now = this.o.now();
    const spec = {
      holderIdentity: this.o.identity,
      leaseDurationSeconds: Math.ceil(this.o.leaseDurationMs / 1000),
      renewTime: this.microNow(),
    };
    let lease: V1Lease;
    try {
      lease = await this.api.readNamespacedLease({ name: this.o.name, namespace: this.o.namespace });
    } catch (err) {
      if (!isNotFound(err)) throw err;
      try {
        await this.api.createNamespacedLease({
          namespace: this.o.namespace,
          body: {
            metadata: { name: this.o.name, namespace: this.o.namespace },
            spec: { ...spec, acquireTime: this.microNow(), leaseTransitions: 0 },
          },
        });
        return true;
      } catch (createErr) {
        if (isConflict(createErr)) return false;
        throw createErr;
      }
    }
    const holder = lease.spec?.holderIdentity ?? '';
    const renewTime = lease.spec?.renewTime
      ? new Date(lease.spec.renewTime as unknown as string).toISOString()
      : '';
    if (holder !== this.o.identity && holder !== '') {
      // Judge expiry by our own clock: when did we first see this renewTime?
      if (!this.observed || this.observed.holder !== holder || this.observed.renewTime !== renewTime) {
        this.observed = { holder, renewTime, seenAt: now.getTime() };
      }
      const duration = (lease.spec?.leaseDurationSeconds ?? 15) * 1000;
      if (now.getTime() - this.observed.seenAt < duration) return false;
    }
    const transitions = lease.spec?.leaseTransitions ?? 0;
    lease.spec = {
      ...lease.spec,
      ...spec,
      acquireTime: holder === this.o.identity ? lease.spec?.acquireTime : this.microNow(),
      leaseTransitions: holder === this.o.identity ? transitions : transitions + 1,
    };
    try {
      await this.api.replaceNamespacedLease({ name: this.o.name, namespace: this.o.namespace, body: lease });
      return true;
    } catch (err) {
      if (isConflict(err)) return false;
      throw err;
    }
  }
}
