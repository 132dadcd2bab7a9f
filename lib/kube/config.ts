import { createHash } from 'node:crypto';
import type { AgentOptions } from 'node:https';
import { type Cluster, KubeConfig } from '@kubernetes/client-node';

/**
 * Loads a kubeconfig: an explicit path first, then $KUBECONFIG, then the
 * in-cluster service account, then ~/.kube/config. API requests made with it
 * reuse their connections (see reuseConnections).
 */
export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  if (path) {
    kc.loadFromFile(path);
  } else if (process.env.KUBECONFIG) {
    kc.loadFromFile(process.env.KUBECONFIG);
  } else if (process.env.KUBERNETES_SERVICE_HOST) {
    kc.loadFromCluster();
  } else {
    kc.loadFromDefault();
  }
  if (!kc.getCurrentCluster()) {
    throw new Error(
      'no Kubernetes cluster configured: pass --kubeconfig, set KUBECONFIG, or run inside a cluster',
    );
  }
  return reuseConnections(kc);
}

interface Dispatcher {
  close(): Promise<void>;
}
type DispatcherFactory = (cluster: Cluster | null, options: AgentOptions) => Dispatcher | undefined;

/** At most this many TLS configurations keep a connection pool (a rotated client certificate makes a new one). */
const MAX_POOLS = 4;

function fingerprint(cluster: Cluster | null, o: AgentOptions): string {
  const h = createHash('sha256');
  const add = (v: unknown) => {
    const parts = Array.isArray(v) ? v : [v];
    for (const p of parts) {
      h.update(p === undefined ? '\u0000undefined' : Buffer.isBuffer(p) ? p : String(p));
      h.update('\u0000');
    }
  };
  for (const v of [
    cluster?.server,
    cluster?.proxyUrl,
    cluster?.skipTLSVerify,
    o.ca,
    o.cert,
    o.key,
    o.pfx,
    o.passphrase,
    o.rejectUnauthorized,
    o.servername,
  ])
    add(v);
  return h.digest('hex');
}

/**
 * client-node 2.0 builds a new undici Agent for every API call, so every
 * request pays a new TCP connection and TLS handshake (on both ends; most of
 * the operator's CPU during a burst of issuance). This keeps one Agent per
 * distinct TLS configuration, so requests share keep-alive connections like
 * client-go's do. A rotated client certificate or CA changes the fingerprint
 * and gets a fresh Agent; the oldest one beyond MAX_POOLS is closed once its
 * requests finish. If client-node changes the hook, requests still work,
 * just without reuse (a unit test notices).
 */
export function reuseConnections(kc: KubeConfig): KubeConfig {
  const target = kc as unknown as { createDispatcher?: DispatcherFactory };
  const create = target.createDispatcher;
  if (typeof create !== 'function') return kc;
  const pools = new Map<string, Dispatcher | undefined>();
  target.createDispatcher = (cluster, options) => {
    const key = fingerprint(cluster, options);
    if (pools.has(key)) return pools.get(key);
    const dispatcher = create.call(kc, cluster, options);
    pools.set(key, dispatcher);
    if (pools.size > MAX_POOLS) {
      const [oldest] = pools.keys();
      const evicted = pools.get(oldest!);
      pools.delete(oldest!);
      evicted?.close().catch(() => undefined);
    }
    return dispatcher;
  };
  return kc;
}
