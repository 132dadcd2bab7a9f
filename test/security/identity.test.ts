// Attacks on identities by a tenant who may only create Certificates in
// namespace `a`: become a CA, claim namespace `b`'s SPIFFE IDs or names, or
// an IP. Each attack must be refused with a reason a person can act on, and
// `b` must be untouched. Certificate-level rules are checked on the issued
// bytes with OpenSSL and on the verifier side with sigil/mtls.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import {
  API_VERSION,
  type CertificateSpec,
  findCondition,
  GROUP,
  Plural,
  VERSION,
} from '../../lib/api/types.ts';
import { isNotFound } from '../../lib/kube/errors.ts';
import { createMtlsServer, watchIdentity } from '../../lib/mtls/index.ts';
import { loadCertificateAuthority } from '../../lib/pki/ca.ts';
import { issueCertificate } from '../../lib/pki/issue.ts';
import { opensslVerify } from '../../lib/testing/pki.ts';
import type { Operator } from '../../operator/operator.ts';
import { createTestNamespace, eventually, testKubeConfig } from '../support/kube.ts';
import {
  caSecretData,
  createIssuer,
  createSecret,
  DAY,
  decode,
  ensureCrds,
  getCertificate,
  readSecret,
  startTestOperator,
  waitForCertificate,
  waitForIssuer,
} from '../support/sigil.ts';
import { CERTIFICATES_ONLY, createTenant, type Tenant } from '../support/tenant.ts';

const admin: KubeConfig = testKubeConfig();
let a: string;
let b: string;
let tenant: Tenant;
const operators: Operator[] = [];
const issuerRef = { name: 'shared-ca', kind: 'Issuer' as const };
/** b's victim: its Secret bytes before any attack. */
let victimBefore: Record<string, string>;

async function tenantCreates(name: string, spec: Omit<CertificateSpec, 'issuerRef'>): Promise<void> {
  await tenant.kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: a,
    plural: Plural.Certificate,
    body: { apiVersion: API_VERSION, kind: 'Certificate', metadata: { name }, spec: { issuerRef, ...spec } },
  });
}

async function secretExists(namespace: string, name: string): Promise<boolean> {
  try {
    await readSecret(admin, namespace, name);
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

/** b is untouched: its Certificate still Ready on the same serial, its Secret byte for byte the same. */
async function expectVictimUntouched() {
  const victim = await getCertificate(admin, b, 'payments');
  expect(findCondition(victim.status?.conditions, 'Ready')).toMatchObject({ status: 'True' });
  expect((await readSecret(admin, b, 'payments-tls')).data).toEqual(victimBefore);
}

beforeAll(async () => {
  await ensureCrds(admin);
  a = await createTestNamespace(admin, 'sec-a');
  b = await createTestNamespace(admin, 'sec-b');
  // One CA behind both namespaces' Issuers, as behind a default ClusterIssuer: a's certificates
  // chain to the very anchor b's pods trust.
  const ca = await caSecretData('Shared Tenancy CA');
  for (const ns of [a, b]) {
    await createSecret(admin, ns, 'shared-ca', ca);
    await createIssuer(admin, 'Issuer', 'shared-ca', { ca: { secretName: 'shared-ca' } }, ns);
    operators.push(await startTestOperator(admin, { watchNamespace: ns }));
    await waitForIssuer(admin, 'Issuer', 'shared-ca', { status: 'True' }, ns);
  }
  await admin.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: b,
    plural: Plural.Certificate,
    body: {
      apiVersion: API_VERSION,
      kind: 'Certificate',
      metadata: { name: 'payments' },
      spec: {
        secretName: 'payments-tls',
        issuerRef,
        dnsNames: [`payments.${b}.svc`, `payments.${b}.svc.cluster.local`],
        uris: [`spiffe://cluster.local/ns/${b}/sa/payments`],
      },
    },
  });
  await waitForCertificate(admin, b, 'payments', { status: 'True' });
  victimBefore = (await readSecret(admin, b, 'payments-tls')).data!;
  tenant = await createTenant(admin, a, CERTIFICATES_ONLY);
});

afterAll(async () => {
  for (const o of operators) await o.stop();
});

describe('a tenant who may only create Certificates', () => {
  it('should be unable to read Secrets or create anything but Certificates (the rights the tests rely on)', async () => {
    await expect(
      tenant.kc.makeApiClient(CoreV1Api).listNamespacedSecret({ namespace: a }),
    ).rejects.toMatchObject({ code: 403 });
    await expect(
      tenant.kc.makeApiClient(CustomObjectsApi).listNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: b,
        plural: Plural.Certificate,
      }),
    ).rejects.toMatchObject({ code: 403 });
  });

  it.each<[string, Omit<CertificateSpec, 'issuerRef' | 'secretName'>, string]>([
    ['become a CA with isCA', { commonName: 'Evil CA', isCA: true }, 'allowedCANamespaces'],
    [
      'become a CA with the cert sign usage',
      { commonName: 'Evil', usages: ['cert sign', 'digital signature'] },
      'allowedCANamespaces',
    ],
    ['sign CRLs', { commonName: 'Evil', usages: ['crl sign'] }, 'allowedCANamespaces'],
    ['get a code-signing certificate', { commonName: 'Evil', usages: ['code signing'] }, 'allowedUsages'],
    ['get an OCSP-signing certificate', { commonName: 'Evil', usages: ['ocsp signing'] }, 'allowedUsages'],
    ["claim b's SPIFFE ID", { uris: ['spiffe://cluster.local/ns/B/sa/payments'] }, 'namespace A'],
    ["claim b's service name", { dnsNames: ['payments.B.svc'] }, 'namespace B'],
    ["claim b's short name", { dnsNames: ['payments.B'] }, 'namespace B'],
    ["claim b's fully-qualified name", { dnsNames: ['payments.B.svc.cluster.local'] }, 'namespace B'],
    ['claim a wildcard over b', { dnsNames: ['*.B.svc.cluster.local'] }, 'namespace B'],
    [
      'claim a StatefulSet pod of b',
      { dnsNames: ['payments-0.payments.B.svc.cluster.local'] },
      'namespace B',
    ],
    ["claim b's pod name", { dnsNames: ['10-0-0-9.B.pod.cluster.local'] }, 'namespace B'],
    ['claim every namespace with a wildcard', { dnsNames: ['*.svc.cluster.local'] }, 'every namespace'],
    [
      "claim the cluster's API server",
      { dnsNames: ['kubernetes.default.svc.cluster.local'] },
      'namespace default',
    ],
    ['claim a bare service name every namespace resolves', { dnsNames: ['payments'] }, 'whichever namespace'],
    ["claim b's name through commonName", { commonName: 'payments.B.svc' }, 'commonName payments.'],
    ['claim a pod IP', { dnsNames: ['x.A.svc'], ipAddresses: ['10.0.0.9'] }, 'allowedIPRanges'],
    [
      'claim an email identity',
      { commonName: 'Evil Mail', emailAddresses: ['admin@example.com'] },
      'allowedEmailAddresses',
    ],
    ['claim a non-SPIFFE URI', { uris: ['https://payments.example.com/'] }, 'allowedURIs'],
  ])('should be refused when it tries to %s', async (what, raw, phrase) => {
    const fill = (text: string) =>
      text
        .replace(/\.A(?=\.|")/g, `.${a}`)
        .replace(/\.B(?=\.|")/g, `.${b}`)
        .replaceAll('/B/', `/${b}/`);
    const spec = JSON.parse(fill(JSON.stringify(raw))) as typeof raw;
    const name = `attack-${what
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .slice(0, 40)
      .replace(/-+$/, '')}`;
    await tenantCreates(name, { ...spec, secretName: `${name}-tls` });
    const refused = await waitForCertificate(admin, a, name, { status: 'False', reason: 'PolicyDenied' });
    const message = findCondition(refused.status?.conditions, 'Ready')!.message;
    expect(message).toContain(
      phrase.replaceAll('namespace A', `namespace ${a}`).replaceAll('namespace B', `namespace ${b}`),
    );
    // Nothing was signed, and b is untouched.
    expect(await secretExists(a, `${name}-tls`)).toBe(false);
    await expectVictimUntouched();
  });

  it.each([
    ['an upper-case spiffe scheme', 'SPIFFE://cluster.local/ns/B/sa/payments'],
    ['a dot-dot segment', 'spiffe://cluster.local/ns/A/../B/sa/payments'],
    ['a percent-encoded segment', 'spiffe://cluster.local/ns/A/%2e%2e/B/sa/payments'],
    ['an empty segment', 'spiffe://cluster.local/ns//B/sa/payments'],
    ['a non-ASCII look-alike', 'spiffe://cluster.local/ns/A/sa/p\u0430yments'],
  ])('should refuse a non-canonical SPIFFE ID with %s as an invalid spec', async (what, raw) => {
    const uri = raw.replaceAll('/A/', `/${a}/`).replaceAll('/B/', `/${b}/`);
    const name = `spiffe-${what.replace(/[^a-z0-9]+/g, '-').replace(/-+$/, '')}`;
    try {
      await tenantCreates(name, { secretName: `${name}-tls`, uris: [uri] });
    } catch (err) {
      // The schema may refuse it outright; that is a refusal too.
      expect((err as { code?: number }).code).toBe(422);
      return;
    }
    const refused = await waitForCertificate(admin, a, name, { status: 'False' });
    const ready = findCondition(refused.status?.conditions, 'Ready')!;
    expect(['InvalidSpec', 'PolicyDenied']).toContain(ready.reason);
    expect(ready.message).toMatch(/SPIFFE|spiffe|ASCII/);
    expect(await secretExists(a, `${name}-tls`)).toBe(false);
    await expectVictimUntouched();
  });

  it("should be refused a Secret named like a webhook identity's, so it cannot decide what that identity's pods mount", async () => {
    await tenantCreates('innocent', { secretName: 'api-sigil-c47f1a6b5d', dnsNames: [`api.${a}.svc`] });
    const refused = await waitForCertificate(admin, a, 'innocent', {
      status: 'False',
      reason: 'PolicyDenied',
    });
    expect(findCondition(refused.status?.conditions, 'Ready')!.message).toContain('SecretNameReserved');
    expect(await secretExists(a, 'api-sigil-c47f1a6b5d')).toBe(false);
    await expectVictimUntouched();
  });

  it("should get its own namespace's identity, which b's mTLS server refuses as a peer for b's identities", async () => {
    await tenantCreates('own', {
      secretName: 'own-tls',
      dnsNames: [`api.${a}.svc`],
      uris: [`spiffe://cluster.local/ns/${a}/sa/api`],
    });
    await waitForCertificate(admin, a, 'own', { status: 'True' });
    const own = await readSecret(admin, a, 'own-tls');
    expect(opensslVerify(decode(own, 'ca.crt'), decode(own, 'tls.crt'), 'sslclient')).toContain('OK');
    const refused = await mtlsHandshake(decode(own, 'tls.crt'), decode(own, 'tls.key'));
    expect(refused).toContain(`spiffe://cluster.local/ns/${a}/sa/api is not allowed`);
  });
});

describe('a sub-CA the issuer policy allows for a', () => {
  it('should be confined: what it signs for b fails OpenSSL and sigil/mtls, even though it chains to the root', async () => {
    // The administrator allows CAs for a, on a's Issuer only.
    await admin.makeApiClient(CustomObjectsApi).patchNamespacedCustomObject(
      {
        group: GROUP,
        version: VERSION,
        namespace: a,
        plural: Plural.Issuer,
        name: 'shared-ca',
        body: [{ op: 'add', path: '/spec/policy', value: { allowedCANamespaces: [a] } }],
      },
      (await import('@kubernetes/client-node')).setHeaderOptions(
        'Content-Type',
        'application/json-patch+json',
      ),
    );
    // The Issuer's change re-queues its Certificates, so a refusal seen before the policy arrived is retried.
    await tenantCreates('sub-ca', {
      secretName: 'sub-ca-tls',
      commonName: `${a} CA`,
      isCA: true,
      duration: '48h',
    });
    await waitForCertificate(admin, a, 'sub-ca', { status: 'True' }, 30_000);
    const secret = await readSecret(admin, a, 'sub-ca-tls');
    const subCa = loadCertificateAuthority(decode(secret, 'tls.crt'), decode(secret, 'tls.key'), new Date());
    // The tenant now signs offline whatever it likes.
    const forged = await issueCertificate(
      subCa,
      {
        durationMs: DAY,
        dnsNames: [`payments.${b}.svc.cluster.local`],
        uris: [`spiffe://cluster.local/ns/${b}/sa/payments`],
        usages: ['digital signature', 'server auth', 'client auth'],
      },
      new Date(),
    );
    const bTrust = decode(await readSecret(admin, b, 'payments-tls'), 'ca.crt');
    expect(() => opensslVerify(bTrust, forged.certificatePem, 'sslclient')).toThrow(
      /name constraint|permitted/i,
    );
    const refused = await mtlsHandshake(forged.certificatePem, forged.privateKeyPem);
    expect(refused).not.toContain('connected as');
    await expectVictimUntouched();
  });
});

/**
 * b's workload: a sigil/mtls server on b's own Secret that admits only b's
 * identities. Connects with the given client certificate; resolves with what
 * happened ("connected as <id>" or the refusal).
 */
async function mtlsHandshake(certPem: string, keyPem: string): Promise<string> {
  const victim = await readSecret(admin, b, 'payments-tls');
  const dir = mkdtempSync(join(tmpdir(), 'sigil-victim-'));
  for (const key of ['tls.crt', 'tls.key', 'ca.crt']) writeFileSync(join(dir, key), decode(victim, key));
  const identity = watchIdentity(dir);
  const outcomes: string[] = [];
  const server = createMtlsServer(
    identity,
    [`spiffe://cluster.local/ns/${b}/sa/*`],
    (socket, peer) => {
      outcomes.push(`connected as ${peer}`);
      socket.end('hello');
    },
    (reason) => outcomes.push(reason),
  );
  server.on('tlsClientError', (err) => outcomes.push(`handshake refused: ${err.message}`));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  try {
    await new Promise<void>((resolve) => {
      const socket = connect({
        host: '127.0.0.1',
        port,
        cert: certPem,
        key: keyPem,
        ca: decode(victim, 'ca.crt'),
        checkServerIdentity: () => undefined,
      });
      socket.on('error', () => resolve());
      socket.on('close', () => resolve());
      socket.on('data', () => undefined);
    });
    await eventually('the server to decide', async () => (outcomes.length > 0 ? true : undefined), 5_000);
    return outcomes.join('; ');
  } finally {
    server.close();
    identity.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
