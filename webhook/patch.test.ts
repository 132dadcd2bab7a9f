import type { V1Pod } from '@kubernetes/client-node';
import { podIdentity } from './identity.ts';
import { buildPatch, deliveryFor, identitySignerName } from './patch.ts';

const options = { trustDomain: 'cluster.local', clusterDomain: 'cluster.local' };

function pod(annotations: Record<string, string> = {}): V1Pod {
  return {
    metadata: { name: 'api-0', namespace: 'shop', annotations },
    spec: { serviceAccountName: 'api', containers: [{ name: 'app', image: 'app' }] },
  };
}

function volumeOf(ops: ReturnType<typeof buildPatch>) {
  const op = ops.find((o) => o.path === '/spec/volumes');
  return (op!.value as { projected: { sources: Record<string, unknown>[] } }[])[0]!;
}

describe('delivery', () => {
  it("takes the namespace's label over the issuer's spec.delivery, and Secret without either", () => {
    expect(deliveryFor(undefined, undefined)).toBe('Secret');
    expect(deliveryFor(undefined, 'PodCertificate')).toBe('PodCertificate');
    expect(deliveryFor('Secret', 'PodCertificate')).toBe('Secret');
    expect(deliveryFor('PodCertificate', undefined)).toBe('PodCertificate');
    expect(deliveryFor('kubelet', undefined)).toEqual({
      problem: expect.stringContaining('sigil.dev/delivery=kubelet is neither Secret nor PodCertificate'),
    });
  });

  it('names the signer of the pod’s issuer as the operator serves it', () => {
    const { identity } = podIdentity(pod(), 'shop', options);
    expect(identitySignerName(identity, 'sigil-ca')).toBe('clusterissuers.sigil.dev/sigil-ca');
    const named = podIdentity(pod({ 'sigil.dev/issuer': 'Issuer/team-ca' }), 'shop', options).identity;
    expect(identitySignerName(named, 'sigil-ca')).toBe('issuers.sigil.dev/shop.team-ca');
  });

  it('mounts a podCertificate and a clusterTrustBundle source into the same three files, and names no Certificate', () => {
    const { identity } = podIdentity(
      pod({ 'sigil.dev/service': 'api', 'sigil.dev/duration': '2h' }),
      'shop',
      options,
    );
    const ops = buildPatch(pod(), identity, 'sigil-ca', 'PodCertificate');
    const sources = volumeOf(ops).projected.sources;
    expect(sources).toEqual([
      {
        podCertificate: {
          signerName: 'clusterissuers.sigil.dev/sigil-ca',
          keyType: 'ECDSAP256',
          keyPath: 'tls.key',
          certificateChainPath: 'tls.crt',
          maxExpirationSeconds: 7200,
          userAnnotations: { 'sigil.dev/dns-names': 'api.shop,api.shop.svc,api.shop.svc.cluster.local' },
        },
      },
      {
        clusterTrustBundle: {
          signerName: 'clusterissuers.sigil.dev/sigil-ca',
          labelSelector: {},
          path: 'ca.crt',
        },
      },
    ]);
    const paths = ops.map((o) => o.path);
    expect(paths).not.toContain('/metadata/labels');
    const annotations = ops.filter((o) => o.path.startsWith('/metadata/annotations/'));
    expect(Object.fromEntries(annotations.map((o) => [o.path, o.value]))).toEqual({
      '/metadata/annotations/sigil.dev~1status': 'injected',
      '/metadata/annotations/sigil.dev~1delivery': 'PodCertificate',
    });
    // The same environment as the Secret path: applications do not change.
    const env = ops.find((o) => o.path === '/spec/containers/0/env')!.value as {
      name: string;
      value: string;
    }[];
    expect(env.map((e) => e.value)).toEqual([
      '/var/run/secrets/sigil.dev/tls.crt',
      '/var/run/secrets/sigil.dev/tls.key',
      '/var/run/secrets/sigil.dev/ca.crt',
      'spiffe://cluster.local/ns/shop/sa/api',
    ]);
  });

  it('keeps the Secret and trust-bundle ConfigMap sources by default', () => {
    const { identity } = podIdentity(pod(), 'shop', options);
    const sources = volumeOf(buildPatch(pod(), identity, 'sigil-ca')).projected.sources;
    expect(Object.keys(sources[0]!)).toEqual(['secret']);
    expect(Object.keys(sources[1]!)).toEqual(['configMap']);
  });
});
