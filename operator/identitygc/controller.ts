// Deletes identity Certificates (those the webhook created) and their Secrets
// once no pod has used them for a grace period. Certificates people created
// are never touched. Pods are watched only if they carry the sigil.dev/identity
// label the webhook sets.
//
// Anyone who may create Certificates can set any label, annotation or spec on
// one, so none of them alone makes a Certificate the webhook's. The collector
// acts only on a Certificate that has the webhook's whole shape (see
// webhookShaped): labelled sigil.dev/identity=true, named
// <service account>-sigil-<10 hex> as the webhook names them, writing the
// Secret of its own name, for exactly one SPIFFE ID of its own namespace whose
// service account gives that name. A Certificate-only user can make such a
// Certificate, but its Secret is then one named like it, which Sigil writes
// only for it. And the Secret is deleted only when Sigil wrote it for that very
// Certificate (managed label and certificate-name annotation, which only Secret
// writers can set), with its uid and resourceVersion as preconditions: nothing
// a Certificate-only user sets makes the collector delete a Secret they could
// not delete themselves.
import type { V1Pod, V1Secret } from '@kubernetes/client-node';
import type { Logger } from 'winston';
import { type Certificate, Label, Plural, sigilPath } from '../../lib/api/types.ts';
import { type Kube, type KubeAccess, kubeFor, paths } from '../../lib/kube/client.ts';
import { describeApiError, isConflict, isNotFound } from '../../lib/kube/errors.ts';
import { Informer } from '../../lib/kube/informer.ts';
import { WorkQueue } from '../../lib/kube/queue.ts';
import { listPage } from '../../lib/kube/rest.ts';
import { identityCertificateName, identityNameDigest, parseSpiffeId } from '../../lib/tenancy/index.ts';
import { isoString } from '../../lib/time.ts';
import { ownedBy } from '../certificates/ownership.ts';
import { IdentityUsers, POD_LABEL, podIdentityView } from './users.ts';

export const LAST_USED_ANNOTATION = 'sigil.dev/last-used';

/**
 * Undefined when the Certificate has the shape of one the webhook created
 * (label, deterministic name, own-name Secret, one SPIFFE ID of its namespace
 * whose service account yields the name); otherwise why not.
 */
export function webhookShaped(c: Certificate): string | undefined {
  if (c.metadata.labels?.[Label.Identity] !== 'true') return `it lacks the ${Label.Identity}=true label`;
  const name = c.metadata.name ?? '';
  const digest = identityNameDigest(name);
  if (digest === undefined) return 'its name is not <service account>-sigil-<10 hex digits>';
  if (c.spec.secretName !== name) return 'its spec.secretName is not its own name';
  const uris = c.spec.uris ?? [];
  const prefix = `/ns/${c.metadata.namespace}/sa/`;
  if (uris.length !== 1) return 'it does not name exactly one SPIFFE ID';
  // Read by the tenancy module's canonical rule, the one the operator issued it by.
  const segments = parseSpiffeId(uris[0]!)?.segments ?? [];
  const sa =
    segments.length === 4 &&
    segments[0] === 'ns' &&
    segments[1] === c.metadata.namespace &&
    segments[2] === 'sa'
      ? segments[3]
      : undefined;
  if (!sa) return `its URI is not a SPIFFE ID under ${prefix}`;
  if (identityCertificateName(sa, digest) !== name)
    return `its name does not belong to service account ${sa}`;
  return undefined;
}

export interface IdentityGcOptions {
  kc: KubeAccess;
  certificates: Informer<Certificate>;
  watchNamespace?: string | undefined;
  gracePeriodMs: number;
  logger: Logger;
  now: () => Date;
}

export class IdentityGarbageCollector {
  private readonly o: IdentityGcOptions;
  private readonly kube: Kube;
  readonly pods: Informer<V1Pod>;
  private readonly users = new IdentityUsers();
  private readonly queue: WorkQueue;

  constructor(o: IdentityGcOptions) {
    this.o = o;
    this.kube = kubeFor(o.kc);
    const path = paths.pods(o.watchNamespace);
    this.pods = new Informer<V1Pod>(o.kc, {
      name: 'identity-pods',
      path,
      labelSelector: POD_LABEL,
      // Plain JSON in pages, each cut down to the pod's name, uid and identity label before the next is
      // read: anyone who may create a pod can set the label, so the selector bounds nothing.
      list: (page) => listPage<V1Pod>(o.kc, path, { labelSelector: POD_LABEL }, page),
      transform: podIdentityView,
      logger: o.logger,
    });
    // An identity that loses its last pod (deleted, or relabelled to another identity) is looked at.
    const lookAt = (identity: string | undefined) => {
      if (identity !== undefined) this.queue.add(identity);
    };
    this.pods
      .on('add', (p) => lookAt(this.users.set(p)))
      .on('update', (p, old) => {
        // Same name, new pod (deleted and created again while the watch was down): the old one is gone.
        if (old && old.metadata?.uid !== p.metadata?.uid) lookAt(this.users.delete(old));
        lookAt(this.users.set(p));
      })
      .on('delete', (p) => lookAt(this.users.delete(p)));
    this.queue = new WorkQueue((key) => this.processItem(key), {
      concurrency: 2,
      baseDelayMs: 1000,
      maxDelayMs: 60_000,
    });
    const enqueue = (c: Certificate) => {
      if (webhookShaped(c) === undefined) this.queue.add(`${c.metadata.namespace}/${c.metadata.name}`);
    };
    o.certificates.on('add', enqueue).on('update', enqueue);
  }

  async start(): Promise<void> {
    await this.pods.start();
    for (const c of this.o.certificates.list()) {
      if (webhookShaped(c) === undefined) this.queue.add(`${c.metadata.namespace}/${c.metadata.name}`);
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
    if (webhookShaped(cert) !== undefined) return;
    if (this.users.count(key) > 0) {
      if (cert.metadata.annotations?.[LAST_USED_ANNOTATION]) await this.annotate(namespace, name, null);
      return;
    }
    const now = this.o.now().getTime();
    const lastUsedText = cert.metadata.annotations?.[LAST_USED_ANNOTATION];
    if (!lastUsedText) {
      // Start the clock now; it survives restarts in the annotation.
      await this.annotate(namespace, name, isoString(now));
      this.queue.addAfter(key, this.o.gracePeriodMs);
      return;
    }
    const due = new Date(lastUsedText).getTime() + this.o.gracePeriodMs;
    if (Number.isNaN(due) || now < due) {
      this.queue.addAfter(key, Number.isNaN(due) ? this.o.gracePeriodMs : due - now);
      return;
    }
    try {
      // Read the Secret before the Certificate goes: it is deleted only if Sigil wrote it for this Certificate.
      const secret = await this.kube
        .get<V1Secret>(paths.secrets(namespace, cert.spec.secretName))
        .catch((err) => {
          if (isNotFound(err)) return undefined;
          throw err;
        });
      await this.kube.delete(sigilPath(Plural.Certificate, namespace, name), {
        preconditions: { uid: cert.metadata.uid },
      });
      let secretDeleted = false;
      if (secret && ownedBy(secret, cert)) {
        secretDeleted = await this.kube
          .delete(paths.secrets(namespace, cert.spec.secretName), {
            preconditions: { uid: secret.metadata!.uid, resourceVersion: secret.metadata!.resourceVersion },
          })
          .then(() => true)
          .catch((err) => {
            // Gone already, or changed since it was read (a 409): then it is left alone.
            if (!isNotFound(err) && !isConflict(err)) throw err;
            return false;
          });
      } else if (secret) {
        this.o.logger.warn('left a Secret Sigil did not write for the unused identity Certificate', {
          controller: 'identity-gc',
          key,
          secret: `${namespace}/${cert.spec.secretName}`,
        });
      }
      this.o.logger.info('deleted unused identity Certificate', {
        controller: 'identity-gc',
        key,
        namespace,
        secretDeleted,
        lastUsed: lastUsedText,
      });
    } catch (err) {
      if (isNotFound(err) || isConflict(err)) return;
      this.o.logger.warn('could not delete unused identity', {
        controller: 'identity-gc',
        key,
        error: describeApiError(err),
      });
      this.queue.retry(key);
    }
  }

  private async annotate(namespace: string, name: string, value: string | null) {
    await this.kube
      .mergePatch(sigilPath(Plural.Certificate, namespace, name), {
        metadata: { annotations: { [LAST_USED_ANNOTATION]: value } },
      })
      .catch((err) => {
        if (!isNotFound(err)) throw err;
      });
  }
}
