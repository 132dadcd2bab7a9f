import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import type { IssuerPolicy } from '../../lib/api/types.ts';
import { parseCertificateChain } from '../../lib/pki/certificate.ts';
import { signPublicKey } from '../../lib/pki/issue.ts';
import { DAY, HOUR, opensslVerify, stubCsr, testCA } from '../../lib/testing/pki.ts';
import {
  type DecideContext,
  type Decision,
  decidePodCertificate,
  type PodCertificateRequestSpec,
  parseSignerName,
  refreshTime,
  type SigningIssuer,
  signerNameFor,
  trustBundleObjectName,
} from './signer.ts';

const now = new Date('2026-11-27T12:00:00.400Z');
const spkiOf = (key: KeyObject) => key.export({ type: 'spki', format: 'der' });

const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });

function spec(overrides: Partial<PodCertificateRequestSpec> = {}): PodCertificateRequestSpec {
  return {
    signerName: 'clusterissuers.sigil.dev/sigil-ca',
    podName: 'api-0',
    podUID: '6d3c1f0e-0000-4000-8000-000000000001',
    serviceAccountName: 'api',
    nodeName: 'node-1',
    maxExpirationSeconds: 86_400,
    stubPKCS10Request: stubCsr(p256.privateKey),
    ...overrides,
  };
}

function issuer(overrides: Partial<SigningIssuer> = {}): SigningIssuer {
  return {
    ref: { kind: 'ClusterIssuer', namespace: undefined, name: 'sigil-ca' },
    ready: true,
    message: 'ok',
    trustDomain: 'cluster.local',
    policy: undefined,
    caNotAfter: new Date(now.getTime() + 365 * DAY),
    ...overrides,
  };
}

function context(found: SigningIssuer | undefined, namespace = 'shop'): DecideContext {
  return { namespace, clusterDomain: 'cluster.local', issuer: () => found, now };
}

function expectKind<K extends Decision['kind']>(d: Decision, kind: K): Extract<Decision, { kind: K }> {
  if (d.kind !== kind) throw new Error(`expected ${kind}, got ${JSON.stringify(d)}`);
  return d as Extract<Decision, { kind: K }>;
}

describe('signer names', () => {
  it('names one signer per issuer, as cert-manager names CSR signers, and reads it back', () => {
    expect(signerNameFor('ClusterIssuer', undefined, 'sigil-ca')).toBe('clusterissuers.sigil.dev/sigil-ca');
    expect(signerNameFor('Issuer', 'shop', 'team.ca')).toBe('issuers.sigil.dev/shop.team.ca');
    expect(parseSignerName('clusterissuers.sigil.dev/sigil-ca')).toEqual({
      kind: 'ClusterIssuer',
      namespace: undefined,
      name: 'sigil-ca',
    });
    // A namespace is one label: the first dot ends it, the Issuer's name may hold more.
    expect(parseSignerName('issuers.sigil.dev/shop.team.ca')).toEqual({
      kind: 'Issuer',
      namespace: 'shop',
      name: 'team.ca',
    });
  });

  it("leaves other signers' names alone and calls a malformed Sigil name malformed", () => {
    expect(parseSignerName('example.com/foo')).toBeUndefined();
    expect(parseSignerName('kubernetes.io/kube-apiserver-client-pod')).toBeUndefined();
    expect(parseSignerName('sigil.dev')).toBeUndefined();
    expect(parseSignerName('issuers.sigil.dev/noname')).toBe('malformed');
    expect(parseSignerName('issuers.sigil.dev/.ca')).toBe('malformed');
    expect(parseSignerName('issuers.sigil.dev/Shop.ca')).toBe('malformed');
    expect(parseSignerName('clusterissuers.sigil.dev/UPPER')).toBe('malformed');
    expect(parseSignerName('clusterissuers.sigil.dev/')).toBe('malformed');
  });

  it('names the ClusterTrustBundle with the signer name as the API requires (slashes become colons)', () => {
    expect(trustBundleObjectName('clusterissuers.sigil.dev/sigil-ca')).toBe(
      'clusterissuers.sigil.dev:sigil-ca:bundle',
    );
    expect(trustBundleObjectName('issuers.sigil.dev/shop.ca')).toBe('issuers.sigil.dev:shop.ca:bundle');
  });
});

describe('decidePodCertificate', () => {
  it("issues the pod's SPIFFE ID and annotated names for the key in the stub request; OpenSSL verifies it", async () => {
    const { ca, certPem } = await testCA({ now });
    const d = expectKind(
      decidePodCertificate(
        spec({
          unverifiedUserAnnotations: { 'sigil.dev/dns-names': 'api.shop.svc', 'sigil.dev/service': 'web' },
        }),
        context(issuer()),
      ),
      'issue',
    );
    expect(d.request.uris).toEqual(['spiffe://cluster.local/ns/shop/sa/api']);
    expect(d.request.dnsNames).toEqual([
      'api.shop.svc',
      'web.shop',
      'web.shop.svc',
      'web.shop.svc.cluster.local',
    ]);
    expect(d.request.durationMs).toBe(DAY);
    const signed = await signPublicKey(ca, d.request, d.key.spki, now);
    const [leaf] = parseCertificateChain(signed.certificatePem);
    // Issued to the requester's key, which Sigil never saw.
    expect(leaf!.facts.key).toEqual({ algorithm: 'ECDSA', size: 256 });
    expect(Buffer.from(leaf!.spki).equals(spkiOf(p256.publicKey))).toBe(true);
    expect(leaf!.facts.uris).toEqual(['spiffe://cluster.local/ns/shop/sa/api']);
    expect(signed.notBefore.getTime() % 1000).toBe(0);
    expect(signed.notAfter.getTime() - signed.notBefore.getTime()).toBe(DAY);
    expect(opensslVerify(certPem, signed.certificatePem, 'sslclient', now)).toContain('OK');
    expect(opensslVerify(certPem, signed.certificatePem, 'sslserver', now)).toContain('OK');
  });

  it('reads the key from pkixPublicKey, as 1.34-1.35 kubelets send it, Ed25519 included', () => {
    const ed = generateKeyPairSync('ed25519');
    const d = expectKind(
      decidePodCertificate(
        spec({ stubPKCS10Request: undefined, pkixPublicKey: spkiOf(ed.publicKey).toString('base64') }),
        context(issuer()),
      ),
      'issue',
    );
    expect(d.key.key.algorithm).toBe('Ed25519');
  });

  it('denies an unknown user annotation key with InvalidUnverifiedUserAnnotations, naming the keys it reads', () => {
    const d = expectKind(
      decidePodCertificate(
        spec({ unverifiedUserAnnotations: { 'sigil.dev/dns-name': 'api.shop.svc' } }),
        context(issuer()),
      ),
      'deny',
    );
    expect(d.reason).toBe('InvalidUnverifiedUserAnnotations');
    expect(d.message).toContain('"sigil.dev/dns-name"');
    expect(d.message).toContain('sigil.dev/dns-names, sigil.dev/service, sigil.dev/renew-before');
  });

  it("denies another namespace's service name claimed through user annotations, under the tenancy rules", () => {
    const d = expectKind(
      decidePodCertificate(
        spec({ unverifiedUserAnnotations: { 'sigil.dev/dns-names': 'payments.bank.svc.cluster.local' } }),
        context(issuer()),
      ),
      'deny',
    );
    expect(d.reason).toBe('DNSNameNotAllowed');
    expect(d.message).toContain('payments.bank.svc.cluster.local');
    expect(d.message).toContain('ClusterIssuer sigil-ca refuses to sign');
  });

  it('denies a malformed or hostile annotation value', () => {
    for (const value of ['bad name', 'a..shop.svc', 'a'.repeat(300)]) {
      const d = expectKind(
        decidePodCertificate(
          spec({ unverifiedUserAnnotations: { 'sigil.dev/dns-names': value } }),
          context(issuer()),
        ),
        'deny',
      );
      expect(d.reason).toBe('InvalidUnverifiedUserAnnotations');
    }
    const service = expectKind(
      decidePodCertificate(
        spec({ unverifiedUserAnnotations: { 'sigil.dev/service': 'web.bank' } }),
        context(issuer()),
      ),
      'deny',
    );
    expect(service.message).toContain('not a Service name');
  });

  it("denies a pod using another namespace's Issuer, before looking the Issuer up", () => {
    let looked = false;
    const d = expectKind(
      decidePodCertificate(spec({ signerName: 'issuers.sigil.dev/bank.ca' }), {
        ...context(issuer()),
        issuer: () => {
          looked = true;
          return issuer();
        },
      }),
      'deny',
    );
    expect(d.reason).toBe('SignerNotAllowed');
    expect(d.message).toContain('namespace shop may not use Issuer bank/ca');
    expect(looked).toBe(false);
  });

  it("signs with the pod's own namespace's Issuer", () => {
    const d = expectKind(
      decidePodCertificate(
        spec({ signerName: 'issuers.sigil.dev/shop.ca' }),
        context(issuer({ ref: { kind: 'Issuer', namespace: 'shop', name: 'ca' } })),
      ),
      'issue',
    );
    expect(d.issuer).toEqual({ kind: 'Issuer', namespace: 'shop', name: 'ca' });
  });

  it('denies key types Sigil does not sign with UnsupportedKeyType and says which to use', () => {
    const p521 = generateKeyPairSync('ec', { namedCurve: 'P-521' });
    const d = expectKind(
      decidePodCertificate(spec({ stubPKCS10Request: stubCsr(p521.privateKey) }), context(issuer())),
      'deny',
    );
    expect(d.reason).toBe('UnsupportedKeyType');
    expect(d.message).toContain('ECDSAP256');
    const garbage = expectKind(
      decidePodCertificate(
        spec({ stubPKCS10Request: Buffer.from('not a csr').toString('base64') }),
        context(issuer()),
      ),
      'deny',
    );
    expect(garbage.reason).toBe('UnsupportedKeyType');
    expect(garbage.message).toContain('not a DER PKCS#10 request');
  });

  it('leaves requests for other signers alone', () => {
    expect(decidePodCertificate(spec({ signerName: 'example.com/pods' }), context(issuer())).kind).toBe(
      'ignore',
    );
  });

  it('waits for an issuer that does not exist or is not ready, saying which', () => {
    const missing = expectKind(decidePodCertificate(spec(), context(undefined)), 'wait');
    expect(missing.reason).toBe('IssuerNotFound');
    expect(missing.message).toContain('ClusterIssuer sigil-ca does not exist');
    const notReady = expectKind(
      decidePodCertificate(spec(), context(issuer({ ready: false, message: 'Secret sigil-ca not found' }))),
      'wait',
    );
    expect(notReady.message).toContain('Secret sigil-ca not found');
  });

  it("keeps the lifetime within the request's maximum and the issuer's maxDuration", () => {
    expect(
      expectKind(decidePodCertificate(spec({ maxExpirationSeconds: 3600 }), context(issuer())), 'issue')
        .request.durationMs,
    ).toBe(HOUR);
    const policy: IssuerPolicy = { maxDuration: '2h' };
    expect(
      expectKind(decidePodCertificate(spec(), context(issuer({ policy }))), 'issue').request.durationMs,
    ).toBe(2 * HOUR);
    const short = expectKind(
      decidePodCertificate(spec(), context(issuer({ policy: { maxDuration: '30m' } }))),
      'deny',
    );
    expect(short.message).toContain('shorter than the 1h Kubernetes requires');
  });

  it("fails a request when the CA expires within the hour Kubernetes requires, and caps the leaf at the CA's end otherwise", async () => {
    const soon = expectKind(
      decidePodCertificate(spec(), context(issuer({ caNotAfter: new Date(now.getTime() + 30 * 60_000) }))),
      'fail',
    );
    expect(soon.reason).toBe('CAExpiresTooSoon');
    expect(soon.message).toContain('sigil ca rotate');
    const { ca } = await testCA({ now, notAfter: new Date(now.getTime() + 2 * HOUR) });
    const d = expectKind(
      decidePodCertificate(spec(), context(issuer({ caNotAfter: ca.facts.notAfter }))),
      'issue',
    );
    const signed = await signPublicKey(ca, d.request, d.key.spki, now);
    expect(signed.notAfter.getTime()).toBe(ca.facts.notAfter.getTime());
    expect(signed.notAfter.getTime() - signed.notBefore.getTime()).toBeGreaterThanOrEqual(HOUR);
  });

  it('refuses a namespace the ClusterIssuer does not serve', () => {
    const d = expectKind(
      decidePodCertificate(spec(), context(issuer({ policy: { allowedNamespaces: ['bank'] } }))),
      'deny',
    );
    expect(d.reason).toBe('NamespaceNotAllowed');
  });

  it("honours the issuer's allowed key algorithms", () => {
    const d = expectKind(
      decidePodCertificate(spec(), context(issuer({ policy: { allowedKeyAlgorithms: ['Ed25519'] } }))),
      'deny',
    );
    expect(d.reason).toBe('KeyNotAllowed');
  });
});

describe('refreshTime', () => {
  it("starts refresh at Sigil's renewal point, two thirds into the lifetime", () => {
    const nb = new Date('2026-11-27T12:00:00Z');
    expect(refreshTime(nb, new Date(nb.getTime() + DAY)).toISOString()).toBe('2026-11-28T04:00:00.000Z');
  });

  it('starts refresh renewBefore ahead of notAfter when the pod asks, still within the bounds', () => {
    const nb = new Date('2026-11-27T12:00:00Z');
    const na = new Date(nb.getTime() + HOUR);
    expect(refreshTime(nb, na, 20 * 60_000).toISOString()).toBe('2026-11-27T12:40:00.000Z');
    // Asking for more than the lifetime allows gives the earliest Kubernetes accepts.
    expect(refreshTime(nb, na, 55 * 60_000).toISOString()).toBe('2026-11-27T12:10:00.000Z');
    const d = expectKind(
      decidePodCertificate(
        spec({ maxExpirationSeconds: 3600, unverifiedUserAnnotations: { 'sigil.dev/renew-before': '50m' } }),
        context(issuer()),
      ),
      'issue',
    );
    expect(d.refreshAt(nb, na).toISOString()).toBe('2026-11-27T12:10:00.000Z');
    const bad = expectKind(
      decidePodCertificate(
        spec({ unverifiedUserAnnotations: { 'sigil.dev/renew-before': 'soon' } }),
        context(issuer()),
      ),
      'deny',
    );
    expect(bad.reason).toBe('InvalidUnverifiedUserAnnotations');
  });

  it('keeps within [notBefore + 10 min, notAfter - 10 min] for the shortest lifetimes', () => {
    const nb = new Date('2026-11-27T12:00:00Z');
    for (const ms of [HOUR, HOUR + 1000, 20 * 60_000]) {
      const na = new Date(nb.getTime() + ms);
      const at = refreshTime(nb, na).getTime();
      expect(at).toBeGreaterThanOrEqual(nb.getTime() + 10 * 60_000);
      expect(at).toBeLessThanOrEqual(na.getTime() - 10 * 60_000);
      expect(at % 1000).toBe(0);
    }
  });
});
