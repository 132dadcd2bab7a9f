import { InFlight, type Ticket } from './inflight.ts';

const limits = {
  maxReviews: 4,
  maxBytes: 100_000,
  maxReviewsPerNamespace: 2,
  maxBytesPerNamespace: 25_000,
  reservedForSmallBytes: 0,
};

describe('InFlight', () => {
  it('should refuse on arrival beyond the count, saying to retry', () => {
    const f = new InFlight(limits);
    for (let i = 0; i < 4; i++) expect(typeof f.arrive(10)).toBe('object');
    expect(f.arrive(10)).toMatch(/holds 4 reviews, its limit; retry shortly/);
  });

  it('should refuse on arrival beyond the byte budget and let the review in once others are released', () => {
    const f = new InFlight(limits);
    const big = f.arrive(90_000) as Ticket;
    expect(f.arrive(20_000)).toMatch(/budget; retry shortly/);
    f.release(big);
    expect(typeof f.arrive(20_000)).toBe('object');
  });

  it('should keep room for small reviews however many large ones arrive', () => {
    const f = new InFlight({
      ...limits,
      maxReviews: 100,
      maxBytes: 1_000_000,
      reservedForSmallBytes: 400_000,
    });
    for (let i = 0; i < 6; i++) expect(typeof f.arrive(100_000)).toBe('object');
    expect(f.arrive(100_000)).toMatch(/larger than 64 KiB .*retry shortly/);
    for (let i = 0; i < 100 - 6; i++) expect(typeof f.arrive(4_000)).toBe('object');
  });

  it("should cap one namespace's reviews while another namespace still gets in", () => {
    const f = new InFlight(limits);
    const a = [f.arrive(100), f.arrive(100), f.arrive(100)] as Ticket[];
    expect(f.admitNamespace(a[0]!, 'a')).toBeUndefined();
    expect(f.admitNamespace(a[1]!, 'a')).toBeUndefined();
    expect(f.admitNamespace(a[2]!, 'a')).toMatch(/namespace a has 2 pod admissions in flight/);
    f.release(a[2]!);
    expect(f.admitNamespace(f.arrive(100) as Ticket, 'b')).toBeUndefined();
  });

  it("should cap one namespace's bytes but always let its first review in", () => {
    const f = new InFlight(limits);
    const first = f.arrive(40_000) as Ticket;
    expect(f.admitNamespace(first, 'a')).toBeUndefined();
    expect(f.admitNamespace(f.arrive(100) as Ticket, 'a')).toMatch(/MiB of pod admissions in flight/);
  });

  it('should count a release once and forget an idle namespace', () => {
    const f = new InFlight(limits);
    const t = f.arrive(100) as Ticket;
    f.admitNamespace(t, 'a');
    f.release(t);
    f.release(t);
    expect(f.held).toEqual({ reviews: 0, bytes: 0, namespaces: 0 });
  });
});
