// Runs `sigil operator` as a real child process (Node runs the TypeScript
// sources directly), so tests can SIGKILL it and read its logs.
import { type ChildProcess, spawn } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../lib/testing/controlplane.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface OperatorProcess {
  child: ChildProcess;
  metricsPort: number;
  logs: string[];
  metrics: () => Promise<string>;
  exited: Promise<number | null>;
}

export async function spawnOperator(kubeconfig: string, args: string[]): Promise<OperatorProcess> {
  const metricsPort = await freePort();
  const child = spawn(
    process.execPath,
    [
      join(ROOT, 'cli', 'main.ts'),
      'operator',
      '--kubeconfig',
      kubeconfig,
      '--metrics-address',
      `127.0.0.1:${metricsPort}`,
      ...args,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_NO_WARNINGS: '1' } },
  );
  const logs: string[] = [];
  const collect = (d: Buffer) => logs.push(...d.toString().split('\n').filter(Boolean));
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return {
    child,
    metricsPort,
    logs,
    exited,
    metrics: async () => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text(),
  };
}

/** The value of an unlabelled or summed metric in Prometheus text. */
export function metricValue(text: string, name: string, labels = ''): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (!(rest.startsWith(' ') || rest.startsWith('{'))) continue;
    if (labels && !rest.includes(labels)) continue;
    total += Number(line.split(' ').pop());
  }
  return total;
}
