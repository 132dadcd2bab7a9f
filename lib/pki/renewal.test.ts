import { formatDuration, parseDuration, renewalTime, validityWindow, withJitter } from './renewal.ts';

const H = 3_600_000;

describe('parseDuration', () => {
  it.each([
    ['24h', 24 * H],
    ['1h30m', 1.5 * H],
    ['90m', 1.5 * H],
    ['2.5h', 2.5 * H],
    ['45s', 45_000],
    ['1500ms', 1500],
    ['2160h', 2160 * H],
  ])('should read %s', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['', '24', 'h', '1d', '-1h', '1h 30m', 'abc', `${'1h'.repeat(40)}`])(
    'should refuse "%s"',
    (text) => {
      expect(parseDuration(text)).toBeUndefined();
    },
  );

  it('should format durations back', () => {
    expect(formatDuration(24 * H)).toBe('24h');
    expect(formatDuration(1.5 * H + 5000)).toBe('1h30m5s');
    expect(formatDuration(0)).toBe('0s');
  });
});

describe('renewalTime', () => {
  const notBefore = new Date('2026-01-01T00:00:00Z');
  const notAfter = new Date('2026-01-02T00:00:00Z');

  it('should renew at two thirds of the lifetime by default', () => {
    expect(renewalTime(notBefore, notAfter).toISOString()).toBe('2026-01-01T16:00:00.000Z');
  });

  it('should honour renewBefore', () => {
    expect(renewalTime(notBefore, notAfter, { renewBeforeMs: 2 * H }).toISOString()).toBe(
      '2026-01-01T22:00:00.000Z',
    );
  });

  it('should honour renewBeforePercentage', () => {
    expect(renewalTime(notBefore, notAfter, { renewBeforePercentage: 25 }).toISOString()).toBe(
      '2026-01-01T18:00:00.000Z',
    );
  });

  it('should fall back to two thirds when renewBefore does not fit in a lifetime the CA cut short', () => {
    const cut = new Date(notBefore.getTime() + 3 * H);
    expect(renewalTime(notBefore, cut, { renewBeforeMs: 8 * H }).toISOString()).toBe(
      '2026-01-01T02:00:00.000Z',
    );
  });
});

describe('validityWindow', () => {
  it('should start now, in whole seconds, and never outlive the CA', () => {
    const now = new Date('2026-01-01T00:00:00.750Z');
    const w = validityWindow(now, 24 * H, new Date('2026-01-01T06:00:00Z'));
    expect(w.notBefore.toISOString()).toBe('2026-01-01T00:00:00.000Z');
    expect(w.notAfter.toISOString()).toBe('2026-01-01T06:00:00.000Z');
  });
});

describe('withJitter', () => {
  it('should move a renewal earlier, never later, by at most the cap', () => {
    const at = new Date('2026-01-01T16:00:00Z');
    expect(withJitter(at, 24 * H, () => 0).getTime()).toBe(at.getTime());
    expect(withJitter(at, 24 * H, () => 1).getTime()).toBe(at.getTime() - 60_000);
    expect(withJitter(at, 10 * 60_000, () => 0.5).getTime()).toBe(at.getTime() - 6_000);
  });
});
