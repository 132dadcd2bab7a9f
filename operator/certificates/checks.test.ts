import { type ResolvedSpec, resolveSpec } from '../../lib/api/request.ts';
import type { Certificate } from '../../lib/api/types.ts';
import { readKeyPair } from '../../lib/pki/inspect.ts';
import { issueCertificate } from '../../lib/pki/issue.ts';
import { DAY, HOUR, testCA } from '../../lib/testing/pki.ts';
import {
  type CheckInput,
  firstVerdict,
  IssueReason,
  issuanceChecks,
  plannedRenewal,
  shortenedNote,
  upToDateMessage,
} from './checks.ts';

const now = new Date();

/** What the controller gathers for a Certificate whose Secret holds `issued`. */
async function inputFor(duration: string, caLifetimeMs = 365 * DAY, issuedWith = duration) {
  const { ca } = await testCA({ notAfter: new Date(now.getTime() + caLifetimeMs) });
  const spec = { secretName: 'web-tls', dnsNames: ['web.shop.svc'], duration };
  const atIssuance = resolveSpec({ ...spec, duration: issuedWith }, 60_000) as ResolvedSpec;
  const issued = await issueCertificate(ca, atIssuance.request, now);
  const resolved = resolveSpec(spec, 60_000) as ResolvedSpec;
  const certificate = { metadata: { name: 'web', namespace: 'shop' }, spec } as unknown as Certificate;
  const input: CheckInput = {
    certificate,
    resolved,
    secret: {
      data: {
        'tls.crt': Buffer.from(issued.certificatePem).toString('base64'),
        'tls.key': Buffer.from(issued.privateKeyPem).toString('base64'),
        'ca.crt': Buffer.from(issued.caPem).toString('base64'),
      },
    },
    pair: readKeyPair(issued.certificatePem, issued.privateKeyPem),
    parseError: undefined,
    ca,
    now: new Date(now.getTime() + 1000),
  };
  return { input, issued, ca };
}

describe('spec.duration against the certificate issued', () => {
  it.each([
    ['longer', '48h', '24h'],
    ['shorter', '2h', '24h'],
  ])(
    'should re-issue when spec.duration was made %s after issuance, and say why',
    async (_n, now, before) => {
      const { input } = await inputFor(now, 365 * DAY, before);
      expect(firstVerdict(issuanceChecks, input)).toEqual({
        reason: IssueReason.DurationChanged,
        message: `Issuing certificate as its lifetime ${before} is not the ${now} the spec asks for`,
      });
    },
  );

  it('should leave a certificate with the spec duration alone', async () => {
    const { input } = await inputFor('24h');
    expect(firstVerdict(issuanceChecks, input)).toBeUndefined();
  });

  it('should not re-issue a certificate the CA cut short, and say in Ready that and how to fix it', async () => {
    const { input, issued, ca } = await inputFor('24h', 10 * HOUR);
    expect(issued.notAfter.getTime()).toBeLessThan(now.getTime() + 10 * HOUR + 1000);
    expect(firstVerdict(issuanceChecks, input)).toBeUndefined();
    const note = shortenedNote(issued.notBefore, issued.notAfter, DAY, ca.facts.notAfter);
    expect(note).toMatch(/^Shortened to \d+h\d*m?\d*s? of the 24h asked: the issuer's CA expires at /);
    expect(note).toContain('Rotate the issuer');
    const plan = plannedRenewal(issued.notBefore, issued.notAfter, issued.serialNumber, {});
    expect(upToDateMessage(plan, note)).toBe(`Certificate is up to date and has not expired. ${note}`);
  });

  it('should say nothing of shortening for a certificate with its full duration', async () => {
    const { issued, ca } = await inputFor('24h');
    expect(shortenedNote(issued.notBefore, issued.notAfter, DAY, ca.facts.notAfter)).toBeUndefined();
  });
});
