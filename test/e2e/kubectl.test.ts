// Beside cert-manager, whose kinds have the same names as Sigil's, with the real kubectl: the
// forms Sigil prints and documents (certificates.sigil.dev, scert, sissuer, sclusterissuer, the
// sigil category) reach Sigil's resources, while the bare `certificate` reaches cert-manager's.
// cert-manager's CRDs come from its Go module (hack/build-tools.sh cert-manager-crds). Needs only
// the API server, but kubectl is built with the node's binaries, so it runs with the e2e suite;
// skipped, saying why, where kubectl was not built.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { loadKubeConfig } from '../../lib/kube/config.ts';
import { installCrds } from '../../lib/kube/crds.ts';
import {
  type ControlPlaneState,
  removeDir,
  startControlPlane,
  stopControlPlane,
} from '../../lib/testing/controlplane.ts';
import { REPO_ROOT } from '../../lib/testing/node/images.ts';
import type { Operator } from '../../operator/operator.ts';
import {
  caSecretData,
  createCertificate,
  createIssuer,
  createSecret,
  ensureNamespace,
  startTestOperator,
  waitForIssuer,
} from '../support/sigil.ts';

const run = promisify(execFile);
const binDir = execFileSync(join(REPO_ROOT, 'hack', 'build-tools.sh'), ['--print-dir'], {
  encoding: 'utf8',
}).trim();
const haveKubectl = existsSync(join(binDir, 'kubectl'));
const describeKubectl = haveKubectl ? describe : describe.skip;
if (!haveKubectl) console.log(`kubectl tests skipped: no kubectl in ${binDir} (make node-tools builds it)`);

describeKubectl("kubectl beside cert-manager's CRDs", () => {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-e2e-kubectl-'));
  const ns = 'shop';
  let cp: ControlPlaneState;
  let operator: Operator;
  // Asynchronous: the operator runs in this process and must go on while kubectl waits.
  const kubectl = async (...args: string[]) => {
    try {
      const { stdout } = await run(join(binDir, 'kubectl'), ['--kubeconfig', cp.kubeconfig, ...args], {
        encoding: 'utf8',
        timeout: 60_000,
      });
      return stdout;
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string };
      return `FAILED: ${e.stdout ?? ''}${e.stderr ?? ''}`;
    }
  };

  beforeAll(async () => {
    const crds = execFileSync(join(REPO_ROOT, 'hack', 'build-tools.sh'), ['cert-manager-crds'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    }).trim();
    cp = await startControlPlane({ dir: join(dir, 'cp'), persistent: false });
    const kc = loadKubeConfig(cp.kubeconfig);
    // cert-manager first, as on a cluster that had it before Sigil. `create`: its CRDs are too large
    // for the last-applied annotation of a client-side apply.
    const created = await kubectl('create', '-f', crds);
    if (created.startsWith('FAILED')) throw new Error(created);
    await kubectl('wait', '--for=condition=Established', '--timeout=60s', 'crd/certificates.cert-manager.io');
    await installCrds(kc);
    await ensureNamespace(kc, 'sigil-system');
    await ensureNamespace(kc, ns);
    await createSecret(kc, 'sigil-system', 'sigil-ca', await caSecretData('Beside cert-manager'));
    await createIssuer(kc, 'ClusterIssuer', 'sigil-ca', { ca: { secretName: 'sigil-ca' } });
    await createSecret(kc, ns, 'team-ca', await caSecretData('Team CA'));
    await createIssuer(kc, 'Issuer', 'team', { ca: { secretName: 'team-ca' } }, ns);
    operator = await startTestOperator(kc);
    await waitForIssuer(kc, 'ClusterIssuer', 'sigil-ca', { status: 'True' });
    await createCertificate(kc, ns, 'web', { secretName: 'web-tls', dnsNames: [`web.${ns}.svc`] });
  }, 300_000);

  afterAll(async () => {
    await operator?.stop();
    if (cp) await stopControlPlane(cp);
    removeDir(dir);
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('should show that the bare kind names cert-manager resources here, so the clash is real', async () => {
    expect(await kubectl('get', 'certificate', 'web', '-n', ns)).toContain(
      'certificates.cert-manager.io "web" not found',
    );
    expect(await kubectl('get', 'clusterissuer', 'sigil-ca')).toContain(
      'clusterissuers.cert-manager.io "sigil-ca" not found',
    );
  });

  it('should reach Sigil with the fully qualified names and wait for Ready', async () => {
    expect(
      await kubectl('wait', '--for=condition=Ready', 'certificates.sigil.dev/web', '-n', ns, '--timeout=30s'),
    ).toBe(`certificate.sigil.dev/web condition met\n`);
    expect(await kubectl('get', 'certificates.sigil.dev', '-A', '-o', 'name')).toBe(
      'certificate.sigil.dev/web\n',
    );
    expect(await kubectl('get', 'clusterissuers.sigil.dev', 'sigil-ca', '-o', 'name')).toBe(
      'clusterissuer.sigil.dev/sigil-ca\n',
    );
    expect(await kubectl('get', 'issuers.sigil.dev', '-n', ns, '-o', 'name')).toBe('issuer.sigil.dev/team\n');
  });

  it('should reach Sigil with its short names and its category', async () => {
    expect(await kubectl('get', 'scert', 'web', '-n', ns, '-o', 'name')).toBe('certificate.sigil.dev/web\n');
    expect(await kubectl('get', 'sissuer', '-n', ns, '-o', 'name')).toBe('issuer.sigil.dev/team\n');
    expect(await kubectl('get', 'sclusterissuer', '-o', 'name')).toBe('clusterissuer.sigil.dev/sigil-ca\n');
    expect((await kubectl('get', 'sigil', '-n', ns, '-o', 'name')).trim().split('\n').sort()).toEqual([
      'certificate.sigil.dev/web',
      'clusterissuer.sigil.dev/sigil-ca',
      'issuer.sigil.dev/team',
    ]);
  });

  it('should run the CLI as a kubectl plugin: kubectl sigil status', async () => {
    // bin/kubectl-sigil on PATH, as the README says (make build ran before the e2e suite).
    const env = { ...process.env, PATH: `${join(REPO_ROOT, 'bin')}:${process.env.PATH}` };
    const plugin = (...args: string[]) =>
      run(join(binDir, 'kubectl'), args, { encoding: 'utf8', env, timeout: 60_000 });
    expect((await plugin('plugin', 'list')).stdout).toContain(join(REPO_ROOT, 'bin', 'kubectl-sigil'));
    const status = await plugin('sigil', 'status', '-n', ns, '--kubeconfig', cp.kubeconfig);
    expect(status.stdout).toMatch(/^shop\s+web\s+True\s+web-tls\s/m);
    expect((await plugin('sigil', '--help')).stdout).toContain('Usage: kubectl sigil [options] [command]');
    const failed = await plugin('sigil', 'renew', 'web', '-A', '--kubeconfig', cp.kubeconfig).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect(failed).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/^kubectl sigil: -A goes with --all/),
    });
  });

  it("should explain Sigil's fields with the qualified name", async () => {
    const explained = await kubectl('explain', 'certificates.sigil.dev.spec');
    expect(explained).toContain('GROUP:      sigil.dev');
    expect(explained).toContain('What to issue');
    expect(await kubectl('explain', 'certificate.spec')).toContain('GROUP:      cert-manager.io');
  });
});
