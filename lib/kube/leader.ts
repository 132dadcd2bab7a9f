// Leader election on a coordination.k8s.io/v1 Lease, as client-go's
// leaderelection does it: acquire when the lease is free or its holder has not
// renewed within leaseDuration; renew every retryPeriod; give up leadership if
// a renewal has not succeeded within renewDeadline; release on shutdown so a
// standby takes over at once. All writes carry the resourceVersion read, so
// two candidates can never both succeed.
import type { Logger } from 'winston';
import { isoString, rfc3339Micro } from '../time.ts';
import { type Kube, type KubeAccess, kubeFor, paths } from './client.ts';
import { isConflict, isNotFound } from './errors.ts';

/** A coordination.k8s.io/v1 Lease as JSON: times are MicroTime strings. */
interface Lease {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
  spec?: {
    holderIdentity?: string | undefined;
    leaseDurationSeconds?: number;
    acquireTime?: string | undefined;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

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
  private readonly kube: Kube;
  private readonly o: Required<Omit<LeaderElectorOptions, 'now'>> & { now: () => Date };
  private leading = false;
  private stopped = false;
  /** The acquire-or-renew round in flight, if any. */
  private ticking: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastRenew = 0;
  /** What we last saw of the lease: holder and when we first saw its current renewTime. */
  private observed: { holder: string; renewTime: string; seenAt: number } | undefined;

  constructor(kc: KubeAccess, options: LeaderElectorOptions) {
    this.kube = kubeFor(kc);
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
        const lease = await this.call<Lease>('GET', this.leasePath());
        if (lease.spec?.holderIdentity !== this.o.identity) return;
        lease.spec = {
          ...lease.spec,
          holderIdentity: undefined,
          leaseDurationSeconds: 1,
          renewTime: this.microNow(),
        };
        await this.call('PUT', this.leasePath(), lease);
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

  /**
   * One Lease request on a connection of its own, given up after half the renew deadline: a call
   * queued behind a burst or hung on a dead connection must fail before another replica may take
   * the lease (leaseDuration), so that this one steps down in time.
   */
  private call<T>(method: string, path: string, body?: unknown): Promise<T> {
    return this.kube.request<T>(method, path, body, {
      pooled: false,
      timeoutMs: Math.max(1_000, Math.floor(this.o.renewDeadlineMs / 2)),
    });
  }

  private leasePath(): string {
    return paths.leases(this.o.namespace, this.o.name);
  }

  /** Now as a MicroTime: RFC 3339 with six fractional digits, as the Lease schema asks. */
  private microNow(): string {
    return rfc3339Micro(this.o.now());
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
    let lease: Lease;
    try {
      lease = await this.call<Lease>('GET', this.leasePath());
    } catch (err) {
      if (!isNotFound(err)) throw err;
      try {
        await this.call('POST', paths.leases(this.o.namespace), {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name: this.o.name, namespace: this.o.namespace },
          spec: { ...spec, acquireTime: this.microNow(), leaseTransitions: 0 },
        });
        return true;
      } catch (createErr) {
        if (isConflict(createErr)) return false;
        throw createErr;
      }
    }
    const holder = lease.spec?.holderIdentity ?? '';
    const renewTime = lease.spec?.renewTime ? isoString(new Date(lease.spec.renewTime)) : '';
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
      await this.call('PUT', this.leasePath(), lease);
      return true;
    } catch (err) {
      if (isConflict(err)) return false;
      throw err;
    }
  }
}
