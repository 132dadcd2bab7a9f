import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { V1Secret } from '@kubernetes/client-node';
import type { Certificate } from '../../lib/api/types.ts';
import { isPkiError } from '../../lib/pki/errors.ts';
import { readCertificateForKey, readKeyPair } from '../../lib/pki/inspect.ts';
import { testCA } from '../../lib/testing/pki.ts';
import { SecretReason, secretClaim } from './ownership.ts';
import { cachedKeyOf, cachedSecretView, hasPrivateKey, isPartialView } from './secret.ts';

const certificate = (name: string, created: string, secretName = 'shared-tls'): Certificate => ({
  apiVersion: 'sigil.dev/v1alpha1',
  kind: 'Certificate',
  metadata: { name, namespace: 'a', uid: `uid-${name}`, creationTimestamp: new Date(created) },
  spec: { secretName },
});

const secret = (
  labels: Record<string, string> = {},
  annotations: Record<string, string> = {},
  type = 'kubernetes.io/tls',
): V1Secret => ({
  type,
  metadata: { name: 'shared-tls', namespace: 'a', labels, annotations, resourceVersion: '7' },
  data: { 'tls.crt': 'Y3J0', 'tls.key': 'a2V5', 'ca.crt': 'Y2E=', other: 'eA==' },
});
const managedBy = (name: string) =>
  secret({ 'sigil.dev/managed': 'true' }, { 'sigil.dev/certificate-name': name });

const older = certificate('older', '2026-01-01T00:00:00Z');
const newer = certificate('newer', '2026-01-02T00:00:00Z');

describe('secretClaim', () => {
  it.each<[string, Certificate, V1Secret | undefined, Certificate[], string | undefined]>([
    ['should let the only Certificate naming a missing Secret create it', newer, undefined, [], undefined],
    ['should give a missing Secret to the older of two Certificates', older, undefined, [newer], undefined],
    [
      'should refuse the newer of two Certificates naming a missing Secret',
      newer,
      undefined,
      [older],
      SecretReason.DuplicateSecretName,
    ],
    [
      'should let the owner write its own Secret, however old the other',
      newer,
      managedBy('newer'),
      [older],
      undefined,
    ],
    [
      'should refuse a Certificate whose Secret another live Certificate owns',
      older,
      managedBy('newer'),
      [newer],
      SecretReason.DuplicateSecretName,
    ],
    ['should refuse a Secret Sigil did not create', newer, secret(), [], SecretReason.SecretNotOwned],
    [
      'should refuse a Secret that carries only the managed label, which anyone with Secret rights can set',
      newer,
      secret({ 'sigil.dev/managed': 'true' }),
      [],
      SecretReason.SecretNotOwned,
    ],
    [
      'should refuse a Secret naming the Certificate without the managed label',
      newer,
      secret({}, { 'sigil.dev/certificate-name': 'newer' }),
      [],
      SecretReason.SecretNotOwned,
    ],
    [
      'should refuse a Secret written for a Certificate that is gone',
      newer,
      managedBy('gone'),
      [],
      SecretReason.SecretNotOwned,
    ],
    [
      'should take over a Secret that opts in for this Certificate',
      newer,
      secret({}, { 'sigil.dev/allow-takeover': 'newer' }),
      [],
      undefined,
    ],
    [
      'should not take over a Secret that opts in for another Certificate',
      newer,
      secret({}, { 'sigil.dev/allow-takeover': 'older' }),
      [],
      SecretReason.SecretNotOwned,
    ],
    [
      'should refuse a Secret of another type',
      newer,
      secret({}, { 'sigil.dev/allow-takeover': 'newer' }, 'Opaque'),
      [],
      SecretReason.SecretConflict,
    ],
  ])('%s', (_name, c, s, peers, reason) => {
    const claim = secretClaim(c, s, peers);
    expect(claim.ok ? undefined : claim.reason).toBe(reason);
    if (!claim.ok) expect(claim.message).toMatch(/spec.secretName|kubectl annotate|delete it/);
  });

  it('should name the other Certificate and the fix in a duplicate refusal', () => {
    const claim = secretClaim(newer, undefined, [older]);
    expect(claim.ok).toBe(false);
    if (!claim.ok) expect(claim.message).toContain('Certificate older already uses Secret shared-tls');
  });

  it('should say how to opt in when refusing a Secret Sigil did not create', () => {
    const claim = secretClaim(newer, secret(), []);
    if (claim.ok) throw new Error('expected a refusal');
    expect(claim.message).toContain('kubectl annotate secret shared-tls -n a sigil.dev/allow-takeover=newer');
  });
});

describe('cachedSecretView', () => {
  it('should keep only the TLS keys of a Secret a Certificate uses, tls.key as a fingerprint', () => {
    const view = cachedSecretView(managedBy('newer'), () => true);
    expect(Object.keys(view.data ?? {}).sort()).toEqual(['ca.crt', 'tls.crt']);
    expect(hasPrivateKey(view)).toBe(true);
    expect(isPartialView(view)).toBe(false);
  });

  const b64 = (pem: string) => Buffer.from(pem).toString('base64');
  const tlsSecret = (certPem: string, keyPem: string) => {
    const s = managedBy('newer');
    s.data = { 'tls.crt': b64(certPem), 'tls.key': b64(keyPem), 'ca.crt': b64(certPem) };
    return s;
  };

  it('should hold no private key, and tell a key that belongs to tls.crt from one that does not', async () => {
    const mine = await testCA({ key: { algorithm: 'RSA', size: 2048 } });
    const other = await testCA({ commonName: 'Other' });
    const own = cachedSecretView(tlsSecret(mine.certPem, mine.keyPem), () => true);
    // Neither the PEM nor its base64 nor the key's DER is anywhere in what the cache keeps.
    const kept = JSON.stringify({ own, key: cachedKeyOf(own) });
    const der = mine.keyPem
      .split('\n')
      .filter((l) => !l.startsWith('-----'))
      .join('');
    for (const secret of [b64(mine.keyPem), der.slice(40, 120)]) expect(kept).not.toContain(secret);
    expect(readCertificateForKey(mine.certPem, cachedKeyOf(own)!).keyMatches).toBe(true);

    const swapped = cachedSecretView(tlsSecret(mine.certPem, other.keyPem), () => true);
    expect(readCertificateForKey(mine.certPem, cachedKeyOf(swapped)!).keyMatches).toBe(false);
    expect(readKeyPair(mine.certPem, other.keyPem).keyMatches).toBe(false);
  });

  it('should keep why a tls.key does not parse, as reading the Secret would say it', async () => {
    const { certPem } = await testCA();
    const broken = 'not a key';
    const view = cachedSecretView(tlsSecret(certPem, broken), () => true);
    expect(hasPrivateKey(view)).toBe(true);
    const thrown = (f: () => unknown) => {
      try {
        f();
      } catch (err) {
        if (isPkiError(err)) return err.message;
        throw err;
      }
      throw new Error('expected a PkiError');
    };
    const fromCache = thrown(() => readCertificateForKey(certPem, cachedKeyOf(view)!, 'Secret a/shared-tls'));
    expect(fromCache).toContain('Secret a/shared-tls tls.key');
    expect(fromCache).toBe(thrown(() => readKeyPair(certPem, broken, 'Secret a/shared-tls')));
  });

  it('should take the fingerprint of a view at the same resourceVersion instead of parsing the key again', async () => {
    const { certPem, keyPem } = await testCA();
    const at = (resourceVersion: string) => {
      const s = tlsSecret(certPem, keyPem);
      s.metadata = { ...s.metadata, uid: 'uid-s', resourceVersion };
      return s;
    };
    const first = cachedSecretView(at('7'), () => true);
    const relisted = cachedSecretView(at('7'), () => true, [undefined, first]);
    expect(cachedKeyOf(relisted)).toBe(cachedKeyOf(first));
    const changed = cachedSecretView(at('8'), () => true, [first]);
    expect(cachedKeyOf(changed)).not.toBe(cachedKeyOf(first));
    expect(cachedKeyOf(changed)).toEqual(cachedKeyOf(first));
    const recreated = cachedSecretView(
      { ...at('7'), metadata: { ...at('7').metadata, uid: 'uid-t' } },
      () => true,
      [first],
    );
    expect(cachedKeyOf(recreated)).not.toBe(cachedKeyOf(first));
  });

  it('should count an empty tls.key as missing, and keep no fingerprint for a Secret read whole', () => {
    const empty = managedBy('newer');
    empty.data = { ...empty.data, 'tls.key': '' };
    expect(hasPrivateKey(cachedSecretView(empty, () => true))).toBe(false);
    expect(hasPrivateKey(undefined)).toBe(false);
    const whole = managedBy('newer');
    expect(cachedKeyOf(whole)).toBeUndefined();
    expect(hasPrivateKey(whole)).toBe(true);
  });

  it('should keep no data and no foreign metadata of a labelled Secret no Certificate uses', () => {
    const junk = secret({ 'sigil.dev/managed': 'true', big: 'x' }, { huge: 'y'.repeat(1000) });
    const view = cachedSecretView(junk, () => true);
    expect(view.data).toBeUndefined();
    expect(view.metadata?.labels).toEqual({ 'sigil.dev/managed': 'true' });
    expect(view.metadata?.annotations).toEqual({});
    expect(isPartialView(view)).toBe(true);
    expect(cachedSecretView(managedBy('gone'), () => false).data).toBeUndefined();
  });

  it("should keep one copy of a ca.crt many Secrets share, and each Secret's own value", () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    // A fresh string of the same content each time, as JSON.parse gives every Secret its own.
    const bundle = (salt: string) =>
      JSON.parse(JSON.stringify(`${salt}${'Q0EgYnVuZGxl'.repeat(1000)}`)) as string;
    const views = (ca: (i: number) => string) => {
      gc();
      const before = process.memoryUsage().heapUsed;
      const kept = Array.from({ length: 2000 }, (_, i) => {
        const s = managedBy('newer');
        s.data = { ...s.data, 'ca.crt': ca(i) };
        return cachedSecretView(s, () => true);
      });
      gc();
      return { kept, bytes: process.memoryUsage().heapUsed - before };
    };
    const distinct = views((i) => bundle(String(i).padStart(4, '0')));
    const same = views(() => bundle('same'));
    expect(same.kept.every((v) => v.data?.['ca.crt'] === bundle('same'))).toBe(true);
    expect(distinct.kept[7]!.data?.['ca.crt']).toBe(bundle('0007'));
    // 2,000 distinct bundles of 12,004 characters are about 24 MB; shared, one. The margin is
    // half of that: the heap moves by a megabyte or so between two measures of the same work.
    expect(distinct.bytes - same.bytes).toBeGreaterThan(12_000_000);
  });

  it('should drop a TLS value larger than Sigil parses and mark the view partial', () => {
    const big = managedBy('newer');
    big.data = { ...big.data, 'tls.crt': 'A'.repeat(400_000) };
    const view = cachedSecretView(big, () => true);
    expect(view.data?.['tls.crt']).toBeUndefined();
    expect(isPartialView(view)).toBe(true);
  });
});
