// Attacks on the injection webhook by a tenant of namespace `a` who may create
// pods, Secrets, ServiceAccounts and Certificates there (the API server
// enforces those rights): squat an identity's Certificate name, call the
// webhook directly without the API server's client certificate, send it
// reviews for namespaces that never opted in, flood it, and use service-account
// names at the edge of what Kubernetes accepts. Each attack is refused with a
// reason a person can act on, and namespace `b` stays untouched.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import { CoreV1Api, CustomObjectsApi, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { API_VERSION, type Certificate, GROUP, Plural, VERSION } from '../../lib/api/types.ts';
import { createLogger, silentLogger } from '../../lib/log.ts';
import { issueCertificate } from '../../lib/pki/issue.ts';
import { testCA } from '../../lib/testing/pki.ts';
import { podIdentity } from '../../webhook/identity.ts';
import { DEFAULT_LIMITS, startWebhook } from '../../webhook/server.ts';
import { createTestNamespace, eventually, testKubeConfig } from '../support/kube.ts';
import { getCertificate, readSecret, waitForCertificate } from '../support/sigil.ts';
import { createTenant, NAMESPACE_DEVELOPER, type Tenant } from '../support/tenant.ts';
import { createPod, type InjectionSetup, pod, setupInjection } from '../support/webhook.ts';

const admin: KubeConfig = testKubeConfig();
const custom = admin.makeApiClient(CustomObjectsApi);
/** The webhook's own per-namespace share, which the flood below reaches for certain. */
const PER_NAMESPACE = DEFAULT_LIMITS.maxReviewsPerNamespace;
let setup: InjectionSetup;
let a: string;
let b: string;
let tenant: Tenant;
/** b's identity before any attack: its Certificate name and Secret bytes. */
let victim: { certificate: string; data: Record<string, string> };

const logger = () =>
  process.env.SIGIL_TEST_LOG ? createLogger(process.env.SIGIL_TEST_LOG, 'test') : silentLogger();

function sigilVolumes(p: V1Pod) {
  return (p.spec?.volumes ?? []).filter((v) => v.name === 'sigil-identity');
}

async function certificatesIn(ns: string): Promise<Certificate[]> {
  const list = (await custom.listNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: ns,
    plural: Plural.Certificate,
  })) as { items: Certificate[] };
  return list.items;
}

/** The denial's message, from the API server's answer to a refused create. */
async function refusal(attempt: Promise<unknown>): Promise<{ code?: number; message: string }> {
  const err = (await attempt.then(
    () => {
      throw new Error('expected the API server to refuse');
    },
    (e: unknown) => e,
  )) as { code?: number; body?: string };
  return { code: err.code, message: String((JSON.parse(String(err.body)) as { message?: string }).message) };
}

interface Tls {
  cert?: Buffer | string;
  key?: Buffer | string;
}

/** POSTs a body to the webhook as whoever `tls` says (on a connection of its own unless `agent` is given). */
function post(port: number, body: unknown, tls: Tls, agent: Agent | false = false) {
  return new Promise<{ status: number; json: Record<string, unknown> }>((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/mutate-v1-pod',
        method: 'POST',
        rejectUnauthorized: false,
        agent,
        ...tls,
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        let text = '';
        res.on('data', (d) => {
          text += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text || '{}') }));
      },
    );
    req.on('error', reject);
    req.end(typeof body === 'string' ? body : JSON.stringify(body));
  });
}

const apiServer = (): Tls => ({
  cert: readFileSync(setup.client!.certFile),
  key: readFileSync(setup.client!.keyFile),
});

let uids = 0;
function review(namespace: string, object: V1Pod, dryRun = false) {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: `00000000-0000-0000-0000-${String(++uids).padStart(12, '0')}`,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      operation: 'CREATE',
      namespace,
      dryRun,
      object,
    },
  };
}

async function expectBUntouched() {
  const certificate = await getCertificate(admin, b, victim.certificate);
  expect(certificate.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
  expect((await readSecret(admin, b, victim.certificate)).data).toEqual(victim.data);
  expect((await certificatesIn(b)).map((c) => c.metadata!.name)).toEqual([victim.certificate]);
}

beforeAll(async () => {
  setup = await setupInjection(admin);
  expect(setup.client).toBeDefined();
  a = await createTestNamespace(admin, 'a', { 'sigil.dev/inject': 'enabled' });
  b = await createTestNamespace(admin, 'b', { 'sigil.dev/inject': 'enabled' });
  tenant = await createTenant(admin, a, NAMESPACE_DEVELOPER);
  const created = await createPod(admin, b, pod('victim', { serviceAccountName: 'payments' }));
  const certificate = created.metadata!.annotations!['sigil.dev/certificate']!;
  await waitForCertificate(admin, b, certificate, { status: 'True' });
  victim = { certificate, data: (await readSecret(admin, b, certificate)).data! };
}, 90_000);

afterAll(async () => {
  await setup?.stop();
});

describe('squatting the deterministic Certificate name', () => {
  const squats: [string, (name: string) => Record<string, unknown>, RegExp][] = [
    [
      'a Certificate of its own, without the webhook label, pointing elsewhere',
      () => ({ metadata: {}, spec: { secretName: 'elsewhere', dnsNames: ['squat.example.com'] } }),
      /lacks the label sigil.dev\/identity=true/,
    ],
    [
      "a copy of the webhook's label with a spec of its own",
      (name) => ({
        metadata: { labels: { 'sigil.dev/identity': 'true' } },
        spec: { secretName: name, uris: [`spiffe://cluster.local/ns/${a}/sa/admin`] },
      }),
      /spec differs .*spec\.uris/,
    ],
  ];

  it.each(squats)(
    'should deny the pod when the tenant first creates %s, naming the squatter and leaving its Secret alone',
    async (_case, squat, why) => {
      const sa = `web-${++uids}`;
      const victimPod = pod('', { serviceAccountName: sa });
      const name = podIdentity(victimPod, a, { trustDomain: 'cluster.local', clusterDomain: 'cluster.local' })
        .identity.certificateName;
      // The Secret the pods would mount, written by the tenant.
      const planted = { 'tls.crt': Buffer.from('planted').toString('base64') };
      await tenant.kc
        .makeApiClient(CoreV1Api)
        .createNamespacedSecret({ namespace: a, body: { metadata: { name }, data: planted } });
      const body = squat(name);
      await tenant.kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: a,
        plural: Plural.Certificate,
        body: {
          apiVersion: API_VERSION,
          kind: 'Certificate',
          metadata: { name, ...(body.metadata as object) },
          spec: body.spec,
        },
      });

      const denied = await refusal(
        createPod(tenant.kc, a, { ...victimPod, metadata: { generateName: 'web-' } }),
      );
      expect(denied.code).toBe(409);
      expect(denied.message).toContain(
        `Certificate ${a}/${name} already exists and is not the one Sigil creates`,
      );
      expect(denied.message).toMatch(why);
      expect(denied.message).toContain(`kubectl delete certificates.sigil.dev -n ${a} ${name}`);
      // Denied again, not let through by anything remembered.
      expect(
        (await refusal(createPod(tenant.kc, a, { ...victimPod, metadata: { generateName: 'web-' } })))
          .message,
      ).toMatch(why);
      expect((await readSecret(admin, a, name)).data).toEqual(planted);
      const metric = (await setup.webhook.metrics.certificateCreates.get()).values.find(
        (v) => v.labels.result === 'squatted',
      );
      expect(metric?.value).toBeGreaterThan(0);
      await expectBUntouched();
    },
  );

  it("should admit the pod when the Certificate at the name is the webhook's own", async () => {
    const first = await createPod(
      tenant.kc,
      a,
      pod('', { serviceAccountName: 'own' }, { generateName: 'own-' }),
    );
    const name = first.metadata!.annotations!['sigil.dev/certificate']!;
    // A second webhook process knows nothing of the first one's checks: it reads and verifies.
    await setup.restartWebhook();
    const second = await createPod(
      tenant.kc,
      a,
      pod('', { serviceAccountName: 'own' }, { generateName: 'own-' }),
    );
    expect(second.metadata!.annotations!['sigil.dev/certificate']).toBe(name);
    await waitForCertificate(admin, a, name, { status: 'True' });
  });
});

describe('calling the webhook directly', () => {
  const hostile = () => review('placeholder', pod('direct', { serviceAccountName: 'direct' }));

  it('should refuse a caller without a client certificate with 401, before reading the review, and create nothing', async () => {
    const before = (await certificatesIn(a)).length;
    const res = await post(
      setup.webhook.port,
      { ...hostile(), request: { ...hostile().request, namespace: a } },
      {},
    );
    expect(res.status).toBe(401);
    expect(res.json).toMatchObject({ error: 'Unauthenticated' });
    expect(String(res.json.message)).toContain('--client-ca-file');
    expect((await certificatesIn(a)).length).toBe(before);
    // The probes stay open for the kubelet.
    const health = await new Promise<number>((resolve, reject) =>
      request(`https://127.0.0.1:${setup.webhook.port}/healthz`, { rejectUnauthorized: false }, (r) => {
        r.resume();
        resolve(r.statusCode ?? 0);
      })
        .on('error', reject)
        .end(),
    );
    expect(health).toBe(200);
  });

  it('should refuse a client certificate from another CA with 401', async () => {
    const { ca } = await testCA({ commonName: 'intruder CA' });
    const cert = await issueCertificate(
      ca,
      { commonName: 'sigil-local-apiserver', usages: ['client auth'], durationMs: 3_600_000 },
      new Date(),
    );
    const res = await post(
      setup.webhook.port,
      { ...hostile(), request: { ...hostile().request, namespace: a } },
      { cert: cert.certificatePem, key: cert.privateKeyPem },
    );
    expect(res.status).toBe(401);
    expect(String(res.json.message)).toMatch(/not accepted .*signed by the CA in --client-ca-file/);
  });

  it('should refuse a certificate from the right CA that names someone --client-names does not list, with 403', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sigil-client-names-'));
    const ca = await testCA({ commonName: 'client CA' });
    writeFileSync(join(dir, 'ca.crt'), ca.certPem);
    const hook = await startWebhook({
      kc: admin,
      namespace: setup.operatorNamespace,
      tlsSecretName: 'sigil-webhook-tls',
      address: '127.0.0.1:0',
      trustDomain: 'cluster.local',
      clusterDomain: 'cluster.local',
      defaultIssuer: { kind: 'ClusterIssuer', name: setup.issuer },
      logger: logger(),
      clientAuth: { caFile: join(dir, 'ca.crt'), names: ['sigil-local-apiserver'] },
    });
    try {
      const cert = await issueCertificate(
        ca.ca,
        { commonName: 'someone-else', usages: ['client auth'], durationMs: 3_600_000 },
        new Date(),
      );
      const res = await post(
        hook.port,
        { ...hostile(), request: { ...hostile().request, namespace: a } },
        { cert: cert.certificatePem, key: cert.privateKeyPem },
      );
      expect(res.status).toBe(403);
      expect(String(res.json.message)).toBe(
        'the client certificate names someone-else, and --client-names allows only sigil-local-apiserver',
      );
    } finally {
      await hook.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('reviews for pods that never opted in', () => {
  it.each([
    ['an unlabelled namespace', async () => createTestNamespace(admin, 'plain'), {}],
    [
      'kube-system, even for a pod labelled to opt in',
      async () => 'kube-system',
      { 'sigil.dev/inject': 'true' },
    ],
    ["Sigil's own namespace", async () => setup.operatorNamespace, {}],
    [
      'an opted-in namespace, for a pod labelled sigil.dev/inject=false',
      async () => a,
      { 'sigil.dev/inject': 'false' },
    ],
  ])('should answer a review for %s with no patch and create nothing', async (_case, namespace, labels) => {
    const ns = await namespace();
    const before = (await certificatesIn(ns)).length;
    const sa = `hostile-${++uids}`;
    const res = await post(
      setup.webhook.port,
      review(ns, pod('h', { serviceAccountName: sa }, { labels })),
      apiServer(),
    );
    expect(res.status).toBe(200);
    const response = res.json.response as { allowed: boolean; patch?: string };
    expect(response.allowed).toBe(true);
    expect(response.patch).toBeUndefined();
    await new Promise((r) => setTimeout(r, 300));
    expect((await certificatesIn(ns)).length).toBe(before);
    await expectBUntouched();
  });
});

describe('a flood from one namespace', () => {
  it("should not slow or fail another namespace's pod creations, and tell the flooder to retry", async () => {
    const FLOOD = 200;
    const deadline = Date.now() + 6_000;
    type Answer = { allowed: boolean; status?: { reason?: string; message?: string } };
    const answers: Answer[] = [];
    // 200 reviews kept in flight from a, as fast as the webhook answers them, for 6 s, on kept-alive
    // connections as the API server's would be.
    const agent = new Agent({
      keepAlive: true,
      maxSockets: FLOOD,
      rejectUnauthorized: false,
      ...apiServer(),
    });
    const flood = Promise.all(
      Array.from({ length: FLOOD }, async (_, i) => {
        while (Date.now() < deadline) {
          const r = await post(
            setup.webhook.port,
            review(a, pod('f', { serviceAccountName: `flood-${i}` })),
            apiServer(),
            agent,
          );
          answers.push(r.json.response as Answer);
        }
      }),
    );
    await new Promise((r) => setTimeout(r, 500));
    // Meanwhile b's pods go through the API server as usual, one after another.
    const latencies: number[] = [];
    while (Date.now() < deadline - 500) {
      const started = Date.now();
      const created = await createPod(
        admin,
        b,
        pod('', { serviceAccountName: 'payments' }, { generateName: 'calm-' }),
      );
      latencies.push(Date.now() - started);
      expect(sigilVolumes(created)).toHaveLength(1);
    }
    await flood;
    agent.destroy();
    latencies.sort((x, y) => x - y);
    expect(latencies.length).toBeGreaterThan(3);
    // The API server gives the webhook 5 s here; b's pods take a small part of it.
    // The API server gives the webhook 5 s here: b's pods take a small part of it at the median,
    // and none comes near it (on a loaded machine the slowest may still take a few seconds).
    expect(latencies[Math.floor(latencies.length / 2)]).toBeLessThan(1_500);
    expect(latencies.at(-1)).toBeLessThan(4_500);
    const refused = answers.filter((r) => !r.allowed);
    // The flood got answers, not timeouts: injections up to the namespace's share, fast refusals beyond.
    expect(answers.filter((r) => r.allowed).length).toBeGreaterThan(0);
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) {
      expect(r.status?.reason).toBe('Overloaded');
      expect(r.status?.message).toContain(`namespace ${a} has ${PER_NAMESPACE} pod admissions in flight`);
      expect(r.status?.message).toContain('create it again shortly');
    }
    // Every answer was received; the server lets go of each review once its response has closed.
    await eventually('the webhook to hold no review', async () => {
      const held = setup.webhook.inFlight.held;
      return held.reviews === 0 && held.bytes === 0 && held.namespaces === 0 ? true : undefined;
    });
    await expectBUntouched();
  }, 60_000);
});

/**
 * Opens a TLS connection to the webhook and sends `first`, then nothing more.
 * Resolves with how long after opening the webhook closed it and what it
 * answered; a connection still open after `giveUpMs` is destroyed and reported.
 */
function holdOpen(port: number, first: string, tls: Tls, giveUpMs: number) {
  return new Promise<{ closedAfterMs: number; answer: string; socket: TLSSocket }>((resolve) => {
    const started = Date.now();
    let answer = '';
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...tls }, () => {
      if (first) socket.write(first);
    });
    const giveUp = setTimeout(() => {
      answer += '[still open]';
      socket.destroy();
    }, giveUpMs);
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      answer += d;
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(giveUp);
      resolve({ closedAfterMs: Date.now() - started, answer, socket });
    });
  });
}

const headersDeclaring = (bytes: number) =>
  `POST /mutate-v1-pod HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${bytes}\r\n\r\n{`;

async function inFlightGauge(): Promise<number> {
  return (await setup.webhook.metrics.inFlight.get()).values[0]?.value ?? 0;
}

describe('connections held open to take the budget', () => {
  it("should count only bytes that arrived, cut bodies and idle connections that trickle, and keep admitting another namespace's pods", async () => {
    const port = setup.webhook.port;
    const GIVE_UP = 20_000;
    // As the API server (the worst case: its certificate), bodies declaring far more than the budget
    // (16 MiB) and sending one byte; without a certificate, the same; and connections that send
    // nothing or half their headers.
    const held = [
      ...Array.from({ length: 20 }, () =>
        holdOpen(port, headersDeclaring(7 * 1024 * 1024), apiServer(), GIVE_UP),
      ),
      ...Array.from({ length: 20 }, () =>
        holdOpen(port, headersDeclaring(2 * 1024 * 1024), apiServer(), GIVE_UP),
      ),
      ...Array.from({ length: 40 }, () => holdOpen(port, headersDeclaring(64 * 1024), apiServer(), GIVE_UP)),
      ...Array.from({ length: 40 }, () => holdOpen(port, headersDeclaring(7 * 1024 * 1024), {}, GIVE_UP)),
      ...Array.from({ length: 10 }, () => holdOpen(port, '', apiServer(), GIVE_UP)),
      ...Array.from({ length: 10 }, () =>
        holdOpen(port, 'POST /mutate-v1-pod HTTP/1.1\r\nHost: 127.0.0.1\r\n', apiServer(), GIVE_UP),
      ),
    ];
    // Let every connection reach the webhook and send what it sends.
    await new Promise((r) => setTimeout(r, 500));
    expect(setup.webhook.inFlight.held.reviews).toBe(0);
    expect(setup.webhook.inFlight.held.bytes).toBeLessThan(1024);

    // Admitted, not refused (429) nor timed out (the API server gives the webhook 5 s here).
    const started = Date.now();
    const created = await Promise.all(
      Array.from({ length: 3 }, (_, i) =>
        createPod(admin, b, pod(`under-siege-${i}`, { serviceAccountName: 'payments' })),
      ),
    );
    const took = Date.now() - started;
    for (const p of created) expect(sigilVolumes(p)).toHaveLength(1);
    expect(took).toBeLessThan(4_500);

    const outcomes = await Promise.all(held);
    const authenticatedBodies = outcomes.slice(0, 80);
    const anonymous = outcomes.slice(80, 120);
    const silent = outcomes.slice(120);
    for (const o of authenticatedBodies) {
      expect(o.answer).toMatch(/^HTTP\/1\.1 408 /);
      expect(o.answer).toContain('did not arrive within 2000 ms of its headers');
      expect(o.closedAfterMs).toBeLessThan(5_000);
    }
    for (const o of anonymous) {
      expect(o.answer).toMatch(/^HTTP\/1\.1 401 /);
      expect(o.closedAfterMs).toBeLessThan(5_000);
    }
    for (const o of silent) {
      expect(o.answer).not.toContain('[still open]');
      expect(o.closedAfterMs).toBeLessThan(12_000);
    }
    await eventually('the in-flight gauge to return to 0', async () =>
      (await inFlightGauge()) === 0 ? true : undefined,
    );
    // Every answer was received; the server lets go of each review once its response has closed.
    await eventually('the webhook to hold no review', async () => {
      const held = setup.webhook.inFlight.held;
      return held.reviews === 0 && held.bytes === 0 && held.namespaces === 0 ? true : undefined;
    });
    await expectBUntouched();
  }, 60_000);
});

describe('service-account names at the edge of what Kubernetes accepts', () => {
  const label63 = 'a'.repeat(63);
  it.each([
    ['253 characters long', `${label63}.${label63}.${label63}.${'b'.repeat(61)}`],
    ['cut at 40 characters on a dot', `${'s'.repeat(39)}.tail`],
    ['cut at 40 characters on a dash', `${'s'.repeat(39)}-tail`],
    ['a single character', 'x'],
  ])(
    'should admit a pod whose service account is %s and make its Certificate Ready',
    async (_case, sa) => {
      const created = await createPod(
        tenant.kc,
        a,
        pod('', { serviceAccountName: sa }, { generateName: 'edge-' }),
      );
      expect(sigilVolumes(created)).toHaveLength(1);
      const name = created.metadata!.annotations!['sigil.dev/certificate']!;
      const certificate = await waitForCertificate(admin, a, name, { status: 'True' });
      expect(certificate.spec.uris).toEqual([`spiffe://cluster.local/ns/${a}/sa/${sa}`]);
      await eventually('the Secret', async () =>
        (await readSecret(admin, a, name)).data?.['tls.crt'] ? true : undefined,
      );
    },
    30_000,
  );

  afterAll(async () => {
    await expectBUntouched();
  });
});
