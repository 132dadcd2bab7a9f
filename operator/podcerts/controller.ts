// Signs PodCertificateRequests addressed to Sigil's signer names (see
// signer.ts) and publishes each issuer's trust bundle as a ClusterTrustBundle
// with its signer name, so pods mount both through the kubelet and no private
// key is ever stored in the API.
import type { KubernetesObject, V1ObjectMeta } from '@kubernetes/client-node';
import type { Logger } from 'winston';
import type { IssuerKind } from '../../lib/api/types.ts';
import { type Kube, type KubeAccess, kubeFor, resourcePath } from '../../lib/kube/client.ts';
import { describeApiError, isConflict, isNotFound, statusCode } from '../../lib/kube/errors.ts';
import { Informer } from '../../lib/kube/informer.ts';
import { WorkQueue } from '../../lib/kube/queue.ts';
import { listPage } from '../../lib/kube/rest.ts';
import { toPemBundle } from '../../lib/pki/certificate.ts';
import { signPublicKey } from '../../lib/pki/issue.ts';
import { rfc3339 } from '../../lib/time.ts';
import { EventRecorder, type InvolvedObject } from '../events.ts';
import { type IssuerController, type IssuerState, issuerKey, parseIssuerKey } from '../issuers/controller.ts';
import type { OperatorMetrics } from '../metrics.ts';
import { reconcileKey } from '../reconcile.ts';
import {
  type Decision,
  decidePodCertificate,
  lifetime,
  type PodCertificateRequestSpec,
  parseSignerName,
  type SigningIssuer,
  signerNameFor,
  trustBundleObjectName,
} from './signer.ts';

export const CERTIFICATES_GROUP = 'certificates.k8s.io';
/** Versions that serve PodCertificateRequests and ClusterTrustBundles, newest first. */
const VERSIONS = ['v1', 'v1beta1'] as const;
/** The label on every ClusterTrustBundle Sigil writes: only those are watched, and only those are deleted. */
export const TRUST_BUNDLE_OBJECT_LABEL = 'sigil.dev/issuer-bundle';

export interface PodCertificateApis {
  /** certificates.k8s.io version serving podcertificaterequests, if any. */
  podCertificateRequests: string | undefined;
  /** certificates.k8s.io version serving clustertrustbundles, if any. */
  clusterTrustBundles: string | undefined;
}

/** Which certificates.k8s.io versions serve the two resources (v1 from Kubernetes 1.37, v1beta1 1.33–1.36 behind gates). */
export async function discoverPodCertificateApis(kc: KubeAccess): Promise<PodCertificateApis> {
  const kube = kubeFor(kc);
  const found: PodCertificateApis = { podCertificateRequests: undefined, clusterTrustBundles: undefined };
  for (const version of VERSIONS) {
    let resources: { name: string }[];
    try {
      resources =
        (await kube.get<{ resources?: { name: string }[] }>(`/apis/${CERTIFICATES_GROUP}/${version}`))
          .resources ?? [];
    } catch (err) {
      if (isNotFound(err)) continue;
      throw err;
    }
    const names = new Set(resources.map((r) => r.name));
    if (!found.podCertificateRequests && names.has('podcertificaterequests/status'))
      found.podCertificateRequests = version;
    if (!found.clusterTrustBundles && names.has('clustertrustbundles')) found.clusterTrustBundles = version;
  }
  return found;
}

interface PodCertificateRequest extends KubernetesObject {
  metadata: V1ObjectMeta;
  spec: PodCertificateRequestSpec;
  status?: { conditions?: { type: string; status: string }[]; certificateChain?: string };
}

interface ClusterTrustBundle extends KubernetesObject {
  metadata: V1ObjectMeta;
  spec: { signerName?: string; trustBundle: string };
}

/** A decision that is written into the request. */
type Answer = Exclude<Decision, { kind: 'ignore' } | { kind: 'wait' }>;

const FINAL = new Set(['Issued', 'Denied', 'Failed']);
const finished = (r: PodCertificateRequest) =>
  (r.status?.conditions ?? []).some((c) => FINAL.has(c.type) && c.status === 'True');

/** A request naming an issuer that does not exist waits this long (an install in progress), then is denied. */
const MISSING_ISSUER_GRACE_MS = 2 * 60_000;

/** The kubelet starts a refresh up to this long after beginRefreshAt. */
const KUBELET_REFRESH_JITTER_MS = 5 * 60_000;

/** RFC 3339 in whole seconds, as the API server stores times. */

export interface PodCertificateControllerOptions {
  kc: KubeAccess;
  apis: PodCertificateApis;
  issuers: IssuerController;
  clusterDomain?: string | undefined;
  /** Sign only requests of this namespace (the operator's watch namespace). */
  watchNamespace?: string | undefined;
  concurrency?: number | undefined;
  logger: Logger;
  metrics: OperatorMetrics;
  now: () => Date;
  normalEventsPerSecond?: number | undefined;
  eventRepeatIntervalMs?: number | undefined;
}

export class PodCertificateController {
  readonly requests: Informer<PodCertificateRequest> | undefined;
  readonly bundles: Informer<ClusterTrustBundle> | undefined;
  private readonly o: PodCertificateControllerOptions;
  private readonly kube: Kube;
  private readonly queue: WorkQueue;
  private readonly bundleQueue: WorkQueue;
  private readonly events: EventRecorder;
  /** When each pending request was first seen, for the request→Issued histogram. */
  private readonly firstSeen = new Map<string, number>();
  /**
   * The certificate each pod holds now, by pod UID: which issuer and CA signed it and until when the
   * kubelet keeps it (its refresh time plus the kubelet's jitter, or its end). A CA rotation waits for
   * those of the old CA: they cannot be re-issued early. Kept in memory only: requests are deleted
   * 15 minutes after creation, so a new leader knows only what it signs itself.
   */
  private readonly podLeaves = new Map<string, { issuer: string; signer: string; until: number }>();
  /** Bundle objects whose writes are refused (someone else's name, no attest right): rotations do not wait on them. */
  private readonly unwritable = new Set<string>();

  constructor(o: PodCertificateControllerOptions) {
    this.o = o;
    this.kube = kubeFor(o.kc);
    this.events = new EventRecorder({
      kube: this.kube,
      component: 'sigil-operator',
      eventNamespace: 'default',
      normalPerSecond: o.normalEventsPerSecond ?? 10,
      repeatIntervalMs: o.eventRepeatIntervalMs,
      metrics: o.metrics,
      logger: o.logger,
    });
    this.queue = new WorkQueue(
      (key) => reconcileKey('podcertificates', key, (k) => this.sync(k), this.queue, o.metrics, o.logger),
      {
        concurrency: o.concurrency ?? 8,
        baseDelayMs: 500,
        maxDelayMs: 30_000,
        onDepth: (d) => o.metrics.queueDepth.set({ controller: 'podcertificates' }, d),
        onLatency: (s) => o.metrics.queueLatency.observe({ controller: 'podcertificates' }, s),
      },
    );
    this.bundleQueue = new WorkQueue(
      (key) =>
        reconcileKey(
          'clustertrustbundles',
          key,
          (k) => this.syncBundle(k),
          this.bundleQueue,
          o.metrics,
          o.logger,
        ),
      {
        concurrency: 2,
        baseDelayMs: 500,
        maxDelayMs: 60_000,
        onDepth: (d) => o.metrics.queueDepth.set({ controller: 'clustertrustbundles' }, d),
        onLatency: (s) => o.metrics.queueLatency.observe({ controller: 'clustertrustbundles' }, s),
      },
    );
    const pcrVersion = o.apis.podCertificateRequests;
    if (pcrVersion) {
      const path = resourcePath({
        group: CERTIFICATES_GROUP,
        version: pcrVersion,
        plural: 'podcertificaterequests',
        namespace: o.watchNamespace,
      });
      this.requests = new Informer<PodCertificateRequest>(o.kc, {
        name: 'podcertificaterequests',
        path,
        list: (page) => listPage<PodCertificateRequest>(o.kc, path, {}, page),
        logger: o.logger,
        onRequest: (verb) => o.metrics.apiRequests.inc({ verb, resource: 'podcertificaterequests' }),
        // Requests for other signers, and answered ones, are kept as their name only.
        transform: (r) =>
          parseSignerName(r.spec?.signerName ?? '') !== undefined && !finished(r)
            ? {
                metadata: {
                  name: r.metadata.name,
                  namespace: r.metadata.namespace,
                  uid: r.metadata.uid,
                  resourceVersion: r.metadata.resourceVersion,
                  creationTimestamp: r.metadata.creationTimestamp,
                },
                spec: r.spec,
              }
            : {
                metadata: { name: r.metadata.name, namespace: r.metadata.namespace },
                spec: { signerName: '' } as PodCertificateRequestSpec,
                status: { conditions: [{ type: 'Issued', status: 'True' }] },
              },
      });
      const enqueue = (r: PodCertificateRequest) => {
        const key = `${r.metadata.namespace}/${r.metadata.name}`;
        if (finished(r)) {
          this.firstSeen.delete(key);
          return;
        }
        if (!this.firstSeen.has(key)) this.firstSeen.set(key, Date.now());
        this.queue.add(key);
      };
      this.requests.on('add', enqueue).on('update', enqueue);
      this.requests.on('delete', (r) => {
        const key = `${r.metadata.namespace}/${r.metadata.name}`;
        this.firstSeen.delete(key);
        this.queue.cancel(key);
      });
    }
    const ctbVersion = o.apis.clusterTrustBundles;
    if (ctbVersion) {
      const path = resourcePath({
        group: CERTIFICATES_GROUP,
        version: ctbVersion,
        plural: 'clustertrustbundles',
      });
      const labelSelector = `${TRUST_BUNDLE_OBJECT_LABEL}=true`;
      this.bundles = new Informer<ClusterTrustBundle>(o.kc, {
        name: 'clustertrustbundles',
        path,
        labelSelector,
        list: (page) => listPage<ClusterTrustBundle>(o.kc, path, { labelSelector }, page),
        logger: o.logger,
        onRequest: (verb) => o.metrics.apiRequests.inc({ verb, resource: 'clustertrustbundles' }),
      });
      const touch = (b: ClusterTrustBundle) => {
        if (b.spec?.signerName) this.bundleQueue.add(b.spec.signerName);
      };
      this.bundles.on('add', touch).on('update', touch).on('delete', touch);
    }
  }

  async start(): Promise<void> {
    await Promise.all([this.requests?.start(), this.bundles?.start()]);
    for (const st of this.o.issuers.all()) this.onIssuerChanged(st);
  }

  stop(): void {
    this.queue.shutdown();
    this.bundleQueue.shutdown();
    this.requests?.stop();
    this.bundles?.stop();
  }

  /** An issuer changed: its bundle object, and requests waiting for it, are looked at again. */
  onIssuerChanged(st: Pick<IssuerState, 'kind' | 'namespace' | 'name'>): void {
    const signer = signerNameFor(st.kind, st.namespace, st.name);
    if (this.bundles) this.bundleQueue.add(signer);
    for (const r of this.requests?.list() ?? [])
      if (!finished(r) && r.spec.signerName === signer)
        this.queue.add(`${r.metadata.namespace}/${r.metadata.name}`);
  }

  /** An issuer's key: Issuer/<ns>/<name> or ClusterIssuer/<name>, as the issuer controller names them. */
  onIssuerKey(key: string): void {
    const ref = parseIssuerKey(key);
    if (ref) this.onIssuerChanged(ref);
  }

  /** 1 while the issuer's ClusterTrustBundle does not hold these anchors yet (0 without the API, or when it is not Sigil's to write). */
  bundleRemaining(key: string, anchors: readonly string[]): number {
    if (!this.bundles) return 0;
    const st = this.o.issuers.byKey(key);
    if (!st) return 0;
    const objectName = trustBundleObjectName(signerNameFor(st.kind, st.namespace, st.name));
    if (this.unwritable.has(objectName)) return 0;
    if (st.bundleAnchors.join() !== anchors.join()) return 1;
    return this.bundles.get(objectName)?.spec.trustBundle === st.bundlePem ? 0 : 1;
  }

  /** Pod certificates of the issuer on the rotation's old CA (still held) and on its new one. */
  leaves(
    key: string,
    fromFingerprint: string,
    toFingerprint: string,
  ): { onOld: number; onNew: number; refreshing: number; refreshedBy: Date | undefined } {
    const now = this.o.now().getTime();
    let refreshing = 0;
    let onNew = 0;
    let last = 0;
    for (const [uid, leaf] of this.podLeaves) {
      if (leaf.until <= now) {
        this.podLeaves.delete(uid);
        continue;
      }
      if (leaf.issuer !== key) continue;
      if (leaf.signer === fromFingerprint) {
        refreshing++;
        last = Math.max(last, leaf.until);
      } else if (leaf.signer === toFingerprint) onNew++;
    }
    return { onOld: 0, onNew, refreshing, refreshedBy: last ? new Date(last) : undefined };
  }

  private issuerFor(
    namespace: string | undefined,
    kind: IssuerKind,
    name: string,
  ): SigningIssuer | undefined {
    const st = this.o.issuers.get(kind, namespace, name);
    if (!st) return undefined;
    return {
      ref: { kind, namespace, name },
      ready: st.ready && !!st.ca,
      message: st.message,
      trustDomain: st.trustDomain,
      policy: st.issuer.spec.policy,
      caNotAfter: st.ca?.facts.notAfter,
    };
  }

  private async sync(key: string): Promise<void> {
    const request = this.requests?.get(key);
    if (!request || finished(request)) {
      this.firstSeen.delete(key);
      this.queue.forget(key);
      return;
    }
    const namespace = request.metadata.namespace!;
    const now = this.o.now();
    const decided = decidePodCertificate(request.spec, {
      namespace,
      clusterDomain: this.o.clusterDomain ?? 'cluster.local',
      issuer: (ref) => this.issuerFor(ref.namespace, ref.kind, ref.name),
      now,
    });
    if (decided.kind === 'ignore') return;
    const signer = request.spec.signerName;
    const pod: InvolvedObject = {
      apiVersion: 'v1',
      kind: 'Pod',
      name: request.spec.podName,
      namespace,
      uid: request.spec.podUID,
    };
    const log = this.o.logger.child({ controller: 'podcertificates', key, signer });
    let decision: Answer;
    if (decided.kind !== 'wait') decision = decided;
    else {
      const age = now.getTime() - new Date(request.metadata.creationTimestamp ?? now).getTime();
      if (decided.reason === 'IssuerNotFound' && age > MISSING_ISSUER_GRACE_MS) {
        // Not a moment of install order any more: a signer name nobody serves. Denied, so the pod says why.
        decision = {
          kind: 'deny',
          reason: 'IssuerNotFound',
          message: `${decided.message}; the pod must be created again once it exists`,
        };
      } else {
        // One Event per pod and reason, whatever the number of its requests.
        this.events.record(pod, 'Warning', decided.reason, decided.message);
        log.debug('request waits', { reason: decided.reason, message: decided.message });
        // Issuer changes enqueue it again; this is the backstop.
        this.queue.addAfter(key, decided.reason === 'IssuerNotFound' ? MISSING_ISSUER_GRACE_MS : 30_000);
        return;
      }
    }
    const answer = await this.answer(request, decision, now);
    if (answer === 'conflict') {
      this.queue.addAfter(key, 200);
      return;
    }
    if (answer === 'gone') return;
    const result = decision.kind === 'issue' ? 'issued' : decision.kind === 'deny' ? 'denied' : 'failed';
    // Any pod can name any signer and any namespace can hold Issuers: only existing ClusterIssuers'
    // signer names become label values.
    const ref = parseSignerName(signer);
    const known = ref && ref !== 'malformed' && this.o.issuers.get(ref.kind, ref.namespace, ref.name);
    const label = !known ? 'unknown' : ref.kind === 'ClusterIssuer' ? signer : 'issuers.sigil.dev/*';
    this.o.metrics.podCertificateRequests.inc({ signer: label, result });
    const seen = this.firstSeen.get(key);
    this.firstSeen.delete(key);
    if (decision.kind === 'issue') {
      if (seen !== undefined) this.o.metrics.podCertificateLatency.observe((Date.now() - seen) / 1000);
      this.events.record(
        pod,
        'Normal',
        'Issued',
        `${signer} issued ${request.spec.podName}'s certificate (PodCertificateRequest ${request.metadata.name}, ${answer})`,
      );
      log.debug('issued', { detail: answer });
    } else {
      this.events.record(
        pod,
        'Warning',
        decision.reason,
        `${signer} ${decision.kind === 'deny' ? 'denied' : 'failed'} PodCertificateRequest ${request.metadata.name}: ${decision.message}`,
      );
      log.info(decision.kind === 'deny' ? 'denied' : 'failed', {
        reason: decision.reason,
        message: decision.message,
      });
    }
  }

  /** Writes the answer into the request's status; 'conflict' when the request changed underneath. */
  private async answer(request: PodCertificateRequest, decision: Answer, now: Date): Promise<string> {
    const path = resourcePath({
      group: CERTIFICATES_GROUP,
      version: this.o.apis.podCertificateRequests!,
      plural: 'podcertificaterequests',
      namespace: request.metadata.namespace,
      name: request.metadata.name,
      subresource: 'status',
    });
    let status: Record<string, unknown>;
    let detail: string;
    let leaf: { issuer: string; signer: string; until: number } | undefined;
    if (decision.kind === 'issue') {
      const st = this.o.issuers.get(decision.issuer.kind, decision.issuer.namespace, decision.issuer.name);
      if (!st?.ca) return 'conflict';
      const signed = await signPublicKey(st.ca, decision.request, decision.key.spki, now);
      const refresh = decision.refreshAt(signed.notBefore, signed.notAfter);
      leaf = {
        issuer: issuerKey(st.kind, st.namespace, st.name),
        signer: st.ca.facts.fingerprint,
        // The kubelet refreshes at beginRefreshAt plus up to 5 minutes of jitter; a minute more for the new request.
        until: Math.min(refresh.getTime() + KUBELET_REFRESH_JITTER_MS + 60_000, signed.notAfter.getTime()),
      };
      status = {
        conditions: [
          {
            type: 'Issued',
            status: 'True',
            reason: 'Issued',
            message: `Signed by ${st.kind} ${st.name} for ${decision.request.uris?.[0]}`,
            lastTransitionTime: rfc3339(now),
          },
        ],
        // The chain up to, not including, the trust anchor: peers have that from the ClusterTrustBundle.
        certificateChain: `${signed.leafPem}${toPemBundle(st.ca.chain.slice(0, -1))}`,
        notBefore: rfc3339(signed.notBefore),
        notAfter: rfc3339(signed.notAfter),
        beginRefreshAt: rfc3339(refresh),
      };
      detail = `valid ${lifetime(signed.notBefore, signed.notAfter)}, refresh from ${rfc3339(refresh)}`;
    } else {
      status = {
        conditions: [
          {
            type: decision.kind === 'deny' ? 'Denied' : 'Failed',
            status: 'True',
            reason: decision.reason,
            message: decision.message.slice(0, 4096),
            lastTransitionTime: rfc3339(now),
          },
        ],
      };
      detail = decision.reason;
    }
    const write = (body: Record<string, unknown>) =>
      this.kube.mergePatch(path, {
        metadata: { resourceVersion: request.metadata.resourceVersion },
        status: body,
      });
    try {
      await write(status);
      this.o.metrics.apiRequests.inc({ verb: 'patch', resource: 'podcertificaterequests' });
      if (leaf) this.podLeaves.set(request.spec.podUID, leaf);
    } catch (err) {
      if (isConflict(err)) return 'conflict';
      if (isNotFound(err)) return 'gone';
      if (statusCode(err) === 422 && decision.kind === 'issue') {
        // The API server refuses what Sigil signed (say, a CA chain over its 100 KiB): asking again
        // would be refused again. The pod learns why.
        const message = `the API server refused the certificate ${decision.issuer.kind} ${decision.issuer.name} signed: ${describeApiError(err).slice(0, 2000)}. Fix the issuer's CA Secret`;
        await write({
          conditions: [
            {
              type: 'Failed',
              status: 'True',
              reason: 'SignedCertificateRefused',
              message,
              lastTransitionTime: rfc3339(now),
            },
          ],
        });
        return 'SignedCertificateRefused';
      }
      if (statusCode(err) === 403)
        throw new Error(
          `the API server refused the answer to PodCertificateRequest ${request.metadata.namespace}/${request.metadata.name} (${describeApiError(err)}): the operator needs the sign verb on signers ${request.spec.signerName.split('/')[0]}/* and patch on podcertificaterequests/status (the chart's podCertificates.enabled grants both)`,
        );
      throw err;
    }
    return detail;
  }

  private async syncBundle(signer: string): Promise<void> {
    const ref = parseSignerName(signer);
    if (!ref || ref === 'malformed' || !this.bundles) return;
    // An operator limited to one namespace does not know the Issuers of others: their bundles are not its.
    if (ref.kind === 'Issuer' && this.o.watchNamespace && ref.namespace !== this.o.watchNamespace) return;
    const name = trustBundleObjectName(signer);
    const st = this.o.issuers.get(ref.kind, ref.namespace, ref.name);
    const cached = this.bundles.get(name);
    const version = this.o.apis.clusterTrustBundles!;
    const path = resourcePath({ group: CERTIFICATES_GROUP, version, plural: 'clustertrustbundles', name });
    const log = this.o.logger.child({ controller: 'clustertrustbundles', signer });
    const count = (verb: string) => this.o.metrics.apiRequests.inc({ verb, resource: 'clustertrustbundles' });
    if (!st) {
      if (!cached) return;
      // The issuer is gone: so is what pods trusted it by.
      try {
        await this.kube.delete(path, {
          apiVersion: 'v1',
          kind: 'DeleteOptions',
          preconditions: { resourceVersion: cached.metadata.resourceVersion },
        });
        count('delete');
      } catch (err) {
        if (!isNotFound(err) && !isConflict(err)) throw err;
      }
      return;
    }
    // An issuer that is not ready keeps its last bundle; one that never was has none yet.
    if (!st.bundlePem || cached?.spec.trustBundle === st.bundlePem) return;
    const body: ClusterTrustBundle = {
      apiVersion: `${CERTIFICATES_GROUP}/${version}`,
      kind: 'ClusterTrustBundle',
      metadata: {
        name,
        labels: { [TRUST_BUNDLE_OBJECT_LABEL]: 'true', 'app.kubernetes.io/managed-by': 'sigil-operator' },
        annotations: {
          'sigil.dev/issuer': issuerKey(st.kind, st.namespace, st.name),
        },
        ...(cached ? { resourceVersion: cached.metadata.resourceVersion } : {}),
      },
      spec: { signerName: signer, trustBundle: st.bundlePem },
    };
    try {
      if (cached) {
        await this.kube.replace(path, body);
        count('update');
      } else {
        await this.kube.create(
          resourcePath({ group: CERTIFICATES_GROUP, version, plural: 'clustertrustbundles' }),
          body,
        );
        count('create');
      }
      this.unwritable.delete(name);
    } catch (err) {
      if (isConflict(err) && cached) {
        this.bundleQueue.addAfter(signer, 200);
        return;
      }
      const code = statusCode(err);
      if (code !== undefined && code >= 400 && code < 500 && code !== 429) {
        this.unwritable.add(name);
        log.warn(
          isConflict(err)
            ? `ClusterTrustBundle ${name} exists without the ${TRUST_BUNDLE_OBJECT_LABEL}=true label, so Sigil does not write it and pods mounting ${signer}'s bundle do not get ${st.kind} ${st.name}'s CA from it; delete it so Sigil can publish`
            : `ClusterTrustBundle ${name} refuses the trust bundle (${describeApiError(err)}); the operator needs create and update on clustertrustbundles and the attest verb on signers ${signer.split('/')[0]}/* (the chart's podCertificates.enabled grants them)`,
        );
        this.bundleQueue.addAfter(signer, 60_000);
        return;
      }
      throw err;
    }
  }
}
