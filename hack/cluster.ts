// make cluster-up / cluster-down: a persistent local cluster in .cluster/.
// With a real node when this machine can run one (root, cgroups, overlayfs;
// SIGIL_NODE=0 to skip it), else the API server and etcd alone.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { isHealthy, readState, removeDir, serverVersion } from '../lib/testing/controlplane.ts';
import { nodeBinaryDir, nodeBlockers, startCluster, stopCluster } from '../lib/testing/node/cluster.ts';
import { IMAGE_DIR, REPO_ROOT } from '../lib/testing/node/images.ts';
import { NODE_NAME } from '../lib/testing/node/layout.ts';
import {
  importImage,
  missingHostCommands,
  nodeUnsupportedReasons,
  readNodeState,
} from '../lib/testing/node/node.ts';

const dir = resolve(process.env.SIGIL_CLUSTER_DIR ?? '.cluster');

/** Whether to start a node, and if not, why not (printed). Installs the host packages when that is all that is missing. */
function wantNode(): boolean {
  if (process.env.SIGIL_NODE === '0') {
    console.log('SIGIL_NODE=0: starting the API server and etcd only');
    return false;
  }
  if (nodeUnsupportedReasons().length === 0 && missingHostCommands().length > 0) {
    execFileSync(join(REPO_ROOT, 'hack', 'node-packages.sh'), { stdio: 'inherit' });
  }
  const blockers = nodeBlockers();
  if (blockers.length === 0) return true;
  console.log(`no node on this machine: ${blockers.join('; ')}`);
  console.log('starting the API server and etcd only (pods are stored but never run)');
  return false;
}

async function up() {
  const existing = readState(dir);
  if (existing && (await isHealthy(existing))) {
    const node = readNodeState(dir);
    console.log(`cluster already running at ${existing.server}${node ? ` with node ${NODE_NAME}` : ''}`);
    console.log(`kube-apiserver ${await serverVersion(existing)}; kubeconfig: ${existing.kubeconfig}`);
    return;
  }
  if (existing || existsSync(dir)) await stopCluster(dir);
  const node = wantNode();
  const started = Date.now();
  // SIGIL_KUBELET_SYNC=5s: Secrets reach running pods in seconds instead of about a minute.
  const syncFrequency = process.env.SIGIL_KUBELET_SYNC;
  const cluster = await startCluster({
    dir,
    node,
    persistent: true,
    ...(syncFrequency ? { syncFrequency } : {}),
  });
  const state = cluster.controlPlane;
  if (cluster.node) {
    const archives = existsSync(IMAGE_DIR)
      ? readdirSync(IMAGE_DIR).filter((f) => f.startsWith('sigil-'))
      : [];
    for (const archive of archives) importImage(cluster.node, join(IMAGE_DIR, archive));
    console.log(
      `cluster with node ${NODE_NAME} running at ${state.server} (up in ${((Date.now() - started) / 1000).toFixed(1)} s)`,
    );
    console.log(`kubectl: ${join(nodeBinaryDir(), 'kubectl')} --kubeconfig ${state.kubeconfig}`);
    if (archives.length > 0) console.log(`images loaded into the node: ${archives.join(', ')}`);
    else console.log('no Sigil image loaded yet: make image builds and loads it');
  } else {
    console.log(`control plane running at ${state.server} (etcd ${state.etcdUrl})`);
  }
  console.log(`kube-apiserver ${await serverVersion(state)}; kubeconfig: ${state.kubeconfig}`);
  console.log(
    `try: KUBECONFIG=${join(dir, 'kubeconfig')} bin/kubectl-sigil status -A   (make build first; stop with: make cluster-down)`,
  );
}

async function down() {
  if (!readState(dir) && !readNodeState(dir)) {
    if (existsSync(dir)) removeDir(dir);
    console.log('no cluster running');
    return;
  }
  const started = Date.now();
  await stopCluster(dir);
  console.log(`cluster stopped in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

const command = process.argv[2];
if (command === 'up') await up();
else if (command === 'down') await down();
else {
  console.error('usage: node hack/cluster.ts up|down');
  process.exit(2);
}
