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
