import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'winston';
import { objectKey } from '../api/types.ts';
import { Interner } from '../lru.ts';
import { type Kube, type KubeAccess, kubeFor, type WatchHandle } from './client.ts';
import { statusCode } from './errors.ts';

export type InformerEvent = 'add' | 'update' | 'delete';
export type Handler<T> = (obj: T, old?: T) => void;

export interface ListResult<T> {
  items: T[];
  metadata?: { resourceVersion?: string | undefined; continue?: string | undefined } | undefined;
}

/** One page of a list: at most `limit` items, after the page that returned `continue`. */
export interface PageRequest {
  limit: number;
  continue?: string | undefined;
}

/** Objects per list page. A page is the most of a list held in memory at once, before the transform. */
export const DEFAULT_PAGE_SIZE = 100;
/** Lists restarted because their continue token expired, before the list counts as failed (and backs off). */
const MAX_EXPIRED_RESTARTS = 3;

/**
 * Lists every page (limit + continue) and hands each to `onPage` before asking
 * for the next, so that no more than one page of raw objects is alive at once.
 * A continue token that expired (410 Gone, after etcd compacted the snapshot)
 * restarts the list from the first page: `onPage` then sees `restarted` and
 * must forget what the abandoned pass delivered. Returns the list's
 * resourceVersion.
 */
export async function listInPages<T>(
  list: (page: PageRequest) => Promise<ListResult<T>>,
  pageSize: number,
  onPage: (items: T[], restarted: boolean) => void,
  onExpired?: () => void,
): Promise<string> {
  let restarts = 0;
  let restarted = false;
  let token: string | undefined;
  for (;;) {
    let page: ListResult<T>;
    try {
      page = await list({ limit: pageSize, continue: token });
    } catch (err) {
      if (token === undefined || statusCode(err) !== 410 || restarts >= MAX_EXPIRED_RESTARTS) throw err;
      restarts++;
      restarted = true;
      token = undefined;
      onExpired?.();
      continue;
    }
    onPage(page.items, restarted);
    restarted = false;
    token = page.metadata?.continue || undefined;
    if (token === undefined) return page.metadata?.resourceVersion ?? '';
  }
}

export interface InformerOptions<T> {
  /** What the informer is for, in logs ("certificates", "ca-secret shop/root"). */
  name: string;
  /** API path for the watch, e.g. /api/v1/secrets or /apis/sigil.dev/v1alpha1/certificates. */
  path: string;
  /**
   * Lists one page with the same selectors (pass `limit` and `continue` on);
   * returns its items, its `continue` token (none on the last page) and the
   * list's resourceVersion. A list that ignores the page request is one page.
   */
  list: (page: PageRequest) => Promise<ListResult<T>>;
  /** Objects per list page (DEFAULT_PAGE_SIZE). */
  pageSize?: number;
  labelSelector?: string | undefined;
  fieldSelector?: string | undefined;
  logger: Logger;
  /** Server-side watch timeout; the watch is re-opened from the last resourceVersion after it. */
  watchTimeoutSeconds?: number;
  /** A watch that delivers nothing (not even a bookmark) for this long is dropped and re-opened. */
  idleTimeoutMs?: number;
  /** Counts list and watch requests, for metrics and benchmarks. */
  onRequest?: (verb: 'list' | 'watch') => void;
  /**
   * What to keep of each object, applied before it is cached or handed to a
   * handler: a selector anyone can satisfy (a label) must not let them make
   * the cache hold whatever they like. Returns a new object or the same one.
   */
  transform?: (obj: T) => T;
  /** Keep kubectl's last-applied-configuration annotation: the objects are written back whole (PUT). */
  keepLastApplied?: boolean;
}

/** kubectl's copy of the whole object as last applied (client-side apply), on objects users apply. */
const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

/**
 * Short strings of cached objects, one copy each. JSON.parse gives every object its own copy of
 * each value: 1,000 cached Certificates held 1,000 copies of their apiVersion, their kind, their
 * issuer's kind and name, their Ready condition's reason and message and a few hundred of each
 * timestamp: the cache of 1,000 went from 1.57 to 1.11 MiB of heap with one copy of each.
 * 64 characters hold a timestamp, a uid or a DNS label; a value seen once (a uid) passes
 * through and falls out again.
 */
export const shortValues = new Interner(2048, 64);

/**
 * Interns every short string value of an object about to be cached, in place (V8 interns keys
 * itself), but for the fields in `skip`; an object already frozen is left as it is.
 */
function internValues(value: unknown, depth: number, skip?: ReadonlySet<string>): void {
  if (depth === 0 || value === null || typeof value !== 'object' || Object.isFrozen(value)) return;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const v = value[i];
      if (typeof v === 'string') value[i] = shortValues.intern(v);
      else internValues(v, depth - 1);
    }
    return;
  }
  const o = value as Record<string, unknown>;
  for (const k in o) {
    if (skip?.has(k)) continue;
    const v = o[k];
    if (typeof v === 'string') o[k] = shortValues.intern(v);
    else internValues(v, depth - 1);
  }
}

/** Fields whose values are never interned: a Secret's or ConfigMap's contents. */
const UNINTERNED = new Set(['data', 'stringData', 'binaryData']);

/**
 * What the cache keeps of an object: all of it but metadata.managedFields
 * (server-side apply bookkeeping) and, unless `keepLastApplied`, kubectl's
 * last-applied-configuration annotation (a second copy of the object as
 * applied): nothing here reads either, and together they are often most of a
 * small object. Short string values of what is kept are interned
 * (shortValues), never a Secret's or ConfigMap's contents. An informer whose
 * objects are written back whole (a PUT built from the cached metadata) keeps
 * the annotation, or the write would erase it. Frozen so no handler can change
 * the cache.
 */
export function cached<T extends KubernetesObject>(
  obj: T,
  transform?: (obj: T) => T,
  keepLastApplied = false,
): T {
  const meta = obj.metadata;
  if (meta?.managedFields) delete meta.managedFields;
  if (!keepLastApplied && meta?.annotations && LAST_APPLIED in meta.annotations) {
    const { [LAST_APPLIED]: _, ...rest } = meta.annotations;
    meta.annotations = rest;
  }
  const kept = transform ? transform(obj) : obj;
  // What is kept, not what the transform dropped (a pod's environment); deep enough for a
  // Certificate's status conditions. An object cached before is frozen and left as it is.
  internValues(kept, 6, UNINTERNED);
  return Object.freeze(kept);
}

/**
 * A list+watch cache of one resource, with label and field selectors applied
 * on the server. Unlike client-node's informer it never stops on an error: it
 * backs off and lists again; a watch that expires (410) or goes silent is
 * re-opened. Objects it hands out are frozen: copy before changing.
 */
export class Informer<T extends KubernetesObject> {
  private readonly store = new Map<string, T>();
  private readonly handlers: Record<InformerEvent, Handler<T>[]> = { add: [], update: [], delete: [] };
  private resourceVersion = '';
  private abort: WatchHandle | undefined;
  private stopped = true;
  private synced = false;
  private syncWaiters: (() => void)[] = [];
  private failures = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Bumped for every watch opened and on stop, so a stale watch's callbacks are ignored. */
  private watchGeneration = 0;
  private readonly kube: Kube;
  /** Time of the last successful list or watch event; for staleness checks. */
  lastActivity = 0;

  private readonly options: InformerOptions<T>;

  constructor(kc: KubeAccess, options: InformerOptions<T>) {
    this.options = options;
    this.kube = kubeFor(kc);
  }

  /** What the store keeps of an object the server sent, with this informer's options. */
  private cached(obj: T): T {
    return cached(obj, this.options.transform, this.options.keepLastApplied);
  }

  on(event: InformerEvent, handler: Handler<T>): this {
    this.handlers[event].push(handler);
    return this;
  }

  get(key: string): T | undefined {
    return this.store.get(key);
  }

  list(): T[] {
    return [...this.store.values()];
  }

  get size(): number {
    return this.store.size;
  }

  hasSynced(): boolean {
    return this.synced;
  }

  /** Starts listing and watching; resolves once the first list is in the cache. */
  start(): Promise<void> {
    if (!this.stopped) return this.waitForSync();
    this.stopped = false;
    void this.relist();
    return this.waitForSync();
  }

  stop(): void {
    this.stopped = true;
    this.watchGeneration++;
    clearTimeout(this.retryTimer);
    this.abort?.abort();
    this.abort = undefined;
  }

  waitForSync(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  private emit(event: InformerEvent, obj: T, old?: T) {
    for (const h of this.handlers[event]) {
      try {
        h(obj, old);
      } catch (err) {
        this.options.logger.error(`informer ${this.options.name}: ${event} handler failed`, err as Error);
      }
    }
  }

  private async relist(): Promise<void> {
    if (this.stopped) return;
    try {
      let seen = new Set<string>();
      // Each page is transformed and cached before the next is asked for: a list of large objects (Secrets
      // anyone may label) is held in memory one page at a time, never whole.
      const resourceVersion = await listInPages(
        (page) => {
          if (this.stopped) return Promise.resolve({ items: [] });
          this.options.onRequest?.('list');
          return this.options.list(page);
        },
        this.options.pageSize ?? DEFAULT_PAGE_SIZE,
        (items, restarted) => {
          if (this.stopped) return;
          if (restarted) seen = new Set();
          for (const item of items) {
            const obj = this.cached(item);
            const key = objectKey(obj);
            seen.add(key);
            const old = this.store.get(key);
            this.store.set(key, obj);
            if (!old) this.emit('add', obj);
            else if (old.metadata?.resourceVersion !== obj.metadata?.resourceVersion)
              this.emit('update', obj, old);
          }
        },
        () =>
          this.options.logger.info(
            `informer ${this.options.name}: list continue token expired (410), listing again`,
            {
              informer: this.options.name,
            },
          ),
      );
      if (this.stopped) return;
      for (const [key, old] of this.store) {
        if (!seen.has(key)) {
          this.store.delete(key);
          this.emit('delete', old);
        }
      }
      this.resourceVersion = resourceVersion;
      this.lastActivity = Date.now();
      this.failures = 0;
      if (!this.synced) {
        this.synced = true;
        for (const w of this.syncWaiters.splice(0)) w();
      }
    } catch (err) {
      this.retry('list', err, () => this.relist());
      return;
    }
    await this.startWatch();
  }

  private retry(what: string, err: unknown, next: () => Promise<void>) {
    if (this.stopped) return;
    this.failures++;
    const delay = Math.min(30_000, 250 * 2 ** Math.min(this.failures, 7)) * (0.75 + Math.random() / 2);
    this.options.logger.warn(`informer ${this.options.name}: ${what} failed, retrying`, {
      informer: this.options.name,
      attempt: this.failures,
      retryInMs: Math.round(delay),
      error: err instanceof Error ? err.message : String(err),
    });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void next(), delay);
  }

  private async startWatch(): Promise<void> {
    if (this.stopped) return;
    let expired = false;
    const generation = ++this.watchGeneration;
    this.options.onRequest?.('watch');
    const controller = await this.kube.watch<T>(this.options.path, {
      query: {
        resourceVersion: this.resourceVersion,
        allowWatchBookmarks: true,
        labelSelector: this.options.labelSelector,
        fieldSelector: this.options.fieldSelector,
        timeoutSeconds: this.options.watchTimeoutSeconds ?? 300,
      },
      // Bookmarks arrive about once a minute: a watch silent for longer is half-open.
      idleTimeoutMs: this.options.idleTimeoutMs ?? 90_000,
      onEvent: (phase, obj) => {
        this.lastActivity = Date.now();
        switch (phase) {
          case 'ADDED':
          case 'MODIFIED': {
            const frozen = this.cached(obj);
            const key = objectKey(frozen);
            const old = this.store.get(key);
            this.store.set(key, frozen);
            if (old) this.emit('update', frozen, old);
            else this.emit('add', frozen);
            break;
          }
          case 'DELETED': {
            const key = objectKey(obj);
            const old = this.store.get(key);
            this.store.delete(key);
            this.emit('delete', old ?? this.cached(obj));
            break;
          }
          case 'BOOKMARK':
            break;
          case 'ERROR':
            // 410 Gone: the resourceVersion is too old; only a fresh list helps.
            expired = true;
            break;
        }
        const rv = obj?.metadata?.resourceVersion;
        if (rv && phase !== 'ERROR') this.resourceVersion = rv;
      },
      onDone: (err) => {
        if (this.stopped || generation !== this.watchGeneration) return;
        this.abort = undefined;
        const rewatch = () => this.startWatch();
        // 410 Gone as an ERROR event or as the watch request's own status: only a fresh list helps.
        if (expired || statusCode(err) === 410) {
          this.options.logger.info(`informer ${this.options.name}: watch expired (410), listing again`, {
            informer: this.options.name,
          });
          void this.relist();
        } else if (err) this.retry('watch', err, rewatch);
        else {
          this.failures = 0;
          void rewatch();
        }
      },
    });
    if (generation === this.watchGeneration && !this.stopped) this.abort = controller;
    else controller.abort();
  }
}

/**
 * True when resourceVersion `a` is newer than `b`. Kubernetes calls them opaque, but every
 * etcd-backed API server issues increasing integers; what is not one is never newer.
 */
export function resourceVersionNewer(a: string | undefined, b: string | undefined): boolean {
  try {
    return BigInt(a ?? '0') > BigInt(b ?? '0');
  } catch {
    return false;
  }
}
