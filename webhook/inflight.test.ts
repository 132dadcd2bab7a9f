import { InFlight, type Ticket } from './inflight.ts';

const limits = {
  maxReviews: 4,
  maxBytes: 100_000,
  maxReviewsPerNamespace: 2,
  maxBytesPerNamespace: 25_000,
  reservedForSmallBytes: 0,
};

/** A request whose whole body of `bytes` has arrived. */
function arrived(f: InFlight, bytes: number): Ticket {
  const t = f.start();
  expect(f.receive(t, bytes)).toBeUndefined();
  return t;
}

describe('InFlight', () => {
  it('should let a request that has sent nothing hold nothing, whatever it declared', () => {
    const f = new InFlight(limits);
    const idle = Array.from({ length: 1000 }, () => f.start());
    expect(f.held).toEqual({ reviews: 0, bytes: 0, namespaces: 0 });
    const t = f.start();
    expect(f.receive(t, 90_000)).toBeUndefined();
    for (const i of idle) f.release(i);
  });

  it('should count bytes as they arrive and refuse those past the budget, saying to retry', () => {
    const f = new InFlight(limits);
    const big = f.start();
    for (let i = 0; i < 9; i++) expect(f.receive(big, 10_000)).toBeUndefined();
    const other = f.start();
    expect(f.receive(other, 20_000)).toMatch(/budget; retry shortly/);
    f.release(big);
    expect(f.receive(other, 20_000)).toBeUndefined();
  });

  it('should keep room for small reviews however many large ones arrive', () => {
    const f = new InFlight({ ...limits, maxBytes: 1_000_000, reservedForSmallBytes: 400_000 });
    for (let i = 0; i < 6; i++) arrived(f, 100_000);
    const seventh = f.start();
    expect(f.receive(seventh, 60_000)).toBeUndefined();
    // It becomes large once past 64 KiB, and then all its bytes count as large.
    expect(f.receive(seventh, 10_000)).toMatch(/larger than 64 KiB .*retry shortly/);
    f.release(seventh);
    for (let i = 0; i < 90; i++) arrived(f, 4_000);
  });

  it('should give a slot only to a complete review, up to the total count', () => {
    const f = new InFlight({ ...limits, maxReviewsPerNamespace: 10 });
    for (let i = 0; i < 4; i++) expect(f.admit(arrived(f, 10), `ns-${i}`)).toBeUndefined();
    expect(f.admit(arrived(f, 10), 'late')).toMatch(/holds 4 reviews, its limit/);
  });

  it("should cap one namespace's reviews while another namespace still gets in", () => {
    const f = new InFlight(limits);
    const a = [arrived(f, 100), arrived(f, 100), arrived(f, 100)];
    expect(f.admit(a[0]!, 'a')).toBeUndefined();
    expect(f.admit(a[1]!, 'a')).toBeUndefined();
    expect(f.admit(a[2]!, 'a')).toMatch(/namespace a has 2 pod admissions in flight/);
    f.release(a[2]!);
    expect(f.admit(arrived(f, 100), 'b')).toBeUndefined();
  });

  it("should cap one namespace's bytes but always let its first review in", () => {
    const f = new InFlight(limits);
    expect(f.admit(arrived(f, 40_000), 'a')).toBeUndefined();
    expect(f.admit(arrived(f, 100), 'a')).toMatch(/MiB of pod admissions in flight/);
  });

  it('should move a review to the namespace it turns out to be from, keeping one slot', () => {
    const f = new InFlight(limits);
    const t = arrived(f, 100);
    expect(f.admit(t, 'claimed')).toBeUndefined();
    expect(f.admit(t, 'real')).toBeUndefined();
    expect(f.held).toEqual({ reviews: 1, bytes: 100, namespaces: 1 });
    f.admit(arrived(f, 100), 'real');
    expect(f.admit(arrived(f, 100), 'real')).toMatch(/namespace real has 2/);
  });

  it('should count a release once and forget an idle namespace', () => {
    const f = new InFlight(limits);
    const t = arrived(f, 100_000 - 1);
    f.admit(t, 'a');
    f.release(t);
    f.release(t);
    expect(f.held).toEqual({ reviews: 0, bytes: 0, namespaces: 0 });
    expect(f.admit(arrived(f, 100_000), 'a')).toBeUndefined();
  });
});

describe('InFlight.admitOrWait', () => {
  it("should give a waiting review the namespace's next free slot, oldest first", async () => {
    const f = new InFlight({ ...limits, maxReviews: 10 });
    const [a1, a2] = [arrived(f, 10), arrived(f, 10)];
    expect(f.admit(a1, 'a')).toBeUndefined();
    expect(f.admit(a2, 'a')).toBeUndefined();
    const first = arrived(f, 10);
    const second = arrived(f, 10);
    const waitingFirst = f.admitOrWait(first, 'a', 5_000, 4);
    const waitingSecond = f.admitOrWait(second, 'a', 5_000, 4);
    expect(f.waitingReviews).toBe(2);
    f.release(a1);
    await expect(waitingFirst).resolves.toBeUndefined();
    expect(second.namespace).toBeUndefined();
    f.release(a2);
    await expect(waitingSecond).resolves.toBeUndefined();
    expect(f.waitingReviews).toBe(0);
  });

  it('should give up with the reason after the wait, and refuse at once beyond the waiters allowed', async () => {
    const f = new InFlight({ ...limits, maxReviews: 10 });
    for (const t of [arrived(f, 10), arrived(f, 10)]) expect(f.admit(t, 'a')).toBeUndefined();
    const queued = f.admitOrWait(arrived(f, 10), 'a', 50, 1);
    await expect(f.admitOrWait(arrived(f, 10), 'a', 50, 1)).resolves.toContain('namespace a has 2');
    await expect(queued).resolves.toContain('namespace a has 2');
    expect(f.waitingReviews).toBe(0);
  });

  it("should not make another namespace's review wait", async () => {
    const f = new InFlight({ ...limits, maxReviews: 10 });
    for (const t of [arrived(f, 10), arrived(f, 10)]) expect(f.admit(t, 'a')).toBeUndefined();
    await expect(f.admitOrWait(arrived(f, 10), 'b', 5_000, 4)).resolves.toBeUndefined();
  });
});
