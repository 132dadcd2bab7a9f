// Trust bundles: one ConfigMap per namespace (sigil-trust-bundle) holding, under
// one key per issuer, the CA certificates peers of that issuer must trust. A
// namespace gets an issuer's key while it holds a Certificate of that issuer.
// A bundle change is one write per namespace, whatever the number of Secrets.
// Only ConfigMaps with the trust-bundle label are watched; one without it under
// the same name belongs to someone else and is never written.
import type { V1ConfigMap, V1Namespace } from '@kubernetes/client-node';
import type { Logger } from 'winston';
import { byCodeUnit, TRUST_BUNDLE_CONFIGMAP, TRUST_BUNDLE_LABEL } from '../../lib/api/types.ts';
import { type Kube, type KubeAccess, kubeFor, paths } from '../../lib/kube/client.ts';
import { describeApiError, isConflict, isNotFound, statusCode } from '../../lib/kube/errors.ts';
import { Informer } from '../../lib/kube/informer.ts';
import { WorkQueue } from '../../lib/kube/queue.ts';
import { listPage } from '../../lib/kube/rest.ts';
import { type LabelSelector, labelSelectorMatches } from '../../lib/kube/selector.ts';
import type { OperatorMetrics } from '../metrics.ts';
import { reconcileKey } from '../reconcile.ts';

export interface TrustSource {
  /** False until every Certificate has been looked at once: until then nothing is known to be unused. */
  ready(): boolean;
  /** The bundle keys and PEM the namespace's Certificates need (empty: none). */
  desired(namespace: string): Map<string, string>;
  /** Bundles published by namespace selector (ClusterIssuers' spec.trustBundle.namespaceSelector). */
  selected(): { key: string; pem: string; selector: LabelSelector }[];
}

export interface TrustControllerOptions {
  kc: KubeAccess;
  watchNamespace?: string | undefined;
  source: TrustSource;
  logger: Logger;
  metrics: OperatorMetrics;
}

export class TrustController {
  readonly configMaps: Informer<V1ConfigMap>;
  /** Namespaces and their labels, for namespace selectors; not watched with a watch namespace. */
  readonly namespaces: Informer<V1Namespace> | undefined;
  private readonly queue: WorkQueue;
  private readonly kube: Kube;
  private readonly o: TrustControllerOptions;
  /**
   * Namespaces where Sigil cannot write the bundle: a ConfigMap of that name without Sigil's label, or
   * one that refuses writes (immutable, a quota, an admission policy). Rotations do not wait on them.
   */
  private readonly foreign = new Set<string>();

  constructor(o: TrustControllerOptions) {
    this.o = o;
    this.kube = kubeFor(o.kc);
    const path = paths.configMaps(o.watchNamespace);
    const labelSelector = `${TRUST_BUNDLE_LABEL}=true`;
    this.configMaps = new Informer<V1ConfigMap>(o.kc, {
      name: 'trust-bundles',
      path,
      labelSelector,
      list: (page) => listPage<V1ConfigMap>(o.kc, path, { labelSelector }, page),
      logger: o.logger,
      onRequest: (verb) => o.metrics.apiRequests.inc({ verb, resource: 'configmaps' }),
      // Only the name and the bundle keys matter; anyone who may write ConfigMaps can set the label.
      transform: (cm) =>
        cm.metadata?.name === TRUST_BUNDLE_CONFIGMAP
          ? {
              metadata: {
                name: cm.metadata.name,
                namespace: cm.metadata.namespace,
                resourceVersion: cm.metadata.resourceVersion,
                labels: cm.metadata.labels,
              },
              data: Object.fromEntries(
                Object.entries(cm.data ?? {}).filter(
                  ([k, v]) => k.endsWith('.crt') && v.length <= 256 * 1024,
                ),
              ),
            }
          : { metadata: { name: cm.metadata?.name, namespace: cm.metadata?.namespace } },
    });
    const enqueue = (cm: V1ConfigMap) => {
      if (cm.metadata?.name === TRUST_BUNDLE_CONFIGMAP) this.queue.add(cm.metadata.namespace!);
    };
    this.configMaps.on('add', enqueue).on('update', enqueue).on('delete', enqueue);
    if (!o.watchNamespace) {
      this.namespaces = new Informer<V1Namespace>(o.kc, {
        name: 'namespaces',
        path: paths.namespaces(),
        list: (page) => listPage<V1Namespace>(o.kc, paths.namespaces(), {}, page),
        logger: o.logger,
        onRequest: (verb) => o.metrics.apiRequests.inc({ verb, resource: 'namespaces' }),
        transform: (n) => ({ metadata: { name: n.metadata?.name, labels: n.metadata?.labels } }),
      });
      const touch = (n: V1Namespace) => this.queue.add(n.metadata!.name!);
      this.namespaces.on('add', touch).on('update', touch);
    }
    this.queue = new WorkQueue((key) => this.run(key), {
      concurrency: 4,
      baseDelayMs: 500,
      maxDelayMs: 60_000,
      onDepth: (d) => o.metrics.queueDepth.set({ controller: 'trust' }, d),
      onLatency: (s) => o.metrics.queueLatency.observe({ controller: 'trust' }, s),
    });
  }

  async start(): Promise<void> {
    await Promise.all([this.configMaps.start(), this.namespaces?.start()]);
  }

  stop(): void {
    this.queue.shutdown();
    this.configMaps.stop();
    this.namespaces?.stop();
  }

  /** Every namespace the selector picks (none with a watch namespace). */
  selectedNamespaces(selector: LabelSelector): string[] {
    return (this.namespaces?.list() ?? [])
      .filter((n) => labelSelectorMatches(selector, n.metadata?.labels))
      .map((n) => n.metadata!.name!);
  }

  /** Writes every namespace's bundle again: a selector or a selected issuer's bundle changed. */
  touchAll(): void {
    for (const n of this.namespaces?.list() ?? []) this.queue.add(n.metadata!.name!);
  }

  /** Writes the namespace's bundle again (an issuer's bundle changed, or a namespace started using one). */
  touch(namespace: string): void {
    this.queue.add(namespace);
  }

  /** True when the namespace's ConfigMap holds `pem` under `key` (or belongs to someone else, so it never will). */
  holds(namespace: string, key: string, pem: string): boolean {
    if (this.foreign.has(namespace)) return true;
    return this.configMaps.get(`${namespace}/${TRUST_BUNDLE_CONFIGMAP}`)?.data?.[key] === pem;
  }

  /** Namespaces whose trust-bundle ConfigMap is someone else's: Sigil cannot deliver the bundle there. */
  foreignNamespaces(): string[] {
    return [...this.foreign];
  }

  private run(key: string): Promise<void> {
    return reconcileKey('trust', key, (k) => this.sync(k), this.queue, this.o.metrics, this.o.logger);
  }

  private async sync(namespace: string): Promise<void> {
    // Before the Certificates are all known, an empty wish means "not known yet", not "delete it".
    if (!this.o.source.ready()) {
      this.queue.addAfter(namespace, 1000);
      return;
    }
    const wanted = this.o.source.desired(namespace);
    const ns = this.namespaces?.get(namespace);
    if (ns)
      for (const s of this.o.source.selected())
        if (labelSelectorMatches(s.selector, ns.metadata?.labels)) wanted.set(s.key, s.pem);
    const desired = Object.fromEntries([...wanted].sort(([a], [b]) => byCodeUnit(a, b)));
    const path = paths.configMaps(namespace, TRUST_BUNDLE_CONFIGMAP);
    const cached = this.configMaps.get(`${namespace}/${TRUST_BUNDLE_CONFIGMAP}`);
    const log = this.o.logger.child({ controller: 'trust', namespace });
    const count = (verb: string) => this.o.metrics.apiRequests.inc({ verb, resource: 'configmaps' });
    if (Object.keys(desired).length === 0) {
      if (!cached) return;
      // No Certificate of any issuer is left here: the bundle goes with them.
      try {
        await this.kube.delete(path, {
          apiVersion: 'v1',
          kind: 'DeleteOptions',
          preconditions: { resourceVersion: cached.metadata?.resourceVersion },
        });
        count('delete');
      } catch (err) {
        if (!isNotFound(err) && !isConflict(err)) throw err;
      }
      return;
    }
    const body = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: TRUST_BUNDLE_CONFIGMAP,
        namespace,
        labels: { [TRUST_BUNDLE_LABEL]: 'true', 'app.kubernetes.io/managed-by': 'sigil-operator' },
        annotations: {
          'sigil.dev/description':
            'CA certificates to trust, one key per Sigil issuer used in this namespace; written by the Sigil operator',
        },
      },
      data: desired,
    };
    if (!cached) {
      try {
        await this.kube.create(paths.configMaps(namespace), body);
        count('create');
        this.foreign.delete(namespace);
      } catch (err) {
        if (!isConflict(err)) throw err;
        // Exists, but not in the cache: without the label it is someone else's and is left alone.
        this.foreign.add(namespace);
        log.warn(
          `ConfigMap ${namespace}/${TRUST_BUNDLE_CONFIGMAP} exists without the ${TRUST_BUNDLE_LABEL}=true label, so Sigil does not write it and pods there do not get the trust bundle; rename or delete it`,
        );
        this.queue.addAfter(namespace, 60_000);
      }
      return;
    }
    this.foreign.delete(namespace);
    const have = cached.data ?? {};
    const same =
      Object.keys(have).length === Object.keys(desired).length &&
      Object.entries(desired).every(([k, v]) => have[k] === v);
    if (same) return;
    try {
      await this.kube.replace(path, {
        ...body,
        metadata: { ...body.metadata, resourceVersion: cached.metadata?.resourceVersion },
      });
      count('update');
    } catch (err) {
      if (isConflict(err) || isNotFound(err)) {
        this.queue.addAfter(namespace, 200);
        return;
      }
      const code = statusCode(err);
      if (code !== undefined && code >= 400 && code < 500 && code !== 429) {
        this.foreign.add(namespace);
        log.warn(
          `ConfigMap ${namespace}/${TRUST_BUNDLE_CONFIGMAP} refuses the trust bundle (${describeApiError(err)}); pods there do not get it and CA rotations do not wait on it. Delete the ConfigMap so Sigil can write it again`,
        );
        this.queue.addAfter(namespace, 60_000);
        return;
      }
      log.warn('could not write the trust bundle; retrying', { error: describeApiError(err) });
      throw err;
    }
  }
}
