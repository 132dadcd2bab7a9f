// A cluster: the local control plane, and with `node: true` a real node beside
// it. The API-server-only mode stays what the fast integration tests use.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import {
  type ControlPlaneState,
  readState,
  removeDir,
  startControlPlane,
  stopControlPlane,
} from '../controlplane.ts';
import { REPO_ROOT } from './images.ts';
import {
  assertNoOtherNode,
  missingHostCommands,
  type NodeState,
  nodeUnsupportedReasons,
  readNodeState,
  startNode,
  stopNode,
} from './node.ts';
import { kubeletClientPki } from './pki.ts';

export interface ClusterOptions {
  dir: string;
  /** Start a real node (kubelet, containerd, kube-controller-manager, scheduler, kube-proxy, DNS). */
  node: boolean;
  /** Persistent clusters outlive the process that started them (make cluster-up). */
  persistent?: boolean;
  /** The kubelet's syncFrequency (Secret and ConfigMap refresh in running pods); default 1m. */
  syncFrequency?: string;
}

export interface Cluster {
  controlPlane: ControlPlaneState;
  node?: NodeState | undefined;
}

/** Why a node cannot run here (empty when it can), including host packages that are missing. */
export function nodeBlockers(): string[] {
  const reasons = nodeUnsupportedReasons();
  if (reasons.length > 0) return reasons;
  const missing = missingHostCommands();
  return missing.length > 0 ? [`missing ${missing.join(', ')} (hack/node-packages.sh installs them)`] : [];
}

/** The binaries a node runs, built once per machine by hack/build-tools.sh node. */
export function nodeBinaryDir(): string {
  const script = join(REPO_ROOT, 'hack', 'build-tools.sh');
  execFileSync(script, ['node'], { stdio: ['ignore', 'inherit', 'inherit'] });
  return execFileSync(script, ['--print-dir'], { encoding: 'utf8' }).trim();
}

export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  if (!options.node) {
    return {
      controlPlane: await startControlPlane({ dir: options.dir, persistent: options.persistent ?? false }),
    };
  }
  const blockers = nodeBlockers();
  if (blockers.length > 0) throw new Error(`this machine cannot run a node: ${blockers.join('; ')}`);
  assertNoOtherNode();
  const binDir = nodeBinaryDir();
  const pki = await kubeletClientPki(options.dir);
  // The node's processes are stopped by stopCluster, so its control plane is too.
  const controlPlane = await startControlPlane({
    dir: options.dir,
    persistent: true,
    apiserverArgs: pki.apiserverArgs,
    // kube-controller-manager creates ServiceAccounts and their tokens' CA, so pods get tokens as on any cluster.
    serviceAccountAdmission: true,
  });
  try {
    const node = await startNode(controlPlane, {
      binDir,
      ...(options.syncFrequency ? { syncFrequency: options.syncFrequency } : {}),
    });
    return { controlPlane, node };
  } catch (err) {
    await stopControlPlane(controlPlane);
    throw err;
  }
}

/** Stops the node (if any) and the control plane, and removes the cluster directory. */
export async function stopCluster(dir: string): Promise<void> {
  const controlPlane = readState(dir);
  const node = readNodeState(dir);
  if (node) await stopNode(node);
  if (controlPlane) await stopControlPlane(controlPlane);
  removeDir(dir);
}
