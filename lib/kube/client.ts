// A small JSON client for the Kubernetes API: requests over keep-alive HTTPS
// connections and streaming watches, with the credentials of a kubeconfig.
//
// The operator and the webhook use it instead of @kubernetes/client-node's
// generated API classes, which they need only as types: importing client-node
// costs 80 MiB of resident memory at start (41 MiB for Node itself, 125 MiB
// with client-node loaded, measured under Node 24), more than all of Sigil's
// own code and caches at rest. The CLI, which runs briefly, keeps client-node.
import type { Agent as HttpAgent, IncomingMessage } from 'node:http';
import { Agent, request as httpsRequest, type RequestOptions } from 'node:https';
import { fs, http } from '../builtins.ts';

/**
 * What a client needs of a kubeconfig: the server, and the credentials put on
 * each request. client-node's KubeConfig has both, and so does the loader in
 * ./access.ts.
 */
export interface KubeAccess {
  getCurrentCluster(): { readonly server: string } | null;
  applyToHTTPSOptions(opts: RequestOptions): Promise<void>;
}

/** A request the API server answered with an error status; `body` is its Status object as text. */
export class KubeApiError extends Error {
  readonly code: number;
  readonly body: string;
  readonly headers: Record<string, string | string[] | undefined>;
  constructor(
    code: number,
    message: string,
    body: string,
    headers: Record<string, string | string[] | undefined> = {},
  ) {
    super(message);
    this.name = 'KubeApiError';
    this.code = code;
    this.body = body;
    this.headers = headers;
  }
}

export type Query = Record<string, string | number | boolean | undefined>;

export interface RequestExtras {
  query?: Query | undefined;
  /** Content type of the body (JSON unless a patch says otherwise). */
  contentType?: string;
  /** What to ask the answer as (JSON; a Table for printer columns). */
  accept?: string;
  /**
   * Reuse a kept-alive connection (default). Lists and watches take a
   * connection of their own, closed after: a pooled TLS connection was
   * measured keeping its last large answer alive (34 MiB after a 36 MiB list),
   * and a list is rare enough that its handshake costs nothing that matters.
   */
  pooled?: boolean;
  /** Give up after this long without an answer (30 s). */
  timeoutMs?: number;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface WatchHandle {
  /** Closes the watch; its `done` is not called. */
  abort(): void;
}

export interface WatchOptions<T> {
  query?: Query;
  /** Each event, in order. */
  onEvent: (type: WatchEventType, object: T) => void;
  /** Once, when the watch ends: without an error when the server closed it normally. */
  onDone: (err?: unknown) => void;
  /** Close the watch (as an error) when nothing arrives for this long. */
  idleTimeoutMs?: number;
}

const MERGE_PATCH = 'application/merge-patch+json';
/** Pooled connections at once (requests beyond wait for one), and idle ones kept. Lists and watches are not pooled. */
const MAX_CONNECTIONS = 32;
const MAX_IDLE_CONNECTIONS = 16;
const IDLE_CONNECTION_MS = 15_000;
const DEFAULT_TIMEOUT_MS = 30_000;
/** Cap on one watch event: an object is at most about 1.5 MiB in etcd. */
const MAX_EVENT_BYTES = 64 * 1024 * 1024;

/** `/api/v1/...` for the core group, `/apis/<group>/<version>/...` for the others. */
export function resourcePath(r: {
  group?: string | undefined;
  version: string;
  plural: string;
  namespace?: string | undefined;
  name?: string | undefined;
  subresource?: string | undefined;
}): string {
  let p = r.group ? `/apis/${r.group}/${r.version}` : `/api/${r.version}`;
  if (r.namespace !== undefined) p += `/namespaces/${encodeURIComponent(r.namespace)}`;
  p += `/${r.plural}`;
  if (r.name !== undefined) p += `/${encodeURIComponent(r.name)}`;
  if (r.subresource) p += `/${r.subresource}`;
  return p;
}

/** Paths of the built-in resources Sigil reads and writes. */
export const paths = {
  secrets: (namespace?: string, name?: string) =>
    resourcePath({ version: 'v1', plural: 'secrets', namespace, name }),
  configMaps: (namespace?: string, name?: string) =>
    resourcePath({ version: 'v1', plural: 'configmaps', namespace, name }),
  events: (namespace: string, name?: string) =>
    resourcePath({ version: 'v1', plural: 'events', namespace, name }),
  namespaces: (name?: string) => resourcePath({ version: 'v1', plural: 'namespaces', name }),
  pods: (namespace?: string, name?: string) =>
    resourcePath({ version: 'v1', plural: 'pods', namespace, name }),
  leases: (namespace: string, name?: string) =>
    resourcePath({ group: 'coordination.k8s.io', version: 'v1', plural: 'leases', namespace, name }),
  mutatingWebhookConfigurations: (name?: string) =>
    resourcePath({
      group: 'admissionregistration.k8s.io',
      version: 'v1',
      plural: 'mutatingwebhookconfigurations',
      name,
    }),
};

function withQuery(path: string, query: Query | undefined): string {
  if (!query) return path;
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `${path}${path.includes('?') ? '&' : '?'}${s}` : path;
}

/**
 * A client for one cluster. Requests share keep-alive connections (one pool
 * per TLS configuration, so a rotated client certificate gets new ones);
 * credentials are applied per request, so a refreshed token is picked up.
 */
export class Kube {
  readonly server: URL;
  private readonly access: KubeAccess;
  private readonly proxied: boolean;
  private readonly agent: Agent | HttpAgent;

  constructor(access: KubeAccess) {
    const cluster = access.getCurrentCluster();
    if (!cluster) throw new Error('no current cluster in kubeconfig');
    this.access = access;
    this.server = new URL(cluster.server);
    this.proxied = !!(cluster as { proxyUrl?: string }).proxyUrl;
    // A burst opens a connection per concurrent request, up to MAX_CONNECTIONS; up to
    // MAX_IDLE_CONNECTIONS stay open between requests (fewer made the pool close and reopen
    // connections all through a burst), and an idle one closes after IDLE_CONNECTION_MS.
    const agentOptions = {
      keepAlive: true,
      keepAliveMsecs: 30_000,
      scheduling: 'lifo' as const,
      maxSockets: MAX_CONNECTIONS,
      maxFreeSockets: MAX_IDLE_CONNECTIONS,
      timeout: IDLE_CONNECTION_MS,
    };
    this.agent = this.server.protocol === 'http:' ? new http.Agent(agentOptions) : new Agent(agentOptions);
  }

  /** Closes idle connections (requests in flight finish). */
  close(): void {
    this.agent.destroy();
  }

  private async options(
    method: string,
    path: string,
    headers: Record<string, string>,
    pooled = true,
  ): Promise<RequestOptions> {
    const base = this.server.pathname.replace(/\/$/, '');
    const opts: RequestOptions = {
      method,
      protocol: this.server.protocol,
      hostname: this.server.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: this.server.port || (this.server.protocol === 'http:' ? 80 : 443),
      path: base + path,
      headers: { ...headers },
    };
    await this.access.applyToHTTPSOptions(opts);
    // Through a proxy (client-node's KubeConfig with proxy-url), the agent it chose carries the proxy.
    if (this.proxied) return opts;
    // client-node puts a fresh agent (no keep-alive) on every request; connections are pooled here
    // instead, except for lists and watches (see RequestExtras.pooled).
    opts.agent = pooled ? this.agent : false;
    return opts;
  }

  private send(
    opts: RequestOptions,
    payload: string | undefined,
    timeoutMs: number,
  ): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const req = (opts.protocol === 'http:' ? http.request : httpsRequest)(opts, resolve);
      req.on('error', reject);
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`${opts.method} ${opts.path} timed out`)));
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }

  /** One request; the answer parsed as JSON. Errors are KubeApiErrors carrying the status code. */
  async request<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    extras: RequestExtras = {},
  ): Promise<T> {
    const target = withQuery(path, extras.query);
    const headers: Record<string, string> = { accept: extras.accept ?? 'application/json' };
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    if (payload !== undefined) {
      headers['content-type'] = extras.contentType ?? 'application/json';
      headers['content-length'] = String(Buffer.byteLength(payload));
    }
    const opts = await this.options(method, target, headers, extras.pooled ?? true);
    const timeoutMs = extras.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const res = await this.send(opts, payload, timeoutMs);
    const text = await readBody(res, `${method} ${target}`);
    const status = res.statusCode ?? 0;
    if (status >= 200 && status < 300) return (text ? JSON.parse(text) : undefined) as T;
    throw new KubeApiError(status, failure(`${method} ${target}`, status, text), text, res.headers);
  }

  get<T>(path: string, query?: Query): Promise<T> {
    return this.request<T>('GET', path, undefined, { query });
  }

  /** One page of a collection (pass `limit` and `continue` in the query), on a connection of its own. */
  list<T>(path: string, query?: Query): Promise<T> {
    return this.request<T>('GET', path, undefined, { query, pooled: false });
  }

  create<T>(path: string, body: unknown, query?: Query): Promise<T> {
    return this.request<T>('POST', path, body, { query });
  }

  replace<T>(path: string, body: unknown, query?: Query): Promise<T> {
    return this.request<T>('PUT', path, body, { query });
  }

  /** A JSON merge patch (RFC 7386): null removes a field. */
  mergePatch<T>(path: string, body: unknown, query?: Query): Promise<T> {
    return this.request<T>('PATCH', path, body, { query, contentType: MERGE_PATCH });
  }

  delete<T = unknown>(path: string, body?: unknown, query?: Query): Promise<T> {
    return this.request<T>('DELETE', path, body, { query });
  }

  /**
   * Watches `path` (a collection) from `query.resourceVersion`. Events arrive
   * one JSON object per line; `onDone` is called once when the stream ends,
   * fails, or stays silent past `idleTimeoutMs`, and never after `abort()`.
   */
  async watch<T>(path: string, w: WatchOptions<T>): Promise<WatchHandle> {
    let aborted = false;
    let finished = false;
    let res: IncomingMessage | undefined;
    let idle: NodeJS.Timeout | undefined;
    const finish = (err?: unknown) => {
      clearTimeout(idle);
      if (finished || aborted) return;
      finished = true;
      // A stream that ended normally leaves its connection to the pool; a failed one closes it.
      if (err) {
        res?.destroy();
        req?.destroy();
      }
      w.onDone(err);
    };
    const handle: WatchHandle = {
      abort: () => {
        aborted = true;
        clearTimeout(idle);
        res?.destroy();
        req?.destroy();
      },
    };
    const idleMs = w.idleTimeoutMs ?? 0;
    const touch = () => {
      if (!idleMs) return;
      clearTimeout(idle);
      idle = setTimeout(() => finish(new Error(`watch ${path}: nothing received for ${idleMs} ms`)), idleMs);
    };
    let req: import('node:http').ClientRequest | undefined;
    try {
      const opts = await this.options(
        'GET',
        withQuery(path, { ...w.query, watch: true }),
        { accept: 'application/json' },
        false,
      );
      if (aborted) return handle;
      req = (opts.protocol === 'http:' ? http.request : httpsRequest)(opts, (response) => {
        res = response;
        if (aborted) {
          response.destroy();
          return;
        }
        const status = response.statusCode ?? 0;
        if (status !== 200) {
          readBody(response, `watch ${path}`).then(
            (text) =>
              finish(
                new KubeApiError(status, `watch ${path} failed: HTTP ${status}`, text, response.headers),
              ),
            finish,
          );
          return;
        }
        touch();
        let pending = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => {
          if (aborted || finished) return;
          touch();
          pending += chunk;
          let nl = pending.indexOf('\n');
          while (nl >= 0) {
            const line = pending.slice(0, nl);
            pending = pending.slice(nl + 1);
            if (line.trim()) {
              let event: { type?: unknown; object?: T } | null;
              try {
                event = JSON.parse(line);
              } catch (err) {
                finish(new Error(`watch ${path}: malformed event: ${(err as Error).message}`));
                return;
              }
              if (!event || typeof event.type !== 'string' || typeof event.object !== 'object') {
                finish(new Error(`watch ${path}: malformed event: no type and object`));
                return;
              }
              try {
                w.onEvent(event.type as WatchEventType, event.object as T);
              } catch (err) {
                // A handler's failure ends this watch (the informer lists again), never the process.
                finish(err);
                return;
              }
              if (aborted || finished) return;
            }
            nl = pending.indexOf('\n');
          }
          if (pending.length > MAX_EVENT_BYTES) finish(new Error(`watch ${path}: event larger than 64 MiB`));
        });
        response.on('end', () => finish());
        response.on('error', finish);
        response.on('close', () => finish(new Error(`watch ${path}: connection closed`)));
      });
      req.on('error', finish);
      req.end();
      touch();
    } catch (err) {
      // Credentials that could not be applied: reported like any other failure of the watch.
      queueMicrotask(() => finish(err));
    }
    return handle;
  }
}

/** "GET /api/v1/...: 403 secrets is forbidden: ...": the status and the API server's own words. */
function failure(what: string, status: number, body: string): string {
  let message = '';
  try {
    const parsed = JSON.parse(body) as { message?: unknown };
    if (typeof parsed?.message === 'string') message = parsed.message;
  } catch {}
  return `${what}: ${status}${message ? ` ${message}` : ''}`;
}

/**
 * The whole body. Not capped: a list page of Secrets anyone may label can be large (100 of up to
 * 1 MiB), and refusing it would keep the informer from ever syncing; pages bound it instead.
 */
function readBody(res: IncomingMessage, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    // Decoded as it arrives (a character split between chunks is kept whole): no copy of the body as
    // one more Buffer. The response object can outlive this read (its socket goes back to the pool).
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (c: string) => {
      text += c;
    });
    res.on('end', () => {
      const body = text;
      text = '';
      resolve(body);
    });
    res.on('error', reject);
    res.on('aborted', () => reject(new Error(`${what}: response aborted`)));
  });
}

const clients = new WeakMap<KubeAccess, Kube>();

/** The one client of a kubeconfig, so everything made from it shares its connections. */
export function kubeFor(access: KubeAccess): Kube {
  let kube = clients.get(access);
  if (!kube) {
    kube = new Kube(access);
    clients.set(access, kube);
  }
  return kube;
}

/** A token read from a file, re-read at most once a minute (projected service account tokens rotate). */
export class TokenFile {
  private token = '';
  private readAt = 0;
  private mtimeMs = -1;
  readonly path: string;
  constructor(path: string) {
    this.path = path;
  }
  get(): string {
    const now = Date.now();
    if (now - this.readAt >= 60_000 || !this.token) {
      this.readAt = now;
      const mtime = fs.statSync(this.path).mtimeMs;
      if (mtime !== this.mtimeMs || !this.token) {
        this.token = fs.readFileSync(this.path, 'utf8').trim();
        this.mtimeMs = mtime;
      }
    }
    return this.token;
  }
}
