import { resolveSpec } from '../../lib/api/request.ts';
import { minimumIssuanceInterval, plannedRenewal, upToDateMessage } from './checks.ts';

const HOUR = 3_600_000;

describe('minimum issuance interval', () => {
  it.each([
    ['should be one minute for a one-hour certificate', HOUR, 60_000],
    ['should be 1% of a 24-hour certificate', 24 * HOUR, 864_000],
    ['should stay within a third of a very short lifetime', 45_000, 15_000],
  ])('%s', (_n, lifetime, floor) => {
    expect(minimumIssuanceInterval(lifetime)).toBe(floor);
  });

  it('should hold a renewal that renewBefore puts right after issuance, and say so', () => {
    const notBefore = new Date('2026-01-01T00:00:00Z');
    const notAfter = new Date(notBefore.getTime() + HOUR);
    const plan = plannedRenewal(notBefore, notAfter, 'abc', { renewBeforeMs: HOUR - 1000 });
    expect(plan.at.getTime()).toBe(notBefore.getTime() + 60_000);
    expect(plan.held?.floorMs).toBe(60_000);
    expect(upToDateMessage(plan)).toContain('minimum of 60s between issuances');
  });

  it('should leave an ordinary renewal time alone', () => {
    const notBefore = new Date('2026-01-01T00:00:00Z');
    const notAfter = new Date(notBefore.getTime() + 24 * HOUR);
    const plan = plannedRenewal(notBefore, notAfter, 'abc', {});
    expect(plan.held).toBeUndefined();
    expect(upToDateMessage(plan)).toBe('Certificate is up to date and has not expired');
  });
});

describe('specs that could never match what is issued', () => {
  it.each([
    [
      'a subject value listed twice',
      { subject: { organizations: ['acme', 'acme'] } },
      'subject.organizations lists "acme" twice',
    ],
    ['a non-ASCII URI', { uris: ['https://exämple.com/x'] }, 'outside printable ASCII'],
    ['a non-ASCII email', { emailAddresses: ['jö@example.com'] }, 'outside printable ASCII'],
  ])('should be InvalidSpec for %s', (_n, extra, problem) => {
    const resolved = resolveSpec({ secretName: 's', commonName: 'x', ...extra }, 60_000);
    expect('problem' in resolved && resolved.problem).toContain(problem);
  });
});
