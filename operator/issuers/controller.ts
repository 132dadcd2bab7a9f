// Issuer and ClusterIssuer controller: loads each issuer's CA Secret, keeps
// the CA ready to sign in memory, and reports Ready with a precise reason.
// CA Secrets are watched one by one, by name: never a watch of all Secrets.
import type { V1Secret } from '@kubernetes/client-node';
import type { Logger } from 'winston';
import {
  API_VERSION,
  type Condition,
  ConditionType,
  findCondition,
  type Issuer,
  type IssuerKind,
  Plural,
  setCondition,
  sigilPath,
} from '../../lib/api/types.ts';
import { type Kube, type KubeAccess, kubeFor, paths } from '../../lib/kube/client.ts';
import { describeApiError, isNotFound } from '../../lib/kube/errors.ts';
import { Informer } from '../../lib/kube/informer.ts';
import { WorkQueue } from '../../lib/kube/queue.ts';
import { listPage } from '../../lib/kube/rest.ts';
import { type CertificateAuthority, loadCertificateAuthority } from '../../lib/pki/ca.ts';
import { isPkiError, PkiErrorCode } from '../../lib/pki/errors.ts';
import { EventRecorder } from '../events.ts';
import type { OperatorMetrics } from '../metrics.ts';
import { reconcileKey } from '../reconcile.ts';

/** Reasons on an issuer's Ready condition. */
export const IssuerReason = {
  /** The CA is valid and its key matches. */
  Ready: 'CAReady',
  /** The CA Secret does not exist. */
  SecretNotFound: 'SecretNotFound',
  /** tls.crt or tls.key is missing, not PEM, or does not parse. */
  MalformedCA: 'MalformedCA',
  /** The certificate is not a CA, or may not sign certificates. */
  NotACA: 'NotACA',
  /** tls.key does not belong to the CA certificate. */
  KeyMismatch: 'KeyMismatch',
  /** The CA certificate has expired. */
  Expired: 'Expired',
  /** The CA certificate is not valid yet. */
  NotYetValid: 'NotYetValid',
  /** The CA Secret could not be read. */
  SecretReadFailed: 'SecretReadFailed',
} as const;

function reasonFor(code: string): string {
  switch (code) {
    case PkiErrorCode.NotACA:
    case PkiErrorCode.NoCertSignUsage:
      return IssuerReason.NotACA;
    case PkiErrorCode.KeyMismatch:
      return IssuerReason.KeyMismatch;
    case PkiErrorCode.Expired:
      return IssuerReason.Expired;
    case PkiErrorCode.NotYetValid:
      return IssuerReason.NotYetValid;
    default:
      return IssuerReason.MalformedCA;
  }
}

/** What the Certificate controller needs to know about an issuer. */
export interface IssuerState {
  kind: IssuerKind;
  namespace: string | undefined;
  name: string;
  issuer: Issuer;
  ready: boolean;
  reason: string;
  message: string;
  ca: CertificateAuthority | undefined;
  trustDomain: string;
}

export function issuerKey(kind: IssuerKind, namespace: string | undefined, name: string): string {
  return kind === 'ClusterIssuer' ? `ClusterIssuer/${name}` : `Issuer/${namespace}/${name}`;
}

export interface IssuerControllerOptions {
  kc: KubeAccess;
  operatorNamespace: string;
  /** Limit Issuers to one namespace; all when undefined. ClusterIssuers are always watched. */
  watchNamespace?: string | undefined;
  trustDomain: string;
  logger: Logger;
  metrics: OperatorMetrics;
  now: () => Date;
  /** Called when an issuer's readiness or CA changed, so dependent Certificates are re-checked. */
  onIssuerChanged: (key: string) => void;
  /** A repeated Event's count is written at most this often (default 10 s). */
  eventRepeatIntervalMs?: number | undefined;
}

export class IssuerController {
  readonly issuers: Informer<Issuer>;
  readonly clusterIssuers: Informer<Issuer>;
  private readonly states = new Map<string, IssuerState>();
  /** One informer per CA Secret, keyed namespace/name, with the issuer keys using it. */
  private readonly caSecrets = new Map<string, { informer: Informer<V1Secret>; users: Set<string> }>();
  private readonly queue: WorkQueue;
  private readonly o: IssuerControllerOptions;
  private readonly kube: Kube;
  /** Parsed CAs by Secret uid+resourceVersion: parsing is done once per Secret version. */
  private readonly caCache = new Map<string, CertificateAuthority>();
  private readonly events: EventRecorder;

  constructor(o: IssuerControllerOptions) {
    this.o = o;
    this.kube = kubeFor(o.kc);
    this.events = new EventRecorder({
      kube: this.kube,
      component: 'sigil-operator',
      // ClusterIssuers are cluster-scoped: the API server takes Events about such objects only in
      // the default namespace (kubectl describe finds them there).
      eventNamespace: 'default',
      normalPerSecond: 0,
      repeatIntervalMs: o.eventRepeatIntervalMs,
      metrics: o.metrics,
      logger: o.logger,
      now: o.now,
    });
    const onRequest = (resource: string) => (verb: string) => o.metrics.apiRequests.inc({ verb, resource });
    const issuerInformer = (kind: IssuerKind, plural: typeof Plural.Issuer | typeof Plural.ClusterIssuer) => {
      const ns = kind === 'Issuer' ? o.watchNamespace : undefined;
      return new Informer<Issuer>(o.kc, {
        name: plural,
        path: sigilPath(plural, ns),
        list: (page) => listPage<Issuer>(o.kc, sigilPath(plural, ns), {}, page),
        logger: o.logger,
        onRequest: onRequest(plural),
      })
        .on('add', (i) => this.enqueue(kind, i))
        .on('update', (i) => this.enqueue(kind, i))
        .on('delete', (i) => this.enqueue(kind, i));
    };
    this.issuers = issuerInformer('Issuer', Plural.Issuer);
    this.clusterIssuers = issuerInformer('ClusterIssuer', Plural.ClusterIssuer);
    this.queue = new WorkQueue((key) => this.run(key), {
      concurrency: 2,
      baseDelayMs: 1000,
      maxDelayMs: 60_000,
      onDepth: (d) => o.metrics.queueDepth.set({ controller: 'issuers' }, d),
      onLatency: (s) => o.metrics.queueLatency.observe({ controller: 'issuers' }, s),
    });
  }

  private enqueue(kind: IssuerKind, issuer: Issuer) {
    this.queue.add(issuerKey(kind, issuer.metadata.namespace, issuer.metadata.name!));
  }

  async start(): Promise<void> {
    await Promise.all([this.issuers.start(), this.clusterIssuers.start()]);
  }

  /** Resolves once every issuer known at start has been evaluated. */
  async waitForInitialSync(): Promise<void> {
    await this.queue.idle();
  }

  stop(): void {
    this.queue.shutdown();
    this.issuers.stop();
    this.clusterIssuers.stop();
    for (const { informer } of this.caSecrets.values()) informer.stop();
    this.caSecrets.clear();
  }

  get(kind: IssuerKind, namespace: string | undefined, name: string): IssuerState | undefined {
    return this.states.get(issuerKey(kind, namespace, name));
  }

  cachedSecretCount(): number {
    let n = 0;
    for (const { informer } of this.caSecrets.values()) n += informer.size;
    return n;
  }

  private caSecretInformer(namespace: string, name: string, user: string): Informer<V1Secret> {
    const key = `${namespace}/${name}`;
    let entry = this.caSecrets.get(key);
    if (!entry) {
      const informer = new Informer<V1Secret>(this.o.kc, {
        name: `ca-secret ${key}`,
        path: paths.secrets(namespace),
        fieldSelector: `metadata.name=${name}`,
        list: (page) =>
          listPage<V1Secret>(
            this.o.kc,
            paths.secrets(namespace),
            { fieldSelector: `metadata.name=${name}` },
            page,
          ),
        logger: this.o.logger,
        onRequest: (verb) => this.o.metrics.apiRequests.inc({ verb, resource: 'secrets' }),
      });
      const notify = () => {
        for (const u of this.caSecrets.get(key)?.users ?? []) this.queue.add(u);
      };
      informer.on('add', notify).on('update', notify).on('delete', notify);
      entry = { informer, users: new Set() };
      this.caSecrets.set(key, entry);
      void informer.start();
    }
    entry.users.add(user);
    return entry.informer;
  }

  private releaseCaSecrets(user: string, keep?: string) {
    for (const [key, entry] of this.caSecrets) {
      if (key === keep) continue;
      entry.users.delete(user);
      if (entry.users.size === 0) {
        entry.informer.stop();
        this.caSecrets.delete(key);
      }
    }
  }

  private run(key: string): Promise<void> {
    return reconcileKey(
      'issuers',
      key,
      (k) => this.processItem(k),
      this.queue,
      this.o.metrics,
      this.o.logger,
    );
  }

  private async processItem(key: string): Promise<void> {
    const [kind, ...rest] = key.split('/') as [IssuerKind, ...string[]];
    const namespace = kind === 'Issuer' ? rest[0] : undefined;
    const name = kind === 'Issuer' ? rest[1]! : rest[0]!;
    const informer = kind === 'Issuer' ? this.issuers : this.clusterIssuers;
    const issuer = informer.get(namespace ? `${namespace}/${name}` : name);
    const log = this.o.logger.child({ controller: 'issuers', key, namespace });
    if (!issuer) {
      this.releaseCaSecrets(key);
      if (this.states.delete(key)) this.o.onIssuerChanged(key);
      return;
    }
    const secretNamespace = namespace ?? this.o.operatorNamespace;
    const secretName = issuer.spec.ca.secretName;
    const secretKey = `${secretNamespace}/${secretName}`;
    this.releaseCaSecrets(key, secretKey);
    const secrets = this.caSecretInformer(secretNamespace, secretName, key);
    await secrets.waitForSync();

    // Decide.
    const now = this.o.now();
    const secret = secrets.get(secretKey);
    let ca: CertificateAuthority | undefined;
    let reason: string = IssuerReason.Ready;
    let message: string;
    const where = `Secret ${secretKey}`;
    if (!secret) {
      reason = IssuerReason.SecretNotFound;
      message = `CA Secret ${secretKey} does not exist; create it with the CA certificate in tls.crt and its key in tls.key`;
    } else {
      const cacheKey = `${secret.metadata?.uid}/${secret.metadata?.resourceVersion}`;
      try {
        ca = this.caCache.get(cacheKey);
        if (!ca) {
          const crt = secret.data?.['tls.crt'] ? Buffer.from(secret.data['tls.crt'], 'base64') : undefined;
          const k = secret.data?.['tls.key'] ? Buffer.from(secret.data['tls.key'], 'base64') : undefined;
          ca = loadCertificateAuthority(crt, k, now, where);
        } else if (now >= ca.facts.notAfter || now < ca.facts.notBefore) {
          ca = loadCertificateAuthority(
            Buffer.from(secret.data!['tls.crt']!, 'base64'),
            Buffer.from(secret.data!['tls.key']!, 'base64'),
            now,
            where,
          );
        }
        for (const k of this.caCache.keys())
          if (k.startsWith(`${secret.metadata?.uid}/`)) this.caCache.delete(k);
        this.caCache.set(cacheKey, ca);
        message = `CA "${ca.facts.subject.commonName ?? ca.facts.fingerprint}" is valid until ${ca.facts.notAfter.toISOString()}`;
      } catch (err) {
        ca = undefined;
        if (!isPkiError(err)) throw err;
        reason = reasonFor(err.code);
        message = err.message;
      }
    }
    const ready = reason === IssuerReason.Ready;
    const previous = this.states.get(key);
    const state: IssuerState = {
      kind,
      namespace,
      name,
      issuer,
      ready,
      reason,
      message,
      ca,
      trustDomain: issuer.spec.trustDomain ?? this.o.trustDomain,
    };
    this.states.set(key, state);
    const labels = { name, namespace: namespace ?? '', kind };
    for (const status of ['True', 'False']) {
      this.o.metrics.issuerReady.set(
        { ...labels, condition: status },
        (ready ? 'True' : 'False') === status ? 1 : 0,
      );
    }
    if (ca) this.o.metrics.caExpiration.set(labels, ca.facts.notAfter.getTime() / 1000);
    else this.o.metrics.caExpiration.remove(labels);

    // Re-check when the CA becomes valid or expires.
    if (ca) this.queue.addAfter(key, ca.facts.notAfter.getTime() - now.getTime() + 1000);
    if (reason === IssuerReason.NotYetValid && secret) this.queue.addAfter(key, 60_000);

    const changed =
      !previous ||
      previous.ready !== ready ||
      previous.ca?.facts.fingerprint !== ca?.facts.fingerprint ||
      previous.trustDomain !== state.trustDomain ||
      JSON.stringify(previous.issuer.spec.policy) !== JSON.stringify(issuer.spec.policy);
    if (changed) {
      log.info(ready ? 'issuer ready' : 'issuer not ready', { reason, detail: message });
      this.o.onIssuerChanged(key);
    }
    // Every reason status gives is an Event on the issuer too (repeats counted on one).
    if (!ready)
      this.events.record(
        { apiVersion: API_VERSION, kind, name, namespace, uid: issuer.metadata.uid },
        'Warning',
        reason,
        message,
      );

    // Act: write status when it changed.
    const condition: Condition = {
      type: ConditionType.Ready,
      status: ready ? 'True' : 'False',
      reason,
      message,
      lastTransitionTime: now.toISOString(),
      observedGeneration: issuer.metadata.generation,
    };
    const conditions = setCondition(issuer.status?.conditions, condition);
    const status = {
      conditions,
      notAfter: ca?.facts.notAfter.toISOString(),
      fingerprint: ca?.facts.fingerprint,
    };
    const current = findCondition(issuer.status?.conditions, ConditionType.Ready);
    if (
      current?.status === condition.status &&
      current.reason === condition.reason &&
      current.message === condition.message &&
      current.observedGeneration === condition.observedGeneration &&
      issuer.status?.notAfter === status.notAfter &&
      issuer.status?.fingerprint === status.fingerprint
    ) {
      return;
    }
    try {
      const body = {
        apiVersion: API_VERSION,
        kind,
        status: { ...status, notAfter: status.notAfter ?? null, fingerprint: status.fingerprint ?? null },
      };
      await this.kube.mergePatch(
        kind === 'Issuer'
          ? sigilPath(Plural.Issuer, namespace!, name, 'status')
          : sigilPath(Plural.ClusterIssuer, undefined, name, 'status'),
        body,
      );
      this.o.metrics.apiRequests.inc({
        verb: 'patch',
        resource: kind === 'Issuer' ? Plural.Issuer : Plural.ClusterIssuer,
      });
    } catch (err) {
      if (isNotFound(err)) return;
      log.warn('could not update issuer status; retrying', { error: describeApiError(err) });
      this.queue.retry(key);
    }
  }
}
