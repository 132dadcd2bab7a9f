import { sameJson } from './controller.ts';

/** What sameJson stands for: JSON with object keys sorted at every level. */
const canonical = (value: unknown) =>
  JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
        )
      : v,
  );

describe('sameJson', () => {
  it('is true for objects built with keys in another order, at every level', () => {
    const fromServer = {
      conditions: [{ message: 'm', status: 'True', type: 'Ready' }],
      notAfter: 'b',
      notBefore: 'a',
    };
    const built = {
      notBefore: 'a',
      notAfter: 'b',
      conditions: [{ type: 'Ready', status: 'True', message: 'm' }],
    };
    expect(sameJson(built, fromServer)).toBe(true);
    expect(JSON.stringify(built)).not.toBe(JSON.stringify(fromServer));
  });

  it('still tells different values, missing keys and array orders apart', () => {
    expect(sameJson({ a: [1, 2] }, { a: [2, 1] })).toBe(false);
    expect(sameJson({ a: { b: 1 } }, { a: { b: 2 } })).toBe(false);
    expect(sameJson({ a: 1 }, { a: 1, b: 2 })).toBe(false);
    expect(sameJson({ a: 1, b: 2 }, { a: 1 })).toBe(false);
    expect(sameJson({ a: '1' }, { a: 1 })).toBe(false);
    expect(sameJson({ a: null }, { a: {} })).toBe(false);
    expect(sameJson({ a: [] }, { a: {} })).toBe(false);
  });

  it('counts an undefined member as absent, as JSON does', () => {
    expect(sameJson({ a: 1, b: undefined }, { a: 1 })).toBe(true);
    expect(sameJson({ a: 1 }, { b: undefined, a: 1 })).toBe(true);
    expect(sameJson([undefined], [null])).toBe(true);
  });

  it('agrees with comparing sorted JSON over random values', () => {
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const value = (depth: number): unknown => {
      switch (depth > 2 ? rnd(4) : rnd(7)) {
        case 0:
          return rnd(3);
        case 1:
          return ['x', 'y', ''][rnd(3)];
        case 2:
          return rnd(2) === 0 ? null : undefined;
        case 3:
          return rnd(2) === 0;
        case 4:
          return Array.from({ length: rnd(3) }, () => value(depth + 1));
        default: {
          const o: Record<string, unknown> = {};
          for (const k of ['b', 'a', 'c'].slice(0, rnd(4))) o[k] = value(depth + 1);
          return o;
        }
      }
    };
    // The same value with every object's keys reversed.
    const shuffled = (v: unknown): unknown =>
      Array.isArray(v)
        ? v.map(shuffled)
        : v && typeof v === 'object'
          ? Object.fromEntries(
              Object.entries(v)
                .reverse()
                .map(([k, x]) => [k, shuffled(x)]),
            )
          : v;
    let equal = 0;
    for (let i = 0; i < 3000; i++) {
      const a = { s: value(0) };
      const b = rnd(3) === 0 ? shuffled(a) : { s: value(0) };
      const expected = canonical(a) === canonical(b);
      if (expected) equal++;
      expect([i, sameJson(a, b)]).toEqual([i, expected]);
    }
    // Both outcomes were exercised.
    expect(equal).toBeGreaterThan(500);
    expect(equal).toBeLessThan(2900);
  });
});
