// Where the operator's CPU goes during a burst: COUNT Certificates created at
// once against the local control plane, the operator run with --cpu-prof, and
// the profile summarised by package and by function. Prints figures and
// writes the .cpuprofile (open it in Chrome DevTools); asserts nothing.
// HEAP_SNAPSHOT=1 (with CPU_PROFILE=0): heap snapshots at rest, mid-burst and holding COUNT,
// each summarised by what holds the memory (bench/heap.ts); the files stay in
// bench/results/profiles for Chrome DevTools.

import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { loadKubeConfig } from '../lib/kube/config.ts';
import { removeDir, startControlPlane, stopControlPlane } from '../lib/testing/controlplane.ts';
import { summariseHeapSnapshot } from './heap.ts';
import {
  createCertificate,
  machine,
  pool,
  processStats,
  ROOT,
  readyTracker,
  setupClusterIssuer,
  startOperatorProcess,
} from './lib.ts';

const COUNT = Number(process.env.COUNT ?? 2000);
const TOP = Number(process.env.TOP ?? 25);
/** CPU_PROFILE=0 runs without the profiler (whose samples take memory too), for the memory figures. */
const CPU_PROFILE = process.env.CPU_PROFILE !== '0';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Self time per node id, in microseconds. */
function selfTimes(profile: Profile): Map<number, number> {
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => {
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });
  return self;
}

/** Where a script lives: a package name, Sigil's own directory, node internals, or the engine. */
function owner(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith('node:')) return 'node:internal';
  const own = /\/dist\/([^/]+\/[^/]+)/.exec(url);
  return own ? `sigil ${own[1]}` : url;
}

function summarise(profile: Profile) {
  const self = selfTimes(profile);
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const byOwner = new Map<string, number>();
  const byFunction = new Map<string, number>();
  for (const node of profile.nodes) {
    const t = self.get(node.id) ?? 0;
    if (!t) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const o = owner(url, functionName);
    byOwner.set(o, (byOwner.get(o) ?? 0) + t);
    const f = `${functionName || '(anonymous)'} ${o}${url ? `:${lineNumber + 1}` : ''}`;
    byFunction.set(f, (byFunction.get(f) ?? 0) + t);
  }
  const top = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, TOP)
      .map(
        ([k, v]) =>
          `${(v / 1000).toFixed(0).padStart(8)} ms ${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`,
      );
  return { totalMs: total / 1000, owners: top(byOwner), functions: top(byFunction) };
}

const dir = mkdtempSync(join(tmpdir(), 'sigil-profile-'));
const profDir = join(ROOT, 'bench', 'results', 'profiles');
mkdirSync(profDir, { recursive: true });
const cp = await startControlPlane({ dir, persistent: false });
try {
  const kc = loadKubeConfig(cp.kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  await setupClusterIssuer(kc);
  const before = new Set(readdirSync(profDir));
  const operator = await startOperatorProcess(
    cp.kubeconfig,
    ['--concurrency', '16'],
    false,
    [
      ...(process.env.OPERATOR_NODE_ARGS?.split(' ').filter(Boolean) ?? []),
      ...(CPU_PROFILE ? ['--cpu-prof', '--cpu-prof-dir', profDir] : []),
      ...(process.env.HEAP_SNAPSHOT ? ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${profDir}`] : []),
    ],
    // tsc's output rather than the image's bundle, so that the profile names each file and package.
    join(ROOT, 'dist', 'cli', 'main.js'),
  );
  console.log(`machine: ${JSON.stringify(machine())}`);
  const ns = 'profile';
  await core.createNamespace({ body: { metadata: { name: ns } } });
  const tracker = await readyTracker(kc, ns);
  // HEAP_SNAPSHOT=1: the operator's heap at rest, mid-burst (half Ready) and holding COUNT.
  const snapshots: { label: string; file: string }[] = [];
  const snapshot = async (label: string) => {
    const have = new Set(readdirSync(profDir));
    operator.child.kill('SIGUSR2');
    // Node writes it after a full GC; a large heap takes a few seconds.
    for (let i = 0; i < 600; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const file = readdirSync(profDir).find((f) => !have.has(f) && f.endsWith('.heapsnapshot'));
      if (file) {
        const size = () => statSync(join(profDir, file)).size;
        let last = -1;
        while (size() !== last) {
          last = size();
          await new Promise((r) => setTimeout(r, 1000));
        }
        snapshots.push({ label, file: join(profDir, file) });
        return;
      }
    }
    throw new Error(`the operator wrote no heap snapshot for ${label}`);
  };
  if (process.env.HEAP_SNAPSHOT) await snapshot('at rest');
  let midBurst: Promise<void> | undefined;
  const cpuBefore = processStats(operator.child.pid!).cpuSeconds;
  const serverCpu = () => processStats(cp.apiserverPid!).cpuSeconds + processStats(cp.etcdPid).cpuSeconds;
  const serverCpuBefore = serverCpu();
  const requestsBefore = await operator.metric('sigil_controller_api_requests_total');
  const reconcilesBefore = await operator.metric('sigil_controller_reconcile_total');
  const started = performance.now();
  await pool(COUNT, 32, (i) => createCertificate(custom, ns, `p${i}`));
  if (process.env.HEAP_SNAPSHOT)
    await tracker.waitFor(() => {
      if (!midBurst && tracker.readyAt.size >= COUNT / 2)
        midBurst = snapshot(`mid-burst (${COUNT / 2} Ready)`);
      return tracker.readyAt.size >= COUNT;
    }, 30 * 60_000);
  await tracker.waitFor(() => tracker.readyAt.size >= COUNT, 30 * 60_000);
  await midBurst;
  const seconds = (performance.now() - started) / 1000;
  tracker.stop();
  const stats = processStats(operator.child.pid!);
  const requests = (await operator.metric('sigil_controller_api_requests_total')) - requestsBefore;
  const reconciles = (await operator.metric('sigil_controller_reconcile_total')) - reconcilesBefore;
  const cpu = stats.cpuSeconds - cpuBefore;
  const server = serverCpu() - serverCpuBefore;
  console.log(
    `${COUNT} Certificates Ready in ${seconds.toFixed(1)} s (${(COUNT / seconds).toFixed(0)}/s); operator CPU ${cpu.toFixed(1)} s (${((1000 * cpu) / COUNT).toFixed(1)} ms per certificate), peak RSS ${stats.peakRssMiB.toFixed(0)} MiB, ${requests} API requests (${(requests / COUNT).toFixed(2)} per certificate), ${reconciles} reconciles; kube-apiserver + etcd CPU ${server.toFixed(1)} s (${((1000 * server) / COUNT).toFixed(1)} ms per certificate)`,
  );
  const heap = async () => (await operator.metric('sigil_operator_nodejs_heap_size_used_bytes')) / 2 ** 20;
  const heapAfter = await heap();
  await new Promise((r) => setTimeout(r, 10_000));
  console.log(
    `memory: heap used ${heapAfter.toFixed(0)} MiB right after, ${(await heap()).toFixed(0)} MiB and RSS ${processStats(operator.child.pid!).rssMiB.toFixed(0)} MiB 10 s later`,
  );
  if (process.env.HEAP_SNAPSHOT) {
    await snapshot(`holding ${COUNT}`);
    for (const { label, file } of snapshots) {
      console.log(`\n${label}:`);
      for (const l of summariseHeapSnapshot(file, TOP)) console.log(l);
    }
  }
  await operator.stop();
  if (CPU_PROFILE) {
    const written = readdirSync(profDir).filter((f) => !before.has(f) && f.endsWith('.cpuprofile'));
    if (written.length === 0) throw new Error(`the operator wrote no profile into ${profDir}`);
    const file = join(profDir, written[0]!);
    const s = summarise(JSON.parse(readFileSync(file, 'utf8')) as Profile);
    console.log(`\nprofile: ${file} (${(s.totalMs / 1000).toFixed(1)} s sampled, whole process lifetime)`);
    console.log('\nself time by package:');
    for (const l of s.owners) console.log(l);
    console.log('\nself time by function:');
    for (const l of s.functions) console.log(l);
  }
} catch (err) {
  console.error(`profile failed: ${(err as Error).stack ?? err}`);
  process.exitCode = 1;
} finally {
  await stopControlPlane(cp);
  removeDir(dir);
}
