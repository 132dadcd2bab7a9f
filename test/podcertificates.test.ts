import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { CustomObjectsApi, type KubeConfig, setHeaderOptions } from '@kubernetes/client-node';
import { GROUP, Plural, VERSION } from '../lib/api/types.ts';
import { isNotFound } from '../lib/kube/errors.ts';
import { rawRequest } from '../lib/kube/rest.ts';
import { opensslVerify, stubCsr } from '../lib/testing/pki.ts';
import type { Operator } from '../operator/operator.ts';
import { createTestNamespace, eventually, testKubeConfig } from './support/kube.ts';
import {
  caSecretData,
  createIssuer,
  createSecret,
  ensureCrds,
  ensureNamespace,
  randomName,
  startTestOperator,
  waitForIssuer,
} from './support/sigil.ts';

const kc: KubeConfig = testKubeConfig();
const custom = kc.makeApiClient(CustomObjectsApi);
const PCR = '/apis/certificates.k8s.io/v1';

interface Request {
  metadata: { name: string; namespace: string; resourceVersion: string };
  status?: {
    conditions?: { type: string; status: string; reason: string; message: string }[];
    certificateChain?: string;
    notBefore?: string;
    notAfter?: string;
    beginRefreshAt?: string;
  };
}

let ns: string;
let operatorNs: string;
let operator: Operator;
const key = generateKeyPairSync('ec', { namedCurve: 'P-256' });

async function createRequest(
  signerName: string,
  overrides: {
    serviceAccountName?: string;
    userAnnotations?: Record<string, string>;
    maxExpirationSeconds?: number;
  } = {},
): Promise<string> {
  const name = randomName('pcr');
  await rawRequest(kc, 'POST', `${PCR}/namespaces/${ns}/podcertificaterequests`, {
    apiVersion: 'certificates.k8s.io/v1',
    kind: 'PodCertificateRequest',
    metadata: { name, namespace: ns },
    spec: {
      signerName,
      podName: `pod-${name}`,
      podUID: `${name}-uid`,
      serviceAccountName: overrides.serviceAccountName ?? 'api',
      serviceAccountUID: 'sa-uid',
      nodeName: 'node-1',
      nodeUID: 'node-uid',
      maxExpirationSeconds: overrides.maxExpirationSeconds ?? 86_400,
      stubPKCS10Request: stubCsr(key.privateKey),
      ...(overrides.userAnnotations ? { unverifiedUserAnnotations: overrides.userAnnotations } : {}),
    },
  });
  return name;
}

const readRequest = (name: string) =>
  rawRequest<Request>(kc, 'GET', `${PCR}/namespaces/${ns}/podcertificaterequests/${name}`);

const answered = (name: string, timeoutMs = 20_000) =>
  eventually(
    `PodCertificateRequest ${name} answered`,
    async () => {
      const r = await readRequest(name);
      return r.status?.conditions?.length ? r : undefined;
    },
    timeoutMs,
  );

const bundleObject = (name: string) =>
  rawRequest<{
    metadata: { labels?: Record<string, string> };
    spec: { signerName: string; trustBundle: string };
  }>(kc, 'GET', `${PCR}/clustertrustbundles/${encodeURIComponent(name)}`);

const certificates = (pem: string) =>
  pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];

beforeAll(async () => {
  await ensureCrds(kc);
  ns = await createTestNamespace(kc, 'podcerts');
  operatorNs = randomName('podcerts-operator');
  await ensureNamespace(kc, operatorNs);
  await createSecret(kc, ns, 'ca-key-pair', await caSecretData('pod certificates CA'));
  await createIssuer(
    kc,
    'Issuer',
    'ca',
    { ca: { secretName: 'ca-key-pair' }, rotation: { propagationDelay: '1s' } },
    ns,
  );
  operator = await startTestOperator(kc, {
    namespace: operatorNs,
    watchNamespace: ns,
    podCertificates: true,
  });
  await waitForIssuer(kc, 'Issuer', 'ca', { status: 'True', reason: 'CAReady' }, ns);
});

afterAll(async () => {
  await operator?.stop();
});

describe('the PodCertificateRequest signer', () => {
  it("issues the pod's SPIFFE ID for the requested key, which OpenSSL verifies against the issuer's ClusterTrustBundle", async () => {
    const signer = `issuers.sigil.dev/${ns}.ca`;
    const name = await createRequest(signer, { userAnnotations: { 'sigil.dev/service': 'api' } });
    const r = await answered(name);
    expect(r.status!.conditions).toEqual([
      expect.objectContaining({ type: 'Issued', status: 'True', reason: 'Issued' }),
    ]);
    const chain = r.status!.certificateChain!;
    const leaf = new X509Certificate(certificates(chain)[0]!);
    expect(leaf.subjectAltName).toBe(
      `DNS:api.${ns}, DNS:api.${ns}.svc, DNS:api.${ns}.svc.cluster.local, URI:spiffe://cluster.local/ns/${ns}/sa/api`,
    );
    expect(
      leaf.publicKey
        .export({ type: 'spki', format: 'der' })
        .equals(key.publicKey.export({ type: 'spki', format: 'der' })),
    ).toBe(true);
    expect(new Date(r.status!.notAfter!).getTime() - new Date(r.status!.notBefore!).getTime()).toBe(
      86_400_000,
    );
    const bundle = await eventually('the ClusterTrustBundle', async () => {
      try {
        return await bundleObject(`issuers.sigil.dev:${ns}.ca:bundle`);
      } catch {
        return undefined;
      }
    });
    expect(bundle.spec.signerName).toBe(signer);
    expect(bundle.metadata.labels?.['sigil.dev/issuer-bundle']).toBe('true');
    expect(opensslVerify(bundle.spec.trustBundle, chain, 'sslserver')).toContain('OK');
    expect(opensslVerify(bundle.spec.trustBundle, chain, 'sslclient')).toContain('OK');
    const metrics = await operator.metrics.podCertificateRequests.get();
    expect(metrics.values).toContainEqual(
      // Namespaced Issuers are one label value: any namespace can make many of them.
      expect.objectContaining({ labels: { signer: 'issuers.sigil.dev/*', result: 'issued' }, value: 1 }),
    );
  });

  it("denies, with Kubernetes' and Sigil's reasons, what a pod in this namespace may not have, and issues nothing", async () => {
    const cases: [string, Parameters<typeof createRequest>[1], string, string][] = [
      [`issuers.sigil.dev/kube-system.ca`, {}, 'SignerNotAllowed', `may not use Issuer kube-system/ca`],
      [
        `issuers.sigil.dev/${ns}.ca`,
        { userAnnotations: { 'sigil.dev/dns-names': 'api.kube-system.svc.cluster.local' } },
        'DNSNameNotAllowed',
        'api.kube-system.svc.cluster.local',
      ],
      [
        `issuers.sigil.dev/${ns}.ca`,
        { userAnnotations: { 'example.com/anything': 'x' } },
        'InvalidUnverifiedUserAnnotations',
        '"example.com/anything"',
      ],
      ['issuers.sigil.dev/nodot', {}, 'SignerNotAllowed', 'not one Sigil serves'],
    ];
    const names = await Promise.all(cases.map(([signer, o]) => createRequest(signer, o)));
    for (const [i, name] of names.entries()) {
      const r = await answered(name);
      const [, , reason, text] = cases[i]!;
      expect(r.status!.conditions).toEqual([
        expect.objectContaining({ type: 'Denied', status: 'True', reason }),
      ]);
      expect(r.status!.conditions![0]!.message).toContain(text);
      expect(r.status!.certificateChain).toBeUndefined();
    }
  });

  it("leaves other signers' requests untouched", async () => {
    const name = await createRequest('example.com/pods');
    // A request of Sigil's, made after it, is answered: the other one had its chance.
    await answered(await createRequest(`issuers.sigil.dev/${ns}.ca`));
    expect((await readRequest(name)).status?.conditions ?? []).toEqual([]);
  });

  it('keeps a request for an issuer that does not exist yet waiting, and answers it once the issuer is ready', async () => {
    const issuer = randomName('late');
    const name = await createRequest(`issuers.sigil.dev/${ns}.${issuer}`);
    await new Promise((r) => setTimeout(r, 1500));
    expect((await readRequest(name)).status?.conditions ?? []).toEqual([]);
    await createSecret(kc, ns, `${issuer}-ca`, await caSecretData('late CA'));
    await createIssuer(kc, 'Issuer', issuer, { ca: { secretName: `${issuer}-ca` } }, ns);
    const r = await answered(name);
    expect(r.status!.conditions![0]).toMatchObject({ type: 'Issued' });
  });
});

describe('the ClusterTrustBundle publisher', () => {
  it('carries both CAs while the issuer rotates, then the new one alone, and goes when the issuer goes', async () => {
    const issuer = randomName('rot');
    const object = `issuers.sigil.dev:${ns}.${issuer}:bundle`;
    await createSecret(kc, ns, `${issuer}-a`, await caSecretData('rotating CA a'));
    await createSecret(kc, ns, `${issuer}-b`, await caSecretData('rotating CA b'));
    await createIssuer(
      kc,
      'Issuer',
      issuer,
      { ca: { secretName: `${issuer}-a` }, rotation: { propagationDelay: '2s' } },
      ns,
    );
    const first = await eventually('the bundle of CA a', async () => {
      try {
        const b = await bundleObject(object);
        return certificates(b.spec.trustBundle).length === 1 ? b.spec.trustBundle : undefined;
      } catch {
        return undefined;
      }
    });
    await custom.patchNamespacedCustomObject(
      {
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: Plural.Issuer,
        name: issuer,
        body: { spec: { ca: { secretName: `${issuer}-b` } } },
      },
      setHeaderOptions('Content-Type', 'application/merge-patch+json'),
    );
    // Prepare: both CAs trusted.
    const both = await eventually('both CAs in the bundle', async () => {
      const b = await bundleObject(object);
      return certificates(b.spec.trustBundle).length === 2 ? b.spec.trustBundle : undefined;
    });
    expect(both).toContain(certificates(first)[0]);
    // Retire: only the new one.
    const last = await eventually(
      'the new CA alone',
      async () => {
        const b = await bundleObject(object);
        const certs = certificates(b.spec.trustBundle);
        return certs.length === 1 && certs[0] !== certificates(first)[0] ? certs[0] : undefined;
      },
      40_000,
    );
    expect(both).toContain(last);
    await custom.deleteNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: Plural.Issuer,
      name: issuer,
    });
    await eventually('the bundle object deleted', async () => {
      try {
        await bundleObject(object);
        return undefined;
      } catch (err) {
        return isNotFound(err) ? true : undefined;
      }
    });
  }, 60_000);
});
