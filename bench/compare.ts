// make bench-compare: Sigil and cert-manager doing the same work on the same kind of local API
// server, alternating (Sigil, cert-manager, cert-manager, Sigil, ...), each run on a fresh control
// plane: idle RSS, create→Ready one by one, COUNT at once (time, controller CPU, API requests per
// certificate, peak RSS), RSS after UNRELATED unrelated Secrets. Prints every run, the medians
// and the ratios, and writes bench/results/compare-<time>.{json,txt}. Asserts nothing.
//
// cert-manager: its controller from CERT_MANAGER_BIN (a binary from its release image, or a
// `go build` of github.com/cert-manager/cert-manager/cmd/controller); where unset, a gzipped build
// at CERT_MANAGER_GZ is unpacked into the cache. Its CRDs come from its Go module
// (hack/build-tools.sh cert-manager-crds). Its CA issuer, SecretsFilteredCaching on, as shipped.
// Counts: ROUNDS=3 SEQUENTIAL=100 COUNT=1000 UNRELATED=10000.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { CoreV1Api, CustomObjectsApi, type KubeConfig, Watch } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { loadKubeConfig } from '../lib/kube/config.ts';
import { rawRequest } from '../lib/kube/rest.ts';
import { createSelfSignedCA } from '../lib/pki/ca.ts';
import { freePort, removeDir, startControlPlane, stopControlPlane } from '../lib/testing/controlplane.ts';
import {
  apiServerText,
  containerEnv,
  logFile,
  machine,
  pool,
  processStats,
  ROOT,
  setupClusterIssuer,
  startOperatorProcess,
  summary,
} from './lib.ts';

const env = (k: string, d: string) => process.env[k] ?? d;
const ROUNDS = Number(env('ROUNDS', '3'));
const SEQUENTIAL = Number(env('SEQUENTIAL', '100'));
const COUNT = Number(env('COUNT', '1000'));
const UNRELATED = Number(env('UNRELATED', '10000'));
/**
 * How long the burst may take before the round fails: cert-manager v1.21.2 had 9,532 of 10,000
 * Ready after 30 minutes here (2 cores), slowing as its caches grew; 0.4 s a certificate covers it.
 */
const BULK_TIMEOUT_SECONDS = Number(env('BULK_TIMEOUT_SECONDS', String(Math.max(1800, COUNT * 0.4))));
/** Node flags for Sigil's operator after the chart's (operator.nodeArgs), to try V8 sizing (e.g. --no-lite-mode). */
const SIGIL_NODE_ARGS = env('SIGIL_NODE_ARGS', '').split(' ').filter(Boolean);
/** Run one product only (sigil or cert-manager), for trying a change; nothing is written to bench/results. */
const ONLY = env('ONLY', '');
const NS = 'bench';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Running {
  pid: number;
  stop: () => Promise<void>;
}

interface Product {
  name: string;
  group: string;
  version: string;
  /** CRDs, a CA Secret and a ClusterIssuer that signs with it. */
  setup: (kc: KubeConfig, dir: string) => Promise<void>;
  start: (kubeconfig: string) => Promise<Running>;
  certificate: (name: string) => object;
}

const caData = async () => {
  const ca = await createSelfSignedCA({
    commonName: 'Bench CA',
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 365 * 86_400_000),
  });
  return {
    'tls.crt': Buffer.from(ca.certPem).toString('base64'),
    'tls.key': Buffer.from(ca.keyPem).toString('base64'),
  };
};

const sigil: Product = {
  name: 'sigil',
  group: 'sigil.dev',
  version: 'v1alpha1',
  setup: async (kc) => {
    await setupClusterIssuer(kc);
  },
  start: async (kubeconfig) => {
    const op = await startOperatorProcess(kubeconfig, [], false, SIGIL_NODE_ARGS);
    return { pid: op.child.pid!, stop: op.stop };
  },
  certificate: (name) => ({
    apiVersion: 'sigil.dev/v1alpha1',
    kind: 'Certificate',
    metadata: { name },
    spec: { secretName: `${name}-tls`, dnsNames: [`${name}.example.com`] },
  }),
};

function certManagerBinary(): string {
  if (process.env.CERT_MANAGER_BIN) return process.env.CERT_MANAGER_BIN;
  const gz = resolve(
    env(
      'CERT_MANAGER_GZ',
      join(ROOT, '..', 'shared', 'peers', 'cert-manager-controller-v1.21.2-linux-amd64.gz'),
    ),
  );
  if (!existsSync(gz))
    throw new Error(
      `no cert-manager controller: set CERT_MANAGER_BIN to one (from quay.io/jetstack/cert-manager-controller, or go build github.com/cert-manager/cert-manager/cmd/controller), or CERT_MANAGER_GZ to a gzipped build (looked at ${gz})`,
    );
  const dir = execFileSync(join(ROOT, 'hack', 'build-tools.sh'), ['--print-dir'], {
    encoding: 'utf8',
  }).trim();
  const bin = join(dir, 'cert-manager-controller');
  if (!existsSync(bin)) writeFileSync(bin, gunzipSync(readFileSync(gz)), { mode: 0o755 });
  return bin;
}

const certManager = (bin: string): Product => ({
  name: 'cert-manager',
  group: 'cert-manager.io',
  version: 'v1',
  setup: async (kc) => {
    const crdDir = execFileSync(join(ROOT, 'hack', 'build-tools.sh'), ['cert-manager-crds'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    }).trim();
    for (const file of readdirSync(crdDir).filter((f) => f.endsWith('.yaml')))
      for (const doc of parseAllDocuments(readFileSync(join(crdDir, file), 'utf8'))) {
        const crd = doc.toJS();
        if (crd?.kind === 'CustomResourceDefinition')
          await rawRequest(kc, 'POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd);
      }
    for (;;) {
      try {
        await rawRequest(kc, 'GET', '/apis/cert-manager.io/v1/clusterissuers');
        break;
      } catch {
        await sleep(200);
      }
    }
    const core = kc.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: 'cert-manager' } } });
    await core.createNamespacedSecret({
      namespace: 'cert-manager',
      body: { metadata: { name: 'bench-ca' }, type: 'kubernetes.io/tls', data: await caData() },
    });
    await kc.makeApiClient(CustomObjectsApi).createClusterCustomObject({
      group: 'cert-manager.io',
      version: 'v1',
      plural: 'clusterissuers',
      body: {
        apiVersion: 'cert-manager.io/v1',
        kind: 'ClusterIssuer',
        metadata: { name: 'bench-ca' },
        spec: { ca: { secretName: 'bench-ca' } },
      },
    });
  },
  start: async (kubeconfig) => {
    const metrics = await freePort();
    const child: ChildProcess = spawn(
      bin,
      [
        `--kubeconfig=${kubeconfig}`,
        '--leader-elect=false',
        '--v=1',
        '--cluster-resource-namespace=cert-manager',
        `--metrics-listen-address=127.0.0.1:${metrics}`,
        '--controllers=issuers,clusterissuers,certificates-metrics,certificaterequests-approver,certificaterequests-issuer-ca,certificates-trigger,certificates-issuing,certificates-key-manager,certificates-request-manager,certificates-readiness,certificates-revision-manager',
      ],
      { stdio: ['ignore', 'ignore', openSync(logFile(), 'a')], env: containerEnv() },
    );
    // Up when it serves metrics.
    for (let i = 0; ; i++) {
      try {
        await fetch(`http://127.0.0.1:${metrics}/metrics`);
        break;
      } catch {
        if (child.exitCode !== null || i > 300)
          throw new Error(`cert-manager did not start; see ${logFile()}`);
        await sleep(100);
      }
    }
    return {
      pid: child.pid!,
      stop: async () => {
        child.kill('SIGTERM');
        await new Promise((r) => (child.exitCode !== null ? r(null) : child.on('exit', r)));
      },
    };
  },
  certificate: (name) => ({
    apiVersion: 'cert-manager.io/v1',
    kind: 'Certificate',
    metadata: { name },
    spec: {
      secretName: `${name}-tls`,
      dnsNames: [`${name}.example.com`],
      privateKey: { algorithm: 'ECDSA', size: 256 },
      issuerRef: { name: 'bench-ca', kind: 'ClusterIssuer', group: 'cert-manager.io' },
    },
  }),
});

/** When each Certificate of the namespace first reported Ready, from a watch. */
async function readyWatch(kc: KubeConfig, p: Product) {
  const readyAt = new Map<string, number>();
  let stopped = false;
  let controller: AbortController | undefined;
  const open = async (): Promise<void> => {
    if (stopped) return;
    controller = await new Watch(kc).watch(
      `/apis/${p.group}/${p.version}/namespaces/${NS}/certificates`,
      {},
      (
        _phase: string,
        c: { metadata: { name: string }; status?: { conditions?: { type: string; status: string }[] } },
      ) => {
        if (
          c.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True') &&
          !readyAt.has(c.metadata.name)
        )
          readyAt.set(c.metadata.name, performance.now());
      },
      () => {
        if (!stopped) setTimeout(() => void open(), 200);
      },
    );
  };
  await open();
  return {
    readyAt,
    /** Waits for every name to be Ready; returns when the last one was (performance.now()). */
    until: async (names: string[], timeoutMs: number, knob?: string) => {
      const deadline = Date.now() + timeoutMs;
      // Only the names still pending are looked at again: a scan of 10,000 every few
      // milliseconds took a tenth of a core from the products being measured.
      let pending = names.filter((n) => !readyAt.has(n));
      while (pending.length > 0) {
        if (Date.now() > deadline)
          throw new Error(
            `${pending.length} of ${names.length} not Ready after ${timeoutMs / 1000} s${knob ? ` (allow more with ${knob})` : ''}`,
          );
        await sleep(pending.length > 1 ? 20 : 5);
        pending = pending.filter((n) => !readyAt.has(n));
      }
      return names.reduce((last, n) => Math.max(last, readyAt.get(n)!), 0);
    },
    stop: () => {
      stopped = true;
      controller?.abort();
    },
  };
}

/** The API server's request count so far (apiserver_request_total, every verb and resource, or only writes). */
async function apiRequests(kc: KubeConfig, writesOnly = false): Promise<number> {
  return (await apiServerText(kc, '/metrics'))
    .split('\n')
    .filter(
      (l) =>
        l.startsWith('apiserver_request_total{') &&
        // Writes: not the API server's own Lease renewals, every 10 s whoever runs.
        (!writesOnly ||
          (/verb="(POST|PUT|PATCH|DELETE|DELETECOLLECTION|APPLY)"/.test(l) &&
            !l.includes('resource="leases"'))),
    )
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

/** How long a restart watches the controller: its lists, its first look at everything, and then quiet. */
const RESTART_WATCH_MS = Number(env('RESTART_WATCH_SECONDS', '30')) * 1000;

interface Run {
  product: string;
  round: number;
  idleRssMiB: number;
  sequentialMs: { p50: number; p99: number };
  bulkSeconds: number;
  bulkCpuSeconds: number;
  apiRequestsPerCertificate: number;
  peakRssMiB: number;
  rssBeforeUnrelatedMiB: number;
  rssAfterUnrelatedMiB: number;
  /** A new process with every certificate Ready and the unrelated Secrets present: its peak RSS, RSS at the end, API writes, and the last write's time after its start (0: none). */
  restartPeakRssMiB: number;
  restartRssMiB: number;
  restartWrites: number;
  restartLastWriteSeconds: number;
}

async function runOnce(p: Product, round: number): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), `sigil-compare-${p.name}-`));
  const cp = await startControlPlane({ dir, persistent: false });
  const kc = loadKubeConfig(cp.kubeconfig);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const core = kc.makeApiClient(CoreV1Api);
  let running: Running | undefined;
  try {
    await p.setup(kc, dir);
    await core.createNamespace({ body: { metadata: { name: NS } } });
    running = await p.start(cp.kubeconfig);
    const pid = running.pid;
    const watch = await readyWatch(kc, p);
    const create = (name: string) =>
      custom.createNamespacedCustomObject({
        group: p.group,
        version: p.version,
        namespace: NS,
        plural: 'certificates',
        body: p.certificate(name),
      });

    // Warm: the first certificate pays for caches and connections, then idle.
    await create('warm');
    await watch.until(['warm'], 120_000);
    await sleep(5_000);
    const idleRssMiB = processStats(pid).rssMiB;

    const latencies: number[] = [];
    for (let i = 0; i < SEQUENTIAL; i++) {
      const name = `one-${i}`;
      const started = performance.now();
      await create(name);
      await watch.until([name], 60_000);
      latencies.push(watch.readyAt.get(name)! - started);
    }
    const seq = summary(latencies);

    const names = Array.from({ length: COUNT }, (_, i) => `bulk-${i}`);
    const cpuBefore = processStats(pid).cpuSeconds;
    const requestsBefore = await apiRequests(kc);
    const started = performance.now();
    await pool(COUNT, 16, (i) => create(names[i]!));
    const lastReady = await watch.until(names, BULK_TIMEOUT_SECONDS * 1000, 'BULK_TIMEOUT_SECONDS');
    const bulkSeconds = (lastReady - started) / 1000;
    const bulkCpuSeconds = processStats(pid).cpuSeconds - cpuBefore;
    // Less the loader's creates and this metrics read.
    const apiRequestsPerCertificate = ((await apiRequests(kc)) - requestsBefore - COUNT - 1) / COUNT;
    await sleep(5_000);
    const peakRssMiB = processStats(pid).peakRssMiB;
    const rssBeforeUnrelatedMiB = processStats(pid).rssMiB;

    await core.createNamespace({ body: { metadata: { name: 'unrelated' } } });
    await pool(UNRELATED, 16, (i) =>
      core.createNamespacedSecret({
        namespace: 'unrelated',
        body: { metadata: { name: `s-${i}` }, type: 'Opaque', stringData: { value: `unrelated ${i}` } },
      }),
    );
    await sleep(10_000);
    const rssAfterUnrelatedMiB = processStats(pid).rssMiB;
    watch.stop();

    // Restart: stopped, then a new process finds everything Ready (and the unrelated Secrets).
    await running.stop();
    await sleep(2_000);
    const writesBefore = await apiRequests(kc, true);
    const restartedAt = performance.now();
    running = await p.start(cp.kubeconfig);
    let lastWriteSeconds = 0;
    let writesSeen = writesBefore;
    while (performance.now() - restartedAt < RESTART_WATCH_MS) {
      await sleep(500);
      const now = await apiRequests(kc, true);
      if (now > writesSeen) lastWriteSeconds = (performance.now() - restartedAt) / 1000;
      writesSeen = now;
    }
    const restarted = processStats(running.pid);
    return {
      product: p.name,
      round,
      idleRssMiB,
      sequentialMs: { p50: seq.p50, p99: seq.p99 },
      bulkSeconds,
      bulkCpuSeconds,
      apiRequestsPerCertificate,
      peakRssMiB,
      rssBeforeUnrelatedMiB,
      rssAfterUnrelatedMiB,
      restartPeakRssMiB: restarted.peakRssMiB,
      restartRssMiB: restarted.rssMiB,
      restartWrites: writesSeen - writesBefore,
      restartLastWriteSeconds: lastWriteSeconds,
    };
  } finally {
    await running?.stop();
    await stopControlPlane(cp);
    removeDir(dir);
  }
}

const fields: [keyof Run | string, string, (r: Run) => number][] = [
  ['idle', 'idle RSS (MiB)', (r) => r.idleRssMiB],
  ['p50', `create→Ready one by one, p50 (ms, ${SEQUENTIAL})`, (r) => r.sequentialMs.p50],
  ['p99', 'create→Ready one by one, p99 (ms)', (r) => r.sequentialMs.p99],
  ['bulk', `${COUNT} at once, all Ready (s)`, (r) => r.bulkSeconds],
  ['cpu', `controller CPU for the ${COUNT} (s)`, (r) => r.bulkCpuSeconds],
  ['api', 'API requests per certificate', (r) => r.apiRequestsPerCertificate],
  ['peak', 'peak RSS (MiB)', (r) => r.peakRssMiB],
  ['before', `RSS holding ${COUNT + SEQUENTIAL + 1} (MiB)`, (r) => r.rssBeforeUnrelatedMiB],
  ['after', `RSS after ${UNRELATED} unrelated Secrets (MiB)`, (r) => r.rssAfterUnrelatedMiB],
  ['rpeak', 'restart: peak RSS (MiB)', (r) => r.restartPeakRssMiB],
  ['rrss', `restart: RSS after ${RESTART_WATCH_MS / 1000} s (MiB)`, (r) => r.restartRssMiB],
  ['rwrites', 'restart: API writes', (r) => r.restartWrites],
  ['rlast', 'restart: last write after start (s)', (r) => r.restartLastWriteSeconds],
];

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

const cm = certManager(certManagerBinary());
const runs: Run[] = [];
const lines: string[] = [];
const say = (s: string) => {
  lines.push(s);
  console.log(s);
};
say(
  `machine: ${JSON.stringify(machine())}; ROUNDS=${ROUNDS} SEQUENTIAL=${SEQUENTIAL} COUNT=${COUNT} UNRELATED=${UNRELATED}${SIGIL_NODE_ARGS.length ? `; Sigil with ${SIGIL_NODE_ARGS.join(' ')}` : ''}`,
);
for (let round = 1; round <= ROUNDS; round++) {
  // A, B, B, A, A, B ...: neither always goes first on a machine warming up.
  const order = round % 2 === 1 ? [sigil, cm] : [cm, sigil];
  for (const p of order.filter((p) => !ONLY || p.name === ONLY)) {
    const r = await runOnce(p, round);
    runs.push(r);
    say(
      `round ${round} ${p.name.padEnd(12)} ${fields.map(([k, , f]) => `${k} ${f(r).toFixed(1)}`).join('  ')}`,
    );
  }
}
if (ONLY) process.exit(0);
say('');
say(
  `${'median of each'.padEnd(48)} ${'sigil'.padStart(10)} ${'cert-manager'.padStart(13)} ${'ratio'.padStart(8)}`,
);
const medians: Record<string, { sigil: number; certManager: number; ratio: number }> = {};
for (const [k, label, f] of fields) {
  const a = median(runs.filter((r) => r.product === 'sigil').map(f));
  const b = median(runs.filter((r) => r.product === 'cert-manager').map(f));
  // A ratio to nothing (no writes at restart, say) is not a ratio.
  const ratio = b === 0 ? Number.NaN : a / b;
  medians[k] = { sigil: a, certManager: b, ratio };
  say(
    `${label.padEnd(48)} ${a.toFixed(1).padStart(10)} ${b.toFixed(1).padStart(13)} ${(Number.isNaN(ratio) ? '-' : ratio.toFixed(2)).padStart(8)}`,
  );
}
const outDir = join(ROOT, 'bench', 'results');
mkdirSync(outDir, { recursive: true });
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
writeFileSync(
  join(outDir, `compare-${stamp}.json`),
  JSON.stringify({ machine: machine(), runs, medians }, null, 2),
);
writeFileSync(join(outDir, `compare-${stamp}.txt`), `${lines.join('\n')}\n`);
console.log(`\nresults: bench/results/compare-${stamp}.{json,txt}`);
