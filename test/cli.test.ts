// The sigil CLI as a person runs it, against the test control plane.
import { execFile } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { createTestNamespace, kubeconfigPath, testKubeConfig } from './support/kube.ts';
import {
  getCertificate,
  readSecret,
  replaceSecretData,
  waitForCertificate,
  waitForIssuer,
} from './support/sigil.ts';
import { createPod, type InjectionSetup, pod, setupInjection } from './support/webhook.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const kc: KubeConfig = testKubeConfig();
let setup: InjectionSetup;
let ns: string;
let certName: string;

function sigil(...args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((r) => {
    execFile(
      process.execPath,
      [join(ROOT, 'cli', 'main.ts'), ...args, '--kubeconfig', kubeconfigPath()],
      { env: { ...process.env, NODE_NO_WARNINGS: '1' } },
      (err, stdout, stderr) =>
        r({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` }),
    );
  });
}

const doctor = () =>
  sigil(
    'doctor',
    '--namespace',
    setup.operatorNamespace,
    '--webhook-configuration',
    setup.configName,
    '--only-namespace',
    ns,
  );

beforeAll(async () => {
  setup = await setupInjection(kc);
  ns = await createTestNamespace(kc, 'cli', { 'sigil.dev/inject': 'enabled' });
  const p = await createPod(kc, ns, pod('web', { serviceAccountName: 'web' }));
  certName = p.metadata!.annotations!['sigil.dev/certificate']!;
  await waitForCertificate(kc, ns, certName, { status: 'True' });
}, 60_000);

afterAll(async () => {
  await setup?.stop();
});

describe('sigil status, renew and inspect', () => {
  it('should list Certificates and exit 0 when all are Ready', async () => {
    const res = await sigil('status', '-n', ns);
    expect(res.code).toBe(0);
    expect(res.out).toMatch(new RegExp(`${ns}\\s+${certName}\\s+True\\s+${certName}`));
  });

  it('should exit 2 for a Certificate that does not exist', async () => {
    const res = await sigil('status', 'nope', '-n', ns);
    expect(res.code).toBe(2);
    expect(res.out).toContain('not found');
  });

  it('should renew on request', async () => {
    const res = await sigil('renew', certName, '-n', ns);
    expect(res.code).toBe(0);
    const c = await waitForCertificate(kc, ns, certName, { status: 'True', revision: 2 });
    expect(c.status?.revision).toBe(2);
  });

  it('should inspect a Secret: SPIFFE ID, validity, fingerprint, key match, chain', async () => {
    const res = await sigil('inspect', certName, '-n', ns);
    expect(res.code).toBe(0);
    expect(res.out).toContain(`SPIFFE ID:    spiffe://cluster.local/ns/${ns}/sa/web`);
    expect(res.out).toContain('Key matches:  yes');
    expect(res.out).toContain('signatures verify up to ca.crt');
    expect(res.out).toMatch(/Fingerprint: +SHA256 [0-9a-f]{64}/);
  });
});

describe('sigil doctor', () => {
  it('should pass on a healthy installation', async () => {
    const res = await doctor();
    expect(res.out).toContain('no problems found');
    expect(res.code).toBe(0);
  });

  it('should report a stopped webhook and say what to do', async () => {
    await setup.webhook.stop();
    try {
      const res = await doctor();
      expect(res.code).toBe(1);
      expect(res.out).toMatch(/✗ webhook .* does not answer: .*start it or check its logs/);
    } finally {
      await setup.restartWebhook();
    }
    expect((await doctor()).code).toBe(0);
  });

  it('should report a CA Secret replaced by a certificate that is not a CA', async () => {
    const leaf = await readSecret(kc, ns, certName);
    const original = await readSecret(kc, setup.operatorNamespace, setup.issuer);
    await replaceSecretData(kc, setup.operatorNamespace, setup.issuer, {
      'tls.crt': leaf.data!['tls.crt']!,
      'tls.key': leaf.data!['tls.key']!,
    });
    try {
      await waitForIssuer(kc, 'ClusterIssuer', setup.issuer, { status: 'False', reason: 'NotACA' });
      const res = await doctor();
      expect(res.code).toBe(1);
      expect(res.out).toMatch(
        new RegExp(
          `✗ issuers .*ClusterIssuer ${setup.issuer} is not ready \\(NotACA\\): .*use a CA certificate`,
        ),
      );
    } finally {
      await replaceSecretData(kc, setup.operatorNamespace, setup.issuer, original.data!);
      await waitForIssuer(kc, 'ClusterIssuer', setup.issuer, { status: 'True' });
    }
  });

  it('should report a pod that mounts a Sigil Secret through subPath', async () => {
    const plain = ns;
    await kc.makeApiClient(CoreV1Api).createNamespacedPod({
      namespace: plain,
      body: {
        metadata: { name: 'legacy', labels: { 'sigil.dev/inject': 'false' } },
        spec: {
          containers: [
            {
              name: 'app',
              image: 'x',
              volumeMounts: [{ name: 'tls', mountPath: '/etc/tls/tls.crt', subPath: 'tls.crt' }],
            },
          ],
          volumes: [{ name: 'tls', secret: { secretName: certName } }],
        },
      },
    });
    const res = await doctor();
    expect(res.code).toBe(1);
    expect(res.out).toContain(
      `pod ${plain}/legacy container app mounts tls with subPath tls.crt: it will never see renewed certificates`,
    );
    await kc.makeApiClient(CoreV1Api).deleteNamespacedPod({ name: 'legacy', namespace: plain });
    await getCertificate(kc, ns, certName);
  });
});
