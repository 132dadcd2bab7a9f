// Credentials for the operator and the webhook without loading
// @kubernetes/client-node (see ./client.ts for why): the in-cluster service
// account, or a kubeconfig whose user has a token, a token file, a client
// certificate or a username and password. A kubeconfig user with an exec
// plugin or an auth provider is handed to client-node, which implements those.
import type { RequestOptions } from 'node:https';
import { isIPv6 } from 'node:net';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { fs } from '../builtins.ts';
import { type KubeAccess, TokenFile } from './client.ts';

const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

interface ClusterEntry {
  server?: string;
  'certificate-authority'?: string;
  'certificate-authority-data'?: string;
  'insecure-skip-tls-verify'?: boolean;
  'tls-server-name'?: string;
  'proxy-url'?: string;
}

interface UserEntry {
  token?: string;
  tokenFile?: string;
  'client-certificate'?: string;
  'client-certificate-data'?: string;
  'client-key'?: string;
  'client-key-data'?: string;
  username?: string;
  password?: string;
  as?: string;
  exec?: unknown;
  'auth-provider'?: unknown;
}

interface KubeconfigFile {
  'current-context'?: string;
  clusters?: { name: string; cluster?: ClusterEntry }[];
  users?: { name: string; user?: UserEntry }[];
  contexts?: { name: string; context?: { cluster?: string; user?: string } }[];
}

/** Credentials this module can apply: everything but exec plugins, auth providers and proxies. */
export class StaticAccess implements KubeAccess {
  private readonly server: string;
  private readonly ca: Buffer | undefined;
  private readonly cert: Buffer | undefined;
  private readonly key: Buffer | undefined;
  private readonly token: string | undefined;
  private readonly tokenFile: TokenFile | undefined;
  private readonly basic: string | undefined;
  private readonly insecure: boolean;
  private readonly serverName: string | undefined;
  private readonly impersonate: string | undefined;

  constructor(o: {
    server: string;
    ca?: Buffer | undefined;
    cert?: Buffer | undefined;
    key?: Buffer | undefined;
    token?: string | undefined;
    tokenFile?: string | undefined;
    basic?: string | undefined;
    insecure?: boolean | undefined;
    serverName?: string | undefined;
    impersonate?: string | undefined;
  }) {
    if (o.server.startsWith('http:') && (o.token || o.tokenFile || o.basic || o.key) && !o.insecure)
      throw new Error(
        `refusing to send credentials to ${o.server} over plain HTTP: use an https:// server, or set insecure-skip-tls-verify: true if you mean it`,
      );
    this.server = o.server;
    this.ca = o.ca;
    this.cert = o.cert;
    this.key = o.key;
    this.token = o.token;
    this.tokenFile = o.tokenFile ? new TokenFile(o.tokenFile) : undefined;
    this.basic = o.basic;
    this.insecure = o.insecure ?? false;
    this.serverName = o.serverName;
    this.impersonate = o.impersonate;
  }

  getCurrentCluster(): { server: string } {
    return { server: this.server };
  }

  async applyToHTTPSOptions(opts: RequestOptions): Promise<void> {
    if (this.ca) opts.ca = this.ca;
    if (this.cert) opts.cert = this.cert;
    if (this.key) opts.key = this.key;
    if (this.insecure) opts.rejectUnauthorized = false;
    if (this.serverName) opts.servername = this.serverName;
    opts.headers ??= {};
    const headers = opts.headers as Record<string, string>;
    const token = this.tokenFile ? this.tokenFile.get() : this.token;
    if (token) headers.authorization = `Bearer ${token}`;
    else if (this.basic) headers.authorization = `Basic ${Buffer.from(this.basic).toString('base64')}`;
    if (this.impersonate) headers['impersonate-user'] = this.impersonate;
  }
}

/** The in-cluster service account: the API server's Service, its CA and a rotating token. */
export function inClusterAccess(dir = SERVICE_ACCOUNT_DIR): StaticAccess {
  const host = process.env.KUBERNETES_SERVICE_HOST ?? '';
  const port = process.env.KUBERNETES_SERVICE_PORT ?? '443';
  const scheme = ['80', '8080', '8001'].includes(port) ? 'http' : 'https';
  return new StaticAccess({
    server: `${scheme}://${isIPv6(host) ? `[${host}]` : host}:${port}`,
    ca: fs.readFileSync(join(dir, 'ca.crt')),
    tokenFile: join(dir, 'token'),
  });
}

const fileOrData = (base: string, file: string | undefined, data: string | undefined) =>
  file
    ? fs.readFileSync(isAbsolute(file) ? file : join(base, file))
    : data
      ? Buffer.from(data, 'base64')
      : undefined;

/**
 * A kubeconfig's text as an object. It may be JSON (kubectl reads both): the YAML parser is loaded
 * only for what JSON.parse refuses, since it holds about 2.5 MiB for the life of the process, and
 * in a cluster there is no kubeconfig at all.
 */
async function parseKubeconfig(text: string): Promise<KubeconfigFile> {
  const trimmed = text.trimStart();
  if (trimmed.startsWith('{'))
    try {
      return JSON.parse(trimmed) as KubeconfigFile;
    } catch {
      // YAML in flow style ({a: b}) starts the same way: the YAML parser decides.
    }
  return ((await import('yaml')).parse(text) ?? {}) as KubeconfigFile;
}

/**
 * The current context of a kubeconfig file as StaticAccess, or `undefined`
 * when its user needs client-node (exec plugin, auth provider) or a proxy.
 */
export async function kubeconfigAccess(path: string): Promise<StaticAccess | undefined> {
  const doc = await parseKubeconfig(fs.readFileSync(path, 'utf8'));
  const contextName = doc['current-context'];
  const context = doc.contexts?.find((c) => c.name === contextName)?.context;
  if (!context) throw new Error(`${path}: current-context ${JSON.stringify(contextName ?? '')} not found`);
  const cluster = doc.clusters?.find((c) => c.name === context.cluster)?.cluster;
  if (!cluster?.server)
    throw new Error(`${path}: cluster ${JSON.stringify(context.cluster ?? '')} has no server`);
  const user = doc.users?.find((u) => u.name === context.user)?.user ?? {};
  if (user.exec || user['auth-provider'] || cluster['proxy-url']) return undefined;
  const base = dirname(path);
  return new StaticAccess({
    server: cluster.server,
    ca: fileOrData(base, cluster['certificate-authority'], cluster['certificate-authority-data']),
    cert: fileOrData(base, user['client-certificate'], user['client-certificate-data']),
    key: fileOrData(base, user['client-key'], user['client-key-data']),
    token: user.token,
    tokenFile: user.tokenFile
      ? isAbsolute(user.tokenFile)
        ? user.tokenFile
        : join(base, user.tokenFile)
      : undefined,
    basic: user.username ? `${user.username}:${user.password ?? ''}` : undefined,
    insecure: cluster['insecure-skip-tls-verify'],
    serverName: cluster['tls-server-name'],
    impersonate: user.as,
  });
}

/**
 * Loads credentials as the operator and webhook commands take them: an
 * explicit path first, then $KUBECONFIG, then the in-cluster service account,
 * then ~/.kube/config. Only a kubeconfig that needs an exec plugin, an auth
 * provider or a proxy loads client-node.
 */
export async function loadAccess(path?: string): Promise<KubeAccess> {
  const file =
    path ||
    process.env.KUBECONFIG ||
    (process.env.KUBERNETES_SERVICE_HOST ? undefined : join(homedir(), '.kube', 'config'));
  if (!file) return inClusterAccess();
  const access = await kubeconfigAccess(file);
  if (access) return access;
  const { loadKubeConfig } = await import('./config.ts');
  return loadKubeConfig(file);
}
