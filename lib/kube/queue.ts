// A work queue in the style of client-go's: keys, not objects; a key queued
// while it is being processed runs again afterwards, never twice at once;
// failures retry with per-key exponential backoff; delayed adds wait in one
// min-heap under a single timer, not polling. The clock is injectable for tests.
//
// One timer for all delayed keys rather than one each: every Certificate waits
// for its renewal here, and a Node timer each (its Timeout, and a TimersList
// for each distinct delay, and the Map of them) was 0.34 MiB of heap at 1,000
// Certificates; the heap and its index are 0.15 MiB.
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

/** A delayed add of a key, due at `at`; stale once the queue's `due` no longer says `at` for the key. */
interface Delayed {
  at: number;
  key: string;
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
  /** When each key with a delayed add is due: the earliest asked for. */
  private readonly due = new Map<string, number>();
  /** Delayed adds by due time, a binary min-heap; superseded and cancelled ones are skipped when they surface. */
  private heap: Delayed[] = [];
  /** The one timer, for the heap's earliest entry, and when that is. */
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Number.POSITIVE_INFINITY;
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
    const existing = this.due.get(key);
    if (existing !== undefined && existing <= at) return;
    this.due.set(key, at);
    this.push({ at, key });
    // Superseded entries stay in the heap until they surface: rebuilt when they outnumber the live.
    if (this.heap.length > 2 * this.due.size + 64) {
      const live = this.heap.filter((d) => this.due.get(d.key) === d.at);
      this.heap = [];
      for (const d of live) this.push(d);
    }
    this.arm();
  }

  /** When the key is next scheduled, for tests and status. */
  scheduledAt(key: string): number | undefined {
    return this.due.get(key);
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
    this.due.delete(key);
    this.failures.delete(key);
    if (this.due.size === 0) this.clearDelayed();
  }

  shutdown(): void {
    this.shuttingDown = true;
    this.clearDelayed();
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

  private clearDelayed(): void {
    this.due.clear();
    this.heap = [];
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Number.POSITIVE_INFINITY;
  }

  /** Sets the timer for the heap's earliest entry, unless it is set for that or sooner. */
  private arm(): void {
    const first = this.heap[0];
    if (!first || (this.timer && this.timerAt <= first.at)) return;
    clearTimeout(this.timer);
    this.timerAt = first.at;
    this.timer = setTimeout(() => this.fire(), Math.min(Math.max(first.at - this.now(), 1), MAX_TIMER_MS));
    this.timer.unref();
  }

  /** Adds every key due, then sets the timer for the next (again, if it fired early against this clock). */
  private fire(): void {
    this.timer = undefined;
    this.timerAt = Number.POSITIVE_INFINITY;
    const now = this.now();
    while (this.heap.length > 0 && this.heap[0]!.at <= now) {
      const { at, key } = this.pop();
      if (this.due.get(key) !== at) continue;
      this.due.delete(key);
      this.add(key);
    }
    this.arm();
  }

  private push(d: Delayed): void {
    const h = this.heap;
    let i = h.push(d) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent]!.at <= d.at) break;
      h[i] = h[parent]!;
      i = parent;
    }
    h[i] = d;
  }

  private pop(): Delayed {
    const h = this.heap;
    const first = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= h.length) break;
        const c = l + 1 < h.length && h[l + 1]!.at < h[l]!.at ? l + 1 : l;
        if (h[c]!.at >= last.at) break;
        h[i] = h[c]!;
        i = c;
      }
      h[i] = last;
    }
    return first;
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
