// One real node beside the local control plane: containerd (its own config,
// root, state and socket under the cluster directory), runc, a CNI bridge of
// its own, kubelet, kube-controller-manager, kube-scheduler, kube-proxy
// (iptables), CoreDNS and the relay pods reach the API server through. Every process is recorded by PID in node.json and
// stopped only by that PID; stopNode also removes the mounts, interfaces,
// iptables chains, cgroups and host directories the node created.
import { type ChildProcess, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ControlPlaneState, freePort, isAlive } from '../controlplane.ts';
import type { RelayConfig } from './apiserver-relay.ts';
import {
  bridgePorts,
  cgroupHierarchies,
  commandLineContains,
  type HostSnapshot,
  interfaceExists,
  newChains,
  newNetns,
  processesInCgroup,
  processStartTime,
  removeCgroup,
  removeNewChains,
  removeNewPaths,
  restoreSysctls,
  run,
  snapshotHost,
  tryRun,
  unmountAll,
  writeSysctl,
} from './host.ts';
import { IMAGE_DIR, pauseImage, writeImage } from './images.ts';
import {
  BRIDGE,
  CGROUP_ROOT,
  cniConfig,
  containerdConfig,
  corefile,
  type KubeletOptions,
  kubeletConfig,
  NODE_IP,
  NODE_NAME,
  POD_SUBNET,
  RELAY_PORT,
} from './layout.ts';

/** The node's processes, by the name each is recorded under in node.json. */
const COMPONENTS = [
  'kube-controller-manager',
  'kube-scheduler',
  'kubelet',
  'kube-proxy',
  'coredns',
  'apiserver-relay',
  'containerd',
] as const;
export type Component = (typeof COMPONENTS)[number];

export interface NodeOptions extends KubeletOptions {
  /** Where the binaries are (hack/build-tools.sh node). */
  binDir: string;
}

export interface NodeState {
  dir: string;
  containerdSocket: string;
  pids: Partial<Record<Component, number>>;
  /** Each process's start time, so a PID reused by another process (after a reboot) is never signalled. */
  startTimes: Partial<Record<Component, string>>;
  /** The host as it was before the node started: what down restores. */
  snapshot: HostSnapshot;
  createdBridge: boolean;
  kubeProxyBin: string;
  logs: Partial<Record<Component, string>>;
}

/** The cluster directory recorded on the bridge by the node that created it. */
export function bridgeOwner(): string | undefined {
  try {
    return readFileSync(`/sys/class/net/${BRIDGE}/ifalias`, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** One kubelet per machine: fails, naming how to stop it, when another node of this project runs. */
export function assertNoOtherNode() {
  if (!interfaceExists(BRIDGE)) return;
  const owner = bridgeOwner();
  throw new Error(
    `the interface ${BRIDGE} already exists: another node cluster is running on this machine (one kubelet per machine)${
      owner ? `; stop it with: SIGIL_CLUSTER_DIR=${owner} make cluster-down` : ''
    }`,
  );
}

/** Why this machine cannot run a node, or nothing when it can. */
export function nodeUnsupportedReasons(): string[] {
  const reasons: string[] = [];
  if (process.getuid?.() !== 0) reasons.push('not running as root (the kubelet and containerd need it)');
  if (process.platform !== 'linux') reasons.push(`${process.platform} is not Linux`);
  else {
    if (cgroupHierarchies().length === 0) reasons.push('no cgroup v1 hierarchies under /sys/fs/cgroup');
    try {
      if (!/\toverlay$/m.test(readFileSync('/proc/filesystems', 'utf8')))
        reasons.push('the kernel has no overlayfs (containerd overlayfs snapshotter)');
    } catch {
      reasons.push('cannot read /proc/filesystems');
    }
  }
  return reasons;
}

/** The host packages a node needs (hack/node-packages.sh installs them). */
export function missingHostCommands(): string[] {
  const needed = ['containerd', 'ctr', 'runc', 'iptables', 'conntrack', 'ip'];
  const missing = needed.filter((cmd) => !tryRun('sh', ['-c', `command -v ${cmd}`]));
  if (!existsSync('/usr/lib/cni/bridge') || !existsSync('/usr/lib/cni/host-local'))
    missing.push('CNI plugins');
  return missing;
}

export function readNodeState(clusterDir: string): NodeState | undefined {
  try {
    return JSON.parse(readFileSync(join(clusterDir, 'node', 'node.json'), 'utf8')) as NodeState;
  } catch {
    return undefined;
  }
}

/** The PID of a component this node started, if that very process still runs. */
export function ownPid(state: NodeState, component: Component): number | undefined {
  const pid = state.pids[component];
  if (!pid || !isAlive(pid)) return undefined;
  return processStartTime(pid) === state.startTimes?.[component] ? pid : undefined;
}

export function isRunning(state: NodeState, component: Component): boolean {
  return ownPid(state, component) !== undefined;
}

function saveNodeState(state: NodeState) {
  writeFileSync(join(state.dir, 'node.json'), JSON.stringify(state, null, 2));
}

function spawnDetached(bin: string, args: string[], logFile: string): ChildProcess {
  const fd = openSync(logFile, 'a');
  const child = spawn(bin, args, { stdio: ['ignore', fd, fd], detached: true });
  closeSync(fd);
  child.unref();
  return child;
}

function tail(file: string | undefined, lines = 25): string {
  if (!file) return '(no log)';
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A request to the API server as the admin. */
export function apiRequest(
  cp: Pick<ControlPlaneState, 'server' | 'caPem' | 'token'>,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${cp.server}${path}`,
      {
        method,
        ca: cp.caPem,
        timeout: 5000,
        headers: { authorization: `Bearer ${cp.token}`, 'content-type': 'application/json' },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** `ctr` against this node's containerd, in the namespace the CRI uses. */
export function ctr(state: Pick<NodeState, 'containerdSocket'>, args: string[]): string {
  return run('ctr', ['--address', state.containerdSocket, '-n', 'k8s.io', ...args]);
}

/** Imports an OCI archive into the node's containerd, where the kubelet finds it. */
export function importImage(state: Pick<NodeState, 'containerdSocket'>, archive: string) {
  ctr(state, ['images', 'import', archive]);
}

function createCgroupRoot() {
  for (const hierarchy of cgroupHierarchies()) {
    const group = join(hierarchy, CGROUP_ROOT);
    mkdirSync(group, { recursive: true });
    // A new cpuset cgroup starts with no CPUs or memory nodes: give it its parent's.
    for (const file of ['cpuset.cpus', 'cpuset.mems']) {
      if (existsSync(join(hierarchy, file)) && readFileSync(join(group, file), 'utf8').trim() === '')
        writeFileSync(join(group, file), readFileSync(join(hierarchy, file), 'utf8'));
    }
  }
}

async function waitUntil(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
  log: () => string,
) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await Promise.resolve(check()).catch(() => false)) return;
    await sleep(200);
  }
  throw new Error(`${what} within ${timeoutMs / 1000}s; ${log()}`);
}

function assertRunning(state: NodeState, component: Component) {
  if (!isRunning(state, component))
    throw new Error(`${component} exited; its log ends:\n${tail(state.logs[component])}`);
}

/**
 * The `kubernetes` Service's endpoint: the control plane runs without an
 * endpoint reconciler, so nothing else writes it. kube-proxy reads the slice.
 */
async function publishKubernetesEndpoint(cp: ControlPlaneState) {
  const port = { name: 'https', port: RELAY_PORT, protocol: 'TCP' };
  const writes: [string, unknown][] = [
    [
      '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices',
      {
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: {
          name: 'kubernetes',
          namespace: 'default',
          labels: {
            'kubernetes.io/service-name': 'kubernetes',
            'endpointslice.kubernetes.io/managed-by': 'sigil-node',
          },
        },
        addressType: 'IPv4',
        endpoints: [{ addresses: [NODE_IP], conditions: { ready: true } }],
        ports: [port],
      },
    ],
    [
      '/api/v1/namespaces/default/endpoints',
      {
        apiVersion: 'v1',
        kind: 'Endpoints',
        metadata: {
          name: 'kubernetes',
          namespace: 'default',
          // The slice above is the source; the mirroring controller must not write a second one.
          labels: { 'endpointslice.kubernetes.io/skip-mirror': 'true' },
        },
        subsets: [{ addresses: [{ ip: NODE_IP }], ports: [port] }],
      },
    ],
  ];
  for (const [path, body] of writes) {
    const res = await apiRequest(cp, 'POST', path, body);
    if (res.status !== 201 && res.status !== 409) throw new Error(`POST ${path}: ${res.status} ${res.body}`);
  }
}

/** Starts the node's processes against a running control plane and waits until the node is Ready. */
export async function startNode(cp: ControlPlaneState, options: NodeOptions): Promise<NodeState> {
  const dir = join(cp.dir, 'node');
  for (const sub of ['logs', 'containerd', 'cni/net.d', 'cni/ipam', 'kubelet', 'pod-logs', 'pki'])
    mkdirSync(join(dir, sub), { recursive: true });
  assertNoOtherNode();
  const state: NodeState = {
    dir,
    containerdSocket: join(dir, 'containerd', 'containerd.sock'),
    pids: {},
    startTimes: {},
    snapshot: snapshotHost(),
    createdBridge: false,
    kubeProxyBin: join(options.binDir, 'kube-proxy'),
    logs: {},
  };
  saveNodeState(state);
  const started = (component: Component, child: ChildProcess) => {
    state.pids[component] = child.pid!;
    state.startTimes[component] = processStartTime(child.pid);
    saveNodeState(state);
  };
  const launch = (component: Component, bin: string, args: string[]) => {
    const log = join(dir, 'logs', `${component}.log`);
    state.logs[component] = log;
    started(component, spawnDetached(bin, args, log));
  };

  try {
    writeSysctl('net/ipv4/ip_forward', '1');
    writeSysctl('net/bridge/bridge-nf-call-iptables', '1');
    run('ip', ['link', 'add', BRIDGE, 'type', 'bridge']);
    state.createdBridge = true;
    saveNodeState(state);
    run('ip', ['addr', 'add', `${NODE_IP}/24`, 'dev', BRIDGE]);
    // The bridge names the cluster directory that owns it, for whoever finds it later.
    run('ip', ['link', 'set', BRIDGE, 'alias', cp.dir]);
    run('ip', ['link', 'set', BRIDGE, 'up']);
    createCgroupRoot();

    const containerdToml = join(dir, 'containerd', 'config.toml');
    writeFileSync(containerdToml, containerdConfig(dir, state.containerdSocket));
    writeFileSync(join(dir, 'cni', 'net.d', '10-sigil.conflist'), cniConfig(dir));
    launch('containerd', 'containerd', ['--config', containerdToml, '--log-level', 'warn']);
    await waitUntil(
      'containerd did not answer on its socket',
      () => {
        assertRunning(state, 'containerd');
        return tryRun('ctr', ['--address', state.containerdSocket, 'version']);
      },
      30_000,
      () => tail(state.logs.containerd),
    );
    const pauseArchive = join(IMAGE_DIR, 'pause.oci.tar');
    importImage(state, existsSync(pauseArchive) ? pauseArchive : writeImage(pauseImage(), 'pause.oci.tar'));

    const ports = { kubelet: await freePort(), healthz: await freePort() };
    const kubeletYaml = join(dir, 'kubelet', 'config.yaml');
    writeFileSync(kubeletYaml, kubeletConfig(dir, state.containerdSocket, ports, options));
    const bin = (name: string) => join(options.binDir, name);
    launch('kubelet', bin('kubelet'), [
      `--config=${kubeletYaml}`,
      `--kubeconfig=${cp.kubeconfig}`,
      `--root-dir=${join(dir, 'kubelet')}`,
      `--cert-dir=${join(dir, 'kubelet', 'pki')}`,
      `--hostname-override=${NODE_NAME}`,
      `--node-ip=${NODE_IP}`,
      '--v=1',
    ]);
    const cpPki = join(cp.dir, 'pki');
    // Pods trust the relay's CA (and the API server's, for anything that reaches it directly).
    const rootCaBundle = join(dir, 'pki', 'root-ca-bundle.crt');
    writeFileSync(
      rootCaBundle,
      readFileSync(join(dir, 'pki', 'in-cluster-ca.crt'), 'utf8') +
        readFileSync(join(cpPki, 'ca.crt'), 'utf8'),
    );
    const relayConfig = join(dir, 'apiserver-relay.json');
    writeFileSync(
      relayConfig,
      JSON.stringify({
        listenHost: NODE_IP,
        listenPort: RELAY_PORT,
        certFile: join(dir, 'pki', 'apiserver-relay.crt'),
        keyFile: join(dir, 'pki', 'apiserver-relay.key'),
        upstreamPort: Number(new URL(cp.server).port),
        upstreamCaFile: join(cpPki, 'ca.crt'),
      } satisfies RelayConfig),
    );
    launch('apiserver-relay', process.execPath, [
      fileURLToPath(new URL('./apiserver-relay.ts', import.meta.url)),
      relayConfig,
    ]);
    await publishKubernetesEndpoint(cp);
    launch('kube-controller-manager', bin('kube-controller-manager'), [
      `--kubeconfig=${cp.kubeconfig}`,
      `--authentication-kubeconfig=${cp.kubeconfig}`,
      `--authorization-kubeconfig=${cp.kubeconfig}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${await freePort()}`,
      '--leader-elect=false',
      `--service-account-private-key-file=${join(cpPki, 'sa.key')}`,
      `--root-ca-file=${rootCaBundle}`,
      `--cluster-signing-cert-file=${join(dir, 'pki', 'cluster-signing.crt')}`,
      `--cluster-signing-key-file=${join(dir, 'pki', 'cluster-signing.key')}`,
      '--use-service-account-credentials=false',
      '--cluster-name=sigil-local',
      '--service-cluster-ip-range=10.96.0.0/16',
      '--controllers=*',
    ]);
    launch('kube-scheduler', bin('kube-scheduler'), [
      `--kubeconfig=${cp.kubeconfig}`,
      `--authentication-kubeconfig=${cp.kubeconfig}`,
      `--authorization-kubeconfig=${cp.kubeconfig}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${await freePort()}`,
      '--leader-elect=false',
    ]);
    launch('kube-proxy', bin('kube-proxy'), [
      `--kubeconfig=${cp.kubeconfig}`,
      '--proxy-mode=iptables',
      `--hostname-override=${NODE_NAME}`,
      `--cluster-cidr=${POD_SUBNET}`,
      `--healthz-bind-address=127.0.0.1:${await freePort()}`,
      `--metrics-bind-address=127.0.0.1:${await freePort()}`,
      `--nodeport-addresses=${NODE_IP}/32`,
      '--iptables-localhost-nodeports=false',
      // Leave the host's conntrack table size and timeouts as they are.
      '--conntrack-max-per-core=0',
      '--conntrack-tcp-timeout-established=0',
      '--conntrack-tcp-timeout-close-wait=0',
    ]);
    const corefilePath = join(dir, 'Corefile');
    writeFileSync(corefilePath, corefile(cp.kubeconfig));
    launch('coredns', bin('coredns'), ['-conf', corefilePath]);

    await waitUntil(
      'the node did not become Ready and schedulable',
      async () => {
        for (const component of COMPONENTS) assertRunning(state, component);
        const res = await apiRequest(cp, 'GET', `/api/v1/nodes/${NODE_NAME}`);
        if (res.status !== 200) return false;
        const node = JSON.parse(res.body) as {
          spec: { taints?: { key: string }[] };
          status: { conditions?: { type: string; status: string }[] };
        };
        const ready = node.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
        const tainted = node.spec.taints?.some((t) => t.key.startsWith('node.kubernetes.io/'));
        return !!ready && !tainted;
      },
      120_000,
      () => `the kubelet's log ends:\n${tail(state.logs.kubelet)}`,
    );
    return state;
  } catch (err) {
    await stopNode(state);
    throw err;
  }
}

/** With SIGIL_NODE_DEBUG=1, prints how long each step of stopNode took. */
function debugClock(): (what: string) => void {
  let last = Date.now();
  return (what) => {
    if (process.env.SIGIL_NODE_DEBUG !== '1') return;
    console.error(`[node] ${what} in ${Date.now() - last} ms`);
    last = Date.now();
  };
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
    await sleep(50);
  }
  return !isAlive(pid);
}

async function terminate(pid: number | undefined, graceMs = 10_000) {
  if (!isAlive(pid)) return;
  try {
    process.kill(pid!, 'SIGTERM');
  } catch {}
  if (await waitForExit(pid!, graceMs)) return;
  try {
    process.kill(pid!, 'SIGKILL');
  } catch {}
  await waitForExit(pid!, 5_000);
}

/** PIDs of the shims this node's containerd started (it records each in its state directory). */
function shimPids(state: NodeState): number[] {
  const tasks = join(state.dir, 'containerd', 'state', 'io.containerd.runtime.v2.task');
  const pids: number[] = [];
  if (!existsSync(tasks)) return pids;
  for (const namespace of readdirSync(tasks)) {
    for (const id of readdirSync(join(tasks, namespace))) {
      try {
        pids.push(Number(readFileSync(join(tasks, namespace, id, 'shim.pid'), 'utf8').trim()));
      } catch {}
    }
  }
  // A shim's command line names its containerd's socket: a reused PID does not.
  return pids.filter((pid) => pid > 0 && commandLineContains(pid, state.containerdSocket));
}

function runningTasks(state: NodeState): string[] {
  try {
    return ctr(state, ['tasks', 'ls'])
      .split('\n')
      .slice(1)
      .filter((line) => / RUNNING$/.test(line.trim()) || /\sRUNNING\s*$/.test(line))
      .map((line) => line.split(/\s+/)[0]!);
  } catch {
    return [];
  }
}

/**
 * Stops the node and removes what it created on the host. Safe to call on a
 * node that only partly started, or twice.
 */
export async function stopNode(state: NodeState) {
  const step = debugClock();
  // The cluster goes away with its node, so pods are not drained through the API: their processes are
  // killed, and removing their network namespaces removes their veth interfaces.
  await Promise.all(
    (
      [
        'kube-controller-manager',
        'kube-scheduler',
        'kubelet',
        'kube-proxy',
        'coredns',
        'apiserver-relay',
      ] as const
    ).map((c) => terminate(ownPid(state, c))),
  );
  step('components stopped');

  // Kill and delete the pods' tasks, then any process left in the node's cgroups.
  if (isRunning(state, 'containerd')) {
    for (const id of runningTasks(state))
      tryRun('ctr', [
        '--address',
        state.containerdSocket,
        '-n',
        'k8s.io',
        'tasks',
        'kill',
        '-s',
        'SIGKILL',
        id,
      ]);
    await sleep(200);
    try {
      for (const line of ctr(state, ['tasks', 'ls']).split('\n').slice(1)) {
        const id = line.split(/\s+/)[0];
        if (id)
          tryRun('ctr', ['--address', state.containerdSocket, '-n', 'k8s.io', 'tasks', 'delete', '-f', id]);
      }
    } catch {}
  }
  for (const pid of processesInCgroup(CGROUP_ROOT)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
  step('tasks killed');
  const shims = shimPids(state);
  await terminate(ownPid(state, 'containerd'));
  await Promise.all(shims.map((pid) => terminate(pid, 2_000)));
  step('containerd and shims stopped');

  // kube-proxy removes its own chains; the snapshot catches the kubelet's and anything else new.
  if (existsSync(state.kubeProxyBin)) tryRun(state.kubeProxyBin, ['--cleanup', '--proxy-mode=iptables']);
  removeNewChains(state.snapshot);
  step('iptables cleaned');

  for (const netns of newNetns(state.snapshot)) {
    unmountAll([netns]);
    rmSync(netns, { force: true });
  }
  unmountAll([state.dir]);
  // Connections of the pods' addresses, so a later node does not inherit their NAT state.
  tryRun('conntrack', ['-D', '-s', POD_SUBNET]);
  tryRun('conntrack', ['-D', '-d', POD_SUBNET]);
  if (state.createdBridge) {
    for (const port of bridgePorts(BRIDGE)) tryRun('ip', ['link', 'delete', port]);
    if (interfaceExists(BRIDGE)) tryRun('ip', ['link', 'delete', BRIDGE]);
  }
  removeCgroup(CGROUP_ROOT);
  removeNewPaths(state.snapshot);
  restoreSysctls(state.snapshot);
  step('host restored');
  if (existsSync(join(state.dir, 'node.json'))) {
    state.pids = {};
    state.startTimes = {};
    saveNodeState(state);
  }
}

/** What a node left on the host: empty when stopNode did its job. */
export function leftovers(state: NodeState): string[] {
  const found: string[] = [];
  for (const component of COMPONENTS) {
    const pid = ownPid(state, component);
    if (pid) found.push(`${component} (pid ${pid})`);
  }
  for (const pid of shimPids(state)) if (isAlive(pid)) found.push(`shim (pid ${pid})`);
  for (const pid of processesInCgroup(CGROUP_ROOT)) found.push(`process ${pid} in ${CGROUP_ROOT}`);
  if (interfaceExists(BRIDGE)) found.push(`interface ${BRIDGE}`);
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => !!p && (p.startsWith(`${state.dir}/`) || p.startsWith('/run/netns/cni-')));
  for (const mount of mounts) found.push(`mount ${mount}`);
  for (const netns of newNetns(state.snapshot)) found.push(`netns ${netns}`);
  for (const [command, table, chain] of newChains(state.snapshot))
    found.push(`${command} -t ${table} chain ${chain}`);
  for (const hierarchy of cgroupHierarchies())
    if (existsSync(join(hierarchy, CGROUP_ROOT))) found.push(`cgroup ${join(hierarchy, CGROUP_ROOT)}`);
  return found;
}
