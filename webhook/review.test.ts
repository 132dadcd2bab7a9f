import type { V1Pod } from '@kubernetes/client-node';
import { ReviewErrorCode } from './errors.ts';
import { podIdentity } from './identity.ts';
import { buildPatch } from './patch.ts';
import { peekReview, planAdmission } from './review.ts';

const options = { trustDomain: 'cluster.local', clusterDomain: 'cluster.local' };

function pod(annotations: Record<string, string> = {}, spec: Partial<V1Pod['spec']> = {}): V1Pod {
  return {
    metadata: { generateName: 'web-', annotations },
    spec: { serviceAccountName: 'web', containers: [{ name: 'app', image: 'x' }], ...spec },
  };
}

function review(p: V1Pod, extra: Record<string, unknown> = {}) {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'u-1',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      operation: 'CREATE',
      namespace: 'shop',
      object: p,
      ...extra,
    },
  };
}

function errorOf(fn: () => unknown): { code?: string; message?: string; uid?: string } {
  try {
    fn();
  } catch (err) {
    return err as { code?: string; message?: string; uid?: string };
  }
  throw new Error('expected an error');
}

describe('podIdentity', () => {
  it('should derive the SPIFFE ID from namespace and service account, defaulting to "default"', () => {
    expect(podIdentity(pod(), 'shop', options).identity.spiffeId).toBe(
      'spiffe://cluster.local/ns/shop/sa/web',
    );
    expect(podIdentity(pod({}, { serviceAccountName: undefined }), 'shop', options).identity.spiffeId).toBe(
      'spiffe://cluster.local/ns/shop/sa/default',
    );
  });

  it('should give replicas the same Certificate name and different identities different names', () => {
    const a = podIdentity(pod(), 'shop', options).identity.certificateName;
    expect(
      podIdentity({ ...pod(), metadata: { generateName: 'other-' } }, 'shop', options).identity
        .certificateName,
    ).toBe(a);
    expect(
      podIdentity(pod({ 'sigil.dev/service': 'web' }), 'shop', options).identity.certificateName,
    ).not.toBe(a);
    expect(
      podIdentity(pod({}, { serviceAccountName: 'api' }), 'shop', options).identity.certificateName,
    ).not.toBe(a);
    expect(a).toMatch(/^[a-z0-9-]{1,63}$/);
  });

  it('should expand a service into its namespace-qualified names, without the bare name every namespace resolves', () => {
    expect(podIdentity(pod({ 'sigil.dev/service': 'api' }), 'shop', options).identity.dnsNames).toEqual(
      ['api.shop', 'api.shop.svc', 'api.shop.svc.cluster.local'].sort(),
    );
  });

  it.each([
    ['api.shop.svc', true],
    ['api.shop.svc.cluster.local', true],
    ['api.shop', true],
    ['*.shop.svc', true],
    ['api', false],
    ['api.bank.svc', false],
    ['api.shop.svc.evil.example', false],
    ['api.example.com', false],
  ])('should judge whether %s stays in namespace shop: %s', (name, inside) => {
    const { foreignNames } = podIdentity(pod({ 'sigil.dev/dns-names': name }), 'shop', options);
    expect(foreignNames.length === 0).toBe(inside);
  });

  it('should report names outside the namespace for the issuer to approve', () => {
    expect(
      podIdentity(pod({ 'sigil.dev/dns-names': 'a.shop.svc,api.bank.svc' }), 'shop', options).foreignNames,
    ).toEqual(['api.bank.svc']);
  });

  it.each([
    [{ 'sigil.dev/dns-names': 'Bad_Name' }, 'sigil.dev/dns-names'],
    [{ 'sigil.dev/service': 'a.b' }, 'is not a service name'],
    [{ 'sigil.dev/duration': 'forever' }, 'is not a Go duration'],
    [{ 'sigil.dev/issuer': 'Vault/x' }, 'must be <name>, Issuer/<name> or ClusterIssuer/<name>'],
    [{ 'sigil.dev/mount-path': '../etc' }, 'must be an absolute path'],
  ])('should refuse annotations %j', (annotations, phrase) => {
    expect(() => podIdentity(pod(annotations), 'shop', options)).toThrow(phrase);
  });
});

describe('buildPatch', () => {
  const identityOf = (p: V1Pod) => podIdentity(p, 'shop', options).identity;

  it('should create the lists a pod does not have yet', () => {
    const p = pod();
    const ops = buildPatch(p, identityOf(p));
    expect(ops.map((o) => o.path)).toEqual([
      '/spec/volumes',
      '/spec/containers/0/volumeMounts',
      '/spec/containers/0/env',
      '/metadata/annotations/sigil.dev~1status',
      '/metadata/annotations/sigil.dev~1certificate',
      '/metadata/labels',
    ]);
  });

  it('should append to lists the pod has, in init and app containers, never with subPath', () => {
    const p = pod(
      {},
      {
        initContainers: [{ name: 'init', image: 'x', env: [{ name: 'A', value: '1' }] }],
        containers: [{ name: 'app', image: 'x', volumeMounts: [{ name: 'd', mountPath: '/d' }] }],
        volumes: [{ name: 'd', emptyDir: {} }],
      },
    );
    const ops = buildPatch(p, identityOf(p));
    expect(ops.filter((o) => o.path.endsWith('/-')).map((o) => o.path)).toEqual([
      '/spec/volumes/-',
      '/spec/initContainers/0/env/-',
      '/spec/initContainers/0/env/-',
      '/spec/initContainers/0/env/-',
      '/spec/initContainers/0/env/-',
      '/spec/containers/0/volumeMounts/-',
    ]);
    expect(JSON.stringify(ops)).not.toContain('subPath');
  });

  it.each([
    [
      'a volume named sigil-identity',
      { volumes: [{ name: 'sigil-identity', emptyDir: {} }] },
      'already has a volume named sigil-identity',
    ],
    [
      'SIGIL_SPIFFE_ID set by hand',
      { containers: [{ name: 'app', image: 'x', env: [{ name: 'SIGIL_SPIFFE_ID', value: 'spiffe://x' }] }] },
      'already sets SIGIL_SPIFFE_ID',
    ],
  ])('should refuse a pod with %s', (_n, spec, phrase) => {
    const p = pod({}, spec as Partial<V1Pod['spec']>);
    expect(() => buildPatch(p, identityOf(p))).toThrow(phrase);
  });

  it('should refuse a containers annotation naming a container the pod lacks', () => {
    const p = pod({ 'sigil.dev/containers': 'ghost' });
    expect(() => buildPatch(p, identityOf(p))).toThrow('names container "ghost"');
  });
});

describe('planAdmission', () => {
  it('should inject a new pod and leave an injected one alone', () => {
    const plan = planAdmission(review(pod()), options);
    expect(plan.kind).toBe('inject');
    const again = planAdmission(review(pod({ 'sigil.dev/status': 'injected' })), options);
    expect(again).toEqual({ kind: 'respond', response: { uid: 'u-1', allowed: true } });
  });

  it('should carry dryRun through', () => {
    const plan = planAdmission(review(pod(), { dryRun: true }), options);
    expect(plan.kind === 'inject' && plan.request.dryRun).toBe(true);
  });

  it.each([
    ['a non-object body', 'hello', ReviewErrorCode.MalformedReview, undefined],
    [
      'a review without a uid',
      { ...review(pod()), request: { ...review(pod()).request, uid: 7 } },
      ReviewErrorCode.MalformedReview,
      undefined,
    ],
    [
      'a Deployment',
      review(pod(), { kind: { group: 'apps', version: 'v1', kind: 'Deployment' } }),
      ReviewErrorCode.UnsupportedRequest,
      'u-1',
    ],
    ['an UPDATE', review(pod(), { operation: 'UPDATE' }), ReviewErrorCode.UnsupportedRequest, 'u-1'],
    [
      'a pod without containers',
      review({ metadata: {}, spec: {} } as V1Pod),
      ReviewErrorCode.MalformedReview,
      undefined,
    ],
    [
      'a bad annotation',
      review(pod({ 'sigil.dev/duration': 'x' })),
      ReviewErrorCode.InvalidAnnotation,
      'u-1',
    ],
  ])('should reject %s with its code', (_n, body, code, uid) => {
    const err = errorOf(() => planAdmission(body, options));
    expect(err.code).toBe(code);
    expect(err.uid).toBe(uid);
    expect(err.message).toEqual(expect.any(String));
  });
});

describe('peekReview', () => {
  const body = (value: unknown) => Buffer.from(JSON.stringify(value));

  it("should read the uid and namespace of a review as the API server writes it, before the pod's own fields", () => {
    const p = pod({ 'sigil.dev/dns-names': '"namespace":"other"' });
    p.metadata!.namespace = 'other';
    expect(peekReview(body(review(p)))).toEqual({ uid: 'u-1', namespace: 'shop' });
  });

  it('should find nothing it cannot read cheaply: a namespace past the first 16 KiB, or written with escapes', () => {
    const padded = { padding: 'x'.repeat(20_000), ...review(pod()) };
    expect(peekReview(body(padded)).namespace).toBeUndefined();
    expect(peekReview(Buffer.from('{"request":{"uid":"u-2","namespace":"\\u0073hop"}}'))).toEqual({
      uid: 'u-2',
    });
  });
});
