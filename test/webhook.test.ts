// The injection webhook called by the real API server over TLS.
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  setHeaderOptions,
  type V1Pod,
} from '@kubernetes/client-node';
import { GROUP, Plural, VERSION } from '../lib/api/types.ts';
import { readKeyPair } from '../lib/pki/inspect.ts';
import { opensslVerify } from '../lib/testing/pki.ts';
import { createTestNamespace, eventually, testKubeConfig } from './support/kube.ts';
import { createCertificate, decode, readSecret, waitForCertificate } from './support/sigil.ts';
import { createPod, type InjectionSetup, pod, setupInjection } from './support/webhook.ts';

const kc: KubeConfig = testKubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);
let setup: InjectionSetup;
let injected: string;

async function certificatesIn(ns: string): Promise<string[]> {
  const list = (await custom.listNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: ns,
    plural: Plural.Certificate,
  })) as {
    items: { metadata: { name: string } }[];
  };
  return list.items.map((c) => c.metadata.name);
}

function sigilVolumes(p: V1Pod) {
  return (p.spec?.volumes ?? []).filter((v) => v.name === 'sigil-identity');
}

beforeAll(async () => {
  setup = await setupInjection(kc);
  injected = await createTestNamespace(kc, 'inject', { 'sigil.dev/inject': 'enabled' });
}, 60_000);

afterAll(async () => {
  await setup?.stop();
});

describe('injection', () => {
  it('should mount the identity in every container and create its Certificate', async () => {
    const created = await createPod(
      kc,
      injected,
      pod('web', {
        serviceAccountName: 'web',
        initContainers: [{ name: 'init', image: 'example.com/init:1' }],
        containers: [
          { name: 'app', image: 'example.com/app:1', env: [{ name: 'KEEP', value: 'me' }] },
          {
            name: 'sidecar',
            image: 'example.com/sidecar:1',
            volumeMounts: [{ name: 'data', mountPath: '/data' }],
          },
        ],
        volumes: [{ name: 'data', emptyDir: {} }],
      }),
    );
    const spiffe = `spiffe://cluster.local/ns/${injected}/sa/web`;
    expect(created.metadata?.annotations?.['sigil.dev/status']).toBe('injected');
    const certName = created.metadata!.annotations!['sigil.dev/certificate']!;
    expect(sigilVolumes(created)).toHaveLength(1);
    expect(sigilVolumes(created)[0]!.projected?.sources?.[0]?.secret?.name).toBe(certName);
    expect(sigilVolumes(created)[0]!.projected?.sources?.[0]?.secret?.optional).toBeFalsy();
    for (const c of [...created.spec!.initContainers!, ...created.spec!.containers]) {
      const mount = c.volumeMounts?.find((m) => m.name === 'sigil-identity');
      expect(mount).toMatchObject({ mountPath: '/var/run/secrets/sigil.dev', readOnly: true });
      expect(mount?.subPath).toBeUndefined();
      const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));
      expect(env).toMatchObject({
        SIGIL_CERT_FILE: '/var/run/secrets/sigil.dev/tls.crt',
        SIGIL_KEY_FILE: '/var/run/secrets/sigil.dev/tls.key',
        SIGIL_CA_FILE: '/var/run/secrets/sigil.dev/ca.crt',
        SIGIL_SPIFFE_ID: spiffe,
      });
    }
    expect(created.spec!.containers[0]!.env?.[0]).toEqual({ name: 'KEEP', value: 'me' });
    await waitForCertificate(kc, injected, certName, { status: 'True' });
    const secret = await readSecret(kc, injected, certName);
    const pair = readKeyPair(decode(secret, 'tls.crt'), decode(secret, 'tls.key'));
    expect(pair.leaf.facts.uris).toEqual([spiffe]);
    expect(pair.keyMatches).toBe(true);
    expect(opensslVerify(decode(secret, 'ca.crt'), decode(secret, 'tls.crt'), 'sslclient')).toContain('OK');
  });

  it('should expand sigil.dev/service and honour the mount path and container annotations', async () => {
    const created = await createPod(
      kc,
      injected,
      pod(
        'api',
        {
          serviceAccountName: 'api',
          containers: [
            { name: 'app', image: 'example.com/app:1' },
            { name: 'proxy', image: 'example.com/proxy:1' },
          ],
        },
        {
          annotations: {
            'sigil.dev/service': 'api',
            'sigil.dev/mount-path': '/etc/mtls',
            'sigil.dev/containers': 'proxy',
          },
        },
      ),
    );
    expect(created.spec!.containers[0]!.volumeMounts ?? []).toHaveLength(0);
    expect(created.spec!.containers[1]!.volumeMounts?.[0]?.mountPath).toBe('/etc/mtls');
    const certName = created.metadata!.annotations!['sigil.dev/certificate']!;
    await waitForCertificate(kc, injected, certName, { status: 'True' });
    const leaf = readKeyPair(
      decode(await readSecret(kc, injected, certName), 'tls.crt'),
      decode(await readSecret(kc, injected, certName), 'tls.key'),
    ).leaf;
    expect(leaf.facts.dnsNames).toEqual(
      [`api.${injected}`, `api.${injected}.svc`, `api.${injected}.svc.cluster.local`].sort(),
    );
  });

  it('should inject a pod labelled sigil.dev/inject=true in an unlabelled namespace, with generateName and no service account', async () => {
    const plain = await createTestNamespace(kc, 'plain');
    const created = await createPod(kc, plain, {
      ...pod(''),
      metadata: { generateName: 'job-', labels: { 'sigil.dev/inject': 'true' } },
    });
    expect(created.metadata?.name).toMatch(/^job-/);
    expect(sigilVolumes(created)).toHaveLength(1);
    expect(created.spec!.containers[0]!.env?.find((e) => e.name === 'SIGIL_SPIFFE_ID')?.value).toBe(
      `spiffe://cluster.local/ns/${plain}/sa/default`,
    );
  });

  it.each([
    ['a namespace labelled sigil.dev/inject=true', { 'sigil.dev/inject': 'true' }, {}, true],
    [
      'a pod labelled sigil.dev/inject=enabled in an unlabelled namespace',
      {},
      { 'sigil.dev/inject': 'enabled' },
      true,
    ],
    [
      'a pod labelled sigil.dev/inject=disabled in an opted-in namespace',
      { 'sigil.dev/inject': 'enabled' },
      { 'sigil.dev/inject': 'disabled' },
      false,
    ],
  ])(
    'should honour %s: either opt-in value works on either object',
    async (_n, nsLabels, podLabels, injected) => {
      const ns = await createTestNamespace(kc, 'optin', nsLabels);
      const created = await createPod(kc, ns, { ...pod('p'), metadata: { name: 'p', labels: podLabels } });
      expect(sigilVolumes(created)).toHaveLength(injected ? 1 : 0);
    },
  );

  it('should warn, through the API server, of a sigil.dev annotation it does not read, naming the one meant', async () => {
    const { request: httpsRequest } = await import('node:https');
    // client-node does not surface warnings; kubectl prints them from this header.
    const post = async (body: object) => {
      const url = new URL(`${kc.getCurrentCluster()!.server}/api/v1/namespaces/${injected}/pods`);
      const opts: import('node:https').RequestOptions = {
        method: 'POST',
        hostname: url.hostname,
        port: url.port,
        path: url.pathname,
        headers: { 'content-type': 'application/json' },
      };
      await kc.applyToHTTPSOptions(opts);
      return new Promise<{ status: number; warnings: string }>((resolve, reject) => {
        const req = httpsRequest(opts, (res) => {
          res.resume();
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, warnings: String(res.headers.warning ?? '') }),
          );
        });
        req.on('error', reject);
        req.end(JSON.stringify(body));
      });
    };
    const typo = await post(
      pod(
        'typo',
        {},
        {
          annotations: { 'sigil.dev/dns-name': `web.${injected}.svc` },
          labels: { 'sigil.dev/inject': 'yes' },
        },
      ),
    );
    expect(typo.status).toBe(201);
    expect(typo.warnings).toContain(
      'annotation sigil.dev/dns-name is not one Sigil reads and was ignored; did you mean sigil.dev/dns-names?',
    );
    expect(typo.warnings).toContain(
      'label sigil.dev/inject=yes is neither enabled nor true (inject) nor false nor disabled',
    );
    const clean = await post(
      pod('clean', {}, { annotations: { 'sigil.dev/dns-names': `web.${injected}.svc` } }),
    );
    expect(clean).toEqual({ status: 201, warnings: '' });
  });

  it('should give 50 replicas created at once one shared Certificate', async () => {
    const ns = await createTestNamespace(kc, 'replicas', { 'sigil.dev/inject': 'enabled' });
    const pods = await Promise.all(
      Array.from({ length: 50 }, () =>
        createPod(kc, ns, {
          ...pod(''),
          metadata: { generateName: 'worker-', labels: { app: 'worker' } },
          spec: { serviceAccountName: 'worker', containers: [{ name: 'w', image: 'example.com/w:1' }] },
        }),
      ),
    );
    const names = new Set(pods.map((p) => p.metadata!.annotations!['sigil.dev/certificate']));
    expect(names.size).toBe(1);
    expect(await certificatesIn(ns)).toEqual([...names]);
    await waitForCertificate(kc, ns, [...names][0]!, { status: 'True' });
  });

  it('should create nothing for a dry-run', async () => {
    const ns = await createTestNamespace(kc, 'dryrun', { 'sigil.dev/inject': 'enabled' });
    const created = await createPod(kc, ns, pod('dry', { serviceAccountName: 'dry' }), true);
    expect(sigilVolumes(created)).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 500));
    expect(await certificatesIn(ns)).toEqual([]);
    await expect(core.readNamespacedPod({ name: 'dry', namespace: ns })).rejects.toMatchObject({ code: 404 });
  });

  it('should deny a pod that claims a name in another namespace, naming the claim', async () => {
    const err = await createPod(
      kc,
      injected,
      pod('thief', {}, { annotations: { 'sigil.dev/dns-names': 'api.b.svc' } }),
    ).catch((e: unknown) => e);
    const body = String((err as { body?: string }).body);
    expect((err as { code?: number }).code).toBe(403);
    expect(body).toContain('api.b.svc');
    expect(body).toContain('is a name of namespace b');
    // Whose name it is and how to get it: the wording is the tenancy module's.
    expect(body).toContain(`Certificates in ${injected}`);
    expect(body).toContain('spec.policy.allowedDNSNames');
  });

  it.each([
    [
      'a duration shorter than the operator issues',
      { 'sigil.dev/duration': '1s' },
      400,
      'annotation sigil.dev/duration: "1s" is shorter than the shortest certificate the operator issues (1m',
    ],
    [
      'an issuer that does not exist',
      { 'sigil.dev/issuer': 'nope' },
      400,
      'annotation sigil.dev/issuer: ClusterIssuer nope does not exist',
    ],
    [
      'a namespaced Issuer that does not exist',
      { 'sigil.dev/issuer': 'Issuer/nope' },
      400,
      'Issuer nope does not exist in namespace',
    ],
  ])(
    'should refuse a pod whose certificate could never be issued: %s, naming the annotation, and create nothing',
    async (_n, annotations, code, phrase) => {
      const before = await certificatesIn(injected);
      const name = `never-${Object.values(annotations)[0]!
        .toLowerCase()
        .replace(/[^a-z0-9]/g, '')}`;
      const err = await createPod(kc, injected, pod(name, {}, { annotations })).catch((e: unknown) => e);
      expect((err as { code?: number }).code).toBe(code);
      const status = JSON.parse(String((err as { body?: string }).body)) as { message: string };
      expect(status.message).toContain(phrase);
      await expect(core.readNamespacedPod({ name, namespace: injected })).rejects.toMatchObject({
        code: 404,
      });
      expect(await certificatesIn(injected)).toEqual(before);
    },
  );

  it.each([
    [
      'td',
      'another trust domain',
      { trustDomain: 'other.example' },
      "outside Issuer strict-td's trust domain",
    ],
    [
      'rsa',
      'only RSA keys',
      { policy: { allowedKeyAlgorithms: ['RSA'] } },
      'key algorithm ECDSA is not allowed',
    ],
    [
      'elsewhere',
      'other namespaces only',
      { policy: { allowedNamespaces: ['somewhere-else'] } },
      'may not use Issuer',
    ],
  ])(
    'should refuse a pod whose issuer (%s) signs %s, by the rule the operator issues by',
    async (id, _n, spec, phrase) => {
      const { caSecretData, createIssuer, createSecret, waitForIssuer } = await import('./support/sigil.ts');
      const name = `strict-${id}`;
      await createSecret(kc, injected, `${name}-ca`, await caSecretData('Strict CA'));
      await createIssuer(
        kc,
        'Issuer',
        name,
        { ca: { secretName: `${name}-ca` }, ...(spec as object) },
        injected,
      );
      await waitForIssuer(kc, 'Issuer', name, { status: 'True' }, injected);
      const before = await certificatesIn(injected);
      const err = await createPod(
        kc,
        injected,
        pod(`to-${name}`, {}, { annotations: { 'sigil.dev/issuer': `Issuer/${name}` } }),
      ).catch((e: unknown) => e);
      expect((err as { code?: number }).code).toBe(403);
      expect(String((err as { body?: string }).body)).toContain(phrase);
      expect(await certificatesIn(injected)).toEqual(before);
    },
  );

  it("should refuse a pod asking for longer than its issuer's maxDuration, naming the annotation and the limit", async () => {
    const { caSecretData, createIssuer, createSecret, waitForIssuer } = await import('./support/sigil.ts');
    await createSecret(kc, injected, 'capped-ca', await caSecretData('Capped CA'));
    await createIssuer(
      kc,
      'Issuer',
      'capped',
      { ca: { secretName: 'capped-ca' }, policy: { maxDuration: '12h' } },
      injected,
    );
    await waitForIssuer(kc, 'Issuer', 'capped', { status: 'True' }, injected);
    const err = await createPod(
      kc,
      injected,
      pod('too-long', {}, { annotations: { 'sigil.dev/issuer': 'Issuer/capped' } }),
    ).catch((e: unknown) => e);
    expect(String((err as { body?: string }).body)).toContain(
      "this pod's certificate could never be issued: duration 24h is longer than Issuer capped's maximum 12h (spec.policy.maxDuration); set sigil.dev/duration within it",
    );
    const ok = await createPod(
      kc,
      injected,
      pod(
        'short-enough',
        {},
        { annotations: { 'sigil.dev/issuer': 'Issuer/capped', 'sigil.dev/duration': '12h' } },
      ),
    );
    expect(ok.metadata?.annotations?.['sigil.dev/status']).toBe('injected');
  });

  it.each([
    [
      "a volume with Sigil's name",
      { volumes: [{ name: 'sigil-identity', emptyDir: {} }] },
      'already has a volume named sigil-identity',
    ],
    [
      'a mount at the identity path',
      {
        containers: [
          { name: 'app', image: 'x', volumeMounts: [{ name: 'd', mountPath: '/var/run/secrets/sigil.dev' }] },
        ],
        volumes: [{ name: 'd', emptyDir: {} }],
      },
      'already mounts d at /var/run/secrets/sigil.dev',
    ],
  ])('should deny a pod with %s, saying how to fix it', async (_n, spec, phrase) => {
    const err = await createPod(kc, injected, pod('clash', spec as Partial<V1Pod['spec']>)).catch(
      (e: unknown) => e,
    );
    expect(String((err as { body?: string }).body)).toContain(phrase);
  });
});

describe('re-invocation', () => {
  it('should change nothing more when a later webhook re-invokes it', async () => {
    // A second mutating webhook that labels every pod, so the API server re-invokes Sigil (IfNeeded).
    const { createServer } = await import('node:https');
    const { testCA } = await import('../lib/testing/pki.ts');
    const { issueCertificate } = await import('../lib/pki/issue.ts');
    const { rawRequest } = await import('../lib/kube/rest.ts');
    const { ca } = await testCA({ commonName: 'labeller CA' });
    const serving = await issueCertificate(
      ca,
      { ipAddresses: ['127.0.0.1'], durationMs: 3_600_000 },
      new Date(),
    );
    let calls = 0;
    const labeller = createServer(
      { cert: serving.certificatePem, key: serving.privateKeyPem },
      (req, res) => {
        let body = '';
        req.on('data', (d) => {
          body += d;
        });
        req.on('end', () => {
          calls++;
          const review = JSON.parse(body);
          const hasLabels = Boolean(review.request.object.metadata.labels);
          const patch = hasLabels
            ? [{ op: 'add', path: '/metadata/labels/labelled-by', value: 'second-webhook' }]
            : [{ op: 'add', path: '/metadata/labels', value: { 'labelled-by': 'second-webhook' } }];
          const already = review.request.object.metadata.labels?.['labelled-by'] === 'second-webhook';
          res.setHeader('content-type', 'application/json');
          res.end(
            JSON.stringify({
              apiVersion: 'admission.k8s.io/v1',
              kind: 'AdmissionReview',
              response: already
                ? { uid: review.request.uid, allowed: true }
                : {
                    uid: review.request.uid,
                    allowed: true,
                    patchType: 'JSONPatch',
                    patch: Buffer.from(JSON.stringify(patch)).toString('base64'),
                  },
            }),
          );
        });
      },
    );
    await new Promise<void>((r) => labeller.listen(0, '127.0.0.1', r));
    const port = (labeller.address() as import('node:net').AddressInfo).port;
    const ns = await createTestNamespace(kc, 'reinvoke', { 'sigil.dev/inject': 'enabled' });
    const name = `zz-labeller-${ns}`;
    await rawRequest(kc, 'POST', '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations', {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'MutatingWebhookConfiguration',
      metadata: { name },
      webhooks: [
        {
          name: 'labeller.example.com',
          admissionReviewVersions: ['v1'],
          clientConfig: {
            url: `https://127.0.0.1:${port}/`,
            caBundle: Buffer.from(ca.trustAnchorPem).toString('base64'),
          },
          rules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'] }],
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': ns } },
          sideEffects: 'None',
          failurePolicy: 'Fail',
          reinvocationPolicy: 'IfNeeded',
        },
      ],
    });
    try {
      const unchangedBefore =
        (await setup.webhook.metrics.admissions.get()).values.find((v) => v.labels.result === 'unchanged')
          ?.value ?? 0;
      const created = await createPod(
        kc,
        ns,
        pod('twice', {
          initContainers: [{ name: 'init', image: 'x' }],
          containers: [
            { name: 'app', image: 'x' },
            { name: 'side', image: 'y' },
          ],
        }),
      );
      const unchangedAfter =
        (await setup.webhook.metrics.admissions.get()).values.find((v) => v.labels.result === 'unchanged')
          ?.value ?? 0;
      expect(created.metadata?.labels?.['labelled-by']).toBe('second-webhook');
      expect(calls).toBeGreaterThanOrEqual(1);
      // Sigil saw the pod again (re-invocation) and left it as it was.
      expect(unchangedAfter).toBeGreaterThan(unchangedBefore);
      expect(sigilVolumes(created)).toHaveLength(1);
      for (const c of [...created.spec!.initContainers!, ...created.spec!.containers]) {
        expect((c.volumeMounts ?? []).filter((m) => m.name === 'sigil-identity')).toHaveLength(1);
        expect((c.env ?? []).filter((e) => e.name === 'SIGIL_SPIFFE_ID')).toHaveLength(1);
      }
    } finally {
      await rawRequest(
        kc,
        'DELETE',
        `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${name}`,
      );
      labeller.close();
    }
  });
});

describe('unused identities', () => {
  it("should delete an identity Certificate and its Secret once no pod uses it, and never a user's Certificate", async () => {
    const ns = await createTestNamespace(kc, 'gc', { 'sigil.dev/inject': 'enabled' });
    const p = await createPod(kc, ns, pod('short-lived', { serviceAccountName: 'batch' }));
    const name = p.metadata!.annotations!['sigil.dev/certificate']!;
    await waitForCertificate(kc, ns, name, { status: 'True' });
    await createCertificate(kc, ns, 'mine', { secretName: 'mine-tls', dnsNames: ['mine.example.com'] });
    await new Promise((r) => setTimeout(r, 3_000));
    // Still used: kept past the grace period.
    expect(await certificatesIn(ns)).toEqual(expect.arrayContaining([name, 'mine']));
    await core.deleteNamespacedPod({ name: 'short-lived', namespace: ns });
    await eventually(
      'identity Certificate to be deleted',
      async () => ((await certificatesIn(ns)).includes(name) ? undefined : true),
      15_000,
    );
    await eventually('identity Secret to be deleted', async () =>
      (await readSecret(kc, ns, name)
        .then(() => false)
        .catch((e: { code?: number }) => e.code === 404))
        ? true
        : undefined,
    );
    expect(await certificatesIn(ns)).toEqual(['mine']);
  });
});

describe('scope', () => {
  it("should never send kube-system or Sigil's namespace to the webhook, even labelled, and refuse opted-in pods while it is down", async () => {
    const plain = await createTestNamespace(kc, 'untouched');
    const { setHeaderOptions } = await import('@kubernetes/client-node');
    await core.patchNamespace(
      { name: 'kube-system', body: { metadata: { labels: { 'sigil.dev/inject': 'enabled' } } } },
      setHeaderOptions('Content-Type', 'application/merge-patch+json'),
    );
    await setup.webhook.stop();
    try {
      for (const ns of ['kube-system', setup.operatorNamespace]) {
        const created = await createPod(
          kc,
          ns,
          pod(`p-${Math.random().toString(36).slice(2, 8)}`, {}, { labels: { 'sigil.dev/inject': 'true' } }),
        );
        expect(sigilVolumes(created)).toHaveLength(0);
      }
      // An opted-in pod reaches the webhook; while it is down the pod is refused (failurePolicy Fail), never started without its certificate.
      const err = await createPod(
        kc,
        plain,
        pod('opted-in', {}, { labels: { 'sigil.dev/inject': 'true' } }),
      ).catch((e: unknown) => e);
      expect(String((err as { body?: string }).body)).toContain('failed calling webhook');
      await expect(core.readNamespacedPod({ name: 'opted-in', namespace: plain })).rejects.toMatchObject({
        code: 404,
      });
    } finally {
      await setup.restartWebhook();
      await core.patchNamespace(
        { name: 'kube-system', body: { metadata: { labels: { 'sigil.dev/inject': null } } } },
        setHeaderOptions('Content-Type', 'application/merge-patch+json'),
      );
    }
  });

  it("should create pods in kube-system, Sigil's namespace and unlabelled namespaces while the webhook is stopped", async () => {
    const plain = await createTestNamespace(kc, 'calm');
    await setup.webhook.stop();
    try {
      for (const ns of [plain, 'kube-system', setup.operatorNamespace]) {
        const created = await createPod(kc, ns, pod(`s-${Math.random().toString(36).slice(2, 8)}`));
        expect(sigilVolumes(created)).toHaveLength(0);
      }
    } finally {
      await setup.restartWebhook();
    }
  });
});

describe('raw requests', () => {
  function post(body: string | Buffer, contentType = 'application/json') {
    return new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: setup.webhook.port,
          path: '/mutate-v1-pod',
          method: 'POST',
          rejectUnauthorized: false,
          // The API server's admission client certificate: the webhook answers nobody else.
          cert: readFileSync(setup.client!.certFile),
          key: readFileSync(setup.client!.keyFile),
          headers: { 'content-type': contentType },
        },
        (res) => {
          let text = '';
          res.on('data', (d) => {
            text += d;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  const valid = (uid = '11111111-2222-3333-4444-555555555555') => ({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      operation: 'CREATE',
      namespace: 'raw',
      dryRun: true,
      object: pod('raw'),
    },
  });

  it.each([
    ['not JSON', '{nope', 400],
    ['the wrong kind', JSON.stringify({ ...valid(), kind: 'Pod' }), 400],
    ['no uid', JSON.stringify({ ...valid(), request: { ...valid().request, uid: undefined } }), 400],
    // 3 MiB is the largest body the API server accepts, so a review that size is read (and this one is not JSON).
    ['a 3 MiB body of spaces', Buffer.alloc(3 * 1024 * 1024, 0x20), 400],
    ['an 8 MiB body', Buffer.alloc(8 * 1024 * 1024, 0x20), 413],
  ])('should refuse %s with a 4xx and a message', async (_n, body, status) => {
    const res = await post(body);
    expect(res.status).toBe(status);
    expect(JSON.parse(res.body).message).toEqual(expect.any(String));
  });

  it('should answer thousands of mutated reviews with a 4xx or an answer, quickly, without crashing', async () => {
    let seed = 42;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const junk = [null, 0, -1, 'x', '', [], {}, true, 'a'.repeat(300), { kind: 'Pod' }, [1, 2]];
    const mutate = (value: unknown, depth = 0): unknown => {
      if (typeof value !== 'object' || value === null || depth > 6)
        return random() < 0.1 ? junk[Math.floor(random() * junk.length)] : value;
      if (Array.isArray(value)) return value.map((v) => mutate(v, depth + 1));
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) {
        const r = random();
        if (r < 0.05) continue;
        out[k] = r < 0.12 ? junk[Math.floor(random() * junk.length)] : mutate(v, depth + 1);
      }
      return out;
    };
    let slowest = 0;
    const statuses = new Map<number, number>();
    for (let i = 0; i < 2000; i++) {
      const started = Date.now();
      const review = mutate(valid(`uid-${i}`)) as { request?: { uid?: unknown } } | null;
      const res = await post(JSON.stringify(review));
      slowest = Math.max(slowest, Date.now() - started);
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (res.status === 200) {
        const response = JSON.parse(res.body).response;
        // The answer names the request it answers.
        expect(response.uid).toBe(review?.request?.uid);
        if (!response.allowed) expect(response.status.message).toMatch(/^sigil: /);
      } else {
        expect(res.status).toBeGreaterThanOrEqual(400);
        expect(res.status).toBeLessThan(500);
      }
    }
    expect([...statuses.keys()].every((s) => s === 200 || (s >= 400 && s < 500))).toBe(true);
    expect(slowest).toBeLessThan(1000);
    expect(
      (await fetch(`https://127.0.0.1:${setup.webhook.port}/healthz`).catch(() => null)) ?? 'alive',
    ).toBeTruthy();
  }, 120_000);
});

describe('serving certificate rotation', () => {
  it('should keep admitting pods while the serving certificate rotates', async () => {
    await setup.stop();
    setup = await setupInjection(kc, { certDurationMs: 9_000 });
    const ns = await createTestNamespace(kc, 'rotate', { 'sigil.dev/inject': 'enabled' });
    const first = (await readSecret(kc, setup.operatorNamespace, 'sigil-webhook-tls')).metadata!
      .resourceVersion;
    const deadline = Date.now() + 12_000;
    let created = 0;
    while (Date.now() < deadline) {
      const p = await createPod(kc, ns, { ...pod(''), metadata: { generateName: 'r-' } });
      expect(sigilVolumes(p)).toHaveLength(1);
      created++;
      await new Promise((r) => setTimeout(r, 100));
    }
    const last = (await readSecret(kc, setup.operatorNamespace, 'sigil-webhook-tls')).metadata!
      .resourceVersion;
    expect(last).not.toBe(first);
    expect(created).toBeGreaterThan(20);
    await eventually('metrics', async () =>
      (await setup.webhook.metrics.admissions.get()).values.length > 0 ? true : undefined,
    );
  }, 60_000);

  it('should keep the keys, labels and owners someone added to the serving Secret when it replaces the certificate', async () => {
    const ns = setup.operatorNamespace;
    const owner = await core.createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: 'tls-owner' }, data: { why: 'owns the webhook TLS Secret' } },
    });
    const before = await readSecret(kc, ns, 'sigil-webhook-tls');
    await core.patchNamespacedSecret(
      {
        name: 'sigil-webhook-tls',
        namespace: ns,
        body: {
          metadata: {
            labels: { team: 'platform' },
            ownerReferences: [
              { apiVersion: 'v1', kind: 'ConfigMap', name: 'tls-owner', uid: owner.metadata!.uid! },
            ],
          },
          // A broken certificate makes the operator replace it at once.
          data: { 'tls.crt': Buffer.from('not a certificate').toString('base64'), 'extra.pem': 'ZXh0cmE=' },
        },
      },
      setHeaderOptions('Content-Type', 'application/merge-patch+json'),
    );
    const after = await eventually('the serving certificate replaced', async () => {
      const s = await readSecret(kc, ns, 'sigil-webhook-tls');
      return decode(s, 'tls.crt').includes('BEGIN CERTIFICATE') ? s : undefined;
    });
    expect(readKeyPair(decode(after, 'tls.crt'), decode(after, 'tls.key')).keyMatches).toBe(true);
    expect(after.data?.['tls.crt']).not.toBe(before.data?.['tls.crt']);
    expect(after.data?.['extra.pem']).toBe('ZXh0cmE=');
    expect(after.metadata?.labels).toMatchObject({
      team: 'platform',
      'sigil.dev/managed': 'true',
      'sigil.dev/webhook-tls': 'true',
    });
    expect(after.metadata?.ownerReferences?.map((o) => o.uid)).toEqual([owner.metadata!.uid]);
  }, 60_000);
});
