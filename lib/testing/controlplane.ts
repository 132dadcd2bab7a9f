// A real kube-apiserver and etcd as local processes, the way controller-runtime's
// envtest runs them: no kubelet, no controller-manager, no scheduler. Used by
// the integration tests, `make cluster-up`, the demo and the benchmarks.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSelfSignedCA, loadCertificateAuthority } from '../pki/ca.ts';
import { issueCertificate } from '../pki/issue.ts';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const DAY = 86_400_000;

export interface ControlPlaneState {
  dir: string;
  etcdPid: number;
  apiserverPid: number;
  watchdogPid?: number | undefined;
  etcdUrl: string;
  server: string;
  kubeconfig: string;
  caPem: string;
  token: string;
  ownerPid?: number | undefined;
  /**
   * The client certificate the API server presents to admission webhooks (its
   * --admission-control-config-file names a kubeconfig with it), and the CA
   * that signed it: a webhook started with `--client-ca-file caFile
   * --client-names name` answers this API server and nobody else.
   */
  webhookClient?: WebhookClient | undefined;
  /** How each process was started, so fault tests can restart it the same way. */
  commands?: { etcd: { bin: string; args: string[] }; apiserver: { bin: string; args: string[] } };
}

export interface WebhookClient {
  caFile: string;
  certFile: string;
  keyFile: string;
  /** The certificate's subject common name (and DNS SAN). */
  name: string;
}

/** The subject of the API server's admission client certificate. */
export const WEBHOOK_CLIENT_NAME = 'sigil-local-apiserver';

/** Control planes started by this process, by API server URL. */
const started = new Map<string, ControlPlaneState>();

/**
 * The admission client identity of the control plane serving `server`: one
 * started by this process, or the one the test run started (its directory in
 * SIGIL_TEST_CONTROL_PLANE_DIR, or beside SIGIL_TEST_KUBECONFIG).
 */
export function webhookClientFor(server: string): WebhookClient | undefined {
  const own = started.get(server);
  if (own) return own.webhookClient;
  const dirs = [
    process.env.SIGIL_TEST_CONTROL_PLANE_DIR,
    process.env.SIGIL_TEST_KUBECONFIG ? dirname(process.env.SIGIL_TEST_KUBECONFIG) : undefined,
  ];
  for (const dir of dirs) {
    const state = dir ? readState(dir) : undefined;
    if (state?.server === server) return state.webhookClient;
  }
  return undefined;
}

/**
 * The admission configuration that makes the API server present a client
 * certificate to every webhook it calls: the kubeconfig's user `*` matches
 * any webhook host (Kubernetes' "Authenticate apiservers").
 */
function admissionConfig(pki: string, client: WebhookClient): string {
  const kubeconfig = join(pki, 'admission-kubeconfig.yaml');
  writeFileSync(
    kubeconfig,
    [
      'apiVersion: v1',
      'kind: Config',
      'users:',
      "- name: '*'",
      '  user:',
      `    client-certificate: ${client.certFile}`,
      `    client-key: ${client.keyFile}`,
      '',
    ].join('\n'),
  );
  const config = join(pki, 'admission-config.yaml');
  writeFileSync(
    config,
    [
      'apiVersion: apiserver.config.k8s.io/v1',
      'kind: AdmissionConfiguration',
      'plugins:',
      ...['MutatingAdmissionWebhook', 'ValidatingAdmissionWebhook'].flatMap((name) => [
        `- name: ${name}`,
        '  configuration:',
        '    apiVersion: apiserver.config.k8s.io/v1',
        '    kind: WebhookAdmissionConfiguration',
        `    kubeConfigFile: ${kubeconfig}`,
      ]),
      '',
    ].join('\n'),
  );
  return config;
}

/** Finds kube-apiserver and etcd: KUBEBUILDER_ASSETS first, then the per-machine cache (building it if needed). */
export function binaryDir(): string {
  const assets = process.env.KUBEBUILDER_ASSETS;
  if (assets && existsSync(join(assets, 'kube-apiserver')) && existsSync(join(assets, 'etcd'))) return assets;
  const script = join(REPO_ROOT, 'hack', 'build-tools.sh');
  execFileSync(script, ['control-plane'], { stdio: ['ignore', 'inherit', 'inherit'] });
  return execFileSync(script, ['--print-dir'], { encoding: 'utf8' }).trim();
}

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

export function isAlive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** GET with the admin token over the control plane's own CA. Resolves with status and body. */
export function apiGet(
  state: Pick<ControlPlaneState, 'server' | 'caPem' | 'token'>,
  path: string,
  timeoutMs = 2000,
) {
  return new Promise<{ status: number; body: string }>((resolveGet, reject) => {
    const req = request(
      `${state.server}${path}`,
      { ca: state.caPem, headers: { authorization: `Bearer ${state.token}` }, timeout: timeoutMs },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => resolveGet({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function spawnLogged(bin: string, args: string[], logFile: string, detached: boolean): ChildProcess {
  const fd = openSync(logFile, 'a');
  const child = spawn(bin, args, { stdio: ['ignore', fd, fd], detached });
  closeSync(fd);
  if (detached) child.unref();
  return child;
}

async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  child: ChildProcess,
  logFile: string,
  timeoutMs: number,
) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `${what} exited (${child.exitCode ?? child.signalCode}) before it was ready; its log ends:\n${tail(logFile)}`,
      );
    }
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} was not ready within ${timeoutMs / 1000}s; its log ends:\n${tail(logFile)}`);
}

function kubeconfigYaml(server: string, caPem: string, token: string): string {
  const ca = Buffer.from(caPem).toString('base64');
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: sigil-local',
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority-data: ${ca}`,
    'users:',
    '- name: admin',
    '  user:',
    `    token: ${token}`,
    'contexts:',
    '- name: sigil-local',
    '  context:',
    '    cluster: sigil-local',
    '    user: admin',
    'current-context: sigil-local',
    '',
  ].join('\n');
}

export interface StartOptions {
  /** Where certificates, data, logs, state.json and the kubeconfig go. */
  dir: string;
  /**
   * Owned control planes die with the process that started them (a watchdog
   * stops them if it is killed); persistent ones run until `stop`.
   */
  persistent: boolean;
  /** Extra kube-apiserver flags. */
  apiserverArgs?: string[];
  /**
   * Keep the ServiceAccount admission plugin, which mounts each pod's token and
   * refuses pods whose ServiceAccount does not exist yet. Off by default: with
   * no kube-controller-manager nothing creates ServiceAccounts, and the
   * integration tests create pods without them. A real node turns it on, so
   * pods (the chart's operator and webhook) get tokens as on any cluster.
   */
  serviceAccountAdmission?: boolean;
}

/** Starts etcd and kube-apiserver on free loopback ports and waits until the API server is ready. */
export async function startControlPlane(options: StartOptions): Promise<ControlPlaneState> {
  const bin = binaryDir();
  const dir = resolve(options.dir);
  mkdirSync(dir, { recursive: true });
  const pki = join(dir, 'pki');
  mkdirSync(pki, { recursive: true });
  const now = new Date();

  const ca = await createSelfSignedCA({
    commonName: 'sigil-local-apiserver-ca',
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + 365 * DAY),
  });
  const serving = await issueCertificate(
    loadCertificateAuthority(ca.certPem, ca.keyPem, now),
    {
      commonName: 'kube-apiserver',
      dnsNames: ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc'],
      ipAddresses: ['127.0.0.1'],
      usages: ['digital signature', 'key encipherment', 'server auth'],
      durationMs: 365 * DAY,
    },
    now,
  );
  const sa = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const token = randomBytes(24).toString('hex');
  writeFileSync(join(pki, 'ca.crt'), ca.certPem);
  writeFileSync(join(pki, 'apiserver.crt'), serving.certificatePem);
  writeFileSync(join(pki, 'apiserver.key'), serving.privateKeyPem, { mode: 0o600 });
  writeFileSync(join(pki, 'sa.key'), sa.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  writeFileSync(join(pki, 'sa.pub'), sa.publicKey.export({ type: 'spki', format: 'pem' }));
  writeFileSync(join(pki, 'tokens.csv'), `${token},admin,admin,system:masters\n`, { mode: 0o600 });
  // A CA of its own for the admission client, so trusting it trusts nothing else the API server signs.
  const clientCa = await createSelfSignedCA({
    commonName: 'sigil-local-webhook-client-ca',
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + 365 * DAY),
  });
  const client = await issueCertificate(
    loadCertificateAuthority(clientCa.certPem, clientCa.keyPem, now),
    {
      commonName: WEBHOOK_CLIENT_NAME,
      dnsNames: [WEBHOOK_CLIENT_NAME],
      usages: ['digital signature', 'key encipherment', 'client auth'],
      durationMs: 365 * DAY,
    },
    now,
  );
  const webhookClient: WebhookClient = {
    caFile: join(pki, 'webhook-client-ca.crt'),
    certFile: join(pki, 'webhook-client.crt'),
    keyFile: join(pki, 'webhook-client.key'),
    name: WEBHOOK_CLIENT_NAME,
  };
  writeFileSync(webhookClient.caFile, clientCa.certPem);
  writeFileSync(webhookClient.certFile, client.certificatePem);
  writeFileSync(webhookClient.keyFile, client.privateKeyPem, { mode: 0o600 });

  const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
  const etcdUrl = `http://127.0.0.1:${etcdPort}`;
  const etcdLog = join(dir, 'etcd.log');
  const etcdArgs = [
    '--name=sigil',
    `--data-dir=${join(dir, 'etcd-data')}`,
    `--listen-client-urls=${etcdUrl}`,
    `--advertise-client-urls=${etcdUrl}`,
    `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
    `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
    `--initial-cluster=sigil=http://127.0.0.1:${peerPort}`,
    '--unsafe-no-fsync',
    '--quota-backend-bytes=8589934592',
    '--log-level=warn',
  ];
  const etcd = spawnLogged(join(bin, 'etcd'), etcdArgs, etcdLog, options.persistent);
  const server = `https://127.0.0.1:${apiPort}`;
  const state: ControlPlaneState = {
    dir,
    etcdPid: etcd.pid!,
    apiserverPid: 0,
    etcdUrl,
    server,
    kubeconfig: join(dir, 'kubeconfig'),
    caPem: ca.certPem,
    token,
    ownerPid: options.persistent ? undefined : process.pid,
    webhookClient,
  };
  try {
    await waitFor(
      'etcd',
      async () => (await fetch(`${etcdUrl}/health`, { signal: AbortSignal.timeout(1000) })).ok,
      etcd,
      etcdLog,
      30_000,
    );
    const apiLog = join(dir, 'kube-apiserver.log');
    const apiserverArgs = [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1',
      // Never contacted: with no endpoint reconciler the address is only recorded.
      '--advertise-address=192.0.2.1',
      '--endpoint-reconciler-type=none',
      `--secure-port=${apiPort}`,
      `--cert-dir=${pki}`,
      `--tls-cert-file=${join(pki, 'apiserver.crt')}`,
      `--tls-private-key-file=${join(pki, 'apiserver.key')}`,
      `--token-auth-file=${join(pki, 'tokens.csv')}`,
      '--authorization-mode=RBAC',
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${join(pki, 'sa.pub')}`,
      `--service-account-signing-key-file=${join(pki, 'sa.key')}`,
      '--service-cluster-ip-range=10.96.0.0/16',
      '--allow-privileged=true',
      ...(options.serviceAccountAdmission ? [] : ['--disable-admission-plugins=ServiceAccount']),
      `--admission-control-config-file=${admissionConfig(pki, webhookClient)}`,
      '--max-requests-inflight=1000',
      '--max-mutating-requests-inflight=500',
      ...(options.apiserverArgs ?? []),
    ];
    const apiserver = spawnLogged(join(bin, 'kube-apiserver'), apiserverArgs, apiLog, options.persistent);
    state.apiserverPid = apiserver.pid!;
    state.commands = {
      etcd: { bin: join(bin, 'etcd'), args: etcdArgs },
      apiserver: { bin: join(bin, 'kube-apiserver'), args: apiserverArgs },
    };
    if (!options.persistent) state.watchdogPid = startWatchdog(process.pid, [apiserver.pid!, etcd.pid!], dir);
    writeFileSync(join(dir, 'state.json'), JSON.stringify(state, null, 2));
    await waitFor(
      'kube-apiserver',
      async () => (await apiGet(state, '/readyz')).status === 200,
      apiserver,
      apiLog,
      90_000,
    );
    writeFileSync(state.kubeconfig, kubeconfigYaml(server, ca.certPem, token), { mode: 0o600 });
    started.set(server, state);
    return state;
  } catch (err) {
    await stopControlPlane(state);
    throw err;
  }
}

/**
 * A detached process that stops the control plane if its owner disappears
 * (a test runner killed with SIGKILL never runs its teardown).
 */
function startWatchdog(ownerPid: number, pids: number[], dir: string): number {
  const script = `
    const [owner, dir, ...pids] = process.argv.slice(1).map((v, i) => (i === 1 ? v : Number(v)));
    const alive = (p) => { try { process.kill(p, 0); return true; } catch { return false; } };
    setInterval(() => {
      if (pids.every((p) => !alive(p))) process.exit(0);
      if (alive(owner)) return;
      for (const p of pids) { try { process.kill(p, 'SIGKILL'); } catch {} }
      try { require('node:fs').rmSync(dir, { recursive: true, force: true }); } catch {}
      process.exit(0);
    }, 500);
  `;
  const child = spawn(process.execPath, ['-e', script, String(ownerPid), dir, ...pids.map(String)], {
    detached: true,
    stdio: 'ignore',
  });
  child.unref();
  return child.pid!;
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !isAlive(pid);
}

/** SIGTERM, then SIGKILL if the process is still there after a grace period. */
async function terminate(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {}
  if (await waitForExit(pid, 10_000)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {}
  await waitForExit(pid, 5_000);
}

/** Stops kube-apiserver then etcd (SIGTERM, then SIGKILL after a grace period). */
export async function stopControlPlane(
  state: Pick<ControlPlaneState, 'apiserverPid' | 'etcdPid' | 'watchdogPid'>,
) {
  for (const pid of [state.apiserverPid, state.etcdPid]) {
    if (isAlive(pid)) await terminate(pid);
  }
  if (state.watchdogPid && isAlive(state.watchdogPid)) {
    try {
      process.kill(state.watchdogPid, 'SIGKILL');
    } catch {}
  }
}

export function readState(dir: string): ControlPlaneState | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as ControlPlaneState;
  } catch {
    return undefined;
  }
}

export async function isHealthy(state: ControlPlaneState | undefined): Promise<boolean> {
  if (!state || !isAlive(state.apiserverPid) || !isAlive(state.etcdPid)) return false;
  try {
    return (await apiGet(state, '/readyz')).status === 200;
  } catch {
    return false;
  }
}

export async function serverVersion(state: ControlPlaneState): Promise<string> {
  const res = await apiGet(state, '/version');
  return (JSON.parse(res.body) as { gitVersion: string }).gitVersion;
}

export function removeDir(dir: string) {
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Stops one component, keeps it down for `downMs`, and starts it again with the
 * same flags (same ports, same data). For fault tests of an owned control plane.
 */
export async function restartComponent(
  state: ControlPlaneState,
  which: 'etcd' | 'apiserver',
  downMs: number,
): Promise<void> {
  if (!state.commands) throw new Error('this control plane was not started by startControlPlane');
  await terminate(which === 'etcd' ? state.etcdPid : state.apiserverPid);
  await new Promise((r) => setTimeout(r, downMs));
  const command = which === 'etcd' ? state.commands.etcd : state.commands.apiserver;
  const log = join(state.dir, which === 'etcd' ? 'etcd.log' : 'kube-apiserver.log');
  const child = spawnLogged(command.bin, command.args, log, false);
  if (which === 'etcd') state.etcdPid = child.pid!;
  else state.apiserverPid = child.pid!;
  if (state.ownerPid) startWatchdog(state.ownerPid, [child.pid!], state.dir);
  if (which === 'etcd') {
    await waitFor(
      'etcd',
      async () => (await fetch(`${state.etcdUrl}/health`, { signal: AbortSignal.timeout(1000) })).ok,
      child,
      log,
      30_000,
    );
  }
  await waitFor(
    'kube-apiserver',
    async () => (await apiGet(state, '/readyz')).status === 200,
    child,
    log,
    90_000,
  );
}
