import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { asn1TimeDigits, httpDate, isoString, rfc3339, rfc3339Micro } from './time.ts';

// Times Date itself writes, against which the arithmetic is checked: the epoch, leap days, century
// and 400-year boundaries, the last millisecond of a year, before the epoch, and the ends of 0–9999.
const EDGES = [
  0,
  -1,
  951_782_400_000, // 2000-02-29
  4_107_542_399_999, // 2100-02-28T23:59:59.999Z
  4_107_542_400_000, // 2100-03-01
  2_524_607_999_999, // 2049-12-31T23:59:59.999Z
  Date.UTC(1969, 11, 31, 23, 59, 59, 1),
  Date.UTC(1600, 1, 29),
  Date.UTC(0, 0, 1) - Date.UTC(1900, 0, 1) + Date.UTC(1900, 0, 1), // 1900-01-01 (Date.UTC maps 0 to 1900)
  -62_167_219_200_000, // 0000-01-01T00:00:00.000Z
  253_402_300_799_999, // 9999-12-31T23:59:59.999Z
];

describe('time', () => {
  it('should write what toISOString and toUTCString write, for edges and 20,000 random times', () => {
    // A fixed linear congruential sequence, so that a failure can be repeated.
    let seed = 12_345;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const times = [...EDGES];
    for (let i = 0; i < 20_000; i++)
      times.push(Math.floor(-62_167_219_200_000 + random() * (253_402_300_799_999 + 62_167_219_200_000)));
    for (const t of times) {
      const d = new Date(t);
      expect([t, isoString(t)]).toEqual([t, d.toISOString()]);
      expect([t, isoString(d)]).toEqual([t, d.toISOString()]);
      expect([t, httpDate(t)]).toEqual([t, d.toUTCString()]);
    }
  });

  it('should fall back to Date outside the years 0 to 9999, and refuse an invalid time as Date does', () => {
    for (const t of [-62_167_219_200_001, 253_402_300_800_000, 8.64e15]) {
      expect(isoString(t)).toBe(new Date(t).toISOString());
      expect(httpDate(t)).toBe(new Date(t).toUTCString());
    }
    // A fraction of a millisecond is dropped toward zero, as Date drops it.
    for (const t of [1.7, -1.7, 1_765_000_000_123.9])
      expect([t, isoString(t), httpDate(t)]).toEqual([
        t,
        new Date(t).toISOString(),
        new Date(t).toUTCString(),
      ]);
    expect(() => isoString(Number.NaN)).toThrow(RangeError);
    expect(() => isoString(new Date('not a date'))).toThrow('Invalid time value');
    expect(() => httpDate(Number.POSITIVE_INFINITY)).toThrow(RangeError);
  });

  it('should write the API server’s Time and MicroTime, and an ASN.1 time’s digits', () => {
    const t = Date.UTC(2026, 11, 7, 20, 15, 41, 431);
    expect(rfc3339(t)).toBe('2026-12-07T20:15:41Z');
    expect(rfc3339Micro(t)).toBe('2026-12-07T20:15:41.431000Z');
    expect(asn1TimeDigits(t)).toBe('20261207201541');
    expect(asn1TimeDigits(Date.UTC(2050, 0, 1))).toBe('20500101000000');
    expect(() => asn1TimeDigits(253_402_300_800_000)).toThrow('outside the years 0000 to 9999');
  });

  it('should leave no toISOString or toUTCString in the code the operator and the webhook run', () => {
    // Either call builds V8's date cache with ICU's time zone for the rest of the process (see
    // lib/time.ts). The CLI, tests, benchmarks and the control plane for tests may use them.
    const root = join(import.meta.dirname, '..');
    const found: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, e.name);
        if (e.isDirectory()) {
          if (e.name !== 'testing') walk(path);
        } else if (
          e.name.endsWith('.ts') &&
          !e.name.endsWith('.test.ts') &&
          path !== join(root, 'lib', 'time.ts')
        ) {
          readFileSync(path, 'utf8')
            .split('\n')
            .forEach((line, i) => {
              if (/\.(toISOString|toUTCString|toLocale\w*String)\(/.test(line))
                found.push(`${relative(root, path)}:${i + 1}: ${line.trim()}`);
            });
        }
      }
    };
    for (const dir of ['lib', 'operator', 'webhook']) walk(join(root, dir));
    expect(found).toEqual([]);
  });
});
