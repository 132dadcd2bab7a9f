// kubectl and helm against a local cluster, as a user runs them, and the chart
// installed from the image this checkout builds.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { chartImage, IMAGE_DIR, REPO_ROOT } from './images.ts';
import { importImage, type NodeState } from './node.ts';

export interface ClusterTools {
  kubectl: (...args: string[]) => string;
  helm: (...args: string[]) => string;
  /** helm install of charts/sigil with the built image (already in the node), waiting for its pods. */
  installChart: (release: string, namespace: string, extraArgs?: string[]) => void;
}

/**
 * The project's kubectl and helm (built once per machine by hack/build-tools.sh) with the cluster's
 * kubeconfig; helm's caches and settings under `dir`. A failing command throws with its output.
 */
export function clusterTools(binDir: string, kubeconfig: string, dir: string): ClusterTools {
  const env = {
    ...process.env,
    KUBECONFIG: kubeconfig,
    HELM_CACHE_HOME: join(dir, 'helm', 'cache'),
    HELM_CONFIG_HOME: join(dir, 'helm', 'config'),
    HELM_DATA_HOME: join(dir, 'helm', 'data'),
  };
  const run = (bin: string, args: string[], timeoutMs: number) => {
    try {
      return execFileSync(join(binDir, bin), args, {
        encoding: 'utf8',
        env,
        timeout: timeoutMs,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new Error(`${bin} ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
    }
  };
  const helm = (...args: string[]) => run('helm', args, 240_000);
  return {
    kubectl: (...args: string[]) => run('kubectl', args, 120_000),
    helm,
    installChart: (release, namespace, extraArgs = []) => {
      const image = chartImage();
      helm(
        'install',
        release,
        join(REPO_ROOT, 'charts', 'sigil'),
        '--namespace',
        namespace,
        '--create-namespace',
        '--set',
        `image.repository=${image.slice(0, image.lastIndexOf(':'))}`,
        '--set',
        `image.tag=${image.slice(image.lastIndexOf(':') + 1)}`,
        // The image is already in the node's containerd; there is no registry to pull from.
        '--set',
        'image.pullPolicy=Never',
        ...extraArgs,
        '--wait',
        '--timeout=180s',
      );
    },
  };
}

/** Imports the archive `make image` wrote for the chart's image into the node. */
export function importChartImage(node: Pick<NodeState, 'containerdSocket'>): string {
  const image = chartImage();
  const archive = join(IMAGE_DIR, `sigil-${image.slice(image.lastIndexOf(':') + 1)}.oci.tar`);
  if (!existsSync(archive)) throw new Error(`${archive} is missing: make image writes it`);
  importImage(node, archive);
  return image;
}

/** helm, built with the control plane's tools rather than the node's. */
export function ensureHelm() {
  execFileSync(join(REPO_ROOT, 'hack', 'build-tools.sh'), ['helm'], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
}
