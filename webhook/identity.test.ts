import type { V1Pod } from '@kubernetes/client-node';
import { identityCertificateName } from '../lib/tenancy/identity.ts';
import { labelValueFor, podIdentity, podWarnings } from './identity.ts';

const options = { trustDomain: 'cluster.local', clusterDomain: 'cluster.local' };
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(?=.{1,63}$)[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

const withServiceAccount = (serviceAccountName: string): V1Pod => ({
  metadata: { generateName: 'w-' },
  spec: { serviceAccountName, containers: [{ name: 'app', image: 'x' }] },
});

const label63 = 'a'.repeat(63);
// Every one is a name Kubernetes accepts for a ServiceAccount.
const adversarial: [string, string][] = [
  ['a cut at 40 landing on a dot', `${'a'.repeat(39)}.b`],
  ['a cut at 40 landing on a dash', `${'a'.repeat(39)}-b`],
  ['a cut at 40 landing after a run of dashes', `${'a'.repeat(37)}---b`],
  [
    'the longest name: 253 characters of labels and dots',
    `${label63}.${label63}.${label63}.${'b'.repeat(61)}`,
  ],
  ['a name of one character', 'a'],
  ['a name of digits only', '0123456789'],
  ['dots every other character', 'a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z'],
  ['a 63-character name ending in a digit', `${'x'.repeat(62)}9`],
  ['a 64-character name (too long for a label value)', `${'x'.repeat(63)}9`],
  ['a name whose 52nd character is a dot', `${'a'.repeat(51)}.${'b'.repeat(20)}`],
];

describe('names for any service account Kubernetes accepts', () => {
  it.each(adversarial)('should give a valid Certificate name and label values for %s', (_case, sa) => {
    expect(sa).toMatch(DNS_SUBDOMAIN);
    const { identity } = podIdentity(withServiceAccount(sa), 'shop', options);
    expect(identity.certificateName).toMatch(DNS_SUBDOMAIN);
    expect(identity.certificateName).not.toMatch(/\.-|-\./);
    // The pod's sigil.dev/identity label carries the Certificate name.
    expect(identity.certificateName).toMatch(LABEL_VALUE);
    expect(labelValueFor(sa)).toMatch(LABEL_VALUE);
    expect(identity.spiffeId).toBe(`spiffe://cluster.local/ns/shop/sa/${sa}`);
  });

  it('should keep service accounts that share a 40-character prefix apart', () => {
    const names = new Set(
      [`${'a'.repeat(39)}.b`, `${'a'.repeat(39)}.c`, `${'a'.repeat(39)}-b`, 'a'.repeat(39)].map(
        (sa) => podIdentity(withServiceAccount(sa), 'shop', options).identity.certificateName,
      ),
    );
    expect(names.size).toBe(4);
  });

  it('should keep long label values apart and leave short valid ones as they are', () => {
    expect(labelValueFor('web')).toBe('web');
    expect(labelValueFor(`${'x'.repeat(63)}1`)).not.toBe(labelValueFor(`${'x'.repeat(63)}2`));
  });

  it('should never give an empty prefix', () => {
    expect(identityCertificateName('-', '0123456789')).toBe('sa-sigil-0123456789');
  });

  it.each([
    ['a wildcard', '*.web'],
    ['upper case', 'Web'],
    ['a trailing dot', 'web.'],
    ['a dot then a dash', 'web.-x'],
    ['254 characters', `${label63}.${label63}.${label63}.${'b'.repeat(62)}`],
  ])('should refuse a service account name with %s, saying what Kubernetes requires', (_case, sa) => {
    expect(() => podIdentity(withServiceAccount(sa), 'shop', options)).toThrow(/DNS subdomain/);
  });
});

describe('sigil.dev/duration against the operator minimum', () => {
  const withDuration = (duration: string): V1Pod => ({
    metadata: { generateName: 'w-', annotations: { 'sigil.dev/duration': duration } },
    spec: { containers: [{ name: 'app', image: 'x' }] },
  });
  const strict = { ...options, minDurationMs: 3_600_000 };

  it.each(['1s', '59m59s'])('should refuse %s below a 1h minimum, naming the annotation and the fix', (d) => {
    expect(() => podIdentity(withDuration(d), 'shop', strict)).toThrow(
      `annotation sigil.dev/duration: "${d}" is shorter than the shortest certificate the operator issues (1h`,
    );
  });

  it.each(['1h', '2h30m', '720h'])('should accept %s', (d) => {
    expect(podIdentity(withDuration(d), 'shop', strict).identity.duration).toBe(d);
  });
});

describe('warnings for what Sigil does not read', () => {
  const withMeta = (metadata: V1Pod['metadata']): V1Pod => ({
    metadata,
    spec: { containers: [{ name: 'a', image: 'x' }] },
  });

  it.each([
    ['sigil.dev/dns-name', 'did you mean sigil.dev/dns-names?'],
    ['sigil.dev/servcie', 'did you mean sigil.dev/service?'],
    ['sigil.dev/mountpath', 'did you mean sigil.dev/mount-path?'],
    ['sigil.dev/something-else-entirely', 'Sigil reads sigil.dev/dns-names, sigil.dev/service'],
  ])('should warn of %s', (key, text) => {
    const warnings = podWarnings(withMeta({ annotations: { [key]: 'x' } }));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(`annotation ${key} is not one Sigil reads and was ignored`);
    expect(warnings[0]).toContain(text);
  });

  it('should say nothing of the annotations it reads, or of other prefixes', () => {
    expect(
      podWarnings(
        withMeta({
          annotations: { 'sigil.dev/dns-names': 'a', 'sigil.dev/duration': '2h', 'example.com/x': 'y' },
          labels: { 'sigil.dev/inject': 'true' },
        }),
      ),
    ).toEqual([]);
  });
});

describe('warnings under a hostile pod', () => {
  it('should stay a few lines and a few milliseconds with thousands of unknown annotations', () => {
    const annotations = Object.fromEntries(
      Array.from({ length: 4000 }, (_, i) => [`sigil.dev/x-${i.toString(36).padStart(40, '0')}`, 'v']),
    );
    const started = performance.now();
    const warnings = podWarnings({
      metadata: { annotations },
      spec: { containers: [{ name: 'a', image: 'x' }] },
    });
    const ms = performance.now() - started;
    expect(warnings).toHaveLength(6);
    expect(warnings[5]).toBe('and 3995 more sigil.dev/ annotations Sigil does not read');
    // Generous: it was over a second before the bound (a unit test asserts no timing otherwise).
    expect(ms).toBeLessThan(200);
  });
});
