// Issuer and ClusterIssuer controller: loads each issuer's CA Secret, keeps
// the CA ready to sign in memory, and reports Ready with a precise reason.
// CA Secrets are watched one by one, by name: never a watch of all Secrets.
import type { V1Secret } from '@kubernetes/client-node';
import type { Logger } from 'winston';
import {
  Annotation,
  API_VERSION,
  byCodeUnit,
  type CARef,
  type Condition,
  ConditionType,
  findCondition,
  type Issuer,
  type IssuerKind,
  Plural,
  RotationPhase,
  type RotationStatus,
  setCondition,
  sigilPath,
} from '../../lib/api/types.ts';
import { type Kube, type KubeAccess, kubeFor, paths } from '../../lib/kube/client.ts';
import { describeApiError, isConflict, isNotFound } from '../../lib/kube/errors.ts';
import { Informer, resourceVersionNewer } from '../../lib/kube/informer.ts';
import { WorkQueue } from '../../lib/kube/queue.ts';
import { listPage } from '../../lib/kube/rest.ts';
import { Interner } from '../../lib/lru.ts';
import { type CertificateAuthority, createSelfSignedCA, loadCertificateAuthority } from '../../lib/pki/ca.ts';
import { type ParsedCertificate, parseCertificateChain } from '../../lib/pki/certificate.ts';
import { isPkiError, PkiErrorCode } from '../../lib/pki/errors.ts';
import { isoString } from '../../lib/time.ts';
import { EventRecorder } from '../events.ts';
import type { OperatorMetrics } from '../metrics.ts';
import { reconcileKey } from '../reconcile.ts';
import {
  automaticRotationDue,
  bundleAnchors,
  bundlePem,
  caRef,
  decideRotation,
  ReissueSlots,
  type RotationDecision,
  rotationDelay,
} from './rotation.ts';

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
  /** A rotation signs with a CA whose Secret is gone. */
  RotationCAMissing: 'RotationCAMissing',
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
  /** The CA that signs now (during a rotation, the old one until Activate). */
  ca: CertificateAuthority | undefined;
  trustDomain: string;
  /** The trust bundle: the anchors peers of this issuer trust, PEM (empty when not ready). */
  bundlePem: string;
  /** bundlePem in base64, as a Secret's ca.crt holds it. */
  bundleB64: string;
  /** SHA-256 fingerprints of the CAs in the bundle. */
  bundleAnchors: string[];
  rotation: RotationStatus | undefined;
  /** The rotation's other CA (not the one that signs): its leaves are replaced at the reissue rate. */
  otherCa: ParsedCertificate | undefined;
  /** Spreads early re-issues during a rotation. */
  reissue: ReissueSlots;
  propagationMs: number;
}

/** What the issuer controller learns from the Certificates and bundles of an issuer. */
export interface RotationObserver {
  /** False until every Certificate has been looked at once since start. */
  synced(): boolean;
  /** Bundle objects (Secrets' ca.crt, trust-bundle ConfigMaps) of the issuer not holding these anchors yet. */
  bundleRemaining(issuerKey: string, anchors: readonly string[]): number;
  bundleProgress(issuerKey: string, anchors: readonly string[]): string;
  leaves(
    issuerKey: string,
    fromFingerprint: string,
    toFingerprint: string,
  ): { onOld: number; onNew: number; refreshing?: number; refreshedBy?: Date | undefined };
  /** The longest lifetime among the issuer's leaves (ms), 0 when it has none. */
  longestLeafMs(issuerKey: string): number;
}

/** Keys of the issuers in use; a namespace and a name are at most 63 and 253 characters. */
const issuerKeys = new Interner(1024, 330);

export function issuerKey(kind: IssuerKind, namespace: string | undefined, name: string): string {
  // One copy each: the certificate controller keeps its issuer's key in several maps per Certificate.
  return issuerKeys.intern(
    kind === 'ClusterIssuer' ? `ClusterIssuer/${name}` : `Issuer/${namespace}/${name}`,
  );
}

/** The issuer an issuerKey names; undefined for anything else. */
export function parseIssuerKey(
  key: string,
): { kind: IssuerKind; namespace: string | undefined; name: string } | undefined {
  const [kind, a, b] = key.split('/');
  if (kind === 'ClusterIssuer' && a) return { kind, namespace: undefined, name: a };
  if (kind === 'Issuer' && a && b) return { kind, namespace: a, name: b };
  return undefined;
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
  /** Set once the Certificate controller exists; without it rotations do not wait on anything. */
  observer?: RotationObserver | undefined;
}

export class IssuerController {
  readonly issuers: Informer<Issuer>;
  readonly clusterIssuers: Informer<Issuer>;
  private readonly states = new Map<string, IssuerState>();
  /** One informer per CA Secret, keyed namespace/name, with the issuer keys using it. */
  private readonly caSecrets = new Map<string, { informer: Informer<V1Secret>; users: Set<string> }>();
  private readonly queue: WorkQueue;
  private o: IssuerControllerOptions;
  private readonly kube: Kube;
  /** Parsed CAs by Secret uid+resourceVersion: parsing is done once per Secret version. */
  private readonly caCache = new Map<string, CertificateAuthority>();
  private readonly events: EventRecorder;
  private readonly reissueLimits = new Map<string, { id: string; slots: ReissueSlots }>();
  /**
   * The issuer as this controller's last status write returned it, until the cache has it: a look
   * that ran ahead of the cache would otherwise decide from an older rotation state and write it back.
   */
  private readonly statusWritten = new Map<string, Issuer>();
  private readonly lastStatusWrite = new Map<string, number>();

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

  /** The Certificate controller's view of the leaves and bundles, once it exists. */
  setObserver(observer: RotationObserver): void {
    this.o = { ...this.o, observer };
  }

  /** Every issuer as last looked at. */
  all(): IterableIterator<IssuerState> {
    return this.states.values();
  }

  /** The issuer of an issuerKey (ClusterIssuer/<name> or Issuer/<ns>/<name>). */
  byKey(key: string): IssuerState | undefined {
    return this.states.get(key);
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

  private releaseCaSecrets(user: string, keep?: ReadonlySet<string>) {
    for (const [key, entry] of this.caSecrets) {
      if (keep?.has(key)) continue;
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

  /** Loads the CA in a Secret the issuer uses, parsing each Secret version once. */
  private loadCa(
    secrets: Informer<V1Secret>,
    secretKey: string,
    now: Date,
  ): { ca?: CertificateAuthority; secret?: V1Secret; reason: string; message: string } {
    const secret = secrets.get(secretKey);
    if (!secret) {
      return {
        reason: IssuerReason.SecretNotFound,
        message: `CA Secret ${secretKey} does not exist; create it with the CA certificate in tls.crt and its key in tls.key`,
      };
    }
    const where = `Secret ${secretKey}`;
    const cacheKey = `${secret.metadata?.uid}/${secret.metadata?.resourceVersion}`;
    try {
      let ca = this.caCache.get(cacheKey);
      if (!ca || now >= ca.facts.notAfter || now < ca.facts.notBefore) {
        const crt = secret.data?.['tls.crt'] ? Buffer.from(secret.data['tls.crt'], 'base64') : undefined;
        const k = secret.data?.['tls.key'] ? Buffer.from(secret.data['tls.key'], 'base64') : undefined;
        ca = loadCertificateAuthority(crt, k, now, where);
      }
      for (const k of this.caCache.keys())
        if (k.startsWith(`${secret.metadata?.uid}/`) && k !== cacheKey) this.caCache.delete(k);
      this.caCache.set(cacheKey, ca);
      return {
        ca,
        secret,
        reason: IssuerReason.Ready,
        message: `CA "${ca.facts.subject.commonName ?? ca.facts.fingerprint}" is valid until ${isoString(ca.facts.notAfter)}`,
      };
    } catch (err) {
      if (!isPkiError(err)) throw err;
      return { secret, reason: reasonFor(err.code), message: err.message };
    }
  }

  private async processItem(key: string): Promise<void> {
    const [kind, ...rest] = key.split('/') as [IssuerKind, ...string[]];
    const namespace = kind === 'Issuer' ? rest[0] : undefined;
    const name = kind === 'Issuer' ? rest[1]! : rest[0]!;
    const informer = kind === 'Issuer' ? this.issuers : this.clusterIssuers;
    let issuer = informer.get(namespace ? `${namespace}/${name}` : name);
    const log = this.o.logger.child({ controller: 'issuers', key, namespace });
    const written = this.statusWritten.get(key);
    if (issuer && written && written.metadata.uid === issuer.metadata.uid) {
      if (resourceVersionNewer(written.metadata.resourceVersion, issuer.metadata.resourceVersion))
        issuer = written;
      else this.statusWritten.delete(key);
    }
    if (!issuer) {
      this.statusWritten.delete(key);
      this.lastStatusWrite.delete(key);
      this.releaseCaSecrets(key);
      this.reissueLimits.delete(key);
      if (this.states.delete(key)) this.o.onIssuerChanged(key);
      return;
    }
    const secretNamespace = namespace ?? this.o.operatorNamespace;
    const secretName = issuer.spec.ca.secretName;
    const secretKey = `${secretNamespace}/${secretName}`;
    const status = sanitizedStatus(issuer.status, log);
    // The Secrets in play: the one spec names, the one that signs now, and both ends of a rotation.
    const names = new Set([
      secretName,
      ...(status?.secretName ? [status.secretName] : []),
      ...(status?.rotation ? [status.rotation.from.secretName, status.rotation.to.secretName] : []),
    ]);
    const keep = new Set([...names].map((n) => `${secretNamespace}/${n}`));
    this.releaseCaSecrets(key, keep);
    const informers = new Map<string, Informer<V1Secret>>();
    for (const n of names) informers.set(n, this.caSecretInformer(secretNamespace, n, key));
    await Promise.all([...informers.values()].map((i) => i.waitForSync()));

    // Decide.
    const now = this.o.now();
    const desired = this.loadCa(informers.get(secretName)!, secretKey, now);
    let reason = desired.reason;
    let message = desired.message;
    const rotationSpec = issuer.spec.rotation ?? {};
    const propagationMs = rotationDelay(rotationSpec.propagationDelay);
    const loaded = new Map<string, CertificateAuthority>();
    if (desired.ca) loaded.set(desired.ca.facts.fingerprint, desired.ca);
    let current: CARef | undefined;
    if (status?.secretName && status.secretName !== secretName) {
      const c = this.loadCa(
        informers.get(status.secretName)!,
        `${secretNamespace}/${status.secretName}`,
        now,
      );
      if (c.ca) {
        loaded.set(c.ca.facts.fingerprint, c.ca);
        current = caRef(status.secretName, c.ca);
      }
    }
    for (const end of status?.rotation ? [status.rotation.from, status.rotation.to] : []) {
      if (loaded.has(end.fingerprint)) continue;
      const c = this.loadCa(informers.get(end.secretName)!, `${secretNamespace}/${end.secretName}`, now);
      if (c.ca?.facts.fingerprint === end.fingerprint) loaded.set(end.fingerprint, c.ca);
    }
    const annotations = issuer.metadata.annotations ?? {};
    const retireAsk = annotations[Annotation.RetireNow];
    const retireNow = !!retireAsk && retireAsk !== status?.handled?.retireNow && !!status?.rotation;
    const rotateAsk = annotations[Annotation.RotateRequestedAt];
    const handled = {
      ...(status?.handled ?? {}),
      ...(retireAsk && status?.rotation ? { retireNow: retireAsk } : {}),
    };

    let decision: RotationDecision | undefined;
    let ca: CertificateAuthority | undefined;
    if (desired.ca) {
      const generated = desired.secret?.metadata?.annotations?.[Annotation.Bootstrap] === 'true';
      decision = decideRotation({
        now,
        status,
        desired: caRef(secretName, desired.ca),
        current,
        propagationMs,
        retireNow,
        canSign: (fp) => loaded.has(fp),
        trigger: generated
          ? (desired.secret?.metadata?.annotations?.['sigil.dev/rotation-trigger'] ?? 'Automatic')
          : 'SecretChanged',
        observe: this.o.observer
          ? {
              synced: this.o.observer.synced(),
              bundleRemaining: (anchors) => this.o.observer!.bundleRemaining(key, anchors),
              bundleProgress: (anchors) => this.o.observer!.bundleProgress(key, anchors),
              leaves: (from, to) => this.o.observer!.leaves(key, from.fingerprint, to.fingerprint),
            }
          : noObserver,
      });
      ca = loaded.get(decision.signing.fingerprint);
      if (!ca) {
        reason = IssuerReason.RotationCAMissing;
        message = `The rotation in phase ${decision.rotation?.phase} signs with the CA in Secret ${secretNamespace}/${decision.signing.secretName} (${decision.signing.fingerprint.slice(0, 16)}), which is gone or no longer that CA; restore it, or set the ${Annotation.RetireNow} annotation to finish the rotation on the new CA`;
      } else if (decision.rotation) {
        message = `${message}; rotation ${decision.rotation.phase}: waiting for ${decision.rotation.waitingFor}`;
      }
    }
    const ready = reason === IssuerReason.Ready && !!ca;
    if (!ready) ca = undefined;
    const previous = this.states.get(key);
    // An issuer that is not ready keeps the bundle it had: pods still trust what they trusted.
    const bundle = decision && ready ? bundlePem(decision.bundle) : (previous?.bundlePem ?? '');
    const anchors = decision && ready ? bundleAnchors(decision.bundle) : (previous?.bundleAnchors ?? []);
    const other = decision?.rotation
      ? loadedOrParsed(
          loaded,
          decision.signing === decision.rotation.to ? decision.rotation.from : decision.rotation.to,
        )
      : undefined;
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
      bundlePem: bundle,
      bundleB64: Buffer.from(bundle).toString('base64'),
      bundleAnchors: anchors,
      rotation: decision?.rotation,
      otherCa: other,
      reissue: this.reissueLimiter(
        key,
        rotationSpec.reissuePerSecond ?? 5,
        decision?.rotation ? `${decision.rotation.from.fingerprint}>${decision.rotation.to.fingerprint}` : '',
      ),
      propagationMs,
    };
    this.states.set(key, state);
    const labels = { name, namespace: namespace ?? '', kind };
    for (const s of ['True', 'False']) {
      this.o.metrics.issuerReady.set({ ...labels, condition: s }, (ready ? 'True' : 'False') === s ? 1 : 0);
    }
    if (ca) this.o.metrics.caExpiration.set(labels, ca.facts.notAfter.getTime() / 1000);
    else this.o.metrics.caExpiration.remove(labels);
    for (const phase of Object.values(RotationPhase))
      this.o.metrics.rotationPhase.set({ ...labels, phase }, decision?.rotation?.phase === phase ? 1 : 0);
    if (decision?.rotation) {
      this.o.metrics.rotationPhaseSince.set(labels, Date.parse(decision.rotation.since) / 1000);
      this.o.metrics.rotationLeaves.set({ ...labels, ca: 'old' }, decision.rotation.leavesOnOld ?? 0);
      this.o.metrics.rotationLeaves.set({ ...labels, ca: 'new' }, decision.rotation.leavesOnNew ?? 0);
    } else {
      this.o.metrics.rotationPhaseSince.remove(labels);
      this.o.metrics.rotationLeaves.remove({ ...labels, ca: 'old' });
      this.o.metrics.rotationLeaves.remove({ ...labels, ca: 'new' });
    }
    // A CA that expires before a rotation could finish: its leaves are cut short and there is no time to
    // move them. Rotation needs the longest leaf lifetime plus two propagation windows.
    if (ca && !decision?.rotation) {
      const leafMs = this.o.observer?.longestLeafMs(key) ?? 0;
      const margin = ca.facts.notAfter.getTime() - now.getTime() - (leafMs + 2 * propagationMs);
      this.o.metrics.rotationMargin.set(labels, Math.round(margin / 1000));
      if (margin < 0)
        this.events.record(
          this.ref(kind, name, namespace, issuer),
          'Warning',
          'CAExpiresBeforeRotation',
          `CA ${ca.facts.fingerprint.slice(0, 16)} expires at ${isoString(ca.facts.notAfter)}, sooner than a rotation can finish (the longest leaf lifetime ${Math.round(leafMs / 60_000)}m plus two propagation delays of ${Math.round(propagationMs / 1000)}s): rotate it now`,
        );
    } else this.o.metrics.rotationMargin.remove(labels);

    // Re-check when the CA becomes valid or expires, and while a rotation waits.
    if (ca) this.queue.addAfter(key, ca.facts.notAfter.getTime() - now.getTime() + 1000);
    if (reason === IssuerReason.NotYetValid && desired.secret) this.queue.addAfter(key, 60_000);
    if (decision?.recheckMs !== undefined) this.queue.addAfter(key, Math.max(250, decision.recheckMs));

    const changed =
      !previous ||
      previous.ready !== ready ||
      previous.ca?.facts.fingerprint !== ca?.facts.fingerprint ||
      previous.bundlePem !== state.bundlePem ||
      previous.rotation?.phase !== state.rotation?.phase ||
      previous.trustDomain !== state.trustDomain ||
      JSON.stringify(previous.issuer.spec.policy) !== JSON.stringify(issuer.spec.policy) ||
      JSON.stringify(previous.issuer.spec.trustBundle) !== JSON.stringify(issuer.spec.trustBundle);
    if (changed) {
      log.info(ready ? 'issuer ready' : 'issuer not ready', {
        reason,
        detail: message,
        rotation: state.rotation?.phase,
      });
      this.o.onIssuerChanged(key);
    }
    const ref = this.ref(kind, name, namespace, issuer);
    for (const e of decision?.events ?? []) {
      log.info('rotation', { reason: e.reason, detail: e.message });
      this.events.record(ref, e.type, e.reason, e.message);
    }
    // Every reason status gives is an Event on the issuer too (repeats counted on one).
    if (!ready) this.events.record(ref, 'Warning', reason, message);

    // A CA the operator generated rotates on its own, or when asked: it makes the next CA and points the
    // issuer at it, the same declarative change a user makes for their own CA.
    if (ready && desired.ca && decision && !decision.rotation && desired.secret) {
      const generated =
        kind === 'ClusterIssuer' && desired.secret.metadata?.annotations?.[Annotation.Bootstrap] === 'true';
      const asked = !!rotateAsk && rotateAsk !== status?.handled?.rotateRequestedAt;
      const due =
        rotationSpec.automatic !== false &&
        automaticRotationDue(
          desired.ca.facts.notBefore,
          desired.ca.facts.notAfter,
          now,
          rotationSpec.prepareAtPercent,
        );
      if (asked && !generated) {
        this.events.record(
          ref,
          'Warning',
          'RotationNotPossible',
          `${Annotation.RotateRequestedAt} rotates only a CA the operator generated; Secret ${secretKey} holds a CA of your own: put the new CA in a new Secret and point spec.ca.secretName at it`,
        );
        handled.rotateRequestedAt = rotateAsk;
      } else if (generated && (asked || due)) {
        await this.generateNext(
          issuer,
          desired.ca,
          secretNamespace,
          secretName,
          asked ? 'Requested' : 'Automatic',
          log,
        );
        if (asked) handled.rotateRequestedAt = rotateAsk;
        else if (due) this.queue.addAfter(key, 1000);
      }
    }

    // Act: write status when it changed.
    const condition: Condition = {
      type: ConditionType.Ready,
      status: ready ? 'True' : 'False',
      reason,
      message: ready && decision?.rotation ? desired.message : message,
      lastTransitionTime: isoString(now),
      observedGeneration: issuer.metadata.generation,
    };
    const conditions = setCondition(status?.conditions, condition);
    const next = {
      conditions,
      // Without a CA that signs, the last one is kept: a rotation to the next CA starts from it.
      notAfter: (ca ? isoString(ca.facts.notAfter) : undefined) ?? status?.notAfter ?? null,
      fingerprint: ca?.facts.fingerprint ?? status?.fingerprint ?? null,
      // Without a CA that signs, what signed last is kept: it is where a rotation starts from.
      secretName: ready && decision ? decision.signing.secretName : (status?.secretName ?? null),
      bundle: ready ? anchors : (status?.bundle ?? null),
      rotation: withNulls(ready ? decision?.rotation : status?.rotation),
      lastRotation: decision?.lastRotation ?? status?.lastRotation ?? null,
      handled: Object.keys(handled).length > 0 ? handled : null,
    };
    const before = {
      conditions: status?.conditions,
      notAfter: status?.notAfter ?? null,
      fingerprint: status?.fingerprint ?? null,
      secretName: status?.secretName ?? null,
      bundle: status?.bundle ?? null,
      rotation: status?.rotation ?? null,
      lastRotation: status?.lastRotation ?? null,
      handled: status?.handled ?? null,
    };
    const current0 = findCondition(status?.conditions, ConditionType.Ready);
    if (
      current0?.status === condition.status &&
      current0.reason === condition.reason &&
      current0.message === condition.message &&
      current0.observedGeneration === condition.observedGeneration &&
      canonical({ ...next, conditions: undefined }) === canonical({ ...before, conditions: undefined })
    ) {
      return;
    }
    // During a rotation the counters move with every leaf: within one phase, they are written at most
    // every ROTATION_STATUS_INTERVAL_MS (a thousand leaves re-issued would otherwise be a status write
    // every look). A new phase, a new rotation or anything else is written at once.
    const progressOnly = (x: { rotation: object | null } & Record<string, unknown>) =>
      canonical({
        ...x,
        conditions: undefined,
        rotation: x.rotation
          ? { ...x.rotation, waitingFor: 0, leavesOnOld: 0, leavesOnNew: 0, remaining: 0, progressAt: 0 }
          : null,
      });
    const lastWrite = this.lastStatusWrite.get(key) ?? 0;
    if (
      next.rotation &&
      before.rotation &&
      current0?.status === condition.status &&
      current0.reason === condition.reason &&
      progressOnly(next) === progressOnly(before) &&
      Date.now() - lastWrite < ROTATION_STATUS_INTERVAL_MS
    ) {
      this.queue.addAfter(key, ROTATION_STATUS_INTERVAL_MS - (Date.now() - lastWrite));
      return;
    }
    try {
      const result = await this.kube.mergePatch<Issuer>(
        kind === 'Issuer'
          ? sigilPath(Plural.Issuer, namespace!, name, 'status')
          : sigilPath(Plural.ClusterIssuer, undefined, name, 'status'),
        { apiVersion: API_VERSION, kind, status: next },
      );
      if (result?.metadata) this.statusWritten.set(key, result);
      this.lastStatusWrite.set(key, Date.now());
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

  private ref(kind: IssuerKind, name: string, namespace: string | undefined, issuer: Issuer) {
    return { apiVersion: API_VERSION, kind, name, namespace, uid: issuer.metadata.uid };
  }

  /** One set of slots per rotation (and rate): a new rotation starts with none held. */
  private reissueLimiter(key: string, perSecond: number, rotation: string): ReissueSlots {
    const id = `${rotation}@${perSecond}`;
    const have = this.reissueLimits.get(key);
    if (have && have.id === id) return have.slots;
    const slots = new ReissueSlots(perSecond);
    this.reissueLimits.set(key, { id, slots });
    return slots;
  }

  /**
   * Makes the successor of a CA the operator generated, with the same lifetime and key type, in a new
   * Secret next to it, and points the issuer at it: the rotation then runs as for any CA change.
   */
  private async generateNext(
    issuer: Issuer,
    ca: CertificateAuthority,
    secretNamespace: string,
    secretName: string,
    trigger: string,
    log: Logger,
  ): Promise<void> {
    const now = this.o.now();
    const lifetime = ca.facts.notAfter.getTime() - ca.facts.notBefore.getTime();
    const fresh = await createSelfSignedCA({
      commonName: ca.facts.subject.commonName ?? 'sigil root CA',
      organization: 'sigil',
      notBefore: new Date(now.getTime() - 60_000),
      notAfter: new Date(now.getTime() - 60_000 + lifetime),
    });
    // Named after the CA it replaces: a retry (a conflict, a refused patch) finds the one made before
    // instead of piling up new CA keys.
    const base = secretName.replace(/-[0-9a-f]{8}$/, '').slice(0, 200);
    const nextName = `${base}-${ca.facts.fingerprint.slice(0, 8)}`;
    try {
      await this.kube.create(paths.secrets(secretNamespace), {
        apiVersion: 'v1',
        kind: 'Secret',
        type: 'kubernetes.io/tls',
        metadata: {
          name: nextName,
          annotations: {
            [Annotation.Bootstrap]: 'true',
            'sigil.dev/rotated-from': secretName,
            'sigil.dev/rotation-trigger': trigger,
          },
        },
        data: {
          'tls.crt': Buffer.from(fresh.certPem).toString('base64'),
          'tls.key': Buffer.from(fresh.keyPem).toString('base64'),
        },
      });
    } catch (err) {
      if (!isConflict(err)) throw err;
    }
    await this.kube.mergePatch(sigilPath(Plural.ClusterIssuer, undefined, issuer.metadata.name!), {
      metadata: { resourceVersion: issuer.metadata.resourceVersion },
      spec: { ca: { secretName: nextName } },
    });
    log.info('generated the next CA; rotating to it', { secret: `${secretNamespace}/${nextName}` });
  }
}

/** How often a rotation's progress counters (leaves, waitingFor) are written within one phase, at most. */
const ROTATION_STATUS_INTERVAL_MS = 10_000;

function loadedOrParsed(
  loaded: Map<string, CertificateAuthority>,
  ref: CARef,
): ParsedCertificate | undefined {
  const have = loaded.get(ref.fingerprint);
  if (have) return have.certificate;
  try {
    return parseCertificateChain(ref.certificate, 'the rotation status')[0];
  } catch {
    return undefined;
  }
}

/** JSON with keys sorted and null or undefined fields left out: a merge patch's null deletes the field. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x) =>
    x && typeof x === 'object' && !Array.isArray(x)
      ? Object.fromEntries(
          Object.entries(x)
            .filter(([, y]) => y !== undefined && y !== null)
            .sort(([a], [b]) => byCodeUnit(a, b)),
        )
      : x,
  );
}

/** The rotation status for a merge patch: every optional field present (null when unset), so none of the phase before survives. */
function withNulls(r: RotationStatus | undefined): Record<string, unknown> | null {
  if (!r) return null;
  return {
    bundleWrittenAt: null,
    leavesMovedAt: null,
    leavesOnOld: null,
    leavesOnNew: null,
    remaining: null,
    progressAt: null,
    ...r,
  };
}

const noObserver = {
  synced: true,
  bundleRemaining: () => 0,
  bundleProgress: () => 'nothing to write',
  leaves: () => ({ onOld: 0, onNew: 0 }),
};

const DNS_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function wellFormedRef(r: unknown): r is CARef {
  const x = r as Partial<CARef> | undefined;
  return (
    !!x &&
    typeof x.secretName === 'string' &&
    x.secretName.length <= 253 &&
    DNS_NAME.test(x.secretName) &&
    typeof x.fingerprint === 'string' &&
    /^[0-9a-f]{64}$/.test(x.fingerprint) &&
    typeof x.certificate === 'string' &&
    x.certificate.length <= 64 * 1024 &&
    typeof x.trustAnchor === 'string' &&
    x.trustAnchor.length <= 64 * 1024
  );
}

/**
 * The issuer's status as the rotation may rely on it. Anyone allowed to write an issuer's status
 * subresource can put anything there: a rotation whose CAs are not well formed is dropped (and the
 * issuer treated as not rotating) rather than parsed again and again.
 */
function sanitizedStatus(status: Issuer['status'], log: Logger): Issuer['status'] {
  const r = status?.rotation;
  if (!r) return status;
  const phases: string[] = Object.values(RotationPhase);
  if (
    phases.includes(r.phase) &&
    wellFormedRef(r.from) &&
    wellFormedRef(r.to) &&
    !Number.isNaN(Date.parse(r.since)) &&
    !Number.isNaN(Date.parse(r.startedAt ?? r.since))
  )
    return { ...status, rotation: { ...r, startedAt: r.startedAt ?? r.since } };
  log.warn('ignoring a malformed rotation in the issuer status');
  const { rotation: _dropped, ...rest } = status!;
  return rest;
}
