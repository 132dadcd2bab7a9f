// The operator process: health and metrics server, leader election, and the
// controllers, which run only while this replica leads.

import type { Server } from 'node:http';
import { hostname } from 'node:os';
import type { Logger } from 'winston';
import { API_VERSION, bundleKey, type Issuer, type IssuerKind, Plural, sigilPath } from '../lib/api/types.ts';
import { type Kube, type KubeAccess, kubeFor, paths } from '../lib/kube/client.ts';
import { isConflict, isNotFound } from '../lib/kube/errors.ts';
import { LeaderElector } from '../lib/kube/leader.ts';
import { createSelfSignedCA } from '../lib/pki/ca.ts';
import { setRsaKeygenConcurrency } from '../lib/pki/keys.ts';
import { CertificateController } from './certificates/controller.ts';
import { IdentityGarbageCollector } from './identitygc/controller.ts';
import { IssuerController } from './issuers/controller.ts';
import { createOperatorMetrics, type OperatorMetrics } from './metrics.ts';
import { discoverPodCertificateApis, PodCertificateController } from './podcerts/controller.ts';
import { startHealthServer } from './server.ts';
import { TrustController } from './trust/controller.ts';
import { WebhookTlsController, type WebhookTlsOptions } from './webhooktls/controller.ts';

export interface OperatorOptions {
  /** A kubeconfig: ./lib/kube/access.ts loads one, and client-node's KubeConfig is one too. */
  kc: KubeAccess;
  namespace: string;
  defaultIssuer: { kind: IssuerKind; name: string };
  trustDomain: string;
  /** host:port for /healthz, /readyz, /metrics; port 0 picks a free one. */
  metricsAddress: string;
  leaderElection: boolean;
  leaseName?: string;
  identity?: string;
  minDurationMs: number;
  ownerReferences: boolean;
  /** Cluster DNS domain (default cluster.local). */
  clusterDomain?: string | undefined;
  /** Limit Certificates, Issuers and their Secrets to one namespace (all when unset). */
  watchNamespace?: string | undefined;
  concurrency: number;
  /** RSA keys generated at once at most (default 2): the rest wait, other key types do not. */
  rsaKeygenConcurrency?: number | undefined;
  /** Reconciles started per second at most; 0 for no limit. */
  apiQps?: number;
  /** Normal Events per second at most (bursting to ten times that); 0 for no limit. */
  eventQps?: number | undefined;
  /** A repeated Event's count is written at most this often (default 10 s). */
  eventRepeatIntervalMs?: number | undefined;
  logger: Logger;
  now?: () => Date;
  leaseDurationMs?: number;
  /** Keep the webhook's serving TLS and caBundle; off when undefined. */
  webhookTls?: Omit<WebhookTlsOptions, 'kc' | 'logger' | 'now' | 'namespace'> | undefined;
  /** Create the default ClusterIssuer (with this CA Secret and policy) if it does not exist. */
  createDefaultIssuer?:
    | {
        secretName: string;
        policy?: Record<string, unknown> | undefined;
        rotation?: Record<string, unknown> | undefined;
      }
    | undefined;
  /** Create a self-signed root CA in this Secret (operator namespace) if it does not exist. */
  bootstrapCaSecret?: string | undefined;
  /** Delete webhook-created identity Certificates no pod has used for this long; 0 disables. */
  identityGracePeriodMs?: number;
  /**
   * Sign PodCertificateRequests for Sigil's signer names and publish ClusterTrustBundles, where the
   * API server serves them (certificates.k8s.io v1 or v1beta1).
   */
  podCertificates?: boolean | undefined;
  /** Called when leadership is lost; the CLI exits so a fresh process campaigns again. */
  onLostLeadership?: () => void;
}

export interface Operator {
  metrics: OperatorMetrics;
  server: Server;
  isLeader: () => boolean;
  certificates: () => CertificateController | undefined;
  issuers: () => IssuerController | undefined;
  /** Resolves when the controllers have synced and processed what they found at start. */
  whenRunning: () => Promise<void>;
  stop: () => Promise<void>;
}

export async function startOperator(o: OperatorOptions): Promise<Operator> {
  const metrics = createOperatorMetrics();
  if (o.rsaKeygenConcurrency !== undefined) setRsaKeygenConcurrency(o.rsaKeygenConcurrency);
  const now = o.now ?? (() => new Date());
  const kube = kubeFor(o.kc);
  let certificates: CertificateController | undefined;
  let issuers: IssuerController | undefined;
  let trust: TrustController | undefined;
  let webhookTls: WebhookTlsController | undefined;
  let identityGc: IdentityGarbageCollector | undefined;
  let podCertificates: PodCertificateController | undefined;
  let running = false;
  let stopping = false;
  const runningWaiters: (() => void)[] = [];

  const startControllers = async () => {
    const logger = o.logger;
    issuers = new IssuerController({
      kc: o.kc,
      operatorNamespace: o.namespace,
      watchNamespace: o.watchNamespace,
      trustDomain: o.trustDomain,
      logger,
      metrics,
      now,
      onIssuerChanged: (key) => {
        certificates?.onIssuerChanged(key);
        podCertificates?.onIssuerKey(key);
        // A selector, or the bundle of an issuer published by selector, may have changed.
        if (key.startsWith('ClusterIssuer/')) trust?.touchAll();
      },
      eventRepeatIntervalMs: o.eventRepeatIntervalMs,
    });
    trust = new TrustController({
      kc: o.kc,
      watchNamespace: o.watchNamespace,
      source: {
        ready: () => certificates?.rotationObserver.synced() ?? false,
        desired: (ns) => certificates?.trustBundlesFor(ns) ?? new Map(),
        selected: () =>
          [...(issuers?.all() ?? [])].flatMap((st) => {
            const selector =
              st.kind === 'ClusterIssuer' ? st.issuer.spec.trustBundle?.namespaceSelector : undefined;
            return selector && st.bundlePem
              ? [{ key: bundleKey(st.kind, st.name), pem: st.bundlePem, selector }]
              : [];
          }),
      },
      logger,
      metrics,
    });
    certificates = new CertificateController({
      kc: o.kc,
      issuers,
      defaultIssuer: o.defaultIssuer,
      minDurationMs: o.minDurationMs,
      ownerReferences: o.ownerReferences,
      clusterDomain: o.clusterDomain,
      watchNamespace: o.watchNamespace,
      concurrency: o.concurrency,
      ratePerSecond: o.apiQps ?? 0,
      normalEventsPerSecond: o.eventQps,
      eventRepeatIntervalMs: o.eventRepeatIntervalMs,
      logger,
      metrics,
      now,
      onTrustChanged: (ns) => trust?.touch(ns),
      trustBundleHeld: (ns, key, pem) => trust?.holds(ns, key, pem) ?? false,
      trustNamespaces: (st) => {
        const selector =
          st.kind === 'ClusterIssuer' ? st.issuer.spec.trustBundle?.namespaceSelector : undefined;
        return selector ? (trust?.selectedNamespaces(selector) ?? []) : [];
      },
    });
    if (o.podCertificates) {
      const apis = await discoverPodCertificateApis(o.kc);
      if (!apis.podCertificateRequests && !apis.clusterTrustBundles)
        logger.warn(
          'pod certificates are on, but the API server serves neither PodCertificateRequests nor ClusterTrustBundles (certificates.k8s.io v1 from Kubernetes 1.37; v1beta1 in 1.35-1.36 with the PodCertificateRequest and ClusterTrustBundle feature gates and --runtime-config=certificates.k8s.io/v1beta1=true); only Secrets are issued',
        );
      else {
        podCertificates = new PodCertificateController({
          kc: o.kc,
          apis,
          issuers,
          clusterDomain: o.clusterDomain,
          watchNamespace: o.watchNamespace,
          logger,
          metrics,
          now,
          normalEventsPerSecond: o.eventQps,
          eventRepeatIntervalMs: o.eventRepeatIntervalMs,
        });
        logger.info('signing pod certificates', {
          podCertificateRequests: apis.podCertificateRequests ?? 'not served',
          clusterTrustBundles: apis.clusterTrustBundles ?? 'not served',
        });
      }
    }
    const certificateObserver = certificates.rotationObserver;
    const pcc = podCertificates;
    issuers.setObserver(
      pcc
        ? {
            ...certificateObserver,
            // A rotation also waits for the issuer's ClusterTrustBundle.
            bundleRemaining: (key, anchors) =>
              certificateObserver.bundleRemaining(key, anchors) + pcc.bundleRemaining(key, anchors),
            leaves: (key, from, to) => {
              const secrets = certificateObserver.leaves(key, from, to);
              const pods = pcc.leaves(key, from, to);
              return {
                onOld: secrets.onOld,
                onNew: secrets.onNew + pods.onNew,
                refreshing: pods.refreshing,
                refreshedBy: pods.refreshedBy,
              };
            },
            bundleProgress: (key, anchors) =>
              `${certificateObserver.bundleProgress(key, anchors)}${pcc.bundleRemaining(key, anchors) ? '; ClusterTrustBundle not written yet' : ''}`,
          }
        : certificateObserver,
    );
    const started = Date.now();
    if (o.bootstrapCaSecret) await bootstrapCa(kube, o.namespace, o.bootstrapCaSecret, logger, now());
    if (o.createDefaultIssuer)
      await ensureDefaultIssuer(
        kube,
        o.defaultIssuer.name,
        o.trustDomain,
        o.createDefaultIssuer,
        !o.bootstrapCaSecret,
        logger,
      );
    if (o.webhookTls) {
      webhookTls = new WebhookTlsController({
        ...o.webhookTls,
        kc: o.kc,
        namespace: o.namespace,
        logger,
        now,
      });
      await webhookTls.start();
    }
    await trust.start();
    await issuers.start();
    await issuers.waitForInitialSync();
    await certificates.start();
    await podCertificates?.start();
    if ((o.identityGracePeriodMs ?? 0) > 0) {
      identityGc = new IdentityGarbageCollector({
        kc: o.kc,
        certificates: certificates.certificates,
        watchNamespace: o.watchNamespace,
        gracePeriodMs: o.identityGracePeriodMs!,
        logger,
        now,
      });
      await identityGc.start();
    }
    logger.info('controllers started', {
      certificates: certificates.certificates.size,
      managedSecrets: certificates.secrets.size,
      ms: Date.now() - started,
    });
    running = true;
    for (const w of runningWaiters.splice(0)) w();
  };
  const stopControllers = () => {
    identityGc?.stop();
    podCertificates?.stop();
    webhookTls?.stop();
    certificates?.stop();
    issuers?.stop();
    trust?.stop();
    running = false;
  };

  const cacheGauge = setInterval(() => {
    metrics.cachedObjects.set({ resource: 'certificates' }, certificates?.certificates.size ?? 0);
    metrics.cachedObjects.set(
      { resource: 'secrets' },
      (certificates?.secrets.size ?? 0) + (issuers?.cachedSecretCount() ?? 0),
    );
    metrics.cachedObjects.set(
      { resource: 'issuers' },
      (issuers?.issuers.size ?? 0) + (issuers?.clusterIssuers.size ?? 0),
    );
  }, 5_000);
  cacheGauge.unref();

  let elector: LeaderElector | undefined;
  const server = await startHealthServer(o.metricsAddress, metrics.registry, {
    live: () => true,
    notReady: () => {
      if (!elector || elector.isLeader()) return running ? undefined : 'controllers are starting';
      return undefined; // a standby replica is ready to take over
    },
  });

  if (o.leaderElection) {
    elector = new LeaderElector(o.kc, {
      namespace: o.namespace,
      name: o.leaseName ?? 'sigil-operator',
      identity: o.identity ?? `${hostname()}_${process.pid}`,
      leaseDurationMs: o.leaseDurationMs ?? 15_000,
      renewDeadlineMs: Math.round((o.leaseDurationMs ?? 15_000) * (2 / 3)),
      retryPeriodMs: Math.max(500, Math.round((o.leaseDurationMs ?? 15_000) / 7.5)),
      logger: o.logger,
      onStartedLeading: () => {
        metrics.leader.set(1);
        startControllers().catch((err) => o.logger.error('controllers failed to start', err as Error));
      },
      onStoppedLeading: () => {
        metrics.leader.set(0);
        stopControllers();
        if (!stopping) o.onLostLeadership?.();
      },
    });
    elector.start();
  } else {
    metrics.leader.set(1);
    await startControllers();
  }

  return {
    metrics,
    server,
    isLeader: () => elector?.isLeader() ?? true,
    certificates: () => certificates,
    issuers: () => issuers,
    whenRunning: () => (running ? Promise.resolve() : new Promise((r) => runningWaiters.push(r))),
    stop: async () => {
      stopping = true;
      clearInterval(cacheGauge);
      if (elector) await elector.stop();
      stopControllers();
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections();
      await closed;
    },
  };
}

/**
 * Creates a self-signed root CA in the named Secret once. An existing Secret is
 * never touched, whatever it holds: the issuer reports what is wrong with it.
 */
async function bootstrapCa(
  kube: Kube,
  namespace: string,
  name: string,
  logger: Logger,
  now: Date,
): Promise<void> {
  try {
    await kube.get(paths.secrets(namespace, name));
    return;
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  const ca = await createSelfSignedCA({
    commonName: 'sigil bootstrap root CA',
    organization: 'sigil',
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + 10 * 365 * 86_400_000),
  });
  try {
    await kube.create(paths.secrets(namespace), {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name, annotations: { 'sigil.dev/bootstrap': 'true' } },
      type: 'kubernetes.io/tls',
      data: {
        'tls.crt': Buffer.from(ca.certPem).toString('base64'),
        'tls.key': Buffer.from(ca.keyPem).toString('base64'),
      },
    });
    logger.warn('created a bootstrap root CA; replace it with your own CA for production', {
      secret: `${namespace}/${name}`,
    });
  } catch (err) {
    if (!isConflict(err)) throw err;
  }
}

/**
 * Creates the default ClusterIssuer once; an existing one is left as its owner made it, except that
 * one the operator created follows the CA Secret it is given (a user's CA, not the bootstrap one):
 * changing the chart's ca.existingSecret rotates its CA, as pointing spec.ca.secretName does.
 */
async function ensureDefaultIssuer(
  kube: Kube,
  name: string,
  trustDomain: string,
  spec: {
    secretName: string;
    policy?: Record<string, unknown> | undefined;
    rotation?: Record<string, unknown> | undefined;
  },
  followSecret: boolean,
  logger: Logger,
): Promise<void> {
  try {
    await kube.create(sigilPath(Plural.ClusterIssuer), {
      apiVersion: API_VERSION,
      kind: 'ClusterIssuer',
      metadata: { name, labels: { 'app.kubernetes.io/managed-by': 'sigil-operator' } },
      spec: {
        ca: { secretName: spec.secretName },
        trustDomain,
        ...(spec.policy && Object.keys(spec.policy).length > 0 ? { policy: spec.policy } : {}),
        ...(spec.rotation && Object.keys(spec.rotation).length > 0 ? { rotation: spec.rotation } : {}),
      },
    });
    logger.info('created the default ClusterIssuer', { name, secret: spec.secretName });
  } catch (err) {
    if (!isConflict(err)) throw err;
    if (!followSecret) return;
    // Listed by name rather than read: the chart grants list on ClusterIssuers, get on none.
    const existing = (
      await kube.list<{ items: Issuer[] }>(sigilPath(Plural.ClusterIssuer), {
        fieldSelector: `metadata.name=${name}`,
      })
    ).items[0];
    if (
      existing?.metadata.labels?.['app.kubernetes.io/managed-by'] !== 'sigil-operator' ||
      existing.spec.ca.secretName === spec.secretName
    )
      return;
    await kube.mergePatch(sigilPath(Plural.ClusterIssuer, undefined, name), {
      metadata: { resourceVersion: existing.metadata.resourceVersion },
      spec: { ca: { secretName: spec.secretName } },
    });
    logger.info('pointed the default ClusterIssuer at its new CA Secret; the rotation starts', {
      name,
      from: existing.spec.ca.secretName,
      to: spec.secretName,
    });
  }
}
