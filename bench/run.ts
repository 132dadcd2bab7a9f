// make bench: issuance latency and throughput, the API server's own ceiling,
// webhook latency, a tenant flooding the webhook, memory with unrelated Secrets,
// restart, a CA rotation (API writes and wall time), renewal storm, and on a real node (bench/node.ts) pod start with an
// identity, Secret to file, and the components' RSS as pods. Prints a table, writes bench/results/<timestamp>.json
// and .svg. Asserts nothing. SECTIONS=webhook,flood (say) runs only those.

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent, request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { GROUP, Plural, VERSION } from '../lib/api/types.ts';
import { loadKubeConfig } from '../lib/kube/config.ts';
import { rawRequest } from '../lib/kube/rest.ts';
import { webhookConfiguration } from '../lib/kube/webhookconfig.ts';
import { createSelfSignedCA } from '../lib/pki/ca.ts';
import { freePort, removeDir, startControlPlane, stopControlPlane } from '../lib/testing/controlplane.ts';
import { nodeBlockers } from '../lib/testing/node/cluster.ts';
import { createIssuer, createSecret } from '../test/support/sigil.ts';
import {
  apiServerText,
  cdfSvg,
  chartNodeOptions,
  children,
  containerEnv,
  createCertificate,
  ENTRY,
  jsonKubeconfig,
  logFile,
  machine,
  type OperatorProcess,
  pool,
  processStats,
  ROOT,
  readyTracker,
  setupClusterIssuer,
  startOperatorProcess,
  summary,
  tenantFlood,
} from './lib.ts';
import { nodeBench } from './node.ts';

const env = (k: string, d: string) => process.env[k] ?? d;
const SEQUENTIAL = Number(env('SEQUENTIAL', '200'));
const BULK = env('BULK', '1000,10000').split(',').map(Number);
const UNRELATED = Number(env('UNRELATED', '30000'));
const LARGE = Number(env('LARGE', '300'));
const STORM = Number(env('STORM', '1000'));
const WEBHOOK_REQUESTS = Number(env('WEBHOOK_REQUESTS', '3000'));
const PODS = Number(env('PODS', '500'));
const FLOOD_IN_FLIGHT = Number(env('FLOOD_IN_FLIGHT', '200'));
const FLOOD_LARGE_IN_FLIGHT = Number(env('FLOOD_LARGE_IN_FLIGHT', '48'));
const FLOOD_SECONDS = Number(env('FLOOD_SECONDS', '10'));
const FLOOD_IDENTITIES = Number(env('FLOOD_IDENTITIES', '200'));
/** The webhook's log level; above error, its log goes to bench/results/webhook.log. */
const WEBHOOK_LOG_LEVEL = env('WEBHOOK_LOG_LEVEL', 'error');
const webhookLog = () => openSync(join(dirname(logFile()), 'webhook.log'), 'a');
const ROTATION_CERTS = Number(env('ROTATION_CERTS', '1000'));
const ROTATION_NAMESPACES = Number(env('ROTATION_NAMESPACES', '10'));
/** The issuer's propagationDelay: 2m, the default, sized for the kubelet's default 1m sync. */
const ROTATION_DELAY = env('ROTATION_DELAY', '2m');
const SECTIONS = new Set(
  env('SECTIONS', 'ttr,bulk,ceiling,restart,rotation,memory,webhook,flood,storm,node').split(','),
);
const want = (section: string) => SECTIONS.has(section);

const results: Record<string, unknown> = { machine: machine(), startedAt: new Date().toISOString() };
const lines: string[] = [];
const ms = (x: number) => `${x.toFixed(1)} ms`;
const row = (name: string, text: string) => {
  lines.push(`${name.padEnd(48)} ${text}`);
  console.log(`${name.padEnd(48)} ${text}`);
};

let svg = '';
const dir = mkdtempSync(join(tmpdir(), 'sigil-bench-'));
const cp = await startControlPlane({ dir, persistent: false });
const kc = loadKubeConfig(cp.kubeconfig);
const core = kc.makeApiClient(CoreV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);

try {
  const ca = await setupClusterIssuer(kc);
  let operator: OperatorProcess = await startOperatorProcess(cp.kubeconfig, ['--concurrency', '16']);
  console.log(`machine: ${JSON.stringify(results.machine)}`);
  // 0. The operator at rest: started, synced, no Certificate yet.
  await new Promise((r) => setTimeout(r, 5_000));
  const idle = processStats(operator.child.pid!);
  results.operatorIdle = { rssMiB: idle.rssMiB };
  row('operator RSS at rest, no Certificates', `${idle.rssMiB.toFixed(0)} MiB`);

  // 1. Time to Ready, one after another.
  const ttr: Record<string, ReturnType<typeof summary>> = {};
  const ttrRaw: Record<string, number[]> = {};
  for (const [label, privateKey] of !want('ttr')
    ? []
    : ([
        ['ECDSA P-256', { algorithm: 'ECDSA', size: 256 }],
        ['RSA-2048', { algorithm: 'RSA', size: 2048 }],
      ] as const)) {
    const ns = `ttr-${label.toLowerCase().replace(/[^a-z0-9]/g, '')}`;
    await core.createNamespace({ body: { metadata: { name: ns } } });
    const tracker = await readyTracker(kc, ns);
    const latencies: number[] = [];
    for (let i = 0; i < SEQUENTIAL; i++) {
      const name = `c${i}`;
      const started = performance.now();
      await createCertificate(custom, ns, name, { privateKey });
      await tracker.waitFor(() => tracker.readyAt.has(name), 30_000);
      latencies.push(tracker.readyAt.get(name)! - started);
    }
    tracker.stop();
    ttr[label] = summary(latencies);
    ttrRaw[label] = latencies;
    row(
      `time to Ready, ${SEQUENTIAL} one by one, ${label}`,
      `p50 ${ms(ttr[label]!.p50)}  p99 ${ms(ttr[label]!.p99)}  max ${ms(ttr[label]!.max)}`,
    );
  }
  results.timeToReady = ttr;

  // 2. Bulk.
  const bulk: Record<string, unknown>[] = [];
  for (const n of want('bulk') ? BULK : []) {
    const ns = `bulk-${n}`;
    await core.createNamespace({ body: { metadata: { name: ns } } });
    const tracker = await readyTracker(kc, ns);
    const before = processStats(operator.child.pid!);
    const requestsBefore = await operator.metric('sigil_controller_api_requests_total');
    const started = performance.now();
    await pool(n, 32, (i) => createCertificate(custom, ns, `b${i}`));
    const created = performance.now();
    const exited = () => operator.child.exitCode !== null || operator.child.signalCode !== null;
    await tracker.waitFor(() => tracker.readyAt.size >= n || exited(), 30 * 60_000);
    if (exited()) {
      const cg = operator.cgroup?.stats();
      throw new Error(
        `the operator exited (${operator.child.exitCode ?? operator.child.signalCode}) after ${tracker.readyAt.size} of ${n} were Ready${cg ? `; its cgroup at the chart's ${operator.cgroup!.limitMiB} MiB limit: peak ${cg.peakMiB.toFixed(0)} MiB, ${cg.oomKills} OOM kills` : ''}`,
      );
    }
    const done = performance.now();
    tracker.stop();
    const after = processStats(operator.child.pid!);
    const cgroup = operator.cgroup?.stats();
    const requests = (await operator.metric('sigil_controller_api_requests_total')) - requestsBefore;
    const seconds = (done - started) / 1000;
    const entry = {
      count: n,
      createSeconds: (created - started) / 1000,
      allReadySeconds: seconds,
      certificatesPerSecond: n / seconds,
      operatorCpuSeconds: after.cpuSeconds - before.cpuSeconds,
      operatorPeakRssMiB: after.peakRssMiB,
      operatorRssMiB: after.rssMiB,
      apiRequests: requests,
      cgroup: cgroup && { limitMiB: operator.cgroup!.limitMiB, ...cgroup },
    };
    bulk.push(entry);
    row(
      `bulk ${n} at once`,
      `all Ready in ${seconds.toFixed(1)} s (${(n / seconds).toFixed(0)}/s; creates took ${entry.createSeconds.toFixed(1)} s), operator CPU ${entry.operatorCpuSeconds.toFixed(1)} s, peak RSS ${after.peakRssMiB.toFixed(0)} MiB (${after.rssMiB.toFixed(0)} after), ${requests} API requests${cgroup ? `; in a cgroup at the chart's ${operator.cgroup!.limitMiB} MiB limit: peak ${cgroup.peakMiB.toFixed(0)} MiB, ${cgroup.oomKills} OOM kills` : '; no memory cgroup on this machine'}`,
    );
  }
  results.bulk = bulk;

  // 3. Ceiling: the same writes by a bare client, no operator.
  if (want('ceiling')) {
    const n = BULK[0]!;
    await operator.stop();
    const ns = 'ceiling';
    await core.createNamespace({ body: { metadata: { name: ns } } });
    const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    const pem = Buffer.from(ca.certPem).toString('base64');
    // Timed from the Certificate creates, as the bulk figures are.
    const started = performance.now();
    await pool(n, 32, (i) => createCertificate(custom, ns, `x${i}`));
    const created = performance.now();
    await pool(n, 32, async (i) => {
      await core.createNamespacedSecret({
        namespace: ns,
        body: {
          metadata: { name: `x${i}-tls`, labels: { 'sigil.dev/managed': 'true' } },
          type: 'kubernetes.io/tls',
          data: { 'tls.crt': pem, 'tls.key': pem, 'ca.crt': pem },
        },
      });
      await custom.patchNamespacedCustomObjectStatus(
        {
          group: GROUP,
          version: VERSION,
          namespace: ns,
          plural: Plural.Certificate,
          name: `x${i}`,
          body: {
            status: {
              conditions: [
                {
                  type: 'Ready',
                  status: 'True',
                  reason: 'Ready',
                  message: 'bench',
                  lastTransitionTime: new Date().toISOString(),
                },
              ],
              revision: 1,
            },
          },
        },
        merge,
      );
    });
    const seconds = (performance.now() - started) / 1000;
    const writesSeconds = (performance.now() - created) / 1000;
    results.ceiling = {
      count: n,
      seconds,
      perSecond: n / seconds,
      writesSeconds,
      writesPerSecond: n / writesSeconds,
    };
    row(
      `ceiling: ${n} Certificate creates, then Secret creates + status writes, bare client`,
      `${seconds.toFixed(1)} s (${(n / seconds).toFixed(0)}/s); Secret + status alone ${writesSeconds.toFixed(1)} s (${(n / writesSeconds).toFixed(0)}/s)`,
    );
    // Gone before the operator watches every namespace: these hand-written Secrets are not certificates.
    await custom.deleteCollectionNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: Plural.Certificate,
    });
    await core.deleteCollectionNamespacedSecret({ namespace: ns });
  }

  // 6. Restart with every bulk certificate Ready.
  if (want('restart') && want('ttr') && want('bulk')) {
    const started = performance.now();
    // Every namespace, as the chart runs it: every Certificate made so far is Ready and valid.
    operator = await startOperatorProcess(cp.kubeconfig, ['--concurrency', '16']);
    const total = BULK.reduce((a, b) => a + b, 0) + 2 * SEQUENTIAL;
    let steady = 0;
    let last = -1;
    for (;;) {
      const reconciled = await operator.metric(
        'sigil_controller_reconcile_total',
        'controller="certificates"',
      );
      const depth = await operator.metric('sigil_controller_queue_depth', 'controller="certificates"');
      // Steady: every Certificate looked at, nothing queued, and no reconcile since the last look.
      const caughtUp = reconciled >= total && depth === 0;
      if (caughtUp && reconciled === last) break;
      if (caughtUp) steady = performance.now() - started;
      last = reconciled;
      await new Promise((r) => setTimeout(r, 500));
    }
    const reissued = await operator.metric('sigil_issuance_total');
    const stats = processStats(operator.child.pid!);
    results.restart = { certificates: total, steadySeconds: steady / 1000, reissued, rssMiB: stats.rssMiB };
    row(
      `restart with ${total} Ready certificates`,
      `steady in ${(steady / 1000).toFixed(1)} s, ${reissued} re-issued, RSS ${stats.rssMiB.toFixed(0)} MiB`,
    );
  }

  // 4b. A CA rotation: N Certificates of one ClusterIssuer spread over M namespaces, rotated to a new CA
  // Secret with the default knobs. Counts the operator's API writes from trigger to done.
  if (want('rotation')) {
    const base64 = (pem: string) => Buffer.from(pem).toString('base64');
    const newCa = async (name: string) => {
      const g = await createSelfSignedCA({
        commonName: name,
        notBefore: new Date(Date.now() - 60_000),
        notAfter: new Date(Date.now() + 365 * 86_400_000),
      });
      await createSecret(kc, 'sigil-system', name, {
        'tls.crt': base64(g.certPem),
        'tls.key': base64(g.keyPem),
      });
    };
    await newCa('rotation-ca-1');
    await createIssuer(kc, 'ClusterIssuer', 'bench-rotation', {
      ca: { secretName: 'rotation-ca-1' },
      policy: { allowedDNSNames: ['**.example.com'] },
      rotation: { propagationDelay: ROTATION_DELAY },
    });
    const namespaces = Array.from({ length: ROTATION_NAMESPACES }, (_, i) => `rotation-${i}`);
    const trackers = [];
    for (const ns of namespaces) {
      await core.createNamespace({ body: { metadata: { name: ns } } });
      trackers.push(await readyTracker(kc, ns));
    }
    await pool(ROTATION_CERTS, 32, (i) =>
      createCertificate(custom, namespaces[i % ROTATION_NAMESPACES]!, `r${i}`, {
        issuerRef: { name: 'bench-rotation', kind: 'ClusterIssuer' },
      }),
    );
    const perNamespace = Math.ceil(ROTATION_CERTS / ROTATION_NAMESPACES);
    for (const t of trackers) await t.waitFor(() => t.readyAt.size >= perNamespace - 1, 30 * 60_000);
    for (const t of trackers) t.stop();
    // Settled: every bundle written once.
    await new Promise((r) => setTimeout(r, 10_000));
    const writes = async () => {
      let n = 0;
      for (const verb of ['create', 'update', 'patch', 'delete'])
        n += await operator.metric('sigil_controller_api_requests_total', `verb="${verb}"`);
      return n;
    };
    const byResource = async () => {
      const out: Record<string, number> = {};
      for (const resource of ['secrets', 'configmaps', 'certificates/status', 'events', 'clusterissuers'])
        for (const verb of ['create', 'update', 'patch', 'delete'])
          out[resource] =
            (out[resource] ?? 0) +
            (await operator.metric(
              'sigil_controller_api_requests_total',
              `verb="${verb}",resource="${resource}"`,
            ));
      return out;
    };
    const writesBefore = await writes();
    const resourcesBefore = await byResource();
    const before = processStats(operator.child.pid!);
    await newCa('rotation-ca-2');
    const started = performance.now();
    await custom.patchClusterCustomObject(
      {
        group: GROUP,
        version: VERSION,
        plural: Plural.ClusterIssuer,
        name: 'bench-rotation',
        body: { spec: { ca: { secretName: 'rotation-ca-2' } } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const phases: Record<string, number> = {};
    for (;;) {
      const issuer = (await custom.getClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: Plural.ClusterIssuer,
        name: 'bench-rotation',
      })) as { status?: { rotation?: { phase: string }; lastRotation?: { completedAt: string } } };
      const phase = issuer.status?.rotation?.phase;
      if (phase && phases[phase] === undefined) phases[phase] = (performance.now() - started) / 1000;
      if (!phase && issuer.status?.lastRotation) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    const wall = (performance.now() - started) / 1000;
    const after = processStats(operator.child.pid!);
    const total = (await writes()) - writesBefore;
    const resourcesAfter = await byResource();
    const perResource = Object.fromEntries(
      Object.entries(resourcesAfter).map(([k, v]) => [k, v - (resourcesBefore[k] ?? 0)]),
    );
    results.rotation = {
      certificates: ROTATION_CERTS,
      namespaces: ROTATION_NAMESPACES,
      propagationDelay: ROTATION_DELAY,
      apiWrites: total,
      writesByResource: perResource,
      wallSeconds: wall,
      phaseStartedAtSeconds: phases,
      operatorCpuSeconds: after.cpuSeconds - before.cpuSeconds,
    };
    row(
      `CA rotation, ${ROTATION_CERTS} certs in ${ROTATION_NAMESPACES} namespaces`,
      `${total} API writes (${(total / ROTATION_CERTS).toFixed(2)}/cert: ${Object.entries(perResource)
        .map(([k, v]) => `${k} ${v}`)
        .join(
          ', ',
        )}), ${wall.toFixed(0)} s with propagationDelay ${ROTATION_DELAY}, CPU ${(after.cpuSeconds - before.cpuSeconds).toFixed(1)} s`,
    );
  }

  // 5. Memory: operators watching every namespace over the same Certificates, without and with
  // the unrelated Secrets. RSS is read from /proc before anything scrapes /metrics: one scrape of
  // the ~45,000 per-certificate series is itself tens of MiB of garbage in the operator.
  if (want('memory')) {
    await operator.stop();
    const settle = () => new Promise((r) => setTimeout(r, 30_000));
    const counts = async (op: OperatorProcess) => ({
      certificates: await op.metric('sigil_controller_cached_objects', 'resource="certificates"'),
      cachedSecrets: await op.metric('sigil_controller_cached_objects', 'resource="secrets"'),
      issued: await op.metric('sigil_issuance_total'),
    });
    // A fresh operator, settled; then still running while the unrelated Secrets are created.
    operator = await startOperatorProcess(cp.kubeconfig, ['--concurrency', '16']);
    await settle();
    const before = processStats(operator.child.pid!);
    await core.createNamespace({ body: { metadata: { name: 'unrelated' } } });
    const big = 'x'.repeat(900 * 1024);
    await pool(UNRELATED, 32, (i) =>
      core.createNamespacedSecret({
        namespace: 'unrelated',
        body: { metadata: { name: `u${i}` }, stringData: { data: i < LARGE ? big : `value-${i}` } },
      }),
    );
    await settle();
    const whileAdded = processStats(operator.child.pid!);
    const running = await counts(operator);
    await operator.stop();
    // A fresh operator started with the unrelated Secrets already there.
    operator = await startOperatorProcess(cp.kubeconfig, ['--concurrency', '16']);
    await settle();
    const fresh = processStats(operator.child.pid!);
    const freshCounts = await counts(operator);
    results.memory = {
      certificates: running.certificates,
      unrelatedSecrets: UNRELATED,
      largeSecrets: LARGE,
      freshWithoutRssMiB: before.rssMiB,
      sameProcessAfterAddingRssMiB: whileAdded.rssMiB,
      operatorCpuSecondsWhileAdding: whileAdded.cpuSeconds - before.cpuSeconds,
      freshWithRssMiB: fresh.rssMiB,
      freshWithPeakRssMiB: fresh.peakRssMiB,
      cachedSecrets: freshCounts.cachedSecrets,
      reissued: running.issued + freshCounts.issued,
    };
    row(
      `operator RSS, ${running.certificates} Certificates, +${UNRELATED} unrelated Secrets (${LARGE} ~1 MB)`,
      `${before.rssMiB.toFixed(0)} MiB without; ${whileAdded.rssMiB.toFixed(0)} MiB after they were added (CPU ${(whileAdded.cpuSeconds - before.cpuSeconds).toFixed(1)} s meanwhile); ${fresh.rssMiB.toFixed(0)} MiB started with them; Secrets cached: ${freshCounts.cachedSecrets}`,
    );
  }

  // 4. Webhook: straight at it, then pods through the API server, then a tenant flooding it.
  const webhookSeries: Record<string, number[]> = {};
  if (want('webhook') || want('flood')) {
    await operator.stop();
    operator = await startOperatorProcess(
      cp.kubeconfig,
      ['--concurrency', '16', '--webhook-ip-sans', '127.0.0.1'],
      true,
    );
    const port = await freePort();
    const client = cp.webhookClient!;
    const clientTls = { cert: readFileSync(client.certFile), key: readFileSync(client.keyFile) };
    await rawRequest(
      kc,
      'POST',
      '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations',
      webhookConfiguration({
        name: 'sigil-webhook',
        operatorNamespace: 'sigil-system',
        url: `https://127.0.0.1:${port}/mutate-v1-pod`,
      }),
    );
    const hook = spawn(
      process.execPath,
      [
        // As the chart runs it, the heap sized from its memory limit.
        ...chartNodeOptions('webhook'),
        ENTRY,
        'webhook',
        '--kubeconfig',
        jsonKubeconfig(cp.kubeconfig),
        '--address',
        `127.0.0.1:${port}`,
        // As the chart runs it: only the API server's admission client certificate is answered.
        '--client-ca-file',
        client.caFile,
        '--client-names',
        client.name,
        '--log-level',
        WEBHOOK_LOG_LEVEL,
      ],
      {
        stdio:
          WEBHOOK_LOG_LEVEL === 'error'
            ? ['ignore', 'ignore', 'inherit']
            : ['ignore', webhookLog(), webhookLog()],
        env: containerEnv({ NODE_NO_WARNINGS: '1' }),
      },
    );
    let bundle = '';
    for (let i = 0; i < 300 && !bundle; i++) {
      const c = await rawRequest<{ webhooks: { clientConfig: { caBundle?: string } }[] }>(
        kc,
        'GET',
        '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/sigil-webhook',
      );
      bundle = c.webhooks[0]?.clientConfig.caBundle ?? '';
      if (!bundle) await new Promise((r) => setTimeout(r, 100));
    }
    const ca = Buffer.from(bundle, 'base64');
    const ready = async () =>
      new Promise<boolean>((r) => {
        const req = httpsRequest({ host: '127.0.0.1', port, path: '/readyz', ca }, (res) =>
          r(res.statusCode === 200),
        );
        req.on('error', () => r(false));
        req.end();
      });
    for (let i = 0; i < 300 && !(await ready()); i++) await new Promise((r) => setTimeout(r, 100));
    // Opted in: the webhook re-checks, and a review for a namespace that did not opt in is answered unchanged.
    await core.createNamespace({
      body: { metadata: { name: 'bench-wh', labels: { 'sigil.dev/inject': 'enabled' } } },
    });
    const review = JSON.stringify({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: {
        uid: 'bench',
        kind: { group: '', version: 'v1', kind: 'Pod' },
        operation: 'CREATE',
        namespace: 'bench-wh',
        object: {
          metadata: { generateName: 'web-' },
          spec: { serviceAccountName: 'web', containers: [{ name: 'app', image: 'x' }] },
        },
      },
    });
    const straight: Record<string, unknown>[] = [];
    const hookIdle = processStats(hook.pid!);
    for (const concurrency of want('webhook') ? [1, 8, 32] : []) {
      const agent = new Agent({ keepAlive: true, maxSockets: concurrency, ca, ...clientTls });
      const one = () =>
        new Promise<number>((resolveOne, reject) => {
          const t0 = performance.now();
          const req = httpsRequest(
            {
              host: '127.0.0.1',
              port,
              path: '/mutate-v1-pod',
              method: 'POST',
              agent,
              headers: { 'content-type': 'application/json' },
            },
            (res) => {
              res.resume();
              res.on('end', () =>
                res.statusCode === 200
                  ? resolveOne(performance.now() - t0)
                  : reject(new Error(`status ${res.statusCode}`)),
              );
            },
          );
          req.on('error', reject);
          req.end(review);
        });
      await pool(200, concurrency, one); // warm-up
      const started = performance.now();
      const latencies = await pool(WEBHOOK_REQUESTS, concurrency, one);
      const seconds = (performance.now() - started) / 1000;
      agent.destroy();
      webhookSeries[`webhook c=${concurrency}`] = latencies;
      const s = summary(latencies);
      straight.push({ concurrency, requests: WEBHOOK_REQUESTS, perSecond: WEBHOOK_REQUESTS / seconds, ...s });
      row(
        `webhook AdmissionReviews, concurrency ${concurrency}`,
        `${(WEBHOOK_REQUESTS / seconds).toFixed(0)}/s  p50 ${ms(s.p50)}  p99 ${ms(s.p99)}  max ${ms(s.max)}`,
      );
    }
    if (want('webhook')) {
      const hookLoaded = processStats(hook.pid!);
      results.webhookRss = {
        idleMiB: hookIdle.rssMiB,
        afterReviewsMiB: hookLoaded.rssMiB,
        peakMiB: hookLoaded.peakRssMiB,
      };
      row(
        'webhook RSS',
        `${hookIdle.rssMiB.toFixed(0)} MiB at rest; ${hookLoaded.rssMiB.toFixed(0)} MiB after ${3 * (WEBHOOK_REQUESTS + 200)} reviews at concurrency 1, 8 and 32 (peak ${hookLoaded.peakRssMiB.toFixed(0)} MiB)`,
      );
    }
    if (want('webhook')) {
      await core.createNamespace({
        body: { metadata: { name: 'bench-pods', labels: { 'sigil.dev/inject': 'enabled' } } },
      });
      const podLatencies: number[] = [];
      const started = performance.now();
      await pool(PODS, 8, async () => {
        const t0 = performance.now();
        await core.createNamespacedPod({
          namespace: 'bench-pods',
          body: {
            metadata: { generateName: 'web-' },
            spec: { serviceAccountName: 'web', containers: [{ name: 'app', image: 'x' }] },
          },
        });
        podLatencies.push(performance.now() - t0);
      });
      const seconds = (performance.now() - started) / 1000;
      const metricsText = await apiServerText(kc, '/metrics');
      const webhookMetric = (suffix: string) =>
        metricsText
          .split('\n')
          .filter(
            (l) =>
              l.startsWith(`apiserver_admission_webhook_admission_duration_seconds_${suffix}`) &&
              l.includes('namespace.inject.sigil.dev') &&
              l.includes('operation="CREATE"'),
          )
          .map((l) => ({ le: /le="([^"]+)"/.exec(l)?.[1], value: Number(l.split(' ').pop()) }));
      const sum = webhookMetric('sum').reduce((a, b) => a + b.value, 0);
      const count = webhookMetric('count').reduce((a, b) => a + b.value, 0);
      const buckets = webhookMetric('bucket');
      const p99Bucket = buckets.find((b) => b.value >= 0.99 * count)?.le;
      const s = summary(podLatencies);
      webhookSeries['pod create via API server'] = podLatencies;
      results.webhook = {
        straight,
        pods: {
          perSecond: PODS / seconds,
          ...s,
          apiserverWebhookMeanMs: (sum / Math.max(1, count)) * 1000,
          apiserverWebhookP99BucketSeconds: p99Bucket,
          apiserverWebhookCalls: count,
        },
      };
      row(
        `pods through the API server (concurrency 8)`,
        `${(PODS / seconds).toFixed(0)}/s  p50 ${ms(s.p50)}  p99 ${ms(s.p99)}`,
      );
      row(
        `  API server's own webhook duration`,
        `mean ${ms((sum / Math.max(1, count)) * 1000)}, p99 bucket <= ${p99Bucket} s (${count} calls)`,
      );
    }

    // Tenant flood: one namespace keeps many reviews in flight at the webhook (straight at it,
    // authenticated as the API server, the worst a tenant's pod creations could do) while pods
    // are created through the API server in another namespace.
    if (want('flood')) {
      const floods: Record<string, unknown>[] = [];
      for (const [label, inFlight, padding] of [
        ['small pods', FLOOD_IN_FLIGHT, 0],
        ['~1 MiB pods', FLOOD_LARGE_IN_FLIGHT, 1024 * 1024],
      ] as const) {
        const suffix = padding ? 'large' : 'small';
        for (const ns of [`flood-a-${suffix}`, `flood-b-${suffix}`])
          await core.createNamespace({
            body: { metadata: { name: ns, labels: { 'sigil.dev/inject': 'enabled' } } },
          });
        const result = await tenantFlood({
          port,
          tls: { ca, ...clientTls },
          floodNamespace: `flood-a-${suffix}`,
          inFlight,
          seconds: FLOOD_SECONDS,
          identities: FLOOD_IDENTITIES,
          podPadding: padding,
          calmConcurrency: 4,
          webhookPid: hook.pid!,
          createCalmPod: async () => {
            await core.createNamespacedPod({
              namespace: `flood-b-${suffix}`,
              body: {
                metadata: { generateName: 'calm-' },
                spec: { serviceAccountName: 'calm', containers: [{ name: 'app', image: 'x' }] },
              },
            });
          },
        });
        floods.push({ label, inFlight, seconds: FLOOD_SECONDS, ...result });
        row(
          `tenant flood: ${inFlight} ${label} in flight from one namespace, ${FLOOD_SECONDS} s`,
          `other namespace: ${result.calm.count} pods p50 ${ms(result.calm.p50)} p99 ${ms(result.calm.p99)}, ${result.calm.failures} failed; webhook peak RSS ${result.webhookPeakRssMiBDuringFlood.toFixed(0)} MiB, CPU ${result.webhookCpuSeconds.toFixed(1)} s; flood: ${Object.entries(
            result.flood,
          )
            .map(([k, v]) => `${v} ${k}`)
            .join(', ')}`,
        );
        if (result.calm.firstFailure) console.log(`  first failure: ${result.calm.firstFailure}`);
      }
      results.tenantFlood = floods;
    }
    hook.kill('SIGTERM');
  }

  // 7. Renewal storm: short-lived certificates created together.
  if (want('storm')) {
    const ns = 'storm';
    await core.createNamespace({ body: { metadata: { name: ns } } });
    const tracker = await readyTracker(kc, ns);
    await pool(STORM, 32, (i) => createCertificate(custom, ns, `s${i}`, { duration: '2m' }));
    await tracker.waitFor(() => tracker.readyAt.size >= STORM, 10 * 60_000);
    await tracker
      .waitFor(() => [...tracker.revisionAt.values()].filter((r) => r.has(2)).length >= STORM, 6 * 60_000)
      .catch(() => undefined);
    const lateness: number[] = [];
    const renewedAt: number[] = [];
    let expired = 0;
    let missing = 0;
    for (const [name, revs] of tracker.revisionAt) {
      const first = tracker.status.get(name)?.get(1);
      const at = revs.get(2);
      if (!first || at === undefined) {
        missing++;
        continue;
      }
      renewedAt.push(at);
      lateness.push(at - new Date(first.renewalTime!).getTime());
      if (at >= new Date(first.notAfter!).getTime()) expired++;
    }
    tracker.stop();
    const spread = renewedAt.length ? (Math.max(...renewedAt) - Math.min(...renewedAt)) / 1000 : Number.NaN;
    const late = summary(lateness.map((x) => Math.max(0, x)));
    results.storm = {
      count: STORM,
      renewed: renewedAt.length,
      notRenewed: missing,
      expired,
      spreadSeconds: spread,
      latenessMs: late,
    };
    row(
      `renewal storm, ${STORM} x 2m certificates`,
      `${renewedAt.length} renewed over ${spread.toFixed(1)} s; past renewalTime p50 ${ms(late.p50)} max ${ms(late.max)}; expired ${expired}; not renewed ${missing}`,
    );
  }

  await operator.stop();
  // 8. On a real node (its own cluster, the chart installed from the built image).
  if (want('node')) {
    const blockers = nodeBlockers();
    if (blockers.length > 0)
      row('real node', `skipped: this machine cannot run a node: ${blockers.join('; ')}`);
    else results.node = await nodeBench(row);
  }
  results.finishedAt = new Date().toISOString();
  svg = cdfSvg('Latency distributions (cumulative, log scale)', {
    ...Object.fromEntries(Object.entries(ttrRaw).map(([k, v]) => [`time to Ready ${k}`, v])),
    ...webhookSeries,
  });
} catch (err) {
  console.error(`benchmark failed: ${(err as Error).stack ?? err}`);
  process.exitCode = 1;
} finally {
  for (const c of children) c.kill('SIGTERM');
  await stopControlPlane(cp);
  removeDir(dir);
}

const outDir = join(ROOT, 'bench', 'results');
mkdirSync(outDir, { recursive: true });
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
writeFileSync(join(outDir, `${stamp}.json`), JSON.stringify(results, null, 2));
writeFileSync(join(outDir, `${stamp}.txt`), `${lines.join('\n')}\n`);
writeFileSync(join(outDir, `${stamp}.svg`), svg);
console.log(`\nresults: bench/results/${stamp}.json`);
