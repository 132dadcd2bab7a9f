import { WorkQueue } from './queue.ts';

const tick = () => new Promise((r) => setImmediate(r));

describe('WorkQueue', () => {
  it('should process a key once even when it is added many times before a worker takes it', async () => {
    const seen: string[] = [];
    let release!: () => void;
    const blocker = new Promise<void>((r) => (release = r));
    const q = new WorkQueue(
      async (k) => {
        seen.push(k);
        if (k === 'busy') await blocker;
      },
      { concurrency: 1 },
    );
    q.add('busy');
    q.add('a');
    q.add('a');
    q.add('b');
    q.add('a');
    expect(q.depth).toBe(2);
    release();
    await q.idle();
    expect(seen).toEqual(['busy', 'a', 'b']);
  });

  it('should run a key again when it is added while being processed, never twice at once', async () => {
    let running = 0;
    let maxRunning = 0;
    let runs = 0;
    let release!: () => void;
    const q = new WorkQueue(
      async () => {
        running++;
        runs++;
        maxRunning = Math.max(maxRunning, running);
        if (runs === 1) await new Promise<void>((r) => (release = r));
        running--;
      },
      { concurrency: 4 },
    );
    q.add('a');
    await tick();
    q.add('a');
    q.add('a');
    await tick();
    expect(runs).toBe(1);
    release();
    await q.idle();
    await q.idle();
    expect(runs).toBe(2);
    expect(maxRunning).toBe(1);
  });

  it('should back off exponentially per key and forget the backoff after success', () => {
    const q = new WorkQueue(async () => {}, { concurrency: 1, baseDelayMs: 100, maxDelayMs: 1000 });
    expect([q.retry('a'), q.retry('a'), q.retry('a'), q.retry('a'), q.retry('a')]).toEqual([
      100, 200, 400, 800, 1000,
    ]);
    expect(q.retry('b')).toBe(100);
    q.forget('a');
    expect(q.retry('a')).toBe(100);
    q.shutdown();
  });

  it('should keep the earliest of two delayed adds', () => {
    let now = 1_000;
    const q = new WorkQueue(async () => {}, { concurrency: 1, now: () => now });
    q.addAfter('a', 5_000);
    q.addAfter('a', 60_000);
    expect(q.scheduledAt('a')).toBe(6_000);
    q.addAfter('a', 2_000);
    expect(q.scheduledAt('a')).toBe(3_000);
    now = 2_000;
    q.shutdown();
  });

  it('should run a delayed key when its time comes', async () => {
    const seen: string[] = [];
    const q = new WorkQueue(async (k) => void seen.push(k), { concurrency: 1 });
    q.addAfter('later', 30);
    expect(seen).toEqual([]);
    await new Promise((r) => setTimeout(r, 80));
    expect(seen).toEqual(['later']);
  });

  it('should run delayed keys in the order they fall due, the earliest delay of a key winning, and no cancelled one', async () => {
    const seen: string[] = [];
    const q = new WorkQueue(async (k) => void seen.push(k), { concurrency: 1 });
    q.addAfter('d', 80);
    q.addAfter('b', 40);
    q.addAfter('c', 60);
    q.addAfter('a', 20);
    q.addAfter('e', 120);
    q.addAfter('e', 5);
    q.addAfter('x', 30);
    q.cancel('x');
    // Each earlier than the last: 200 superseded entries, more than the heap keeps before it is rebuilt.
    for (let d = 300; d > 100; d--) q.addAfter('z', d);
    expect([q.scheduledAt('e'), q.scheduledAt('x')].map((t) => t !== undefined)).toEqual([true, false]);
    await new Promise((r) => setTimeout(r, 200));
    expect(seen).toEqual(['e', 'a', 'b', 'c', 'd', 'z']);
    expect(q.scheduledAt('e')).toBeUndefined();
    q.shutdown();
  });

  it('should run each of many delayed keys once and not before it is due, through re-adds and cancels', async () => {
    // A fixed sequence, so that a failure can be repeated.
    let seed = 7;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const ranAt = new Map<string, number[]>();
    const q = new WorkQueue(
      async (k) => {
        ranAt.set(k, [...(ranAt.get(k) ?? []), Date.now()]);
      },
      { concurrency: 4 },
    );
    const due = new Map<string, number>();
    const cancelled = new Set<string>();
    for (let i = 0; i < 600; i++) {
      const key = `ns${i % 7}/k${Math.floor(random() * 300)}`;
      if (random() < 0.1) {
        q.cancel(key);
        due.delete(key);
        cancelled.add(key);
        continue;
      }
      const delay = 1 + Math.floor(random() * 120);
      const at = Date.now() + delay;
      q.addAfter(key, delay);
      cancelled.delete(key);
      if (!due.has(key) || at < due.get(key)!) due.set(key, at);
    }
    await new Promise((r) => setTimeout(r, 300));
    for (const [key, at] of due) {
      expect([key, ranAt.get(key)?.length]).toEqual([key, 1]);
      expect(ranAt.get(key)![0]!).toBeGreaterThanOrEqual(at - 1);
    }
    for (const key of cancelled) expect([key, ranAt.has(key)]).toEqual([key, false]);
    q.shutdown();
  });

  it('should not start more than the rate allows', async () => {
    const starts: number[] = [];
    const q = new WorkQueue(async () => void starts.push(Date.now()), {
      concurrency: 10,
      ratePerSecond: 20,
      burst: 1,
    });
    for (let i = 0; i < 5; i++) q.add(`k${i}`);
    await new Promise((r) => setTimeout(r, 400));
    expect(starts).toHaveLength(5);
    expect(starts[4]! - starts[0]!).toBeGreaterThanOrEqual(150);
  });

  it("should serve one namespace's single key before another namespace's flood is through", async () => {
    const seen: string[] = [];
    const q = new WorkQueue(async (k) => void seen.push(k), {
      concurrency: 1,
      ratePerSecond: 1000,
      burst: 1,
    });
    for (let i = 0; i < 200; i++) q.add(`flood/c${i}`);
    q.add('quiet/only');
    await q.idle();
    expect(seen).toHaveLength(201);
    // Round-robin: the quiet namespace's key is taken right after the flood's next key.
    expect(seen.indexOf('quiet/only')).toBeLessThanOrEqual(2);
  });

  it('should keep each namespace first in first out and alternate between namespaces', async () => {
    const seen: string[] = [];
    let release!: () => void;
    const blocker = new Promise<void>((r) => (release = r));
    const q = new WorkQueue(
      async (k) => {
        seen.push(k);
        if (k === 'x/block') await blocker;
      },
      { concurrency: 1 },
    );
    q.add('x/block');
    for (const k of ['a/1', 'a/2', 'a/3', 'b/1', 'b/2', 'cluster-scoped', 'a/1']) q.add(k);
    expect(q.depth).toBe(6);
    release();
    await q.idle();
    expect(seen).toEqual(['x/block', 'a/1', 'b/1', 'cluster-scoped', 'a/2', 'b/2', 'a/3']);
  });

  it('should still apply the rate limit, backoff and delayed adds with many namespaces', async () => {
    const starts: number[] = [];
    const q = new WorkQueue(async () => void starts.push(Date.now()), {
      concurrency: 10,
      ratePerSecond: 20,
      burst: 1,
    });
    for (let i = 0; i < 5; i++) q.add(`ns${i}/k`);
    q.addAfter('late/k', 30);
    await new Promise((r) => setTimeout(r, 450));
    expect(starts).toHaveLength(6);
    expect(starts[4]! - starts[0]!).toBeGreaterThanOrEqual(150);
    expect(q.retry('ns0/k')).toBe(1000);
    q.shutdown();
  });
});
