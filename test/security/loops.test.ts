// Fairness and loops, attacked by a tenant who may only manage Certificates:
// no spec makes a Certificate re-issue in a loop, and one namespace flooding
// the operator with Certificates does not starve another namespace's one.
import { X509Certificate } from 'node:crypto';
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import {
  API_VERSION,
  type Certificate,
  type CertificateSpec,
  findCondition,
  GROUP,
  Plural,
  VERSION,
} from '../../lib/api/types.ts';
import { createSelfSignedCA } from '../../lib/pki/ca.ts';
import type { Operator } from '../../operator/operator.ts';
import { createTestNamespace, eventually, testKubeConfig } from '../support/kube.ts';
import {
  caSecretData,
  createIssuer,
  createSecret,
  ensureCrds,
  ensureNamespace,
  getCertificate,
  HOUR,
  readSecret,
  startTestOperator,
  waitForCertificate,
  waitForIssuer,
} from '../support/sigil.ts';
import { CERTIFICATES_ONLY, createTenant, type Tenant } from '../support/tenant.ts';

const admin: KubeConfig = testKubeConfig();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const issuerRef = { name: 'ca', kind: 'Issuer' as const };

async function tenantCreates(
  tenant: Tenant,
  name: string,
  spec: Omit<CertificateSpec, 'issuerRef'>,
  ref = issuerRef,
) {
  await tenant.kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: tenant.namespace,
    plural: Plural.Certificate,
    body: {
      apiVersion: API_VERSION,
      kind: 'Certificate',
      metadata: { name },
      spec: { issuerRef: ref, ...spec },
    },
  });
}

async function namespaceWithIssuer(prefix: string): Promise<string> {
  const ns = await createTestNamespace(admin, prefix);
  await createSecret(admin, ns, 'ca-key-pair', await caSecretData(`${prefix} CA`));
  await createIssuer(admin, 'Issuer', 'ca', { ca: { secretName: 'ca-key-pair' } }, ns);
  return ns;
}

/** Issuances and Secret writes the operator made so far. */
async function writes(operator: Operator): Promise<{ issued: number; secretWrites: number }> {
  const issued = (await operator.metrics.issuance.get()).values.reduce((n, v) => n + v.value, 0);
  const secretWrites = (await operator.metrics.apiRequests.get()).values
    .filter(
      (v) => v.labels.resource === 'secrets' && ['create', 'patch', 'update'].includes(String(v.labels.verb)),
    )
    .reduce((n, v) => n + v.value, 0);
  return { issued, secretWrites };
}

beforeAll(async () => {
  await ensureCrds(admin);
  await ensureNamespace(admin, 'sigil-system');
});

describe('loops', () => {
  let a: string;
  let tenant: Tenant;
  let operator: Operator;

  beforeAll(async () => {
    a = await namespaceWithIssuer('a-loops');
    tenant = await createTenant(admin, a, CERTIFICATES_ONLY);
    operator = await startTestOperator(admin, { watchNamespace: a, minDurationMs: HOUR });
    await waitForIssuer(admin, 'Issuer', 'ca', { status: 'True' }, a);
  });

  afterAll(async () => {
    await operator?.stop();
  });

  it('should not re-issue in a loop when renewBefore is a second short of the duration', async () => {
    await tenantCreates(tenant, 'eager', {
      secretName: 'eager-tls',
      dnsNames: ['eager.example.com'],
      duration: '1h',
      renewBefore: '59m59s',
    });
    const first = await waitForCertificate(admin, a, 'eager', { status: 'True' });
    const secret = await readSecret(admin, a, 'eager-tls');
    const before = await writes(operator);
    await sleep(4_000);
    const after = await writes(operator);
    const now = await getCertificate(admin, a, 'eager');
    // Counted three ways: the status revision, the Secret's resourceVersion and the operator's own counters.
    expect(now.status?.revision).toBe(first.status?.revision);
    expect((await readSecret(admin, a, 'eager-tls')).metadata?.resourceVersion).toBe(
      secret.metadata?.resourceVersion,
    );
    expect(after).toEqual(before);
    // The renewal is held to the floor (one minute for a one-hour certificate), and the status says so.
    const notBefore = new Date(now.status!.notBefore!).getTime();
    expect(new Date(now.status!.renewalTime!).getTime() - notBefore).toBe(60_000);
    expect(findCondition(now.status?.conditions, 'Ready')?.message).toContain(
      'minimum of 60s between issuances',
    );
  });

  it('should refuse a subject that lists a value twice instead of re-issuing it on every look', async () => {
    const before = await writes(operator);
    await tenantCreates(tenant, 'twice', {
      secretName: 'twice-tls',
      commonName: 'twice',
      subject: { organizations: ['acme', 'acme'] },
    });
    const c = await waitForCertificate(admin, a, 'twice', { status: 'False', reason: 'InvalidSpec' });
    expect(findCondition(c.status?.conditions, 'Ready')?.message).toContain(
      'subject.organizations lists "acme" twice',
    );
    await sleep(2_000);
    expect(await writes(operator)).toEqual(before);
    await expect(readSecret(admin, a, 'twice-tls')).rejects.toMatchObject({ code: 404 });
  });

  it('should refuse a chain longer than Sigil reads back instead of re-issuing it on every look', async () => {
    // A CA stored with 15 more certificates: a leaf on top makes 17, one more than Sigil parses.
    const ca = await createSelfSignedCA({
      commonName: 'Long Chain CA',
      notBefore: new Date(Date.now() - HOUR),
      notAfter: new Date(Date.now() + 1000 * HOUR),
    });
    const filler = await createSelfSignedCA({
      commonName: 'Filler',
      notBefore: new Date(Date.now() - HOUR),
      notAfter: new Date(Date.now() + 1000 * HOUR),
    });
    expect(new X509Certificate(filler.certPem).ca).toBe(true);
    const chain = [ca.certPem, ...Array.from({ length: 15 }, () => filler.certPem)].join('');
    await createSecret(admin, a, 'long-chain-ca', {
      'tls.crt': Buffer.from(chain).toString('base64'),
      'tls.key': Buffer.from(ca.keyPem).toString('base64'),
    });
    await createIssuer(admin, 'Issuer', 'long-chain', { ca: { secretName: 'long-chain-ca' } }, a);
    await waitForIssuer(admin, 'Issuer', 'long-chain', { status: 'True' }, a);
    const before = await writes(operator);
    await tenantCreates(
      tenant,
      'long',
      { secretName: 'long-tls', dnsNames: ['long.example.com'] },
      { name: 'long-chain', kind: 'Issuer' },
    );
    const c = await waitForCertificate(admin, a, 'long', { status: 'False', reason: 'InvalidSpec' });
    const message = findCondition(c.status?.conditions, 'Ready')?.message ?? '';
    expect(message).toContain('would never match it');
    expect(message).toContain('certificates');
    await sleep(2_000);
    expect((await writes(operator)).secretWrites).toBe(before.secretWrites);
    await expect(readSecret(admin, a, 'long-tls')).rejects.toMatchObject({ code: 404 });
  });
});

describe('fairness', () => {
  const FLOOD = 200;
  let flood: string;
  let quiet: string;
  let operator: Operator;

  beforeAll(async () => {
    flood = await namespaceWithIssuer('a-flood');
    quiet = await namespaceWithIssuer('b-quiet');
    // All namespaces, few workers and a rate limit, so the flood takes long enough to measure against.
    operator = await startTestOperator(admin, { concurrency: 2, apiQps: 25 });
    await operator.whenRunning();
    await waitForIssuer(admin, 'Issuer', 'ca', { status: 'True' }, flood);
    await waitForIssuer(admin, 'Issuer', 'ca', { status: 'True' }, quiet);
    // Whatever earlier test files left in the cluster is looked at once, before the measurement.
    await operator.certificates()!.queue.idle();
  });

  afterAll(async () => {
    await operator?.stop();
  });

  const readyCount = async (ns: string) => {
    const list = (await admin.makeApiClient(CustomObjectsApi).listNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: Plural.Certificate,
    })) as { items: Certificate[] };
    return list.items.filter((c) => findCondition(c.status?.conditions, 'Ready')?.status === 'True').length;
  };

  it("should issue another namespace's Certificate before a flood of 200 in one namespace is through", async () => {
    const flooder = await createTenant(admin, flood, CERTIFICATES_ONLY);
    const other = await createTenant(admin, quiet, CERTIFICATES_ONLY);
    const started = Date.now();
    for (let i = 0; i < FLOOD; i += 20) {
      await Promise.all(
        Array.from({ length: 20 }, (_, j) =>
          tenantCreates(flooder, `f-${i + j}`, {
            secretName: `f-${i + j}`,
            dnsNames: [`f${i + j}.example.com`],
          }),
        ),
      );
    }
    const quietAsked = Date.now();
    await tenantCreates(other, 'victim', { secretName: 'victim-tls', dnsNames: ['victim.example.com'] });
    await waitForCertificate(admin, quiet, 'victim', { status: 'True' }, 60_000);
    const quietReady = Date.now();
    const floodReadyThen = await readyCount(flood);
    await eventually(
      `all ${FLOOD} flood Certificates Ready`,
      async () => ((await readyCount(flood)) === FLOOD ? true : undefined),
      120_000,
    );
    const floodDone = Date.now();
    console.info(
      `fairness: flood of ${FLOOD} took ${floodDone - started} ms; the other namespace's Certificate was Ready ${quietReady - quietAsked} ms after it was created, when ${floodReadyThen}/${FLOOD} of the flood were Ready`,
    );
    expect(floodReadyThen).toBeLessThan(FLOOD);
    expect(quietReady).toBeLessThan(floodDone);
    expect(quietReady - quietAsked).toBeLessThan((floodDone - started) / 4);
  }, 180_000);
});
