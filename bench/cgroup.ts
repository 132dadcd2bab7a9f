// A memory cgroup with a container's limit, for running a benchmark's process as the chart's
// container would run it: the kernel refuses it memory past the limit (and kills it), and Node
// sizes its heap from the limit as it does in a pod. Needs root and a cgroup v1 memory controller
// or cgroup v2 with the memory controller delegated; elsewhere `memoryCgroup` returns undefined and
// the benchmark says it ran without one.
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface MemoryCgroup {
  /** The limit, in MiB. */
  limitMiB: number;
  /** Wraps a command so that it starts inside the cgroup: [file, ...args] for spawn. */
  wrap: (command: string[]) => string[];
  /** The most the cgroup's processes held at once (MiB), and how often the kernel killed one for memory. */
  stats: () => { peakMiB: number; oomKills: number };
  /** Removes the cgroup; its processes must have exited. */
  remove: () => void;
}

const V1 = '/sys/fs/cgroup/memory';
const V2 = '/sys/fs/cgroup';

/** This process's own cgroup v2 directory: a new cgroup goes below it, so the runner's limits still hold. */
function ownV2Cgroup(): string | undefined {
  const line = readFileSync('/proc/self/cgroup', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('0::'));
  return line ? join(V2, line.slice(3)) : undefined;
}

export function memoryCgroup(name: string, limitMiB: number): MemoryCgroup | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const v1 = existsSync(join(V1, 'memory.limit_in_bytes'));
  const parent = v1 ? V1 : existsSync(join(V2, 'cgroup.controllers')) ? ownV2Cgroup() : undefined;
  if (!parent) return undefined;
  if (!v1 && !readFileSync(join(parent, 'cgroup.subtree_control'), 'utf8').split(/\s+/).includes('memory'))
    return undefined;
  const dir = join(parent, `${name}-${process.pid}`);
  const bytes = String(limitMiB * 1048576);
  try {
    // A cgroup left by an earlier run of the same pid is reused only if empty, and its peak restarts.
    if (existsSync(dir)) rmdirSync(dir);
    mkdirSync(dir);
    if (v1) {
      writeFileSync(join(dir, 'memory.limit_in_bytes'), bytes);
      // No swapping past the limit either, where the kernel accounts swap: the kernel kills instead, as in a pod.
      if (existsSync(join(dir, 'memory.memsw.limit_in_bytes')))
        writeFileSync(join(dir, 'memory.memsw.limit_in_bytes'), bytes);
    } else {
      writeFileSync(join(dir, 'memory.max'), bytes);
      if (existsSync(join(dir, 'memory.swap.max'))) writeFileSync(join(dir, 'memory.swap.max'), '0');
    }
  } catch {
    return undefined;
  }
  const read = (file: string) => readFileSync(join(dir, file), 'utf8');
  return {
    limitMiB,
    // The shell moves itself into the cgroup, then becomes the command: its children stay inside.
    wrap: (command) => [
      '/bin/sh',
      '-c',
      `echo $$ > ${join(dir, 'cgroup.procs')} && exec "$@"`,
      'sh',
      ...command,
    ],
    stats: () => {
      if (v1) {
        const oom = /oom_kill (\d+)/.exec(read('memory.oom_control'))?.[1];
        return {
          peakMiB: Number(read('memory.max_usage_in_bytes')) / 1048576,
          oomKills: Number(oom ?? 0),
        };
      }
      const peak = existsSync(join(dir, 'memory.peak')) ? Number(read('memory.peak')) : Number.NaN;
      return {
        peakMiB: peak / 1048576,
        oomKills: Number(/oom_kill (\d+)/.exec(read('memory.events'))?.[1] ?? 0),
      };
    },
    remove: () => {
      try {
        rmdirSync(dir);
      } catch {
        // Still in use or gone: the kernel removes nothing itself, but an empty cgroup costs nothing.
      }
    },
  };
}
