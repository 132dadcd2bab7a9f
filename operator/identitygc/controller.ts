// Deletes identity Certificates (those the webhook created, labelled
// sigil.dev/identity=true) and their Secrets once no pod has used them for a
// grace period. Certificates people created are never touched. Pods are
// watched only if they carry the sigil.dev/identity label the webhook sets.
import {
  CoreV1Api,
  type CustomObjectsApi,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1Pod,
} from '@kubernetes/client-node';
import type { Logger } from 'winston';
import { type Certificate, GROUP, Label, Plural, VERSION } from '../../lib/api/types.ts';
import { describeApiError, isNotFound } from '../../lib/kube/errors.ts';
import { Informer } from '../../lib/kube/informer.ts';
import { WorkQueue } from '../../lib/kube/queue.ts';

export const LAST_USED_ANNOTATION = 'sigil.dev/last-used';
const POD_LABEL = 'sigil.dev/identity';
const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export interface IdentityGcOptions {
  kc: KubeConfig;
  custom: CustomObjectsApi;
  certificates: Informer<Certificate>;
  watchNamespace?: string | undefined;
  gracePeriodMs: number;
  logger: Logger;
  now: () => Date;
}

export class IdentityGarbageCollector {
  private readonly o: IdentityGcOptions;
  private readonly core: CoreV1Api;
  readonly pods: Informer<V1Pod>;
  private readonly users = new Map<string, number>();
  private readonly queue: WorkQueue;

  constructor(o: IdentityGcOptions) {
    this.o = o;
    this.core = o.kc.makeApiClient(CoreV1Api);
    this.pods = new Informer<V1Pod>(o.kc, {
      name: 'identity-pods',
      path: o.watchNamespace ? `/api/v1/namespaces/${o.watchNamespace}/pods` : '/api/v1/pods',
      labelSelector: POD_LABEL,
      list: () =>
        o.watchNamespace
          ? this.core.listNamespacedPod({ namespace: o.watchNamespace, labelSelector: POD_LABEL })
          : this.core.listPodForAllNamespaces({ labelSelector: POD_LABEL }),
      logger: o.logger,
    });
    const keyOf = (p: V1Pod) => `${p.metadata?.namespace}/${p.metadata?.labels?.[POD_LABEL]}`;
    this.pods
      .on('add', (p) => this.users.set(keyOf(p), (this.users.get(keyOf(p)) ?? 0) + 1))
      .on('delete', (p) => {
        const key = keyOf(p);
        const left = (this.users.get(key) ?? 1) - 1;
        if (left > 0) this.users.set(key, left);
        else {
          this.users.delete(key);
          this.queue.add(key);
        }
      });
    this.queue = new WorkQueue((key) => this.processItem(key), {
      concurrency: 2,
      baseDelayMs: 1000,
      maxDelayMs: 60_000,
    });
    const enqueue = (c: Certificate) => {
      if (c.metadata.labels?.[Label.Identity] === 'true')
        this.queue.add(`${c.metadata.namespace}/${c.metadata.name}`);
    };
    o.certificates.on('add', enqueue).on('update', enqueue);
  }

  async start(): Promise<void> {
    await this.pods.start();
    for (const c of this.o.certificates.list()) {
      if (c.metadata.labels?.[Label.Identity] === 'true')
        this.queue.add(`${c.metadata.namespace}/${c.metadata.name}`);
    }
  }

  stop(): void {
    this.queue.shutdown();
    this.pods.stop();
  }

  private async processItem(key: string): Promise<void> {
    const [namespace, name] = key.split('/') as [string, string];
    const cert = this.o.certificates.get(key);
    if (cert === undefined) return;
    if (cert.metadata.labels?.[Label.Identity] !== 'true') return;
    if ((this.users.get(key) ?? 0) > 0) {
      if (cert.metadata.annotations?.[LAST_USED_ANNOTATION]) await this.annotate(namespace, name, null);
      return;
    }
    const now = this.o.now().getTime();
    const lastUsedText = cert.metadata.annotations?.[LAST_USED_ANNOTATION];
    if (!lastUsedText) {
      // Start the clock now; it survives restarts in the annotation.
      await this.annotate(namespace, name, new Date(now).toISOString());
      this.queue.addAfter(key, this.o.gracePeriodMs);
      return;
    }
    const due = new Date(lastUsedText).getTime() + this.o.gracePeriodMs;
    if (Number.isNaN(due) || now < due) {
      this.queue.addAfter(key, Number.isNaN(due) ? this.o.gracePeriodMs : due - now);
      return;
    }
    try {
      await this.o.custom.deleteNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural: Plural.Certificate,
        name,
      });
      await this.core.deleteNamespacedSecret({ name: cert.spec.secretName, namespace }).catch((err) => {
        if (!isNotFound(err)) throw err;
      });
      this.o.logger.info('deleted unused identity Certificate and its Secret', {
        controller: 'identity-gc',
        key,
        namespace,
        lastUsed: lastUsedText,
      });
    } catch (err) {
      if (isNotFound(err)) return;
      this.o.logger.warn('could not delete unused identity', {
        controller: 'identity-gc',
        key,
        error: describeApiError(err),
      });
      this.queue.retry(key);
    }
  }

  private async annotate(namespace: string, name: string, value: string | null) {
    await this.o.custom
      .patchNamespacedCustomObject(
        {
          group: GROUP,
          version: VERSION,
          namespace,
          plural: Plural.Certificate,
          name,
          body: { metadata: { annotations: { [LAST_USED_ANNOTATION]: value } } },
        },
        MERGE_PATCH,
      )
      .catch((err) => {
        if (!isNotFound(err)) throw err;
      });
  }
}
