import { loadAccess } from '../lib/kube/access.ts';
import { createLogger } from '../lib/log.ts';
import { formatDuration, parseDuration } from '../lib/pki/renewal.ts';
import { DEFAULT_NORMAL_EVENTS_PER_SECOND } from '../operator/certificates/defaults.ts';
import type { CommandSpec, FlagValues } from './flags.ts';

const env = (name: string, fallback: string) => process.env[name] ?? fallback;

export const operatorSpec: CommandSpec = {
  name: 'operator',
  description: 'Run the controllers that issue and renew certificates',
  flags: [
    {
      name: 'kubeconfig',
      value: '<path>',
      description: 'kubeconfig file (default: $KUBECONFIG, then in-cluster)',
    },
    {
      name: 'namespace',
      value: '<ns>',
      description: 'namespace of the operator: ClusterIssuer CA Secrets and the leader Lease live here',
      default: env('SIGIL_NAMESPACE', 'sigil-system'),
    },
    {
      name: 'default-issuer',
      value: '<name>',
      description: 'ClusterIssuer used by Certificates without issuerRef',
      default: env('SIGIL_DEFAULT_ISSUER', 'sigil-ca'),
    },
    {
      name: 'trust-domain',
      value: '<domain>',
      description: 'SPIFFE trust domain',
      default: env('SIGIL_TRUST_DOMAIN', 'cluster.local'),
    },
    {
      name: 'cluster-domain',
      value: '<domain>',
      description: 'cluster DNS domain; service names of other namespaces are refused',
      default: env('SIGIL_CLUSTER_DOMAIN', 'cluster.local'),
    },
    {
      name: 'metrics-address',
      value: '<host:port>',
      description: 'address for /healthz, /readyz and /metrics',
      default: env('SIGIL_METRICS_ADDRESS', '0.0.0.0:9402'),
    },
    { name: 'leader-elect', description: 'run without leader election (one replica only)', default: true },
    {
      name: 'lease-name',
      value: '<name>',
      description: 'leader election Lease name',
      default: env('SIGIL_LEASE_NAME', 'sigil-operator'),
    },
    {
      name: 'lease-duration',
      value: '<duration>',
      description: 'leader Lease duration',
      default: env('SIGIL_LEASE_DURATION', '15s'),
    },
    {
      name: 'log-level',
      value: '<level>',
      description: 'error, warn, info or debug',
      default: env('SIGIL_LOG_LEVEL', 'info'),
    },
    {
      name: 'min-duration',
      value: '<duration>',
      description: 'shortest certificate duration accepted',
      default: env('SIGIL_MIN_DURATION', '1h'),
    },
    {
      name: 'owner-references',
      description: 'make each Certificate the owner of its Secret (deleted with it by the garbage collector)',
      default: process.env.SIGIL_OWNER_REFERENCES === 'true',
    },
    {
      name: 'pod-certificates',
      description:
        "sign PodCertificateRequests for clusterissuers.sigil.dev/<name> and issuers.sigil.dev/<namespace>.<name>, and publish each issuer's trust bundle as a ClusterTrustBundle (Kubernetes 1.37+, or 1.35-1.36 with the beta APIs on)",
      default: process.env.SIGIL_POD_CERTIFICATES === 'true',
    },
    {
      name: 'watch-namespace',
      value: '<ns>',
      description: 'limit Certificates and Issuers to this namespace (default: all)',
      default: process.env.SIGIL_WATCH_NAMESPACE,
    },
    {
      name: 'concurrency',
      value: '<n>',
      description: 'certificates processed in parallel',
      default: env('SIGIL_CONCURRENCY', '8'),
    },
    {
      name: 'api-qps',
      value: '<n>',
      description: 'upper bound on reconciles started per second (each makes one or two writes); 0 for none',
      default: env('SIGIL_API_QPS', '0'),
    },
    {
      name: 'event-qps',
      value: '<n>',
      description:
        'Normal Events (Issued) recorded per second at most, bursting to ten times that; Warnings are always recorded; 0 for no limit',
      default: env('SIGIL_EVENT_QPS', String(DEFAULT_NORMAL_EVENTS_PER_SECOND)),
    },
    {
      name: 'identity-grace-period',
      value: '<duration>',
      description:
        'delete webhook-created identity Certificates no pod has used for this long; 0 to keep them',
      default: env('SIGIL_IDENTITY_GRACE_PERIOD', '168h'),
    },
    {
      name: 'create-default-issuer',
      value: '<caSecret>',
      description:
        'create the default ClusterIssuer, signing with this CA Secret (in --namespace), if it does not exist',
      default: process.env.SIGIL_CREATE_DEFAULT_ISSUER,
    },
    {
      name: 'default-issuer-policy',
      value: '<json>',
      description: 'spec.policy of the default ClusterIssuer it creates, as JSON',
      default: process.env.SIGIL_DEFAULT_ISSUER_POLICY,
    },
    {
      name: 'default-issuer-rotation',
      value: '<json>',
      description:
        'spec.rotation of the default ClusterIssuer (propagationDelay, reissuePerSecond, automatic, prepareAtPercent), as JSON',
      default: process.env.SIGIL_DEFAULT_ISSUER_ROTATION,
    },
    {
      name: 'bootstrap-ca-secret',
      value: '<name>',
      description: 'create a self-signed root CA in this Secret (in --namespace) if it does not exist',
      default: process.env.SIGIL_BOOTSTRAP_CA_SECRET,
    },
    {
      name: 'webhook-tls',
      description: 'do not manage the webhook serving certificate and caBundle',
      default: true,
    },
    {
      name: 'webhook-service',
      value: '<name>',
      description: 'the webhook Service the serving certificate names',
      default: env('SIGIL_WEBHOOK_SERVICE', 'sigil-webhook'),
    },
    {
      name: 'webhook-configuration',
      value: '<name>',
      description: 'MutatingWebhookConfiguration whose caBundle the operator keeps',
      default: env('SIGIL_WEBHOOK_CONFIGURATION', 'sigil-webhook'),
    },
    {
      name: 'webhook-tls-secret',
      value: '<name>',
      description: 'Secret holding the webhook serving certificate',
      default: env('SIGIL_WEBHOOK_TLS_SECRET', 'sigil-webhook-tls'),
    },
    {
      name: 'webhook-ca-secret',
      value: '<name>',
      description: 'Secret holding the webhook internal CA',
      default: env('SIGIL_WEBHOOK_CA_SECRET', 'sigil-webhook-ca'),
    },
    {
      name: 'webhook-ip-sans',
      value: '<ips>',
      description:
        'extra IP SANs for the serving certificate (comma-separated), e.g. 127.0.0.1 for a URL-registered webhook',
      default: env('SIGIL_WEBHOOK_IP_SANS', ''),
    },
    {
      name: 'webhook-dns-names',
      value: '<names>',
      description: 'extra DNS SANs for the serving certificate (comma-separated)',
      default: env('SIGIL_WEBHOOK_DNS_NAMES', ''),
    },
    {
      name: 'webhook-cert-duration',
      value: '<duration>',
      description: 'lifetime of the webhook serving certificate',
      default: env('SIGIL_WEBHOOK_CERT_DURATION', '720h'),
    },
    {
      name: 'webhook-ca-duration',
      value: '<duration>',
      description: 'lifetime of the webhook internal CA',
      default: env('SIGIL_WEBHOOK_CA_DURATION', '43800h'),
    },
  ],
};

/** The operator's flags as parseFlags returns them for operatorSpec. */
interface OperatorFlags {
  kubeconfig?: string;
  namespace: string;
  defaultIssuer: string;
  trustDomain: string;
  clusterDomain: string;
  metricsAddress: string;
  leaderElect: boolean;
  leaseName: string;
  leaseDuration: string;
  logLevel: string;
  minDuration: string;
  ownerReferences: boolean;
  podCertificates: boolean;
  watchNamespace?: string;
  concurrency: string;
  apiQps: string;
  eventQps: string;
  identityGracePeriod: string;
  createDefaultIssuer?: string;
  defaultIssuerPolicy?: string;
  defaultIssuerRotation?: string;
  bootstrapCaSecret?: string;
  webhookTls: boolean;
  webhookService: string;
  webhookConfiguration: string;
  webhookTlsSecret: string;
  webhookCaSecret: string;
  webhookIpSans: string;
  webhookDnsNames: string;
  webhookCertDuration: string;
  webhookCaDuration: string;
}

export async function runOperator(values: FlagValues): Promise<void> {
  const opts = values as unknown as OperatorFlags;
  const logger = createLogger(opts.logLevel, 'operator');
  const minDurationMs = parseDuration(opts.minDuration);
  const leaseDurationMs = parseDuration(opts.leaseDuration);
  if (minDurationMs === undefined || leaseDurationMs === undefined) {
    logger.error('invalid --min-duration or --lease-duration: use a Go duration such as 1h or 15s');
    process.exit(2);
  }
  for (const [flag, value] of [
    ['--concurrency', opts.concurrency],
    ['--api-qps', opts.apiQps],
    ['--event-qps', opts.eventQps],
  ] as const) {
    const n = Number(value);
    if (!Number.isFinite(n) || n < 0 || (flag === '--concurrency' && (n < 1 || !Number.isInteger(n)))) {
      logger.error(
        `invalid ${flag} "${value}": use ${flag === '--concurrency' ? 'a whole number of at least 1' : 'a number, 0 for no limit'}`,
      );
      process.exit(2);
    }
  }
  const certDurationMs = parseDuration(opts.webhookCertDuration);
  const caDurationMs = parseDuration(opts.webhookCaDuration);
  if (certDurationMs === undefined || caDurationMs === undefined) {
    logger.error('invalid --webhook-cert-duration or --webhook-ca-duration: use a Go duration such as 720h');
    process.exit(2);
  }
  const identityGracePeriodMs =
    opts.identityGracePeriod === '0' ? 0 : parseDuration(opts.identityGracePeriod);
  if (identityGracePeriodMs === undefined) {
    logger.error('invalid --identity-grace-period: use a Go duration such as 168h, or 0');
    process.exit(2);
  }
  let defaultIssuerPolicy: Record<string, unknown> | undefined;
  try {
    defaultIssuerPolicy = opts.defaultIssuerPolicy ? JSON.parse(opts.defaultIssuerPolicy) : undefined;
  } catch (err) {
    logger.error(`invalid --default-issuer-policy: not JSON (${(err as Error).message})`);
    process.exit(2);
  }
  let defaultIssuerRotation: Record<string, unknown> | undefined;
  try {
    defaultIssuerRotation = opts.defaultIssuerRotation ? JSON.parse(opts.defaultIssuerRotation) : undefined;
  } catch (err) {
    logger.error(`invalid --default-issuer-rotation: not JSON (${(err as Error).message})`);
    process.exit(2);
  }
  const split = (v: string) =>
    v
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
  const kc = await loadAccess(opts.kubeconfig);
  // Loaded here, not at the top: the webhook's process (same entry point) never loads the operator.
  const { startOperator } = await import('../operator/operator.ts');
  const operator = await startOperator({
    kc,
    namespace: opts.namespace,
    defaultIssuer: { kind: 'ClusterIssuer', name: opts.defaultIssuer },
    trustDomain: opts.trustDomain,
    metricsAddress: opts.metricsAddress,
    leaderElection: opts.leaderElect,
    leaseDurationMs,
    leaseName: opts.leaseName,
    minDurationMs,
    ownerReferences: Boolean(opts.ownerReferences),
    watchNamespace: opts.watchNamespace,
    clusterDomain: opts.clusterDomain,
    identityGracePeriodMs,
    podCertificates: Boolean(opts.podCertificates),
    bootstrapCaSecret: opts.bootstrapCaSecret,
    createDefaultIssuer: opts.createDefaultIssuer
      ? {
          secretName: opts.createDefaultIssuer,
          policy: defaultIssuerPolicy,
          rotation: defaultIssuerRotation,
        }
      : undefined,
    webhookTls: opts.webhookTls
      ? {
          caSecretName: opts.webhookCaSecret,
          tlsSecretName: opts.webhookTlsSecret,
          serviceName: opts.webhookService,
          extraDnsNames: split(opts.webhookDnsNames),
          ipAddresses: split(opts.webhookIpSans),
          webhookConfigurationName: opts.webhookConfiguration,
          caDurationMs,
          certDurationMs,
        }
      : undefined,
    concurrency: Number(opts.concurrency),
    apiQps: Number(opts.apiQps),
    eventQps: Number(opts.eventQps),
    logger,
    onLostLeadership: () => {
      logger.error('leadership lost; exiting so a fresh process can campaign again');
      process.exit(1);
    },
  });
  const address = operator.server.address();
  logger.info('operator started', {
    namespace: opts.namespace,
    metrics: typeof address === 'object' && address ? `${address.address}:${address.port}` : String(address),
    leaderElection: opts.leaderElect,
    minDuration: formatDuration(minDurationMs),
  });
  const shutdown = async (signal: string) => {
    logger.info('shutting down', { signal });
    await operator.stop();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
}
