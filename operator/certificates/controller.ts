// The Certificate controller: gather (Certificate, Secret, issuer from the
// caches) → decide (the checks) → act (issue, write the Secret, write status).
// Renewals are timers at each certificate's renewal time; nothing polls.
import type { V1Secret } from '@kubernetes/client-node';
import type { Logger } from 'winston';
import { resolveSpec } from '../../lib/api/request.ts';
import {
  Annotation,
  API_VERSION,
  bundleKey,
  type Certificate,
  type CertificateStatus,
  type Condition,
  ConditionType,
  findCondition,
  type IssuerKind,
  Label,
  objectKey,
  Plural,
  RotationPhase,
  setCondition,
  sigilPath,
  TRUST_BUNDLE_CONFIGMAP,
} from '../../lib/api/types.ts';
import { type Kube, type KubeAccess, kubeFor, paths } from '../../lib/kube/client.ts';
import { describeApiError, isConflict, isNotFound, statusCode } from '../../lib/kube/errors.ts';
import { Informer, resourceVersionNewer } from '../../lib/kube/informer.ts';
import { WorkQueue } from '../../lib/kube/queue.ts';
import { listPage } from '../../lib/kube/rest.ts';
import { displaySerial, isSignedBy, type ParsedCertificate } from '../../lib/pki/certificate.ts';
import { isPkiError } from '../../lib/pki/errors.ts';
import {
  type KeyPair,
  type ReadBack,
  readCertificateForKey,
  readKeyPair,
  requestMismatches,
} from '../../lib/pki/inspect.ts';
import { issueCertificate } from '../../lib/pki/issue.ts';
import { type ParsedPrivateKey, parsePrivateKeyPem, publicKeySpki } from '../../lib/pki/keys.ts';
import {
  secretNameViolation,
  subordinateCaConstraints,
  type TenancyContext,
  tenancyViolation,
} from '../../lib/tenancy/index.ts';
import { isoString, rfc3339 } from '../../lib/time.ts';
import { EventRecorder } from '../events.ts';
import type { IssuerController, IssuerState, RotationObserver } from '../issuers/controller.ts';
import { issuerKey } from '../issuers/controller.ts';
import type { OperatorMetrics } from '../metrics.ts';
import { reconcileKey } from '../reconcile.ts';
import {
  type CheckInput,
  firstVerdict,
  IssueReason,
  issuanceChecks,
  issuerChanged,
  minimumIssuanceInterval,
  plannedRenewal,
  shortenedNote,
  upToDateMessage,
} from './checks.ts';
import { DEFAULT_NORMAL_EVENTS_PER_SECOND } from './defaults.ts';
import { type SecretClaim, SecretReason, secretClaim } from './ownership.ts';
import {
  buildSecret,
  cachedKeyOf,
  cachedSecretView,
  hasPrivateKey,
  isPartialView,
  managedMetadata,
  metadataDrift,
  secretPatch,
  sharedBundle,
} from './secret.ts';

/** Reasons on a Certificate's Ready condition. */
export const ReadyReason = {
  /** The Secret holds a valid certificate that matches the spec. */
  Ready: 'Ready',
  /** The spec cannot be issued as written. */
  InvalidSpec: 'InvalidSpec',
  /** The referenced Issuer or ClusterIssuer does not exist. */
  IssuerNotFound: 'IssuerNotFound',
  /** The issuer exists but its CA cannot sign. */
  IssuerNotReady: 'IssuerNotReady',
  /** The issuer's policy or the tenancy rules refuse the request. */
  PolicyDenied: 'PolicyDenied',
  /** A Secret of another type already has the name. */
  SecretConflict: SecretReason.SecretConflict,
  /** Another live Certificate in the namespace uses the same spec.secretName and owns the Secret. */
  DuplicateSecretName: SecretReason.DuplicateSecretName,
  /** A Secret Sigil did not write for this Certificate has the name and does not opt in with sigil.dev/allow-takeover. */
  SecretNotOwned: SecretReason.SecretNotOwned,
  /** The Certificate was issued again and again without its spec changing; the next issuance waits. */
  ReissueThrottled: 'ReissueThrottled',
  /** Issuance failed (API error, key generation); retried with backoff. */
  IssuanceFailed: 'IssuanceFailed',
} as const;

export const EventReason = {
  Issued: 'Issued',
  /** Issued for less than spec.duration because the issuer's CA expires sooner. */
  Shortened: 'Shortened',
  Failed: 'Failed',
  Denied: 'PolicyDenied',
} as const;

const FIELD_MANAGER = 'sigil-operator';

export interface CertificateControllerOptions {
  kc: KubeAccess;
  issuers: IssuerController;
  defaultIssuer: { kind: IssuerKind; name: string };
  minDurationMs: number;
  ownerReferences: boolean;
  /** Cluster DNS domain, for the rule that service names belong to their namespace. */
  clusterDomain?: string | undefined;
  /** Limit Certificates and Secrets to one namespace; all when undefined. */
  watchNamespace?: string | undefined;
  concurrency: number;
  ratePerSecond?: number;
  /** Normal Events (Issued) recorded per second at most, bursting to ten times that; Warnings always. 0: no limit. */
  normalEventsPerSecond?: number | undefined;
  /** A repeated Event's count is written at most this often (default 10 s). */
  eventRepeatIntervalMs?: number | undefined;
  logger: Logger;
  metrics: OperatorMetrics;
  now: () => Date;
  /** A namespace's trust bundles changed (an issuer's bundle, or the issuers its Certificates use). */
  onTrustChanged?: ((namespace: string) => void) | undefined;
  /** Whether the namespace's trust-bundle ConfigMap holds `pem` under `key`; without it, assumed so. */
  trustBundleHeld?: ((namespace: string, key: string, pem: string) => boolean) | undefined;
  /** Namespaces an issuer's bundle goes to by its namespace selector, besides those of its Certificates. */
  trustNamespaces?: ((issuer: IssuerState) => string[]) | undefined;
  /** Retry backoff after a failed issuance. */
  baseBackoffMs?: number;
  maxBackoffMs?: number;
}

/**
 * Whether two JSON values are equal as JSON, whatever the order of their keys (values built here and
 * returned by the API server differ in key order): undefined members count as absent, as in
 * JSON.stringify. Compared in place; sorting and serializing both sides was some 12 KB of garbage
 * for each status compared, several times for each certificate issued.
 */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    // JSON writes an undefined element as null.
    for (let i = 0; i < a.length; i++) if (!sameJson(a[i] ?? null, b[i] ?? null)) return false;
    return true;
  }
  if (
    typeof (a as { toJSON?: unknown }).toJSON === 'function' ||
    typeof (b as { toJSON?: unknown }).toJSON === 'function'
  )
    return JSON.stringify(a) === JSON.stringify(b);
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  let defined = 0;
  for (const k in x) {
    if (!Object.hasOwn(x, k) || x[k] === undefined || typeof x[k] === 'function') continue;
    defined++;
    if (!Object.hasOwn(y, k) || !sameJson(x[k], y[k])) return false;
  }
  for (const k in y) if (Object.hasOwn(y, k) && y[k] !== undefined && typeof y[k] !== 'function') defined--;
  return defined === 0;
}

type MetricLabels = { name: string; namespace: string; issuer_name: string; issuer_kind: string };

/** Issuances of one Certificate at one generation allowed within its minimum issuance interval before the next waits. */
const REISSUE_BURST = 3;

/** Thrown when the Secret found at write time is not this Certificate's to write. */
class SecretRefused extends Error {
  readonly claim: Extract<SecretClaim, { ok: false }>;
  constructor(claim: Extract<SecretClaim, { ok: false }>) {
    super(claim.message);
    this.claim = claim;
  }
}

/**
 * Why a freshly issued certificate would not pass the checks once written
 * (so the Certificate would be re-issued on every look), or undefined.
 */
function readBackProblem(
  issued: Awaited<ReturnType<typeof issueCertificate>>,
  request: Parameters<typeof requestMismatches>[0],
  ca: Parameters<typeof isSignedBy>[1],
): string | undefined {
  let pair: KeyPair;
  try {
    pair = readKeyPair(issued.certificatePem, issued.privateKeyPem, 'the issued certificate');
  } catch (err) {
    if (!isPkiError(err)) throw err;
    return err.message;
  }
  if (!pair.keyMatches) return 'its private key does not match it';
  const diffs = requestMismatches(request, pair.leaf);
  if (diffs.length > 0) return diffs.join('; ');
  if (!isSignedBy(pair.leaf, ca)) return "it does not verify against the issuer's CA certificate";
  return undefined;
}

class IssuanceError extends Error {
  readonly reason: string;
  readonly retry: boolean;
  constructor(reason: string, message: string, retry: boolean) {
    super(message);
    this.reason = reason;
    this.retry = retry;
  }
}

/** What a CA rotation needs of one Certificate's Secret. */
interface LeafEntry {
  /** issuerKey of the Certificate's issuer. */
  issuer: string;
  /** Fingerprint of the CA that signed the leaf, among the issuer's (empty: another CA). */
  signer: string;
  /** The Secret's ca.crt (base64) when last looked at or written. */
  bundle: string;
  lifetimeMs: number;
}

export class CertificateController {
  readonly certificates: Informer<Certificate>;
  readonly secrets: Informer<V1Secret>;
  readonly queue: WorkQueue;
  private readonly o: CertificateControllerOptions;
  private readonly kube: Kube;
  private readonly events: EventRecorder;
  /** Secrets this replica wrote that the informer has not delivered yet. */
  private readonly written = new Map<string, V1Secret>();
  /** The Certificate as the API server returned it after this replica's last status write. */
  private readonly statusWritten = new Map<string, Certificate>();
  /**
   * Certificate keys by the Secret they name (`namespace/secretName`), to find Certificates sharing
   * one: the one key, or a Set of them when several name it. Nearly every Secret has one Certificate,
   * and a Set for each held 0.26 MiB of heap at 1,000 Certificates against 0.12 for this.
   */
  private readonly bySecret = new Map<string, string | Set<string>>();
  /** The metric labels last set for each Certificate, so its series go when it goes. */
  private readonly metricLabels = new Map<string, MetricLabels>();
  /** This replica's issuances of each Certificate at its current generation (times), for the loop backstop. */
  private readonly recentIssuances = new Map<
    string,
    { uid: string; generation: number; ca: string; times: number[] }
  >();
  /** Specs whose freshly issued certificate did not read back as matching them, per generation and CA. */
  private readonly unmatchable = new Map<
    string,
    { uid: string; generation: number; fingerprint: string; message: string }
  >();
  /** Secrets without Sigil's label that a Certificate's secretName ran into (`namespace/name`); re-read on retry. */
  private readonly foreign = new Map<string, V1Secret>();
  /** The issuer of each Certificate, as last looked at: which trust bundles each namespace needs. */
  private readonly certIssuer = new Map<string, string>();
  private readonly issuersByNamespace = new Map<string, Map<string, number>>();
  /** What a CA rotation needs to know of each Certificate's Secret (see LeafEntry). */
  private readonly leaves = new Map<string, LeafEntry>();
  /** Certificates whose Secret refused the bundle (immutable, a webhook, RBAC): not waited on, with a Warning. */
  private readonly unwritable = new Set<string>();
  /** Every Certificate found at start has been looked at once. */
  private initialPass = false;

  constructor(o: CertificateControllerOptions) {
    this.o = o;
    this.kube = kubeFor(o.kc);
    this.events = new EventRecorder({
      kube: this.kube,
      component: 'sigil-operator',
      // Certificates are namespaced: their Events go to their namespace.
      eventNamespace: 'default',
      normalPerSecond: o.normalEventsPerSecond ?? DEFAULT_NORMAL_EVENTS_PER_SECOND,
      repeatIntervalMs: o.eventRepeatIntervalMs,
      metrics: o.metrics,
      logger: o.logger,
      now: o.now,
    });
    const count = (resource: string) => (verb: string) => o.metrics.apiRequests.inc({ verb, resource });
    this.certificates = new Informer<Certificate>(o.kc, {
      name: 'certificates',
      // With a watch namespace, only its Certificates: another namespace's would find none of its issuers here.
      path: sigilPath(Plural.Certificate, o.watchNamespace),
      list: (page) => listPage<Certificate>(o.kc, sigilPath(Plural.Certificate, o.watchNamespace), {}, page),
      logger: o.logger,
      onRequest: count(Plural.Certificate),
    });
    // Only Secrets Sigil labelled: the operator never lists or watches all Secrets.
    this.secrets = new Informer<V1Secret>(o.kc, {
      name: 'managed-secrets',
      path: o.watchNamespace ? `/api/v1/namespaces/${o.watchNamespace}/secrets` : '/api/v1/secrets',
      labelSelector: `${Label.Managed}=true`,
      // As JSON, like the watch delivers, and in pages: anyone who may write a Secret can set the label, so
      // the list may hold hundreds of Secrets of up to 1 MiB; a page at a time, each cut down by the
      // transform before the next is read, bounds what start-up holds to one page (see bench restart).
      list: (page) =>
        listPage<V1Secret>(
          o.kc,
          o.watchNamespace ? `/api/v1/namespaces/${o.watchNamespace}/secrets` : '/api/v1/secrets',
          { labelSelector: `${Label.Managed}=true` },
          page,
        ),
      logger: o.logger,
      onRequest: count('secrets'),
      // The label is the server-side filter, but anyone who may write a Secret can set it: keep data only
      // of Secrets whose annotation names a Certificate that uses them. Certificates are listed first.
      transform: (s) => {
        const key = objectKey(s);
        return cachedSecretView(s, (secret) => this.claimedByCertificate(secret), [
          this.written.get(key),
          this.secrets?.get(key),
        ]);
      },
    });
    this.queue = new WorkQueue((key) => this.run(key), {
      concurrency: o.concurrency,
      ratePerSecond: o.ratePerSecond ?? 0,
      burst: Math.max(1, o.ratePerSecond ?? 0),
      baseDelayMs: 1000,
      maxDelayMs: 300_000,
      onDepth: (d) => o.metrics.queueDepth.set({ controller: 'certificates' }, d),
      onLatency: (s) => o.metrics.queueLatency.observe({ controller: 'certificates' }, s),
    });
    // Until the Secret cache is full, a Certificate would look unissued: its look waits for start() to queue it.
    const enqueue = (c: Certificate) => {
      if (this.secrets.hasSynced()) this.queue.add(objectKey(c));
    };
    this.certificates
      .on('add', (c) => {
        this.index(c);
        enqueue(c);
      })
      .on('update', (c, old) => {
        if (old && old.spec.secretName !== c.spec.secretName) {
          // Certificates that shared the old name may now have it to themselves.
          this.unindex(old);
          this.enqueueUsersOf(old.metadata.namespace!, old.spec.secretName);
        }
        this.index(c);
        // Our own status writes come back as updates; only spec, metadata or status changes made by others matter,
        // but re-checking is cheap and idempotent, so every update is looked at.
        const sameMeta =
          old &&
          c.metadata.generation === old.metadata.generation &&
          JSON.stringify(c.metadata.annotations ?? {}) === JSON.stringify(old.metadata.annotations ?? {});
        const own = sameMeta && this.onlyOwnStatus(c);
        // Once the cache holds this replica's last status write (or something newer), the copy kept for
        // reconciles that run ahead of the cache is of no more use: at 10,000 Certificates it is 10,000 objects.
        const key = objectKey(c);
        const mine = this.statusWritten.get(key);
        if (mine && !resourceVersionNewer(mine.metadata.resourceVersion, c.metadata.resourceVersion))
          this.statusWritten.delete(key);
        if (own) return;
        enqueue(c);
      })
      .on('delete', (c) => {
        this.unindex(c);
        this.queue.cancel(objectKey(c));
        this.queue.add(objectKey(c));
        this.enqueueUsersOf(c.metadata.namespace!, c.spec.secretName);
      });
    const secretChanged = (s: V1Secret, deleted = false) => {
      const key = objectKey(s);
      const written = this.written.get(key);
      if (written && !resourceVersionNewer(written.metadata?.resourceVersion, s.metadata?.resourceVersion)) {
        this.written.delete(key);
        // The echo of this replica's own write: the reconcile that made it already accounted for it.
        if (!deleted && written.metadata?.resourceVersion === s.metadata?.resourceVersion) return;
      }
      // Until both caches are full (start() then queues every Certificate), there is nothing to look at yet.
      if (!this.certificates.hasSynced() || !this.secrets.hasSynced()) return;
      const name = s.metadata?.annotations?.[Annotation.CertificateName];
      if (name) this.queue.add(`${s.metadata!.namespace}/${name}`);
      this.enqueueUsersOf(s.metadata!.namespace!, s.metadata!.name!);
    };
    this.secrets
      .on('add', (s) => secretChanged(s))
      .on('update', (s) => secretChanged(s))
      .on('delete', (s) => {
        this.written.delete(objectKey(s));
        secretChanged(s, true);
      });
  }

  private index(c: Certificate): void {
    const k = `${c.metadata.namespace}/${c.spec.secretName}`;
    const key = objectKey(c);
    const users = this.bySecret.get(k);
    if (users === undefined || users === key) this.bySecret.set(k, key);
    else if (typeof users === 'string') this.bySecret.set(k, new Set([users, key]));
    else users.add(key);
  }

  private unindex(c: Certificate): void {
    const k = `${c.metadata.namespace}/${c.spec.secretName}`;
    const key = objectKey(c);
    const users = this.bySecret.get(k);
    if (users === key) this.bySecret.delete(k);
    else if (users instanceof Set && users.delete(key) && users.size === 1)
      this.bySecret.set(k, users.values().next().value!);
  }

  /** The keys of the Certificates that name a Secret. */
  private usersOf(namespace: string, secretName: string): Iterable<string> {
    const users = this.bySecret.get(`${namespace}/${secretName}`);
    return users === undefined ? [] : typeof users === 'string' ? [users] : users;
  }

  private enqueueUsersOf(namespace: string, secretName: string): void {
    if (!this.secrets.hasSynced()) return;
    for (const key of this.usersOf(namespace, secretName)) this.queue.add(key);
  }

  /** The other live Certificates of the namespace that name the same Secret. */
  private peersOf(c: Certificate): Certificate[] {
    const me = objectKey(c);
    const out: Certificate[] = [];
    for (const key of this.usersOf(c.metadata.namespace!, c.spec.secretName)) {
      const peer = key === me ? undefined : this.certificates.get(key);
      // A peer that may never write this name (an identity Secret's name on another Certificate) claims nothing.
      if (
        peer &&
        peer.spec.secretName === c.spec.secretName &&
        !peer.metadata.deletionTimestamp &&
        !secretNameViolation(peer.metadata.name!, peer.spec.secretName)
      )
        out.push(peer);
    }
    return out;
  }

  /**
   * For the Secret cache: does a Certificate named by the Secret's annotation use it? The Certificates are
   * listed before the Secrets (see start), so this is never a guess; a Secret it says no to is kept without
   * data and read from the API if a Certificate comes to use it.
   */
  private claimedByCertificate(secret: V1Secret): boolean {
    if (!this.certificates.hasSynced()) return false;
    const name = secret.metadata?.annotations?.[Annotation.CertificateName];
    const c = this.certificates.get(`${secret.metadata?.namespace}/${name}`);
    return c?.spec.secretName === secret.metadata?.name;
  }

  /** Records the Certificate's metric labels; series under labels it no longer has are removed. */
  private trackMetricLabels(key: string, labels: MetricLabels): void {
    const old = this.metricLabels.get(key);
    if (old && !sameJson(old, labels)) this.removeSeries(old);
    this.metricLabels.set(key, labels);
  }

  /** A deleted Certificate's expiration, renewal and ready series leave /metrics with it. */
  private forgetMetrics(key: string): void {
    const old = this.metricLabels.get(key);
    if (old) this.removeSeries(old);
    this.metricLabels.delete(key);
  }

  private removeSeries(labels: MetricLabels): void {
    this.o.metrics.certificateExpiration.remove(labels);
    this.o.metrics.certificateRenewal.remove(labels);
    for (const condition of ['True', 'False'])
      this.o.metrics.certificateReady.remove({ ...labels, condition });
  }

  /** True when the cached object's status is exactly what this replica last wrote. */
  private onlyOwnStatus(c: Certificate): boolean {
    const mine = this.statusWritten.get(objectKey(c));
    return mine !== undefined && sameJson(mine.status ?? {}, c.status ?? {});
  }

  /**
   * Certificates first, so the Secret cache keeps data only of Secrets a Certificate uses (a label anyone
   * can set must not make start-up cache every labelled Secret's data); then the Secrets. No Certificate
   * is looked at before both are in: one looked at before its Secret is cached would look unissued.
   */
  async start(): Promise<void> {
    await this.certificates.start();
    await this.secrets.start();
    for (const c of this.certificates.list()) this.queue.add(objectKey(c));
    void this.queue.idle().then(() => {
      this.initialPass = true;
    });
  }

  /** Records the issuer a Certificate uses; a namespace that starts or stops using an issuer gets its bundle written. */
  private setIssuerOf(key: string, namespace: string, issuer: string | undefined): void {
    const before = this.certIssuer.get(key);
    if (before === issuer) return;
    const counts = this.issuersByNamespace.get(namespace) ?? new Map<string, number>();
    if (before !== undefined) {
      const n = (counts.get(before) ?? 1) - 1;
      if (n <= 0) counts.delete(before);
      else counts.set(before, n);
    }
    if (issuer === undefined) this.certIssuer.delete(key);
    else {
      this.certIssuer.set(key, issuer);
      counts.set(issuer, (counts.get(issuer) ?? 0) + 1);
    }
    if (counts.size === 0) this.issuersByNamespace.delete(namespace);
    else this.issuersByNamespace.set(namespace, counts);
    if ((before === undefined) !== (issuer === undefined) || before !== issuer)
      this.o.onTrustChanged?.(namespace);
  }

  /** The trust bundles the namespace's ConfigMap should hold: one key per ready issuer its Certificates use. */
  trustBundlesFor(namespace: string): Map<string, string> {
    const out = new Map<string, string>();
    for (const key of this.issuersByNamespace.get(namespace)?.keys() ?? []) {
      const state = this.issuerState(key);
      // An issuer that is not ready keeps its last bundle (see IssuerState.bundlePem).
      if (state?.bundlePem) out.set(bundleKey(state.kind, state.name), state.bundlePem);
    }
    return out;
  }

  private issuerState(key: string): IssuerState | undefined {
    return this.o.issuers.byKey(key);
  }

  /** The rotation's view of this controller's Certificates: see RotationObserver. */
  readonly rotationObserver: RotationObserver = {
    synced: () => this.initialPass,
    bundleRemaining: (issuer, anchors) => this.bundleProgressOf(issuer, anchors).remaining,
    bundleProgress: (issuer, anchors) => this.bundleProgressOf(issuer, anchors).text,
    leaves: (issuer, from, to) => {
      let onOld = 0;
      let onNew = 0;
      for (const e of this.leaves.values()) {
        if (e.issuer !== issuer) continue;
        if (e.signer === from) onOld++;
        else if (e.signer === to) onNew++;
      }
      return { onOld, onNew };
    },
    longestLeafMs: (issuer) => {
      let max = 0;
      for (const e of this.leaves.values()) if (e.issuer === issuer && e.lifetimeMs > max) max = e.lifetimeMs;
      return max;
    },
  };

  private bundleProgressOf(issuer: string, anchors: readonly string[]): { remaining: number; text: string } {
    const state = this.issuerState(issuer);
    if (!state || state.bundleAnchors.join() !== anchors.join())
      return { remaining: Number.MAX_SAFE_INTEGER, text: 'not published yet' };
    let secrets = 0;
    const behind: string[] = [];
    for (const [k, e] of this.leaves) {
      if (e.issuer !== issuer || this.unwritable.has(k)) continue;
      secrets++;
      if (e.bundle !== state.bundleB64) behind.push(`Certificate ${k}`);
    }
    const key = bundleKey(state.kind, state.name);
    const bundleNamespaces = new Set(this.o.trustNamespaces?.(state) ?? []);
    for (const [ns, counts] of this.issuersByNamespace) if (counts.has(issuer)) bundleNamespaces.add(ns);
    const namespaces = bundleNamespaces.size;
    for (const ns of bundleNamespaces)
      if (!(this.o.trustBundleHeld?.(ns, key, state.bundlePem) ?? true)) behind.push(`namespace ${ns}`);
    const secretsBehind = behind.filter((b) => b.startsWith('Certificate')).length;
    const namespacesBehind = behind.length - secretsBehind;
    return {
      remaining: behind.length,
      text: `ca.crt in ${secrets - secretsBehind}/${secrets} Secrets, ConfigMap ${TRUST_BUNDLE_CONFIGMAP} in ${namespaces - namespacesBehind}/${namespaces} namespaces${
        behind.length > 0
          ? ` (behind: ${behind.slice(0, 3).join(', ')}${behind.length > 3 ? ', …' : ''})`
          : ''
      }`,
    };
  }

  stop(): void {
    this.queue.shutdown();
    this.certificates.stop();
    this.secrets.stop();
  }

  /** Re-checks every Certificate that uses the issuer, and rewrites its bundle where it is used. */
  onIssuerChanged(key: string): void {
    for (const [ns, counts] of this.issuersByNamespace) if (counts.has(key)) this.o.onTrustChanged?.(ns);
    for (const c of this.certificates.list()) {
      const ref = this.issuerRefOf(c);
      if (issuerKey(ref.kind, ref.kind === 'Issuer' ? c.metadata.namespace : undefined, ref.name) === key) {
        if (this.secrets.hasSynced()) this.queue.add(objectKey(c));
      }
    }
  }

  private issuerRefOf(c: Certificate): { kind: IssuerKind; name: string } {
    if (!c.spec.issuerRef) return this.o.defaultIssuer;
    return { kind: c.spec.issuerRef.kind ?? 'ClusterIssuer', name: c.spec.issuerRef.name };
  }

  private run(key: string): Promise<void> {
    return reconcileKey(
      'certificates',
      key,
      (k) => this.processItem(k),
      this.queue,
      this.o.metrics,
      this.o.logger,
    );
  }

  private secretFor(namespace: string, name: string): V1Secret | undefined {
    const key = `${namespace}/${name}`;
    const cached = this.secrets.get(key);
    const written = this.written.get(key);
    if (!written) return cached;
    if (!cached || resourceVersionNewer(written.metadata?.resourceVersion, cached.metadata?.resourceVersion))
      return written;
    this.written.delete(key);
    return cached;
  }

  async processItem(key: string): Promise<void> {
    const [namespace, name] = key.split('/') as [string, string];
    let certificate = this.certificates.get(key);
    if (!certificate) {
      this.queue.cancel(key);
      this.statusWritten.delete(key);
      this.recentIssuances.delete(key);
      this.unmatchable.delete(key);
      this.forgetMetrics(key);
      this.leaves.delete(key);
      this.unwritable.delete(key);
      this.setIssuerOf(key, namespace, undefined);
      return;
    }
    // The cache may not have our last status write yet; never compute from an older status than we wrote.
    const written = this.statusWritten.get(key);
    if (written && written.metadata.uid === certificate.metadata.uid) {
      if (resourceVersionNewer(written.metadata.resourceVersion, certificate.metadata.resourceVersion))
        certificate = written;
      else this.statusWritten.delete(key);
    }
    const log = this.o.logger.child({ controller: 'certificates', key, namespace });
    const now = this.o.now();
    const ref = this.issuerRefOf(certificate);
    const metricLabels = { name, namespace, issuer_name: ref.name, issuer_kind: ref.kind };
    this.trackMetricLabels(key, metricLabels);

    // Gather.
    const resolved = resolveSpec(certificate.spec, this.o.minDurationMs);
    if ('problem' in resolved) {
      return this.notReady(
        certificate,
        ReadyReason.InvalidSpec,
        `The spec cannot be issued: ${resolved.problem}. Fix the Certificate.`,
        now,
        log,
      );
    }
    const issuer = this.o.issuers.get(ref.kind, ref.kind === 'Issuer' ? namespace : undefined, ref.name);
    const thisIssuer = issuerKey(ref.kind, ref.kind === 'Issuer' ? namespace : undefined, ref.name);
    this.setIssuerOf(key, namespace, thisIssuer);
    if (!issuer) {
      return this.notReady(
        certificate,
        ReadyReason.IssuerNotFound,
        `${ref.kind} ${ref.kind === 'Issuer' ? `${namespace}/` : ''}${ref.name} does not exist; create it or fix spec.issuerRef`,
        now,
        log,
      );
    }
    if (!issuer.ready || !issuer.ca) {
      return this.notReady(
        certificate,
        ReadyReason.IssuerNotReady,
        `${ref.kind} ${ref.name} is not ready (${issuer.reason}): ${issuer.message}`,
        now,
        log,
      );
    }
    // Tenancy and the issuer's policy, on every look, not only before signing: a Certificate whose
    // issued certificate the rules no longer allow (a policy tightened, an upgrade) stops being Ready.
    const tenancy: TenancyContext = {
      namespace,
      trustDomain: issuer.trustDomain,
      clusterDomain: this.o.clusterDomain ?? 'cluster.local',
      policy: issuer.issuer.spec.policy,
      issuer: `${ref.kind} ${ref.name}`,
    };
    const denied =
      secretNameViolation(name, certificate.spec.secretName) ?? tenancyViolation(tenancy, resolved.request);
    if (denied) {
      const message = `${ref.kind} ${ref.name} refuses to issue: ${denied.message} (${denied.reason})`;
      return this.notReady(certificate, ReadyReason.PolicyDenied, message, now, log);
    }
    if (resolved.request.isCA) resolved.request.nameConstraints = subordinateCaConstraints(tenancy);
    const secretName = certificate.spec.secretName;
    let secret = this.secretFor(namespace, secretName) ?? (await this.foreignSecret(namespace, secretName));
    const claim = secretClaim(certificate, secret, this.peersOf(certificate));
    if (!claim.ok) return this.refuseSecret(certificate, claim, now, log);
    // Sigil writes only a Secret it owns or that opted in; an opted-in Secret's old data is not Sigil's to trust.
    if (secret && !claim.owned) secret = { ...secret, data: {} };
    else if (secret && isPartialView(secret)) secret = await this.readSecret(namespace, secretName);
    let pair: ReadBack | undefined;
    let parseError: string | undefined;
    if (secret?.data?.['tls.crt'] && hasPrivateKey(secret)) {
      const where = `Secret ${namespace}/${certificate.spec.secretName}`;
      const crt = Buffer.from(secret.data['tls.crt'], 'base64');
      const cachedKey = cachedKeyOf(secret);
      try {
        pair = cachedKey
          ? readCertificateForKey(crt, cachedKey, where)
          : readKeyPair(crt, Buffer.from(secret.data['tls.key']!, 'base64'), where);
      } catch (err) {
        if (!isPkiError(err)) throw err;
        parseError = err.message;
      }
    }

    // Decide.
    const signedBy = pair
      ? isSignedBy(pair.leaf, issuer.ca.certificate)
        ? 'current'
        : issuer.otherCa && isSignedBy(pair.leaf, issuer.otherCa)
          ? 'other'
          : 'none'
      : undefined;
    const otherTrusted = !!issuer.rotation && issuer.rotation.phase !== RotationPhase.Retire;
    if (pair && secret) {
      this.leaves.set(key, {
        issuer: thisIssuer,
        signer:
          signedBy === 'current'
            ? issuer.ca.facts.fingerprint
            : signedBy === 'other'
              ? issuer.otherCa!.facts.fingerprint
              : '',
        bundle: secret.data?.['ca.crt'] ?? '',
        lifetimeMs: pair.leaf.facts.notAfter.getTime() - pair.leaf.facts.notBefore.getTime(),
      });
    } else this.leaves.delete(key);
    const input: CheckInput = {
      certificate,
      resolved,
      secret,
      pair,
      parseError,
      ca: issuer.ca,
      signedBy,
      otherTrusted,
      now,
    };
    let verdict = firstVerdict(issuanceChecks, input);
    if (verdict?.reason === IssueReason.CARotation) {
      // Leaves move to the new CA at the issuer's bounded rate, spread over time; until its turn comes
      // this one is still trusted everywhere and is looked at as any other.
      const wait = issuer.reissue.claim(key, now.getTime());
      if (wait > 0) {
        this.queue.addAfter(key, wait);
        verdict = firstVerdict(
          issuanceChecks.filter((c) => c !== issuerChanged),
          input,
        );
      }
    }

    if (!verdict && pair) {
      // Up to date. Repair Sigil's metadata on the Secret if someone removed it, bring its ca.crt to the
      // issuer's trust bundle, then report Ready.
      const bundleStale = !!secret && !!issuer.bundleB64 && secret.data?.['ca.crt'] !== issuer.bundleB64;
      if (secret && (bundleStale || metadataDrift(secret, certificate, issuer.kind, issuer.name))) {
        await this.patchSecretMetadata(certificate, secret, issuer, log, bundleStale);
      }
      const plan = plannedRenewal(
        pair.leaf.facts.notBefore,
        pair.leaf.facts.notAfter,
        pair.leaf.facts.serialNumber,
        resolved.renewal,
      );
      const renewAt = plan.at;
      this.queue.addAfter(key, renewAt.getTime() - now.getTime() + 50);
      this.o.metrics.certificateExpiration.set(metricLabels, pair.leaf.facts.notAfter.getTime() / 1000);
      this.o.metrics.certificateRenewal.set(metricLabels, renewAt.getTime() / 1000);
      this.setReadyMetric(metricLabels, 'True');
      await this.writeStatus(certificate, now, {
        ready: {
          status: 'True',
          reason: ReadyReason.Ready,
          message: upToDateMessage(
            plan,
            shortenedNote(
              pair.leaf.facts.notBefore,
              pair.leaf.facts.notAfter,
              resolved.request.durationMs,
              issuer.ca.facts.notAfter,
            ),
          ),
        },
        issuing: undefined,
        facts: {
          notBefore: pair.leaf.facts.notBefore,
          notAfter: pair.leaf.facts.notAfter,
          serial: pair.leaf.facts.serialNumber,
          renewAt,
        },
        failures: { attempts: 0, last: undefined },
        revision: certificate.status?.revision ?? 1,
      });
      return;
    }
    if (!verdict) return;

    // A spec whose certificate never reads back as matching is not issued again until it or the CA changes.
    const unmatched = this.unmatchable.get(key);
    if (
      unmatched &&
      unmatched.uid === certificate.metadata.uid &&
      unmatched.generation === certificate.metadata.generation &&
      unmatched.fingerprint === issuer.ca.facts.fingerprint
    ) {
      return this.notReady(certificate, ReadyReason.InvalidSpec, unmatched.message, now, log);
    }
    // Backstop against any other loop: a Certificate re-issued again and again at one generation waits.
    const hold = this.reissueHold(
      key,
      certificate,
      verdict.reason,
      resolved.request.durationMs,
      now,
      issuer.ca.facts.fingerprint,
    );
    if (hold) {
      this.queue.addAfter(key, hold.until - now.getTime());
      return this.notReady(
        certificate,
        ReadyReason.ReissueThrottled,
        `Issued ${hold.count} times in the last ${Math.round(hold.windowMs / 1000)}s without a change to the Certificate, most recently because: ${verdict.message}. The next issuance waits until ${isoString(hold.until)}. Something keeps changing the Secret, or the spec cannot be met: check the Secret's writers and the spec`,
        now,
        log,
      );
    }

    // Back off after failures, unless the spec changed since.
    const attempts = certificate.status?.failedIssuanceAttempts ?? 0;
    const lastFailure = certificate.status?.lastFailureTime
      ? new Date(certificate.status.lastFailureTime)
      : undefined;
    const issuing = findCondition(certificate.status?.conditions, ConditionType.Issuing);
    if (attempts > 0 && lastFailure && issuing?.observedGeneration === certificate.metadata.generation) {
      const retryAt = lastFailure.getTime() + this.backoff(attempts);
      if (now.getTime() < retryAt) {
        this.queue.addAfter(key, retryAt - now.getTime());
        return;
      }
    }

    // Under rotationPolicy: Never the key is kept; the cache has only its fingerprint, so it is read.
    let reuseKey = !resolved.rotateKey && pair?.keyMatches ? pair.key : undefined;
    if (!resolved.rotateKey && pair?.keyMatches && !reuseKey) {
      reuseKey = await this.storedKey(namespace, secretName, pair.leaf);
      if (!reuseKey) {
        // The Secret changed since the cache saw it: look again when the cache has caught up, backing off.
        this.queue.retry(key);
        return;
      }
    }

    // Act.
    const started = process.hrtime.bigint();
    try {
      const reuse = reuseKey
        ? { keyObject: reuseKey.keyObject, description: reuseKey.description }
        : undefined;
      // ca.crt is the issuer's trust bundle: during a rotation, both CAs.
      const issued = {
        ...(await issueCertificate(issuer.ca, resolved.request, now, reuse)),
        ...(issuer.bundlePem ? { caPem: issuer.bundlePem } : {}),
      };
      const unreadable = readBackProblem(issued, resolved.request, issuer.ca.certificate);
      if (unreadable) {
        const message = `The spec cannot be issued: the certificate it yields would never match it, so it would be re-issued on every look (${unreadable}). Nothing was written; fix the Certificate or its issuer's CA chain`;
        this.unmatchable.set(key, {
          uid: certificate.metadata.uid!,
          generation: certificate.metadata.generation ?? 0,
          fingerprint: issuer.ca.facts.fingerprint,
          message,
        });
        return this.notReady(certificate, ReadyReason.InvalidSpec, message, now, log);
      }
      await this.writeSecret(certificate, issuer, issued, secret);
      this.leaves.set(key, {
        issuer: thisIssuer,
        signer: issuer.ca.facts.fingerprint,
        bundle: sharedBundle(Buffer.from(issued.caPem).toString('base64')),
        lifetimeMs: issued.notAfter.getTime() - issued.notBefore.getTime(),
      });
      this.recordIssuance(key, certificate, now, issuer.ca.facts.fingerprint);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      this.o.metrics.issuanceDuration.observe(seconds);
      this.o.metrics.issuance.inc({ result: 'success' });
      const revision = (certificate.status?.revision ?? 0) + 1;
      const plan = plannedRenewal(
        issued.notBefore,
        issued.notAfter,
        issued.serialNumber.replace(/^0+/, ''),
        resolved.renewal,
      );
      const renewAt = plan.at;
      this.queue.forget(key);
      this.queue.addAfter(key, renewAt.getTime() - now.getTime() + 50);
      this.o.metrics.certificateExpiration.set(metricLabels, issued.notAfter.getTime() / 1000);
      this.o.metrics.certificateRenewal.set(metricLabels, renewAt.getTime() / 1000);
      this.setReadyMetric(metricLabels, 'True');
      log.info('issued certificate', {
        reason: verdict.reason,
        serial: issued.serialNumber,
        notAfter: isoString(issued.notAfter),
        revision,
        ms: Math.round(seconds * 1000),
      });
      this.event(
        certificate,
        'Normal',
        EventReason.Issued,
        `${verdict.message}. Issued serial ${displaySerial(issued.serialNumber)} (revision ${revision}), valid until ${isoString(issued.notAfter)}`,
      );
      const shortened = shortenedNote(
        issued.notBefore,
        issued.notAfter,
        resolved.request.durationMs,
        issuer.ca.facts.notAfter,
      );
      if (shortened) this.event(certificate, 'Warning', EventReason.Shortened, shortened);
      await this.writeStatus(certificate, now, {
        ready: {
          status: 'True',
          reason: ReadyReason.Ready,
          message: upToDateMessage(plan, shortened),
        },
        // Done: the reason says so (the cause, SecretSpecMismatch say, would read as a fault); the message keeps it.
        issuing: {
          status: 'False',
          reason: 'Issued',
          message: `Issued revision ${revision} (${verdict.reason}): ${verdict.message}`,
        },
        facts: {
          notBefore: issued.notBefore,
          notAfter: issued.notAfter,
          serial: issued.serialNumber.replace(/^0+/, ''),
          renewAt,
        },
        failures: { attempts: 0, last: undefined },
        revision,
      });
    } catch (err) {
      const failure =
        err instanceof IssuanceError
          ? err
          : new IssuanceError(
              ReadyReason.IssuanceFailed,
              isPkiError(err) ? err.message : describeApiError(err),
              true,
            );
      if (err instanceof SecretRefused) {
        return this.refuseSecret(certificate, err.claim, now, log);
      }
      if (isConflict(err)) {
        // Someone changed the Secret between our read and write: look again with fresh data.
        log.info('Secret changed while issuing; re-checking');
        this.queue.add(key);
        return;
      }
      this.o.metrics.issuance.inc({ result: failure.reason });
      this.leaves.delete(key);
      this.setReadyMetric(metricLabels, 'False');
      const nextAttempts = attempts + 1;
      const delay = this.backoff(nextAttempts);
      log.warn('issuance failed', {
        reason: failure.reason,
        error: failure.message,
        attempt: nextAttempts,
        retryInMs: delay,
      });
      // The reason Ready gives, so every reason in status has its Event.
      this.event(
        certificate,
        'Warning',
        failure.reason,
        `${failure.message}; retrying in ${Math.round(delay / 1000)}s`,
      );
      if (failure.retry) this.queue.addAfter(key, delay);
      await this.writeStatus(certificate, now, {
        ready: { status: 'False', reason: failure.reason, message: failure.message },
        issuing: {
          status: 'True',
          reason: 'Failed',
          message: `${verdict.message}, but issuance failed: ${failure.message}. ${failure.retry ? `Retrying in ${Math.round(delay / 1000)}s` : 'Fix the cause to retry'}`,
        },
        facts: pair
          ? {
              notBefore: pair.leaf.facts.notBefore,
              notAfter: pair.leaf.facts.notAfter,
              serial: pair.leaf.facts.serialNumber,
              renewAt: undefined,
            }
          : undefined,
        failures: { attempts: nextAttempts, last: now },
        revision: certificate.status?.revision,
      });
    }
  }

  /** Refuses to write a Secret that is not this Certificate's: Ready=False with the reason and how to fix it. */
  private async refuseSecret(
    certificate: Certificate,
    claim: Extract<SecretClaim, { ok: false }>,
    now: Date,
    log: Logger,
  ): Promise<void> {
    // An unlabelled Secret sends no events: look again later, so an opt-in annotation is noticed.
    if (this.foreign.has(`${certificate.metadata.namespace}/${certificate.spec.secretName}`))
      this.queue.retry(objectKey(certificate));
    return this.notReady(certificate, claim.reason, claim.message, now, log);
  }

  /** A Secret without Sigil's label that this name ran into before, read again; undefined when there is none. */
  private async foreignSecret(namespace: string, name: string): Promise<V1Secret | undefined> {
    const k = `${namespace}/${name}`;
    if (!this.foreign.has(k)) return undefined;
    const found = await this.readSecret(namespace, name);
    if (!found) this.foreign.delete(k);
    else
      this.foreign.set(
        k,
        cachedSecretView(found, () => false),
      );
    return this.foreign.get(k);
  }

  /** The private key in the Secret's tls.key, read from the API, when it still belongs to `leaf`. */
  private async storedKey(
    namespace: string,
    name: string,
    leaf: ParsedCertificate,
  ): Promise<ParsedPrivateKey | undefined> {
    const secret = await this.readSecret(namespace, name);
    const pem = secret?.data?.['tls.key'];
    if (!pem) return undefined;
    try {
      const key = parsePrivateKeyPem(Buffer.from(pem, 'base64'), `Secret ${namespace}/${name} tls.key`);
      return publicKeySpki(key.keyObject).equals(leaf.spki) ? key : undefined;
    } catch (err) {
      if (!isPkiError(err)) throw err;
      return undefined;
    }
  }

  private async readSecret(namespace: string, name: string): Promise<V1Secret | undefined> {
    try {
      const found = await this.kube.get<V1Secret>(paths.secrets(namespace, name));
      this.o.metrics.apiRequests.inc({ verb: 'get', resource: 'secrets' });
      return found;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** When the Certificate was issued REISSUE_BURST times within its minimum interval at one generation: wait. */
  private reissueHold(
    key: string,
    certificate: Certificate,
    reason: string,
    durationMs: number,
    now: Date,
    caFingerprint: string,
  ): { until: number; count: number; windowMs: number } | undefined {
    if (reason === IssueReason.ManualRenewal) return undefined;
    const recent = this.recentIssuances.get(key);
    // Issuances from another CA do not count: each CA rotation re-issues every leaf once more.
    if (
      !recent ||
      recent.uid !== certificate.metadata.uid ||
      recent.generation !== (certificate.metadata.generation ?? 0) ||
      recent.ca !== caFingerprint
    )
      return undefined;
    const windowMs = minimumIssuanceInterval(durationMs);
    const times = recent.times.filter((t) => now.getTime() - t < windowMs);
    if (times.length < REISSUE_BURST) return undefined;
    return { until: times[0]! + windowMs, count: times.length, windowMs };
  }

  private recordIssuance(key: string, certificate: Certificate, now: Date, ca: string): void {
    const uid = certificate.metadata.uid!;
    const generation = certificate.metadata.generation ?? 0;
    const recent = this.recentIssuances.get(key);
    if (recent && recent.uid === uid && recent.generation === generation && recent.ca === ca) {
      recent.times = [...recent.times, now.getTime()].slice(-REISSUE_BURST);
    } else this.recentIssuances.set(key, { uid, generation, ca, times: [now.getTime()] });
  }

  private backoff(attempts: number): number {
    const base = this.o.baseBackoffMs ?? 5_000;
    return Math.min(this.o.maxBackoffMs ?? 600_000, base * 2 ** Math.max(0, attempts - 1));
  }

  private setReadyMetric(labels: Record<string, string>, status: 'True' | 'False') {
    for (const condition of ['True', 'False']) {
      this.o.metrics.certificateReady.set({ ...labels, condition }, condition === status ? 1 : 0);
    }
  }

  /**
   * Ready=False with the reason, and a Warning Event of the same reason on the Certificate (repeats
   * counted on one Event), so `kubectl describe` shows every reason status gives.
   */
  private async notReady(certificate: Certificate, reason: string, message: string, now: Date, log: Logger) {
    // A Certificate that is not Ready is not waited on by a CA rotation: it cannot move to the new CA.
    this.leaves.delete(objectKey(certificate));
    const current = findCondition(certificate.status?.conditions, ConditionType.Ready);
    if (current?.reason !== reason || current.message !== message)
      log.warn('certificate not ready', { reason, detail: message });
    this.event(certificate, 'Warning', reason, message);
    const ref = this.issuerRefOf(certificate);
    this.setReadyMetric(
      {
        name: certificate.metadata.name!,
        namespace: certificate.metadata.namespace!,
        issuer_name: ref.name,
        issuer_kind: ref.kind,
      },
      'False',
    );
    await this.writeStatus(certificate, now, {
      ready: { status: 'False', reason, message },
      issuing: undefined,
      facts: 'keep',
      failures: 'keep',
      revision: certificate.status?.revision,
    });
  }

  /**
   * Writes the issuance into the Secret: a merge patch of Sigil's keys, labels and annotations into one
   * this Certificate may write (with its resourceVersion as precondition), or a new Secret. A Secret the
   * cache did not hold (no managed label) found at create time is written only if it opts in.
   */
  private async writeSecret(
    certificate: Certificate,
    issuer: IssuerState,
    issued: Awaited<ReturnType<typeof issueCertificate>>,
    existing: V1Secret | undefined,
  ): Promise<void> {
    const namespace = certificate.metadata.namespace!;
    const name = certificate.spec.secretName;
    const inputs = {
      certificate,
      issued,
      issuerKind: issuer.kind,
      issuerName: issuer.name,
      ownerReference: this.o.ownerReferences,
    };
    const patch = async (base: V1Secret) => {
      const result = await this.kube.mergePatch<V1Secret>(
        paths.secrets(namespace, name),
        secretPatch({ ...inputs, existing: base }),
        { fieldManager: FIELD_MANAGER },
      );
      this.o.metrics.apiRequests.inc({ verb: 'patch', resource: 'secrets' });
      return result;
    };
    let result: V1Secret;
    if (existing) {
      result = await patch(existing);
    } else {
      try {
        result = await this.kube.create<V1Secret>(
          paths.secrets(namespace),
          buildSecret({ ...inputs, existing: undefined }),
          { fieldManager: FIELD_MANAGER },
        );
        this.o.metrics.apiRequests.inc({ verb: 'create', resource: 'secrets' });
      } catch (err) {
        if (!isConflict(err)) throw err;
        const found = await this.kube.get<V1Secret>(paths.secrets(namespace, name));
        const view = cachedSecretView(found, () => false);
        const claim = secretClaim(certificate, view, this.peersOf(certificate));
        if (!claim.ok) {
          if (found.metadata?.labels?.[Label.Managed] !== 'true')
            this.foreign.set(`${namespace}/${name}`, view);
          throw new SecretRefused(claim);
        }
        result = await patch(found);
        this.foreign.delete(`${namespace}/${name}`);
      }
    }
    this.rememberSecretWrite(result);
  }

  /**
   * Keeps what this replica wrote to a Secret until the informer delivers it, so that a look
   * running ahead of the cache reads it. Only what the cache would keep of it; and nothing when
   * the cache already has it: the echo can arrive before the write's own answer, and an entry made
   * after it would stay until the Secret next changed (at 1,000 issuances, about 2 MiB).
   */
  private rememberSecretWrite(result: V1Secret) {
    const key = objectKey(result);
    const cached = this.secrets.get(key);
    if (cached && !resourceVersionNewer(result.metadata?.resourceVersion, cached.metadata?.resourceVersion))
      return;
    if (result.metadata) delete result.metadata.managedFields;
    this.written.set(
      key,
      cachedSecretView(result, () => true),
    );
  }

  private async patchSecretMetadata(
    certificate: Certificate,
    secret: V1Secret,
    issuer: IssuerState,
    log: Logger,
    bundle = false,
  ) {
    const meta = managedMetadata(certificate, issuer.kind, issuer.name);
    try {
      const result = await this.kube.mergePatch<V1Secret>(
        paths.secrets(secret.metadata!.namespace!, secret.metadata!.name!),
        bundle
          ? {
              // The precondition keeps a concurrent re-issue from being paired with this bundle's ca.crt by accident.
              metadata: { ...meta, resourceVersion: secret.metadata?.resourceVersion },
              data: { 'ca.crt': issuer.bundleB64 },
            }
          : { metadata: meta },
        { fieldManager: FIELD_MANAGER },
      );
      this.o.metrics.apiRequests.inc({ verb: 'patch', resource: 'secrets' });
      this.rememberSecretWrite(result);
      const entry = this.leaves.get(objectKey(certificate));
      if (entry && bundle) entry.bundle = issuer.bundleB64;
      this.unwritable.delete(objectKey(certificate));
      if (bundle)
        log.info("wrote the issuer's trust bundle to the Secret's ca.crt", {
          anchors: issuer.bundleAnchors.length,
        });
      else log.info('restored Sigil labels and annotations on the Secret');
    } catch (err) {
      if (isConflict(err)) {
        this.queue.add(objectKey(certificate));
        return;
      }
      log.warn('could not update the Secret', { error: describeApiError(err) });
      const code = statusCode(err);
      if (bundle && code !== undefined && code >= 400 && code < 500 && code !== 429) {
        // Refused for good (an immutable Secret, an admission webhook, RBAC): a rotation does not wait on it.
        this.unwritable.add(objectKey(certificate));
        this.event(
          certificate,
          'Warning',
          'TrustBundleNotWritten',
          `Could not write the issuer's trust bundle to Secret ${secret.metadata?.name}'s ca.crt: ${describeApiError(err)}. CA rotations go on without it; peers reading this ca.crt will refuse leaves of a new CA`,
        );
      }
      this.queue.retry(objectKey(certificate));
    }
  }

  private event(certificate: Certificate, type: 'Normal' | 'Warning', reason: string, message: string) {
    this.events.record(
      {
        apiVersion: API_VERSION,
        kind: 'Certificate',
        name: certificate.metadata.name!,
        namespace: certificate.metadata.namespace,
        uid: certificate.metadata.uid,
      },
      type,
      reason,
      message,
    );
  }

  private async writeStatus(
    certificate: Certificate,
    now: Date,
    s: {
      ready: { status: 'True' | 'False'; reason: string; message: string };
      issuing: { status: 'True' | 'False'; reason: string; message: string } | undefined;
      facts:
        | { notBefore: Date; notAfter: Date; serial: string; renewAt: Date | undefined }
        | undefined
        | 'keep';
      failures: { attempts: number; last: Date | undefined } | 'keep';
      revision: number | undefined;
    },
  ): Promise<void> {
    const generation = certificate.metadata.generation;
    const stamp = rfc3339(now);
    const cond = (
      type: string,
      c: { status: 'True' | 'False'; reason: string; message: string },
    ): Condition => ({
      type,
      ...c,
      lastTransitionTime: stamp,
      observedGeneration: generation,
    });
    let conditions = setCondition(certificate.status?.conditions, cond(ConditionType.Ready, s.ready));
    if (s.issuing) conditions = setCondition(conditions, cond(ConditionType.Issuing, s.issuing));
    else if (
      s.ready.status === 'True' &&
      findCondition(conditions, ConditionType.Issuing)?.status === 'True'
    ) {
      conditions = conditions.filter((c) => c.type !== ConditionType.Issuing);
    }
    const old = certificate.status ?? {};
    const iso = (d: Date | undefined) => (d ? rfc3339(d) : undefined);
    const next: CertificateStatus = { conditions };
    if (s.facts === 'keep') {
      for (const k of ['notBefore', 'notAfter', 'renewalTime', 'serialNumber'] as const)
        if (old[k]) next[k] = old[k];
    } else if (s.facts) {
      next.notBefore = iso(s.facts.notBefore)!;
      next.notAfter = iso(s.facts.notAfter)!;
      if (s.facts.renewAt) next.renewalTime = iso(s.facts.renewAt)!;
      next.serialNumber = displaySerial(s.facts.serial);
    }
    if (s.revision !== undefined) next.revision = s.revision;
    const ref = this.issuerRefOf(certificate);
    next.issuer = `${ref.kind}/${ref.name}`;
    if (s.failures === 'keep') {
      if (old.failedIssuanceAttempts) next.failedIssuanceAttempts = old.failedIssuanceAttempts;
      if (old.lastFailureTime) next.lastFailureTime = old.lastFailureTime;
    } else if (s.failures.attempts > 0) {
      next.failedIssuanceAttempts = s.failures.attempts;
      next.lastFailureTime = iso(s.failures.last)!;
    }
    // Key order differs between what the API server returns and what is built here (see sameJson).
    const normalize = (st: CertificateStatus) => ({
      ...st,
      conditions: (st.conditions ?? []).map((c) => ({ ...c, lastTransitionTime: '' })),
    });
    if (sameJson(normalize(old), normalize(next))) return;
    // Merge patch: fields Sigil no longer sets are removed with null.
    const body: Record<string, unknown> = { ...next };
    for (const k of [
      'notBefore',
      'notAfter',
      'renewalTime',
      'serialNumber',
      'revision',
      'failedIssuanceAttempts',
      'lastFailureTime',
    ]) {
      if (!(k in next)) body[k] = null;
    }
    try {
      const updated = await this.kube.mergePatch<Certificate>(
        sigilPath(Plural.Certificate, certificate.metadata.namespace!, certificate.metadata.name!, 'status'),
        { status: body },
        { fieldManager: FIELD_MANAGER },
      );
      this.o.metrics.apiRequests.inc({ verb: 'patch', resource: 'certificates/status' });
      // What reconciles read of it: never the server-side apply bookkeeping. Nothing when the cache
      // already holds this write or a newer one (its echo came first).
      delete updated.metadata.managedFields;
      const key = objectKey(certificate);
      const cached = this.certificates.get(key);
      if (
        !cached ||
        cached.metadata.uid !== updated.metadata.uid ||
        resourceVersionNewer(updated.metadata.resourceVersion, cached.metadata.resourceVersion)
      )
        this.statusWritten.set(key, updated);
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
  }
}
