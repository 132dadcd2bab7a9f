// make bench, on a real one-node cluster with the chart installed from the built
// image: how long a new pod waits from creation to Running with its identity
// mounted (a pod elsewhere for comparison, a pod whose identity exists, a pod
// whose identity must be issued first), how long a renewed Secret takes to reach
// the file in a running container at the test's kubelet sync and at the
// kubelet's default, and the operator's and webhook's RSS as pods.
// the kubelet's default, the operator's and webhook's RSS as pods, and for pods whose key the kubelet
// makes (podCertificate volumes): PodCertificateRequest created to Issued, and pod created to Running.
// Counts: NODE_PODS=10 per kind, NODE_RENEWALS=5 per kubelet setting, NODE_POD_CERTIFICATES=50 at once.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { loadKubeConfig } from '../lib/kube/config.ts';
import { Informer } from '../lib/kube/informer.ts';
import { listPage, rawRequest } from '../lib/kube/rest.ts';
import { silentLogger } from '../lib/log.ts';
import { nodeBinaryDir, startCluster, stopCluster } from '../lib/testing/node/cluster.ts';
import { clusterTools, ensureHelm, importChartImage } from '../lib/testing/node/tools.ts';
import { summary } from './lib.ts';

const NODE_PODS = Number(process.env.NODE_PODS ?? '10');
const NODE_RENEWALS = Number(process.env.NODE_RENEWALS ?? '5');
const NODE_POD_CERTIFICATES = Number(process.env.NODE_POD_CERTIFICATES ?? '50');
const PODCERT = 'bench-podcert';
const RELEASE_NS = 'sigil-system';
const INJECTED = 'bench-injected';
const PLAIN = 'bench-plain';
/** The test suite's kubelet setting, and the kubelet's own default (1m). */
const SETTINGS = [{ syncFrequency: '5s' }, { syncFrequency: '1m' }] as const;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Logs "<epoch ms> <serial>" each time the mounted tls.crt changes (and nothing without one). */
const WATCH_FILE = `const fs = require('node:fs'); const { X509Certificate } = require('node:crypto');
  const file = process.env.SIGIL_CERT_FILE; let last = '';
  setInterval(() => { if (!file) return; try { const s = new X509Certificate(fs.readFileSync(file)).serialNumber;
    if (s !== last) { console.log(Date.now() + ' ' + s); last = s; } } catch {} }, 50);`;

function pod(name: string, namespace: string, image: string, serviceAccountName = 'default'): V1Pod {
  return {
    metadata: { name, namespace },
    spec: {
      serviceAccountName,
      automountServiceAccountToken: false,
      terminationGracePeriodSeconds: 0,
      securityContext: { runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000 },
      containers: [
        {
          name: 'app',
          image,
          imagePullPolicy: 'IfNotPresent',
          command: ['/usr/local/bin/node', '-e', WATCH_FILE],
        },
      ],
    },
  };
}

/** Creates the pod and returns the milliseconds until the API reports it Running. */
async function createToRunning(core: CoreV1Api, body: V1Pod): Promise<number> {
  const started = Date.now();
  await core.createNamespacedPod({ namespace: body.metadata!.namespace!, body });
  for (;;) {
    const p = await core.readNamespacedPod({
      name: body.metadata!.name!,
      namespace: body.metadata!.namespace!,
    });
    if (p.status?.phase === 'Running') return Date.now() - started;
    if (Date.now() - started > 180_000) throw new Error(`pod ${body.metadata!.name} not Running after 180 s`);
    await sleep(20);
  }
}

/** VmRSS (MiB) of PID 1 in each container of the release's pods of one component, read through exec. */
function componentRss(kubectl: (...a: string[]) => string, component: string): number[] {
  const names = kubectl(
    'get',
    'pods',
    '-n',
    RELEASE_NS,
    '-l',
    `app.kubernetes.io/component=${component}`,
    '-o',
    'jsonpath={.items[*].metadata.name}',
  )
    .trim()
    .split(' ')
    .filter(Boolean);
  return names.map((name) => {
    const kib = kubectl(
      'exec',
      '-n',
      RELEASE_NS,
      name,
      '--',
      '/usr/local/bin/node',
      '-p',
      `/VmRSS:\\s+(\\d+)/.exec(require('fs').readFileSync('/proc/1/status', 'utf8'))[1]`,
    );
    return Math.round(Number(kib.trim()) / 1024);
  });
}

/**
 * Renews the identities of `pods` at once and returns, per pod, the milliseconds from its Secret
 * changing (polled from the API) to the running container logging the new serial.
 */
async function secretToFile(
  kc: KubeConfig,
  pods: { name: string; certificate: string }[],
): Promise<number[]> {
  const core = kc.makeApiClient(CoreV1Api);
  const tlsCrtOf = async (name: string) => {
    const s = await core.readNamespacedSecret({ name, namespace: INJECTED });
    return s.data?.['tls.crt'] ?? '';
  };
  const before = await Promise.all(pods.map((p) => tlsCrtOf(p.certificate)));
  const asked = new Date().toISOString();
  await Promise.all(
    pods.map((p) =>
      rawRequest(
        kc,
        'PATCH',
        `/apis/sigil.dev/v1alpha1/namespaces/${INJECTED}/certificates/${p.certificate}`,
        { metadata: { annotations: { 'sigil.dev/renew-requested-at': asked } } },
        'application/merge-patch+json',
      ),
    ),
  );
  // When each Secret changed, as seen from the API (polled every 50 ms).
  const changedAt: number[] = pods.map(() => 0);
  const deadline = Date.now() + 60_000;
  while (changedAt.some((t) => t === 0) && Date.now() < deadline) {
    await Promise.all(
      pods.map(async (p, i) => {
        if (changedAt[i] === 0 && (await tlsCrtOf(p.certificate)) !== before[i]) changedAt[i] = Date.now();
      }),
    );
    await sleep(50);
  }
  // When each container saw the new serial: the last line its watcher logged.
  const seenAt: number[] = pods.map(() => 0);
  const seenDeadline = Date.now() + 180_000;
  while (seenAt.some((t) => t === 0) && Date.now() < seenDeadline) {
    await Promise.all(
      pods.map(async (p, i) => {
        if (seenAt[i] !== 0) return;
        const log = await core.readNamespacedPodLog({ name: p.name, namespace: INJECTED });
        const lines = log.trim().split('\n');
        if (lines.length >= 2) seenAt[i] = Number(lines[lines.length - 1]!.split(' ')[0]);
      }),
    );
    await sleep(500);
  }
  return pods.map((_, i) => (seenAt[i] && changedAt[i] ? seenAt[i]! - changedAt[i]! : Number.NaN));
}

interface Request {
  metadata: { name: string; namespace: string; uid: string };
  spec: { podName: string };
  status?: { conditions?: { type: string }[] };
}

/**
 * Pods with a podCertificate volume for the default ClusterIssuer's signer, one by one and then
 * NODE_POD_CERTIFICATES at once: each request's time from its ADDED event to the MODIFIED event
 * carrying Issued (one watch sees both, so its delay cancels out), and each pod's creation to Running.
 */
async function podCertificateBench(
  kc: KubeConfig,
  core: CoreV1Api,
  image: string,
): Promise<{
  oneByOne: { issued: number[]; running: number[] };
  atOnce: { issued: number[]; running: number[]; plainRunning: number[] };
}> {
  await core.createNamespace({ body: { metadata: { name: PODCERT } } });
  await core.createNamespacedServiceAccount({ namespace: PODCERT, body: { metadata: { name: 'app' } } });
  const path = `/apis/certificates.k8s.io/v1/namespaces/${PODCERT}/podcertificaterequests`;
  const added = new Map<string, number>();
  const issued = new Map<string, number>();
  const requests = new Informer<Request>(kc, {
    name: 'bench-podcertificaterequests',
    path,
    list: (page) => listPage<Request>(kc, path, {}, page),
    logger: silentLogger(),
  });
  const seen = (r: Request) => {
    if (!added.has(r.metadata.uid)) added.set(r.metadata.uid, Date.now());
    if (!issued.has(r.metadata.uid) && r.status?.conditions?.some((c) => c.type === 'Issued'))
      issued.set(r.metadata.uid, Date.now());
  };
  requests.on('add', seen).on('update', seen);
  await requests.start();
  const podOf = (name: string): V1Pod => {
    const p = pod(name, PODCERT, image, 'app');
    p.spec!.volumes = [
      {
        name: 'identity',
        projected: {
          sources: [
            {
              podCertificate: {
                signerName: 'clusterissuers.sigil.dev/sigil-ca',
                keyType: 'ECDSAP256',
                credentialBundlePath: 'credentials.pem',
              },
            },
            {
              clusterTrustBundle: {
                signerName: 'clusterissuers.sigil.dev/sigil-ca',
                labelSelector: {},
                path: 'ca.crt',
              },
            },
          ],
        },
      } as never,
    ];
    p.spec!.containers[0]!.volumeMounts = [{ name: 'identity', mountPath: '/var/run/sigil', readOnly: true }];
    return p;
  };
  const issuedTimes = (names: string[]) =>
    requests
      .list()
      .filter((r) => names.includes(r.spec.podName))
      .map((r) => (issued.get(r.metadata.uid) ?? Number.NaN) - (added.get(r.metadata.uid) ?? Number.NaN));
  try {
    const one: string[] = [];
    const oneRunning: number[] = [];
    for (let i = 0; i < NODE_PODS; i++) {
      one.push(`one-${i}`);
      oneRunning.push(await createToRunning(core, podOf(`one-${i}`)));
    }
    // The same burst without the volume first: what the node takes to start that many pods at all.
    // They are deleted before the next burst: a kubelet runs 110 pods at most.
    const plainNames = Array.from({ length: NODE_POD_CERTIFICATES }, (_, i) => `plain-burst-${i}`);
    const plain = await Promise.all(
      plainNames.map((n) => createToRunning(core, pod(n, PODCERT, image, 'app'))),
    );
    await Promise.all(
      plainNames.map((name) => core.deleteNamespacedPod({ name, namespace: PODCERT, gracePeriodSeconds: 0 })),
    );
    for (let left = plainNames.length; left > 0; ) {
      await sleep(500);
      const pods = await core.listNamespacedPod({ namespace: PODCERT });
      left = pods.items.filter((p) => p.metadata?.name?.startsWith('plain-burst-')).length;
    }
    const many = Array.from({ length: NODE_POD_CERTIFICATES }, (_, i) => `burst-${i}`);
    const manyRunning = await Promise.all(many.map((n) => createToRunning(core, podOf(n))));
    return {
      oneByOne: { issued: issuedTimes(one), running: oneRunning },
      atOnce: { issued: issuedTimes(many), running: manyRunning, plainRunning: plain },
    };
  } finally {
    requests.stop();
  }
}

export async function nodeBench(row: (name: string, text: string) => void): Promise<Record<string, unknown>> {
  const results: Record<string, unknown> = {};
  const binDir = nodeBinaryDir();
  ensureHelm();
  const ms = (x: number) => `${(x / 1000).toFixed(2)} s`;
  for (const setting of SETTINGS) {
    const dir = mkdtempSync(join(tmpdir(), 'sigil-bench-node-'));
    try {
      const cluster = await startCluster({ dir, node: true, syncFrequency: setting.syncFrequency });
      const tools = clusterTools(binDir, cluster.controlPlane.kubeconfig, dir);
      const kc = loadKubeConfig(cluster.controlPlane.kubeconfig);
      const core = kc.makeApiClient(CoreV1Api);
      const image = importChartImage(cluster.node!);
      tools.installChart('sigil', RELEASE_NS, ['--set', 'podCertificates.enabled=true']);
      await core.createNamespace({ body: { metadata: { name: PLAIN } } });
      await core.createNamespace({
        body: { metadata: { name: INJECTED, labels: { 'sigil.dev/inject': 'enabled' } } },
      });
      tools.kubectl(
        'wait',
        '--for=jsonpath={.metadata.name}=default',
        'serviceaccount/default',
        '-n',
        INJECTED,
      );
      const renewed: { name: string; certificate: string }[] = [];
      const newIdentity = async (i: number) => {
        const sa = `svc-${i}`;
        await core.createNamespacedServiceAccount({ namespace: INJECTED, body: { metadata: { name: sa } } });
        const name = `new-${i}`;
        const t = await createToRunning(core, pod(name, INJECTED, image, sa));
        const p = await core.readNamespacedPod({ name, namespace: INJECTED });
        renewed.push({ name, certificate: p.metadata!.annotations!['sigil.dev/certificate']! });
        return t;
      };

      if (setting.syncFrequency === '5s') {
        const kinds: Record<string, number[]> = { elsewhere: [], existing: [], issued: [] };
        // The first pod of the namespace's default identity pays for its issuance; the rest reuse it.
        await createToRunning(core, pod('existing-first', INJECTED, image));
        for (let i = 0; i < NODE_PODS; i++) {
          kinds.elsewhere!.push(await createToRunning(core, pod(`plain-${i}`, PLAIN, image)));
          kinds.existing!.push(await createToRunning(core, pod(`existing-${i}`, INJECTED, image)));
          kinds.issued!.push(await newIdentity(i));
        }
        const s = Object.fromEntries(Object.entries(kinds).map(([k, v]) => [k, summary(v)]));
        results.podToRunning = s;
        row(
          'pod created to Running, no injection',
          `p50 ${ms(s.elsewhere!.p50)} max ${ms(s.elsewhere!.max)} (${NODE_PODS} one by one)`,
        );
        row(
          'same, injected, identity already issued',
          `p50 ${ms(s.existing!.p50)} max ${ms(s.existing!.max)}`,
        );
        row(
          'same, injected, identity issued for the pod',
          `p50 ${ms(s.issued!.p50)} max ${ms(s.issued!.max)} (a new ServiceAccount each)`,
        );
        // Idle after the pods above: the leader has issued NODE_PODS + 2 identities.
        const operator = componentRss(tools.kubectl, 'operator');
        const webhook = componentRss(tools.kubectl, 'webhook');
        results.rssMiB = { operator, webhook };
        row('RSS as pods (MiB), operator / webhook', `${operator.join(', ')} / ${webhook.join(', ')}`);
        const pc = await podCertificateBench(kc, core, image);
        results.podCertificates = pc;
        for (const [what, r] of [
          [`${NODE_PODS} one by one`, pc.oneByOne],
          [`${NODE_POD_CERTIFICATES} at once`, pc.atOnce],
        ] as const) {
          const issuedMs = summary(r.issued.filter((x) => !Number.isNaN(x)));
          const running = summary(r.running);
          row(
            `PodCertificateRequest created to Issued, ${what}`,
            `p50 ${issuedMs.p50} ms p99 ${issuedMs.p99} ms max ${issuedMs.max} ms (${issuedMs.count} requests)`,
          );
          row(
            `pod with a podCertificate volume created to Running, ${what}`,
            `p50 ${ms(running.p50)} p99 ${ms(running.p99)}`,
          );
        }
        const plainBurst = summary(pc.atOnce.plainRunning);
        row(
          `pod without it created to Running, ${NODE_POD_CERTIFICATES} at once (the node's own pace)`,
          `p50 ${ms(plainBurst.p50)} p99 ${ms(plainBurst.p99)}`,
        );
      } else {
        for (let i = 0; i < NODE_RENEWALS; i++) await newIdentity(i);
      }
      const samples = await secretToFile(kc, renewed.slice(0, NODE_RENEWALS));
      const s = summary(samples.filter((x) => !Number.isNaN(x)));
      results[`secretToFile${setting.syncFrequency}`] = { ...s, samples };
      row(
        `Secret to file in a running pod, kubelet sync ${setting.syncFrequency}`,
        `p50 ${ms(s.p50)} max ${ms(s.max)} (${s.count} of ${samples.length} pods renewed at once)`,
      );
    } finally {
      await stopCluster(dir);
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return results;
}
