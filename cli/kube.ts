// Small API helpers for the CLI commands.
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { type Certificate, GROUP, type Issuer, Plural, VERSION } from '../lib/api/types.ts';
import { loadKubeConfig } from '../lib/kube/config.ts';
import { CliError, lastKubeConfig, rememberKubeConfig } from './errors.ts';

export { lastKubeConfig };

/** loadKubeConfig for a command, remembering which server and file an error message should name. */
export function cliKubeConfig(path: string | undefined): KubeConfig {
  const home = join(homedir(), '.kube', 'config');
  const source =
    path || process.env.KUBECONFIG || (process.env.KUBERNETES_SERVICE_HOST ? 'in-cluster' : home);
  rememberKubeConfig({ kubeconfig: source });
  if (source === home && !existsSync(home))
    throw new CliError(
      `no kubeconfig: pass --kubeconfig, set KUBECONFIG, or write ${home} (kubectl config view shows what kubectl uses)`,
    );
  let kc: KubeConfig;
  try {
    kc = loadKubeConfig(path);
  } catch (err) {
    throw new CliError(
      `cannot read the kubeconfig ${source}: ${(err as Error).message}; pass --kubeconfig with the path of a kubeconfig file, or set KUBECONFIG`,
    );
  }
  const server = kc.getCurrentCluster()?.server;
  rememberKubeConfig(server ? { kubeconfig: source, server } : { kubeconfig: source });
  return kc;
}

export async function listCertificates(
  kc: KubeConfig,
  namespace: string | undefined,
): Promise<Certificate[]> {
  const custom = kc.makeApiClient(CustomObjectsApi);
  const res = (
    namespace
      ? await custom.listNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace,
          plural: Plural.Certificate,
        })
      : await custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: Plural.Certificate })
  ) as { items: Certificate[] };
  return res.items;
}

export async function listIssuers(kc: KubeConfig): Promise<Issuer[]> {
  const custom = kc.makeApiClient(CustomObjectsApi);
  const cluster = (await custom.listClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: Plural.ClusterIssuer,
  })) as { items: Issuer[] };
  const namespaced = (await custom.listClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: Plural.Issuer,
  })) as { items: Issuer[] };
  return [
    ...cluster.items.map((i) => ({ ...i, kind: 'ClusterIssuer' as const })),
    ...namespaced.items.map((i) => ({ ...i, kind: 'Issuer' as const })),
  ];
}

/** "3h", "12d", "45s" from now, or "-2m" for the past. */
/** The namespace a command works in: -A for all (undefined), else -n, else the context's, else default. */
export function namespaceOf(kc: KubeConfig, opts: { namespace?: string; allNamespaces?: boolean }) {
  if (opts.allNamespaces) return undefined;
  return opts.namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
}

export function relative(iso: string | undefined, now = Date.now()): string {
  if (!iso) return '-';
  const ms = new Date(iso).getTime() - now;
  const abs = Math.abs(ms);
  const s = Math.round(abs / 1000);
  const text =
    s < 120
      ? `${s}s`
      : s < 7200
        ? `${Math.round(s / 60)}m`
        : s < 172800
          ? `${Math.round(s / 3600)}h`
          : `${Math.round(s / 86400)}d`;
  return ms < 0 ? `-${text}` : text;
}

export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('   ')
        .trimEnd(),
    )
    .join('\n');
}
