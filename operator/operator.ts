// The operator process: health and metrics server, leader election, and the
// controllers, which run only while this replica leads.

import type { Server } from 'node:http';
import { hostname } from 'node:os';
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'winston';
import type { IssuerKind } from '../lib/api/types.ts';
import { LeaderElector } from '../lib/kube/leader.ts';
import { CertificateController } from './certificates/controller.ts';
import { IdentityGarbageCollector } from './identitygc/controller.ts';
import { IssuerController } from './issuers/controller.ts';
import { createOperatorMetrics, type OperatorMetrics } from './metrics.ts';
import { startHealthServer } from './server.ts';
import { WebhookTlsController, type WebhookTlsOptions } from './webhooktls/controller.ts';

export interface OperatorOptions {
  kc: KubeConfig;
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
  /** Limit Certificates, Issuers and their Secrets to one namespace (all when unset). */
  watchNamespace?: string | undefined;
  concurrency: number;
  /** Reconciles started per second at most; 0 for no limit. */
  apiQps?: number;
  logger: Logger;
  now?: () => Date;
  leaseDurationMs?: number;
  /** Keep the webhook's serving TLS and caBundle; off when undefined. */
  webhookTls?: Omit<WebhookTlsOptions, 'kc' | 'logger' | 'now' | 'namespace'> | undefined;
  /** Delete webhook-created identity Certificates no pod has used for this long; 0 disables. */
  identityGracePeriodMs?: number;
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
  const now = o.now ?? (() => new Date());
  const custom = o.kc.makeApiClient(CustomObjectsApi);
  let certificates: CertificateController | undefined;
  let issuers: IssuerController | undefined;
  let webhookTls: WebhookTlsController | undefined;
  let identityGc: IdentityGarbageCollector | undefined;
  let running = false;
  let stopping = false;
  const runningWaiters: (() => void)[] = [];

  const startControllers = async () => {
    const logger = o.logger;
    issuers = new IssuerController({
      kc: o.kc,
      custom,
      operatorNamespace: o.namespace,
      watchNamespace: o.watchNamespace,
      trustDomain: o.trustDomain,
      logger,
      metrics,
      now,
      onIssuerChanged: (key) => certificates?.onIssuerChanged(key),
    });
    certificates = new CertificateController({
      kc: o.kc,
      custom,
      issuers,
      defaultIssuer: o.defaultIssuer,
      minDurationMs: o.minDurationMs,
      ownerReferences: o.ownerReferences,
      watchNamespace: o.watchNamespace,
      concurrency: o.concurrency,
      ratePerSecond: o.apiQps ?? 0,
      logger,
      metrics,
      now,
    });
    const started = Date.now();
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
    await issuers.start();
    await issuers.waitForInitialSync();
    await certificates.start();
    if ((o.identityGracePeriodMs ?? 0) > 0) {
      identityGc = new IdentityGarbageCollector({
        kc: o.kc,
        custom,
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
    webhookTls?.stop();
    certificates?.stop();
    issuers?.stop();
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
