// make demo: Sigil's whole job, told step by step. On a machine that can run a
// node, on a real one-node cluster (hack/demo-node.ts); elsewhere, or with
// SIGIL_NODE=0, on the API server alone, where pods are stored but never run and
// the kubelet's part is played by writing the Secret's keys into directories.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  appendFileSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  renameSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:https';
import { connect } from 'node:net';
import { join, resolve } from 'node:path';
import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type V1MutatingWebhookConfiguration,
  type V1Pod,
} from '@kubernetes/client-node';
import { API_VERSION, type Certificate, findCondition, GROUP, Plural, VERSION } from '../lib/api/types.ts';
import { loadKubeConfig } from '../lib/kube/config.ts';
import { installCrds } from '../lib/kube/crds.ts';
import { rawRequest } from '../lib/kube/rest.ts';
import { webhookConfiguration } from '../lib/kube/webhookconfig.ts';
import { createSelfSignedCA, loadCertificateAuthority } from '../lib/pki/ca.ts';
import { issueCertificate } from '../lib/pki/issue.ts';
import {
  freePort,
  readState,
  removeDir,
  serverVersion,
  startControlPlane,
  stopControlPlane,
} from '../lib/testing/controlplane.ts';
import { nodeBlockers, stopCluster } from '../lib/testing/node/cluster.ts';
import { nodeDemo } from './demo-node.ts';

const ROOT = resolve(import.meta.dirname, '..');
const DIR = resolve(ROOT, '.demo');
const KEEP = process.env.KEEP === '1';
const NS = 'sigil-system';
const APP_NS = 'shop';
const started = Date.now();
const children: ChildProcess[] = [];
let step = 0;

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const green = (s: string) => (process.stdout.isTTY ? `\x1b[32m${s}\x1b[0m` : s);
const title = (s: string) => console.log(`\n${bold(`[${++step}] ${s}`)}`);
const result = (s: string) => console.log(`    ${green('✓')} ${s}`);
const detail = (s: string) =>
  console.log(
    s
      .split('\n')
      .map((l) => `      ${l}`)
      .join('\n'),
  );

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch {}
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function sigil(args: string[], kubeconfig: string, logName: string): ChildProcess {
  const fd = openSync(join(DIR, logName), 'a');
  const child = spawn(process.execPath, [join(ROOT, 'cli', 'main.ts'), ...args, '--kubeconfig', kubeconfig], {
    stdio: ['ignore', fd, fd],
    detached: KEEP,
    env: { ...process.env, NODE_NO_WARNINGS: '1' },
  });
  closeSync(fd);
  if (KEEP) {
    child.unref();
    // make demo-down stops exactly these, by process id (checking each is still this checkout's).
    appendFileSync(join(DIR, 'pids'), `${child.pid}\n`);
  }
  children.push(child);
  return child;
}

function run(args: string[], kubeconfig?: string): { code: number; out: string } {
  try {
    const out = execFileSync(
      process.execPath,
      [join(ROOT, 'cli', 'main.ts'), ...args, ...(kubeconfig ? ['--kubeconfig', kubeconfig] : [])],
      {
        encoding: 'utf8',
        env: { ...process.env, NODE_NO_WARNINGS: '1' },
      },
    );
    return { code: 0, out };
  } catch (err) {
    const e = err as { status: number; stdout: string };
    return { code: e.status, out: e.stdout };
  }
}

function peer(
  mode: 'server' | 'client',
  dir: string,
  port: number,
  allowed: string,
): Promise<string> | ChildProcess {
  const child = spawn(
    process.execPath,
    [join(ROOT, 'hack', 'demo-peer.ts'), mode, dir, String(port), allowed],
    { env: { ...process.env, NODE_NO_WARNINGS: '1' } },
  );
  if (mode === 'server') {
    children.push(child);
    child.stdout!.on('data', (d) => detail(String(d).trimEnd()));
    return child;
  }
  return new Promise((r) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
    });
    child.on('exit', () => r(out.trimEnd()));
  });
}

/** Writes a Secret's keys into a directory the way the kubelet updates a projected volume: atomically. */
function writeIdentity(dir: string, files: Record<string, string>) {
  mkdirSync(dir, { recursive: true });
  for (const [name, content] of Object.entries(files)) {
    writeFileSync(join(dir, `.${name}.new`), content, { mode: 0o600 });
    renameSync(join(dir, `.${name}.new`), join(dir, name));
  }
}

async function secretFiles(kc: KubeConfig, name: string) {
  const s = await kc.makeApiClient(CoreV1Api).readNamespacedSecret({ name, namespace: APP_NS });
  const d = (k: string) => Buffer.from(s.data![k]!, 'base64').toString('utf8');
  return { 'tls.crt': d('tls.crt'), 'tls.key': d('tls.key'), 'ca.crt': d('ca.crt') };
}

/** Why this demo runs without a node, or undefined when it runs on one. */
function noNodeReason(): string | undefined {
  if (process.env.SIGIL_NODE === '0') return 'SIGIL_NODE=0';
  const blockers = nodeBlockers();
  return blockers.length > 0 ? `this machine cannot run a node: ${blockers.join('; ')}` : undefined;
}

async function main() {
  console.log(bold('Sigil demo: mTLS identities for pods, issued, injected, used and renewed'));
  // What an earlier `make demo KEEP=1` left, node included.
  if (existsSync(DIR)) await stopCluster(DIR);

  const why = noNodeReason();
  if (why === undefined) {
    const summary = await nodeDemo({
      dir: DIR,
      keep: KEEP,
      // 5s so the renewal step takes seconds; SIGIL_KUBELET_SYNC=1m shows the kubelet's default.
      syncFrequency: process.env.SIGIL_KUBELET_SYNC ?? '5s',
      title,
      result,
      detail,
    });
    console.log(`\n${bold('Summary')}`);
    for (const line of summary) console.log(`  ${green('✓')} ${line}`);
    console.log(`  done in ${((Date.now() - started) / 1000).toFixed(1)}s`);
    return;
  }
  console.log(`No node (${why}): the API server alone, where pods are stored but never run.`);

  title('Start a local control plane (kube-apiserver + etcd, no Docker)');
  const cp = await startControlPlane({ dir: DIR, persistent: KEEP });
  const kubeconfig = cp.kubeconfig;
  const kc = loadKubeConfig(kubeconfig);
  result(`kube-apiserver ${await serverVersion(cp)} at ${cp.server}`);

  title('Install the CRDs, bootstrap a CA and the ClusterIssuer sigil-ca');
  await installCrds(kc);
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  await core.createNamespace({ body: { metadata: { name: NS } } });
  const root = await createSelfSignedCA({
    commonName: 'Sigil demo root CA',
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 365 * 86_400_000),
  });
  await core.createNamespacedSecret({
    namespace: NS,
    body: {
      metadata: { name: 'sigil-ca' },
      type: 'kubernetes.io/tls',
      stringData: { 'tls.crt': root.certPem, 'tls.key': root.keyPem },
    },
  });
  await custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: Plural.ClusterIssuer,
    body: {
      apiVersion: API_VERSION,
      kind: 'ClusterIssuer',
      metadata: { name: 'sigil-ca' },
      spec: { ca: { secretName: 'sigil-ca' } },
    },
  });
  result('CRDs established; CA "Sigil demo root CA" in Secret sigil-system/sigil-ca; ClusterIssuer sigil-ca');

  title('Start the operator and the webhook');
  const webhookPort = await freePort();
  const operatorMetrics = await freePort();
  await rawRequest(
    kc,
    'POST',
    '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations',
    webhookConfiguration({
      name: 'sigil-webhook',
      operatorNamespace: NS,
      url: `https://127.0.0.1:${webhookPort}/mutate-v1-pod`,
    }),
  );
  sigil(
    [
      'operator',
      '--metrics-address',
      `127.0.0.1:${operatorMetrics}`,
      '--webhook-ip-sans',
      '127.0.0.1',
      '--min-duration',
      '1m',
    ],
    kubeconfig,
    'operator.log',
  );
  // As the chart runs it with clientAuth: only the API server's admission client certificate is answered.
  const client = cp.webhookClient;
  if (!client)
    throw new Error(
      'the control plane has no webhook client certificate to authenticate the API server with',
    );
  sigil(
    [
      'webhook',
      '--address',
      `127.0.0.1:${webhookPort}`,
      '--client-ca-file',
      client.caFile,
      '--client-names',
      client.name,
    ],
    kubeconfig,
    'webhook.log',
  );
  const bundle = await until('the caBundle', async () => {
    const c = await rawRequest<V1MutatingWebhookConfiguration>(
      kc,
      'GET',
      '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/sigil-webhook',
    );
    return c.webhooks?.[0]?.clientConfig.caBundle;
  });
  await until('the ClusterIssuer to be Ready', async () => {
    const i = (await custom.getClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: Plural.ClusterIssuer,
      name: 'sigil-ca',
    })) as Certificate;
    return findCondition(i.status?.conditions, 'Ready')?.status === 'True' ? true : undefined;
  });
  await until(
    'the webhook to serve the operator-issued certificate',
    () =>
      new Promise<true | undefined>((r) => {
        const req = request(
          { host: '127.0.0.1', port: webhookPort, path: '/readyz', ca: Buffer.from(bundle, 'base64') },
          (res) => r(res.statusCode === 200 ? true : undefined),
        );
        req.on('error', () => r(undefined));
        req.end();
      }),
  );
  result(
    `operator leads (Lease ${NS}/sigil-operator), issued the webhook's serving certificate and published its caBundle`,
  );
  result(`webhook serving https://127.0.0.1:${webhookPort}/mutate-v1-pod`);

  title(`Label namespace ${APP_NS} for injection and create the frontend and payments pods`);
  await core.createNamespace({
    body: { metadata: { name: APP_NS, labels: { 'sigil.dev/inject': 'enabled' } } },
  });
  const pods: V1Pod[] = [];
  for (const app of ['frontend', 'payments']) {
    for (let i = 0; i < 2; i++) {
      pods.push(
        await core.createNamespacedPod({
          namespace: APP_NS,
          body: {
            metadata: { generateName: `${app}-`, labels: { app }, annotations: { 'sigil.dev/service': app } },
            spec: { serviceAccountName: app, containers: [{ name: app, image: `example.com/${app}:1` }] },
          },
        }),
      );
    }
  }
  result(`4 pods created: ${pods.map((p) => p.metadata?.name).join(', ')}`);
  const p0 = pods[2]!;
  const vol = p0.spec!.volumes!.find((v) => v.name === 'sigil-identity')!;
  const c0 = p0.spec!.containers[0]!;
  detail(`pod ${p0.metadata!.name} as stored by the API server:`);
  detail(
    `  volume sigil-identity: projected Secret ${vol.projected!.sources![0]!.secret!.name} (tls.crt, tls.key, ca.crt), mode 0444`,
  );
  detail(
    `  mount: ${c0.volumeMounts!.map((m) => `${m.name} at ${m.mountPath} readOnly=${m.readOnly}`).join('; ')}`,
  );
  for (const e of c0.env ?? []) detail(`  env ${e.name}=${e.value}`);
  detail(
    `  annotations: sigil.dev/status=${p0.metadata!.annotations!['sigil.dev/status']}, sigil.dev/certificate=${p0.metadata!.annotations!['sigil.dev/certificate']}`,
  );
  const certName = (app: string) =>
    pods.find((p) => p.metadata?.labels?.app === app)!.metadata!.annotations!['sigil.dev/certificate']!;
  await until('both identities Ready', async () => {
    const list = (await custom.listNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: APP_NS,
      plural: Plural.Certificate,
    })) as { items: Certificate[] };
    return list.items.length === 2 &&
      list.items.every((c) => findCondition(c.status?.conditions, 'Ready')?.status === 'True')
      ? true
      : undefined;
  });
  result('2 identities (replicas share one Certificate each), both Ready:');
  detail(run(['status', '-n', APP_NS], kubeconfig).out.trimEnd());

  title('Use the identities: mutual TLS between two real processes');
  const dirs = {
    frontend: join(DIR, 'identities', 'frontend'),
    payments: join(DIR, 'identities', 'payments'),
    intruder: join(DIR, 'identities', 'intruder'),
  };
  writeIdentity(dirs.frontend, await secretFiles(kc, certName('frontend')));
  writeIdentity(dirs.payments, await secretFiles(kc, certName('payments')));
  detail(
    `wrote each Secret's tls.crt, tls.key, ca.crt into ${join('.demo', 'identities', '<app>')}, as the pod sees them`,
  );
  const td = 'spiffe://cluster.local';
  const port = await freePort();
  const server = peer('server', dirs.payments, port, `${td}/ns/${APP_NS}/sa/frontend`) as ChildProcess;
  await until('the payments server', () => canConnect(port));
  const ok = await (peer('client', dirs.frontend, port, `${td}/ns/${APP_NS}/sa/payments`) as Promise<string>);
  detail(ok);
  if (!ok.includes('server says: hello'))
    throw new Error('the mutual TLS handshake between frontend and payments failed');
  result("frontend and payments completed a mutual TLS handshake; each saw the other's SPIFFE ID");
  const otherCA = await createSelfSignedCA({
    commonName: 'Some other CA',
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
  });
  const intruder = await issueCertificate(
    loadCertificateAuthority(otherCA.certPem, otherCA.keyPem, new Date()),
    { uris: [`${td}/ns/${APP_NS}/sa/frontend`], durationMs: 3_600_000 },
    new Date(),
  );
  writeIdentity(dirs.intruder, {
    'tls.crt': intruder.certificatePem,
    'tls.key': intruder.privateKeyPem,
    'ca.crt': root.certPem,
  });
  const refused = await (peer(
    'client',
    dirs.intruder,
    port,
    `${td}/ns/${APP_NS}/sa/payments`,
  ) as Promise<string>);
  await new Promise((r) => setTimeout(r, 200));
  detail(refused);
  if (refused.includes('server says: hello')) throw new Error('a client from another CA was accepted');
  result('a client claiming the frontend identity with a certificate from another CA was refused');

  title('Force a renewal and watch the running server pick it up');
  const before = (await custom.getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: APP_NS,
    plural: Plural.Certificate,
    name: certName('payments'),
  })) as Certificate;
  detail(run(['renew', certName('payments'), '-n', APP_NS], kubeconfig).out.trimEnd());
  const after = await until('the renewed certificate', async () => {
    const c = (await custom.getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: APP_NS,
      plural: Plural.Certificate,
      name: certName('payments'),
    })) as Certificate;
    return (c.status?.revision ?? 0) > (before.status?.revision ?? 0) &&
      findCondition(c.status?.conditions, 'Ready')?.status === 'True'
      ? c
      : undefined;
  });
  result(
    `revision ${before.status?.revision} → ${after.status?.revision}; serial ${before.status?.serialNumber} → ${after.status?.serialNumber}`,
  );
  writeIdentity(dirs.payments, await secretFiles(kc, certName('payments')));
  detail("the Secret's new keys were written into the payments directory, as the kubelet updates the volume");
  await new Promise((r) => setTimeout(r, 800));
  const again = await (peer(
    'client',
    dirs.frontend,
    port,
    `${td}/ns/${APP_NS}/sa/payments`,
  ) as Promise<string>);
  detail(again);
  if (!again.includes(after.status!.serialNumber!))
    throw new Error('the server did not serve the renewed certificate');
  result('the same server process now serves the new serial: no restart');

  title('sigil doctor');
  const doctor = run(['doctor', '--namespace', NS], kubeconfig);
  detail(doctor.out.trimEnd());
  if (doctor.code !== 0) throw new Error('sigil doctor found problems');
  result('doctor passes');

  server.kill('SIGTERM');
  console.log(`\n${bold('Summary')}`);
  console.log(`  ${green('✓')} control plane, CRDs, CA, ClusterIssuer, operator and webhook up`);
  console.log(`  ${green('✓')} pods in ${APP_NS} injected; identities issued and Ready`);
  console.log(`  ${green('✓')} real mTLS between frontend and payments; a foreign CA refused`);
  console.log(`  ${green('✓')} renewal picked up by a running server without restart`);
  console.log(`  done in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  if (KEEP) {
    console.log(
      `\nEverything is still running. Explore with:\n  export KUBECONFIG=${kubeconfig}\n  make build            # once: compiles the CLI\n  bin/kubectl-sigil status -A   # or kubectl sigil, with bin/ on PATH\n  bin/kubectl-sigil doctor\nLogs: .demo/operator.log, .demo/webhook.log. Stop with: make demo-down`,
    );
  }
}

function canConnect(port: number): Promise<true | undefined> {
  return new Promise((resolveConnect) => {
    const sock = connect(port, '127.0.0.1');
    sock.on('connect', () => {
      sock.destroy();
      resolveConnect(true);
    });
    sock.on('error', () => resolveConnect(undefined));
  });
}

const cleanup = async () => {
  if (KEEP) return;
  for (const c of children) c.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  const state = readState(DIR);
  if (state) await stopControlPlane(state);
  removeDir(DIR);
};

try {
  await main();
  await cleanup();
  process.exit(0);
} catch (err) {
  console.error(
    `\n✗ demo failed: ${(err as Error).message}\n  logs: ${DIR}/ (kube-apiserver.log; with a node, node/*.log; without, operator.log, webhook.log)`,
  );
  if (!KEEP) for (const c of children) c.kill('SIGTERM');
  process.exit(1);
}
