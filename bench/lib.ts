// Helpers for the benchmarks: an operator as a child process with its CPU and
// memory read from /proc, percentiles, and the machine description.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { type CustomObjectsApi, type KubeConfig, Watch } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { API_VERSION, type Certificate, GROUP, Plural, VERSION } from '../lib/api/types.ts';
import { installCrds } from '../lib/kube/crds.ts';
import { createSelfSignedCA } from '../lib/pki/ca.ts';
import { freePort } from '../lib/testing/controlplane.ts';
import { createIssuer, createSecret, ensureNamespace } from '../test/support/sigil.ts';
import { type MemoryCgroup, memoryCgroup } from './cgroup.ts';

export const ROOT = resolve(import.meta.dirname, '..');
/** What the image runs: the code and its production dependencies in one module (hack/bundle.ts). */
export const ENTRY = join(ROOT, 'dist', 'bundle', 'sigil.mjs');

/** Every component process the benchmark started, killed when it ends however it ends. */
export const children = new Set<import('node:child_process').ChildProcess>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/** Component logs go to a file, not the benchmark's output. */
export function logFile(): string {
  const dir = join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  return join(dir, 'components.log');
}

export function machine() {
  return {
    cores: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
  };
}

export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function summary(xs: number[]) {
  return {
    count: xs.length,
    p50: percentile(xs, 50),
    p99: percentile(xs, 99),
    max: xs.length ? Math.max(...xs) : Number.NaN,
  };
}

const CLK_TCK = 100;

/** CPU seconds (user+system) and peak RSS (MiB) of a process, from /proc. */
export function processStats(pid: number): { cpuSeconds: number; peakRssMiB: number; rssMiB: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuSeconds = (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { cpuSeconds, peakRssMiB: kb('VmHWM') / 1024, rssMiB: kb('VmRSS') / 1024 };
}

/**
 * The kubeconfig as JSON, for Sigil's processes: in a cluster they read their service account and
 * never load a YAML parser; a JSON kubeconfig keeps it out of what the benchmark measures too.
 */
export function jsonKubeconfig(path: string): string {
  const json = `${path}.json`;
  if (!existsSync(json))
    writeFileSync(json, JSON.stringify(parse(readFileSync(path, 'utf8'))), { mode: 0o600 });
  return json;
}

function chartValues() {
  return parse(readFileSync(join(ROOT, 'charts', 'sigil', 'values.yaml'), 'utf8')) as Record<
    string,
    { nodeArgs?: string[]; resources?: { limits?: { memory?: string } } }
  >;
}

/** The component's memory limit in the chart's values, in MiB. */
export function chartMemoryLimitMiB(component: 'operator' | 'webhook'): number | undefined {
  const limit = chartValues()[component]?.resources?.limits?.memory;
  return limit ? memoryMiB(String(limit)) : undefined;
}

/** A memory quantity in MiB, as the chart reads resources.limits.memory (sigil.memoryMiB). */
function memoryMiB(q: string): number {
  const m = /^(\d+)(Gi|Mi|G|M)?$/.exec(q);
  if (!m) throw new Error(`memory limit ${q}: the chart takes whole Mi, Gi, M or G, or bytes`);
  const n = Number(m[1]);
  return m[2] === 'Gi'
    ? n * 1024
    : m[2] === 'Mi'
      ? n
      : Math.floor((n * (m[2] === 'G' ? 1e9 : m[2] === 'M' ? 1e6 : 1)) / 1048576);
}

/**
 * The Node flags the chart gives a component: `<component>.nodeArgs` in charts/sigil/values.yaml,
 * and the old-space size it derives from the component's memory limit (sigil.nodeArgs: the limit
 * less 96 MiB, at least half of it), so that the benchmark's processes size their heaps as the
 * containers do.
 */
export function chartNodeOptions(component: 'operator' | 'webhook'): string[] {
  const args = [...(chartValues()[component]?.nodeArgs ?? [])];
  const mib = chartMemoryLimitMiB(component);
  if (mib !== undefined && !args.some((a) => a.startsWith('--max-old-space-size')))
    args.push(`--max-old-space-size=${Math.max(mib - 96, Math.floor(mib / 2))}`);
  // The image's NODE_OPTIONS (see the Dockerfile) apply under the chart's flags, which win.
  return ['--max-semi-space-size=8', ...args];
}

/**
 * The environment a product's process gets here: what its container would have (the image's
 * NODE_ENV, PATH), not this shell's. A shell's CA-bundle variables change what a process holds:
 * with NODE_EXTRA_CA_CERTS set, Node reads that bundle into memory at start (0.7 MiB at rest for
 * the operator with Debian's bundle), and a pod has none of them.
 */
export function containerEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', NODE_ENV: 'production', ...extra };
}

export interface OperatorProcess {
  child: ChildProcess;
  /** The memory cgroup it runs in, at the chart's limit, where the machine allows one. */
  cgroup: MemoryCgroup | undefined;
  metricsPort: number;
  metric: (name: string, labels?: string) => Promise<number>;
  stop: () => Promise<void>;
}

/** Operator processes started, to name their cgroups. */
let started = 0;

export async function startOperatorProcess(
  kubeconfig: string,
  extra: string[] = [],
  webhookTls = false,
  nodeArgs: string[] = [],
  entry = ENTRY,
): Promise<OperatorProcess> {
  const metricsPort = await freePort();
  // Inside a memory cgroup at the chart's limit, as in its container, where the machine allows one.
  const limit = chartMemoryLimitMiB('operator');
  const cgroup = limit === undefined ? undefined : memoryCgroup(`sigil-bench-operator-${++started}`, limit);
  const [file, ...args] = (cgroup?.wrap ?? ((c: string[]) => c))([
    process.execPath,
    // As the chart runs it (operator.nodeArgs in its values).
    ...chartNodeOptions('operator'),
    ...nodeArgs,
    // The bundle, as the image runs it (make bench builds first).
    entry,
    'operator',
    '--kubeconfig',
    jsonKubeconfig(kubeconfig),
    '--no-leader-elect',
    ...(webhookTls ? [] : ['--no-webhook-tls']),
    '--log-level',
    process.env.BENCH_LOG_LEVEL ?? 'warn',
    '--min-duration',
    '1m',
    '--metrics-address',
    `127.0.0.1:${metricsPort}`,
    ...extra,
  ]);
  const child = spawn(file!, args, {
    stdio: ['ignore', 'ignore', openSync(logFile(), 'a')],
    env: containerEnv({ NODE_NO_WARNINGS: '1' }),
  });
  children.add(child);
  child.on('exit', () => {
    children.delete(child);
    cgroup?.remove();
  });
  const scrape = async () => {
    try {
      return await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    } catch {
      // Once more: a kept-alive connection may have been closed as the scrape was sent, and is gone now.
      return (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    }
  };
  const metric = async (name: string, labels = '') => {
    const text = await scrape();
    let total = 0;
    for (const line of text.split('\n')) {
      if (!line.startsWith(name) || line.startsWith('#')) continue;
      const rest = line.slice(name.length);
      if (!(rest.startsWith(' ') || rest.startsWith('{')) || (labels && !rest.includes(labels))) continue;
      total += Number(line.split(' ').pop());
    }
    return total;
  };
  for (let i = 0; ; i++) {
    try {
      await metric('sigil_leader_election_is_leader');
      break;
    } catch (err) {
      if (child.exitCode !== null || child.signalCode !== null || i >= 600) {
        throw new Error(
          `the operator did not serve metrics (exit ${child.exitCode ?? child.signalCode}; last error: ${(err as Error).message}); see ${logFile()}`,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    child,
    cgroup,
    metricsPort,
    metric,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.on('exit', r)));
    },
  };
}

/** A small SVG of cumulative latency distributions, one line per series. */
export function cdfSvg(title: string, series: Record<string, number[]>, unit = 'ms'): string {
  const W = 640;
  const H = 360;
  const pad = { l: 60, r: 20, t: 40, b: 50 };
  const all = Object.values(series)
    .flat()
    .filter((x) => Number.isFinite(x) && x > 0);
  const max = Math.max(...all, 1);
  const min = Math.max(Math.min(...all, max), 0.01);
  const lx = (v: number) =>
    pad.l +
    ((Math.log10(v) - Math.log10(min)) / Math.max(1e-9, Math.log10(max) - Math.log10(min))) *
      (W - pad.l - pad.r);
  const ly = (q: number) => H - pad.b - q * (H - pad.t - pad.b);
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b'];
  const lines = Object.entries(series).map(([name, xs], i) => {
    const sorted = [...xs].filter((x) => x > 0).sort((a, b) => a - b);
    const pts = sorted
      .map((x, j) => `${lx(x).toFixed(1)},${ly((j + 1) / sorted.length).toFixed(1)}`)
      .join(' ');
    const color = colors[i % colors.length];
    return `<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts}"/><text x="${W - pad.r - 200}" y="${pad.t + 16 * (i + 1)}" fill="${color}" font-size="12">${name} (n=${sorted.length})</text>`;
  });
  const ticks: string[] = [];
  for (let e = Math.floor(Math.log10(min)); e <= Math.ceil(Math.log10(max)); e++) {
    const v = 10 ** e;
    if (v < min / 1.0001 || v > max * 1.0001) continue;
    ticks.push(
      `<line x1="${lx(v)}" x2="${lx(v)}" y1="${pad.t}" y2="${H - pad.b}" stroke="#ddd"/><text x="${lx(v)}" y="${H - pad.b + 16}" font-size="11" text-anchor="middle">${v} ${unit}</text>`,
    );
  }
  for (const q of [0, 0.5, 0.99, 1])
    ticks.push(
      `<text x="${pad.l - 8}" y="${ly(q) + 4}" font-size="11" text-anchor="end">p${Math.round(q * 100)}</text><line x1="${pad.l}" x2="${W - pad.r}" y1="${ly(q)}" y2="${ly(q)}" stroke="#eee"/>`,
    );
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/><text x="${pad.l}" y="24" font-size="14">${title}</text>${ticks.join('')}${lines.join('')}</svg>`;
}

/** CRDs, the sigil-system namespace, a CA Secret and the ClusterIssuer sigil-ca every benchmark issues from. */
export async function setupClusterIssuer(kc: KubeConfig) {
  await installCrds(kc);
  await ensureNamespace(kc, 'sigil-system');
  const ca = await createSelfSignedCA({
    commonName: 'Bench CA',
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 365 * 86_400_000),
  });
  const base64 = (pem: string) => Buffer.from(pem).toString('base64');
  await createSecret(kc, 'sigil-system', 'sigil-ca', {
    'tls.crt': base64(ca.certPem),
    'tls.key': base64(ca.keyPem),
  });
  // The benchmark's Certificates name hosts under example.com: outside any namespace, so listed.
  await createIssuer(kc, 'ClusterIssuer', 'sigil-ca', {
    ca: { secretName: 'sigil-ca' },
    policy: { allowedDNSNames: ['**.example.com'] },
  });
  return ca;
}

export async function pool<T>(n: number, concurrency: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (;;) {
        const i = next++;
        if (i >= n) return;
        for (let attempt = 0; ; attempt++) {
          try {
            out[i] = await fn(i);
            break;
          } catch (err) {
            // A create retried after a timeout may find its own first attempt.
            if (attempt > 0 && (err as { code?: number }).code === 409) break;
            if (attempt > 5) throw err;
            await new Promise((r) => setTimeout(r, 200 * (attempt + 1)));
          }
        }
      }
    }),
  );
  return out;
}

/** GET a text endpoint of the API server (its /metrics) with the kubeconfig's credentials. */
export async function apiServerText(kc: KubeConfig, path: string): Promise<string> {
  const url = new URL(kc.getCurrentCluster()!.server + path);
  const opts: import('node:https').RequestOptions = {
    hostname: url.hostname,
    port: url.port,
    path: url.pathname,
  };
  await kc.applyToHTTPSOptions(opts);
  return new Promise((resolveText, reject) => {
    const req = httpsRequest(opts, (res) => {
      let body = '';
      res.on('data', (d) => {
        body += d;
      });
      res.on('end', () => resolveText(body));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Watches a namespace's Certificates; resolves per name when Ready (at a given revision). */
export async function readyTracker(kc: KubeConfig, ns: string) {
  const readyAt = new Map<string, number>();
  const revisionAt = new Map<string, Map<number, number>>();
  const status = new Map<string, Map<number, NonNullable<Certificate['status']>>>();
  const waiters: (() => void)[] = [];
  let stopped = false;
  let controller: AbortController | undefined;
  // Re-opened whenever it ends: right after the CRDs are created the API server answers 429 for a while.
  const open = async (): Promise<void> => {
    if (stopped) return;
    controller = await new Watch(kc).watch(
      `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${Plural.Certificate}`,
      {},
      (_phase: string, c: Certificate) => {
        const now = performance.now();
        const name = c.metadata.name!;
        const ready = c.status?.conditions?.find((x) => x.type === 'Ready')?.status === 'True';
        if (!ready) return;
        if (!readyAt.has(name)) readyAt.set(name, now);
        const rev = c.status?.revision ?? 0;
        const statuses = status.get(name) ?? new Map();
        if (!statuses.has(rev)) statuses.set(rev, c.status!);
        status.set(name, statuses);
        const revs = revisionAt.get(name) ?? new Map<number, number>();
        if (!revs.has(rev)) revs.set(rev, Date.now());
        revisionAt.set(name, revs);
        for (const w of waiters.splice(0)) w();
      },
      () => {
        if (!stopped) setTimeout(() => void open(), 200);
      },
    );
  };
  await open();
  return {
    readyAt,
    revisionAt,
    status,
    waitFor: async (pred: () => boolean, timeoutMs: number) => {
      const deadline = Date.now() + timeoutMs;
      while (!pred()) {
        if (Date.now() > deadline) throw new Error('timed out');
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 500);
        });
      }
    },
    stop: () => {
      stopped = true;
      controller?.abort();
    },
  };
}

export const certificateBody = (name: string, spec: Record<string, unknown> = {}) => ({
  apiVersion: API_VERSION,
  kind: 'Certificate',
  metadata: { name },
  spec: { secretName: `${name}-tls`, dnsNames: [`${name}.example.com`], ...spec },
});

export async function createCertificate(
  custom: CustomObjectsApi,
  ns: string,
  name: string,
  spec: Record<string, unknown> = {},
) {
  await custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: ns,
    plural: Plural.Certificate,
    body: certificateBody(name, spec),
  });
}

/** Outcome of one review sent straight to the webhook. */
type FloodOutcome = 'injected' | 'allowed' | 'overloaded' | 'busy' | string;

export interface TenantFloodOptions {
  port: number;
  /** The webhook's serving CA, and the API server's admission client certificate. */
  tls: { ca: Buffer; cert: Buffer; key: Buffer };
  floodNamespace: string;
  /** Reviews kept in flight from the flooding namespace. */
  inFlight: number;
  seconds: number;
  /** Distinct service accounts the flood cycles through (each a Certificate the webhook must ensure). */
  identities: number;
  /** Bytes of padding in each flood pod (a container argument), to make large reviews. */
  podPadding: number;
  /** Creates one pod in the other namespace through the API server. */
  createCalmPod: () => Promise<void>;
  calmConcurrency: number;
  webhookPid: number;
}

/**
 * The tenant-flood row: `inFlight` reviews kept in flight straight at the
 * webhook from one namespace (authenticated as the API server), while pods are
 * created through the API server in another. Bounded by `seconds`.
 */
export async function tenantFlood(o: TenantFloodOptions) {
  const agent = new HttpsAgent({
    keepAlive: true,
    maxSockets: o.inFlight,
    ca: o.tls.ca,
    cert: o.tls.cert,
    key: o.tls.key,
  });
  const padding = o.podPadding > 0 ? ['x'.repeat(o.podPadding)] : [];
  let uid = 0;
  const send = () =>
    new Promise<FloodOutcome>((resolveOne) => {
      const n = uid++;
      const body = JSON.stringify({
        apiVersion: 'admission.k8s.io/v1',
        kind: 'AdmissionReview',
        request: {
          uid: `flood-${n}`,
          kind: { group: '', version: 'v1', kind: 'Pod' },
          operation: 'CREATE',
          namespace: o.floodNamespace,
          object: {
            metadata: { generateName: 'flood-' },
            spec: {
              serviceAccountName: `flood-${n % o.identities}`,
              containers: [{ name: 'app', image: 'x', args: padding }],
            },
          },
        },
      });
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port: o.port,
          path: '/mutate-v1-pod',
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json' },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => {
            text += d;
          });
          res.on('end', () => {
            if (res.statusCode === 429) return resolveOne('busy');
            if (res.statusCode !== 200) return resolveOne(`http ${res.statusCode}`);
            const r = (
              JSON.parse(text) as {
                response: { allowed: boolean; patch?: string; status?: { reason?: string } };
              }
            ).response;
            if (r.allowed) return resolveOne(r.patch ? 'injected' : 'allowed');
            resolveOne(r.status?.reason === 'Overloaded' ? 'overloaded' : `denied ${r.status?.reason}`);
          });
        },
      );
      req.on('error', (err) => resolveOne(`error ${err.message}`));
      req.end(body);
    });

  const cpuBefore = processStats(o.webhookPid).cpuSeconds;
  let peakRss = 0;
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, processStats(o.webhookPid).rssMiB);
  }, 100);
  const deadline = performance.now() + o.seconds * 1000;
  const outcomes = new Map<FloodOutcome, number>();
  const flood = Promise.all(
    Array.from({ length: o.inFlight }, async () => {
      while (performance.now() < deadline) {
        const outcome = await send();
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      }
    }),
  );
  // Let the flood fill up before the calm namespace starts.
  await new Promise((r) => setTimeout(r, 500));
  const latencies: number[] = [];
  const failures: string[] = [];
  await Promise.all(
    Array.from({ length: o.calmConcurrency }, async () => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        try {
          await o.createCalmPod();
          latencies.push(performance.now() - t0);
        } catch (err) {
          failures.push(String((err as { body?: string }).body ?? err).slice(0, 300));
        }
      }
    }),
  );
  await flood;
  clearInterval(sampler);
  agent.destroy();
  const stats = processStats(o.webhookPid);
  return {
    flood: Object.fromEntries([...outcomes].sort(([, a], [, b]) => b - a)),
    floodReviews: [...outcomes.values()].reduce((a, b) => a + b, 0),
    calm: { ...summary(latencies), failures: failures.length, firstFailure: failures[0] },
    webhookCpuSeconds: stats.cpuSeconds - cpuBefore,
    webhookPeakRssMiBDuringFlood: Math.max(peakRss, stats.rssMiB),
    webhookPeakRssMiBLifetime: stats.peakRssMiB,
  };
}
