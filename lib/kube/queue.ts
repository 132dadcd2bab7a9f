// A work queue in the style of client-go's: keys, not objects; a key queued
// while it is being processed runs again afterwards, never twice at once;
// failures retry with per-key exponential backoff; delayed adds are timers,
// not polling. The clock and timers are injectable for tests.
//
// Ready keys are served fairly by namespace (the part of a `namespace/name`
// key before the slash): workers take one key from each namespace with work in
// turn, so one namespace queueing thousands of keys delays another's single key
// by at most one key per busy namespace, not by the whole flood.

import { TokenBucket } from './ratelimit.ts';

export interface QueueOptions {
  /** Workers processing keys in parallel. */
  concurrency: number;
  /** First retry delay after a failure. */
  baseDelayMs?: number;
  /** Longest retry delay. */
  maxDelayMs?: number;
  /** Overall rate limit on processing starts (a token bucket); 0 disables it. */
  ratePerSecond?: number;
  burst?: number;
  now?: () => number;
  onDepth?: (depth: number) => void;
  /** Time a key waited in the queue before a worker took it. */
  onLatency?: (seconds: number) => void;
}

export type Processor = (key: string) => Promise<void>;

/** Longest setTimeout Node accepts; later work is re-checked then. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** One namespace's ready keys, first in first out. */
class Lane {
  private keys: string[] = [];
  private head = 0;
  get length(): number {
    return this.keys.length - this.head;
  }
  push(key: string): void {
    this.keys.push(key);
  }
  shift(): string | undefined {
    const key = this.keys[this.head++];
    // Compact now and then instead of Array.shift's copy on every take.
    if (this.head > 1024 && this.head * 2 > this.keys.length) {
      this.keys = this.keys.slice(this.head);
      this.head = 0;
    }
    return key;
  }
}

/** The fairness unit of a key: its namespace, or '' for cluster-scoped keys. */
export function laneOf(key: string): string {
  const slash = key.indexOf('/');
  return slash < 0 ? '' : key.slice(0, slash);
}

export class WorkQueue {
  /** Ready keys by namespace; the Map's order is the round-robin order (a served lane moves to the end). */
  private readonly lanes = new Map<string, Lane>();
  private ready = 0;
  private readonly queued = new Map<string, number>();
  private readonly processing = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private active = 0;
  private shuttingDown = false;
  private readonly bucket: TokenBucket;
  private refillTimer: NodeJS.Timeout | undefined;
  private readonly now: () => number;
  private idleWaiters: (() => void)[] = [];

  private readonly process: Processor;
  private readonly options: QueueOptions;

  constructor(process: Processor, options: QueueOptions) {
    this.process = process;
    this.options = options;
    this.now = options.now ?? Date.now;
    const rate = options.ratePerSecond ?? 0;
    this.bucket = new TokenBucket(rate, options.burst ?? Math.max(1, rate), this.now);
  }

  get depth(): number {
    return this.ready;
  }

  add(key: string): void {
    if (this.shuttingDown) return;
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.set(key, this.now());
    const name = laneOf(key);
    let lane = this.lanes.get(name);
    if (!lane) {
      lane = new Lane();
      this.lanes.set(name, lane);
    }
    lane.push(key);
    this.ready++;
    this.options.onDepth?.(this.ready);
    this.pump();
  }

  /** Adds the key after a delay. An earlier pending delay for the key wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const at = this.now() + delayMs;
    const existing = this.timers.get(key);
    if (existing && existing.at <= at) return;
    if (existing) clearTimeout(existing.timer);
    const timer = setTimeout(
      () => {
        this.timers.delete(key);
        if (at - this.now() > 1000) this.addAfter(key, at - this.now());
        else this.add(key);
      },
      Math.min(delayMs, MAX_TIMER_MS),
    );
    timer.unref();
    this.timers.set(key, { at, timer });
  }

  /** When the key is next scheduled, for tests and status. */
  scheduledAt(key: string): number | undefined {
    return this.timers.get(key)?.at;
  }

  /** Retries the key after its backoff; returns the delay used. */
  retry(key: string): number {
    const n = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, n);
    const delay = Math.min(
      this.options.maxDelayMs ?? 300_000,
      (this.options.baseDelayMs ?? 1000) * 2 ** (n - 1),
    );
    this.addAfter(key, delay);
    return delay;
  }

  /** Clears the key's backoff after a success. */
  forget(key: string): void {
    this.failures.delete(key);
  }

  failuresOf(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** Drops any scheduled work for the key (the object is gone). */
  cancel(key: string): void {
    const t = this.timers.get(key);
    if (t) clearTimeout(t.timer);
    this.timers.delete(key);
    this.failures.delete(key);
  }

  shutdown(): void {
    this.shuttingDown = true;
    for (const t of this.timers.values()) clearTimeout(t.timer);
    this.timers.clear();
    clearTimeout(this.refillTimer);
    this.lanes.clear();
    this.ready = 0;
    this.queued.clear();
  }

  /** Resolves when nothing is queued or processing (scheduled timers do not count). */
  idle(): Promise<void> {
    if (this.ready === 0 && this.active === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private takeToken(): boolean {
    if (this.bucket.take()) return true;
    if (!this.refillTimer) {
      this.refillTimer = setTimeout(() => {
        this.refillTimer = undefined;
        this.pump();
      }, this.bucket.waitMs());
    }
    return false;
  }

  private pump(): void {
    while (!this.shuttingDown && this.active < this.options.concurrency && this.ready > 0) {
      if (!this.takeToken()) return;
      const key = this.takeNext();
      const enqueuedAt = this.queued.get(key) ?? this.now();
      this.queued.delete(key);
      this.options.onDepth?.(this.ready);
      this.options.onLatency?.((this.now() - enqueuedAt) / 1000);
      this.processing.add(key);
      this.active++;
      void this.run(key);
    }
  }

  /** The next key round-robin across namespaces: the first lane's oldest key; that lane then goes last. */
  private takeNext(): string {
    const [name, lane] = this.lanes.entries().next().value as [string, Lane];
    const key = lane.shift()!;
    this.ready--;
    this.lanes.delete(name);
    if (lane.length > 0) this.lanes.set(name, lane);
    return key;
  }

  private async run(key: string): Promise<void> {
    try {
      await this.process(key);
    } catch {
      // The processor reports its own errors and decides about retries.
    } finally {
      this.processing.delete(key);
      this.active--;
      if (this.dirty.delete(key)) this.add(key);
      this.pump();
      if (this.ready === 0 && this.active === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }
}
