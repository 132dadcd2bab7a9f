import { TokenBucket } from './ratelimit.ts';

describe('TokenBucket', () => {
  it('allows a burst, then refills at the rate', () => {
    let now = 0;
    const bucket = new TokenBucket(2, 3, () => now);
    expect([bucket.take(), bucket.take(), bucket.take(), bucket.take()]).toEqual([true, true, true, false]);
    expect(bucket.waitMs()).toBe(500);
    now += 499;
    expect(bucket.take()).toBe(false);
    now += 1;
    expect(bucket.take()).toBe(true);
    now += 60_000;
    // Never more than the burst, however long it waited.
    expect([bucket.take(), bucket.take(), bucket.take(), bucket.take()]).toEqual([true, true, true, false]);
  });

  it('never limits with a rate of 0', () => {
    const bucket = new TokenBucket(0);
    for (let i = 0; i < 1000; i++) expect(bucket.take()).toBe(true);
    expect(bucket.waitMs()).toBe(0);
  });

  it('holds at least one token for rates below one a second', () => {
    let now = 0;
    const bucket = new TokenBucket(0.01, 0.1, () => now);
    expect(bucket.take()).toBe(true);
    expect(bucket.take()).toBe(false);
    now += 100_000;
    expect(bucket.take()).toBe(true);
  });
});
