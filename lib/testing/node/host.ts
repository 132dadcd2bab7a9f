// What a node changes on its host, recorded before it starts and undone by
// `down`: sysctls, iptables chains, mounts, cgroups, network interfaces and
// directories outside the cluster directory. Only what was recorded as new is
// removed; whatever existed before is left as it was.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Sysctls the kubelet, kube-proxy or the CNI bridge may set, restored on down. */
export const TOUCHED_SYSCTLS = [
  'net/ipv4/ip_forward',
  'net/bridge/bridge-nf-call-iptables',
  'net/bridge/bridge-nf-call-ip6tables',
  'net/ipv4/conf/all/route_localnet',
  'vm/overcommit_memory',
  'vm/panic_on_oom',
  'kernel/panic',
  'kernel/panic_on_oops',
  'kernel/keys/root_maxkeys',
  'kernel/keys/root_maxbytes',
];

/** Host directories a kubelet or containerd creates at fixed paths whatever their flags say. */
export const HOST_PATHS = [
  '/var/lib/kubelet',
  '/var/log/containers',
  '/var/log/pods',
  '/var/lib/cni',
  '/run/netns',
  '/var/run/netns',
  '/run/containerd',
  '/etc/cni',
  '/opt/cni',
  '/opt/containerd',
  '/var/lib/containerd',
  '/etc/kubernetes',
];

const IPTABLES = ['iptables', 'ip6tables'] as const;
const TABLES = ['filter', 'nat', 'mangle', 'raw'] as const;

export interface HostSnapshot {
  sysctls: Record<string, string>;
  /** `${command} ${table}` → chain names. */
  chains: Record<string, string[]>;
  /** HOST_PATHS that existed. */
  paths: string[];
  /** Entries of /run/netns. */
  netns: string[];
}

export function run(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Runs a command whose failure is expected at times (an object already gone). */
export function tryRun(command: string, args: string[]): boolean {
  return spawnSync(command, args, { stdio: 'ignore' }).status === 0;
}

function readSysctl(name: string): string | undefined {
  try {
    return readFileSync(join('/proc/sys', name), 'utf8').trim();
  } catch {
    return undefined;
  }
}

export function writeSysctl(name: string, value: string) {
  writeFileSync(join('/proc/sys', name), value);
}

function chains(command: string, table: string): string[] {
  const out = spawnSync(`${command}-save`, ['-t', table], { encoding: 'utf8' });
  if (out.status !== 0) return [];
  return out.stdout
    .split('\n')
    .filter((line) => line.startsWith(':'))
    .map((line) => line.slice(1).split(' ')[0]!);
}

export function snapshotHost(): HostSnapshot {
  const sysctls: Record<string, string> = {};
  for (const name of TOUCHED_SYSCTLS) {
    const value = readSysctl(name);
    if (value !== undefined) sysctls[name] = value;
  }
  const chainMap: Record<string, string[]> = {};
  for (const command of IPTABLES)
    for (const table of TABLES) chainMap[`${command} ${table}`] = chains(command, table);
  return {
    sysctls,
    chains: chainMap,
    paths: HOST_PATHS.filter((path) => existsSync(path)),
    netns: existsSync('/run/netns') ? readdirSync('/run/netns') : [],
  };
}

export function restoreSysctls(snapshot: HostSnapshot) {
  for (const [name, value] of Object.entries(snapshot.sysctls)) {
    if (readSysctl(name) !== value) {
      try {
        writeSysctl(name, value);
      } catch {}
    }
  }
}

/** Chains created since the snapshot, as [command, table, chain]. */
export function newChains(snapshot: HostSnapshot): [string, string, string][] {
  const found: [string, string, string][] = [];
  for (const command of IPTABLES) {
    for (const table of TABLES) {
      const before = new Set(snapshot.chains[`${command} ${table}`] ?? []);
      for (const chain of chains(command, table)) if (!before.has(chain)) found.push([command, table, chain]);
    }
  }
  return found;
}

/** Removes chains created since the snapshot, and every rule that jumps to them. */
export function removeNewChains(snapshot: HostSnapshot) {
  const created = newChains(snapshot);
  for (const command of IPTABLES) {
    for (const table of TABLES) {
      const mine = new Set(
        created.filter(([c, t]) => c === command && t === table).map(([, , chain]) => chain),
      );
      if (mine.size === 0) continue;
      const save = spawnSync(`${command}-save`, ['-t', table], { encoding: 'utf8' }).stdout ?? '';
      for (const line of save.split('\n')) {
        const rule = /^-A (\S+) (.*)$/.exec(line);
        if (!rule || mine.has(rule[1]!)) continue;
        const target = /-j (\S+)/.exec(rule[2]!)?.[1];
        if (target && mine.has(target)) {
          // iptables-save quotes arguments the shell way; split them the same way.
          tryRun(command, ['-t', table, '-D', rule[1]!, ...shellWords(rule[2]!)]);
        }
      }
      for (const chain of mine) tryRun(command, ['-t', table, '-F', chain]);
      for (const chain of mine) tryRun(command, ['-t', table, '-X', chain]);
    }
  }
}

function shellWords(text: string): string[] {
  const words: string[] = [];
  const pattern = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (const match of text.matchAll(pattern))
    words.push(match[1] !== undefined ? match[1].replace(/\\(.)/g, '$1') : match[2]!);
  return words;
}

/** Mount points at or under any of `roots`, deepest first. */
export function mountsUnder(roots: string[]): string[] {
  const points = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((point): point is string => !!point)
    .map((point) => point.replace(/\\040/g, ' '))
    .filter((point) => roots.some((root) => point === root || point.startsWith(`${root}/`)));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

export function unmountAll(roots: string[]) {
  // Nested and stacked mounts: repeat until nothing under the roots is mounted.
  for (let pass = 0; pass < 5; pass++) {
    const points = mountsUnder(roots);
    if (points.length === 0) return;
    for (const point of points) tryRun('umount', ['-l', point]);
  }
}

/** Network namespaces under /run/netns that appeared since the snapshot. */
export function newNetns(snapshot: HostSnapshot): string[] {
  if (!existsSync('/run/netns')) return [];
  const before = new Set(snapshot.netns);
  return readdirSync('/run/netns')
    .filter((name) => !before.has(name))
    .map((name) => join('/run/netns', name));
}

/** Removes HOST_PATHS that did not exist at the snapshot (their mounts first). */
export function removeNewPaths(snapshot: HostSnapshot) {
  const created = HOST_PATHS.filter((path) => !snapshot.paths.includes(path) && existsSync(path));
  unmountAll(created);
  for (const path of created) rmSync(path, { recursive: true, force: true });
}

/** The cgroup v1 hierarchies (cpu, memory, pids, …) mounted on this host. */
export function cgroupHierarchies(): string[] {
  const base = '/sys/fs/cgroup';
  if (!existsSync(base)) return [];
  return readdirSync(base)
    .map((name) => join(base, name))
    .filter((path) => {
      try {
        return statSync(path).isDirectory() && existsSync(join(path, 'cgroup.procs'));
      } catch {
        return false;
      }
    });
}

/** Processes in `group` (e.g. /sigil) or below, in any hierarchy. */
export function processesInCgroup(group: string): number[] {
  const pids = new Set<number>();
  const walk = (dir: string) => {
    if (!existsSync(dir)) return;
    try {
      for (const line of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n'))
        if (line) pids.add(Number(line));
      for (const entry of readdirSync(dir, { withFileTypes: true }))
        if (entry.isDirectory()) walk(join(dir, entry.name));
    } catch {}
  };
  for (const hierarchy of cgroupHierarchies()) walk(join(hierarchy, group));
  return [...pids];
}

/** Removes `group` and the cgroups below it, deepest first, in every hierarchy. */
export function removeCgroup(group: string) {
  const remove = (dir: string) => {
    if (!existsSync(dir)) return;
    try {
      for (const entry of readdirSync(dir, { withFileTypes: true }))
        if (entry.isDirectory()) remove(join(dir, entry.name));
      rmdirSync(dir);
    } catch {}
  };
  for (const hierarchy of cgroupHierarchies()) remove(join(hierarchy, group));
}

/** Interfaces whose master is `bridge` (the pods' veth ends on the host). */
export function bridgePorts(bridge: string): string[] {
  const dir = `/sys/class/net/${bridge}/brif`;
  return existsSync(dir) ? readdirSync(dir) : [];
}

export function interfaceExists(name: string): boolean {
  return existsSync(`/sys/class/net/${name}`);
}

/**
 * A process's start time (clock ticks since boot, /proc/<pid>/stat field 22):
 * with its PID, it names one process, even after the PID is reused.
 */
export function processStartTime(pid: number | undefined): string | undefined {
  if (!pid) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may hold spaces.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** Whether `pid` is running a command line that contains `text`. */
export function commandLineContains(pid: number, text: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').includes(text);
  } catch {
    return false;
  }
}
