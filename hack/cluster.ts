// make cluster-up / cluster-down: a persistent local control plane in .cluster/.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  isHealthy,
  readState,
  removeDir,
  serverVersion,
  startControlPlane,
  stopControlPlane,
} from '../lib/testing/controlplane.ts';

const dir = resolve(process.env.SIGIL_CLUSTER_DIR ?? '.cluster');

async function up() {
  const existing = readState(dir);
  if (existing && (await isHealthy(existing))) {
    console.log(`control plane already running at ${existing.server}`);
    console.log(`kube-apiserver ${await serverVersion(existing)}; kubeconfig: ${existing.kubeconfig}`);
    return;
  }
  if (existing) await stopControlPlane(existing);
  if (existsSync(dir)) removeDir(dir);
  const state = await startControlPlane({ dir, persistent: true });
  console.log(`control plane running at ${state.server} (etcd ${state.etcdUrl})`);
  console.log(`kube-apiserver ${await serverVersion(state)}; kubeconfig: ${state.kubeconfig}`);
  console.log(
    `try: KUBECONFIG=${join(dir, 'kubeconfig')} npx sigil status -A   (stop with: make cluster-down)`,
  );
}

async function down() {
  const state = readState(dir);
  if (!state) {
    console.log('no control plane running');
    return;
  }
  await stopControlPlane(state);
  removeDir(dir);
  console.log('control plane stopped');
}

const command = process.argv[2];
if (command === 'up') await up();
else if (command === 'down') await down();
else {
  console.error('usage: node hack/cluster.ts up|down');
  process.exit(2);
}
