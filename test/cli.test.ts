// The sigil CLI as a person runs it, against the test control plane.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
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
/** Kubeconfigs and home directories the tests write; removed at the end. */
const scratch = mkdtempSync(join(tmpdir(), 'sigil-cli-'));
let ns: string;
let certName: string;

/** The CLI against the test control plane; stdout and stderr together. */
async function sigil(...args: string[]): Promise<{ code: number; out: string }> {
  const res = await sigilRaw([...args, '--kubeconfig', kubeconfigPath()]);
  return { code: res.code, out: `${res.out}${res.err}` };
}

/** Doctor scoped to this file's namespace and ClusterIssuer: other files running now make broken ClusterIssuers on purpose. */
const doctor = () =>
  sigil(
    'doctor',
    '--namespace',
    setup.operatorNamespace,
    '--webhook-configuration',
    setup.configName,
    '--only-namespace',
    ns,
    '--default-issuer',
    setup.issuer,
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
  rmSync(scratch, { recursive: true, force: true });
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
    // The test operator runs without leader election: the one '!' line, counted as it is shown.
    expect(res.out).not.toContain('✗');
    expect(res.out).toContain('! leader');
    expect(res.out.trim().split('\n').at(-1)).toBe('sigil doctor: 1 warning');
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

/** The CLI with exactly these arguments and environment: no kubeconfig added. */
function sigilRaw(
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ code: number; out: string; err: string }> {
  return new Promise((r) => {
    execFile(
      process.execPath,
      [join(ROOT, 'cli', 'main.ts'), ...args],
      { env: { ...env, NODE_NO_WARNINGS: '1' } },
      (e, stdout, stderr) =>
        r({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out: stdout, err: stderr }),
    );
  });
}

/** A kubeconfig for `server` (the test API server's CA) with a token of our choosing. */
function kubeconfigFile(server: string, token: string): string {
  const cluster = kc.getCurrentCluster()!;
  const file = join(mkdtempSync(join(scratch, 'kubeconfig-')), 'kubeconfig');
  writeFileSync(
    file,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server, 'certificate-authority-data': cluster.caData } }],
      users: [{ name: 'u', user: { token } }],
      contexts: [{ name: 'c', context: { cluster: 'c', user: 'u', namespace: 'default' } }],
      'current-context': 'c',
    }),
  );
  return file;
}

describe('sigil when the cluster cannot be used', () => {
  /** One line on stderr, naming what failed, and no stack trace. */
  const oneLine = (res: { out: string; err: string }) => {
    expect(res.out).toBe('');
    expect(res.err.trim().split('\n')).toHaveLength(1);
    expect(res.err).not.toMatch(/^\s+at /m);
    return res.err.trim();
  };

  it.each([
    ['status', ['status']],
    ['renew', ['renew', 'x']],
    ['inspect', ['inspect', 'x']],
    ['doctor', ['doctor']],
  ])('%s with no kubeconfig anywhere: one line, exit 2', async (_n, args) => {
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: mkdtempSync(join(scratch, 'home-')) };
    delete env.KUBECONFIG;
    delete env.KUBERNETES_SERVICE_HOST;
    const res = await sigilRaw(args, env);
    expect(res.code).toBe(2);
    expect(oneLine(res)).toMatch(
      /^sigil: no kubeconfig: pass --kubeconfig, set KUBECONFIG, or write .*\.kube\/config/,
    );
  });

  it('should say a --kubeconfig file is missing, exit 2', async () => {
    const res = await sigilRaw(['status', '--kubeconfig', '/nonexistent/kubeconfig']);
    expect(res.code).toBe(2);
    expect(oneLine(res)).toContain('cannot read the kubeconfig /nonexistent/kubeconfig: ENOENT');
  });

  it.each([['status'], ['doctor'], ['renew']])(
    '%s against a stopped API server: one line, exit 2',
    async (command) => {
      const { freePort } = await import('../lib/testing/controlplane.ts');
      const server = `https://127.0.0.1:${await freePort()}`;
      const file = kubeconfigFile(server, 'x');
      const res = await sigilRaw([command, ...(command === 'renew' ? ['web'] : []), '--kubeconfig', file]);
      expect(res.code).toBe(2);
      expect(oneLine(res)).toBe(
        `sigil: cannot reach the API server at ${server} (from ${file}): connection refused. Is the cluster running, and is this the kubeconfig you meant (--kubeconfig, KUBECONFIG)?`,
      );
    },
  );

  it.each([['status'], ['doctor']])(
    '%s with a token the API server refuses: one line, exit 2',
    async (command) => {
      const server = kc.getCurrentCluster()!.server;
      const file = kubeconfigFile(server, 'not-a-token');
      const res = await sigilRaw([command, '--kubeconfig', file]);
      expect(res.code).toBe(2);
      expect(oneLine(res)).toContain(
        `the API server at ${server} refused the credentials in the kubeconfig (from ${file}) (401 Unauthorized)`,
      );
    },
  );

  it('should say renew -A with a name is a usage error, not print undefined/x', async () => {
    const res = await sigilRaw(['renew', 'web', '-A', '--kubeconfig', kubeconfigPath()]);
    expect(res.code).toBe(2);
    expect(oneLine(res)).toBe(
      "sigil: -A goes with --all; to renew web, name its namespace with -n (or leave it for the context's)",
    );
  });

  it.each([
    ['an unknown command', ['statsu'], "error: unknown command 'statsu'"],
    ['an unknown option', ['status', '--bogus'], "error: unknown option '--bogus'"],
    ['no command', [], 'Usage: sigil'],
  ])('should exit 2 for %s', async (_n, args, text) => {
    const res = await sigilRaw(args);
    expect(res.code).toBe(2);
    expect(`${res.out}${res.err}`).toContain(text);
  });

  it('should exit 0 for --help', async () => {
    expect((await sigilRaw(['--help'])).code).toBe(0);
    expect((await sigilRaw(['status', '--help'])).code).toBe(0);
  });

  it('should say a Secret has no tls.crt, not that it is not PEM, and exit 1', async () => {
    await kc.makeApiClient(CoreV1Api).createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name: 'plain' }, stringData: { password: 'x' } },
    });
    const res = await sigil('inspect', 'plain', '-n', ns);
    expect(res.code).toBe(1);
    expect(res.out.trim()).toBe(
      `Secret ${ns}/plain has no tls.crt or tls.key (its keys: password); inspect reads a kubernetes.io/tls Secret, such as a Certificate's spec.secretName`,
    );
  });
});

describe('sigil against a cluster without Sigil installed', () => {
  let bare: import('../lib/testing/controlplane.ts').ControlPlaneState;
  const dir = mkdtempSync(join(tmpdir(), 'sigil-cli-bare-'));
  beforeAll(async () => {
    const { startControlPlane } = await import('../lib/testing/controlplane.ts');
    bare = await startControlPlane({ dir, persistent: false });
  }, 120_000);
  afterAll(async () => {
    const { stopControlPlane, removeDir } = await import('../lib/testing/controlplane.ts');
    if (bare) await stopControlPlane(bare);
    removeDir(dir);
  });

  it.each([['status'], ['renew']])(
    '%s says the CRDs are missing and how to install them, exit 2',
    async (command) => {
      const res = await sigilRaw([
        command,
        ...(command === 'renew' ? ['--all'] : []),
        '--kubeconfig',
        bare.kubeconfig,
      ]);
      expect(res.code).toBe(2);
      expect(res.err.trim()).toBe(
        `sigil: Sigil's resources (sigil.dev) are not installed in the cluster at ${bare.server}: install the chart (helm install sigil charts/sigil) or the CRDs (kubectl apply -f crds/)`,
      );
    },
  );

  it('doctor reports the missing CRDs as problems and exits 1', async () => {
    const res = await sigilRaw(['doctor', '--kubeconfig', bare.kubeconfig]);
    expect(res.code).toBe(1);
    expect(res.out).toContain('✗ CRDs          certificates.sigil.dev is missing: install the CRDs');
    expect(res.out).toContain('sigil doctor: 3 problems');
  });
});
