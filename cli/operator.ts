import type { Command } from 'commander';
import { loadAccess } from '../lib/kube/access.ts';
import { createLogger } from '../lib/log.ts';
import { formatDuration, parseDuration } from '../lib/pki/renewal.ts';
import { DEFAULT_NORMAL_EVENTS_PER_SECOND } from '../operator/certificates/controller.ts';
import { startOperator } from '../operator/operator.ts';

const env = (name: string, fallback: string) => process.env[name] ?? fallback;

export function operatorCommand(program: Command) {
  program
    .command('operator')
    .description('Run the controllers that issue and renew certificates')
    .option('--kubeconfig <path>', 'kubeconfig file (default: $KUBECONFIG, then in-cluster)')
    .option(
      '--namespace <ns>',
      'namespace of the operator: ClusterIssuer CA Secrets and the leader Lease live here',
      env('SIGIL_NAMESPACE', 'sigil-system'),
    )
    .option(
      '--default-issuer <name>',
      'ClusterIssuer used by Certificates without issuerRef',
      env('SIGIL_DEFAULT_ISSUER', 'sigil-ca'),
    )
    .option('--trust-domain <domain>', 'SPIFFE trust domain', env('SIGIL_TRUST_DOMAIN', 'cluster.local'))
    .option(
      '--cluster-domain <domain>',
      'cluster DNS domain; service names of other namespaces are refused',
      env('SIGIL_CLUSTER_DOMAIN', 'cluster.local'),
    )
    .option(
      '--metrics-address <host:port>',
      'address for /healthz, /readyz and /metrics',
      env('SIGIL_METRICS_ADDRESS', '0.0.0.0:9402'),
    )
    .option('--no-leader-elect', 'run without leader election (one replica only)')
    .option('--lease-name <name>', 'leader election Lease name', env('SIGIL_LEASE_NAME', 'sigil-operator'))
    .option('--lease-duration <duration>', 'leader Lease duration', env('SIGIL_LEASE_DURATION', '15s'))
    .option('--log-level <level>', 'error, warn, info or debug', env('SIGIL_LOG_LEVEL', 'info'))
    .option(
      '--min-duration <duration>',
      'shortest certificate duration accepted',
      env('SIGIL_MIN_DURATION', '1h'),
    )
    .option(
      '--owner-references',
      'make each Certificate the owner of its Secret (deleted with it by the garbage collector)',
      process.env.SIGIL_OWNER_REFERENCES === 'true',
    )
    .option(
      '--pod-certificates',
      "sign PodCertificateRequests for clusterissuers.sigil.dev/<name> and issuers.sigil.dev/<namespace>.<name>, and publish each issuer's trust bundle as a ClusterTrustBundle (Kubernetes 1.37+, or 1.35-1.36 with the beta APIs on)",
      process.env.SIGIL_POD_CERTIFICATES === 'true',
    )
    .option(
      '--watch-namespace <ns>',
      'limit Certificates and Issuers to this namespace (default: all)',
      process.env.SIGIL_WATCH_NAMESPACE,
    )
    .option('--concurrency <n>', 'certificates processed in parallel', env('SIGIL_CONCURRENCY', '8'))
    .option(
      '--api-qps <n>',
      'upper bound on reconciles started per second (each makes one or two writes); 0 for none',
      env('SIGIL_API_QPS', '0'),
    )
    .option(
      '--event-qps <n>',
      'Normal Events (Issued) recorded per second at most, bursting to ten times that; Warnings are always recorded; 0 for no limit',
      env('SIGIL_EVENT_QPS', String(DEFAULT_NORMAL_EVENTS_PER_SECOND)),
    )
    .option(
      '--identity-grace-period <duration>',
      'delete webhook-created identity Certificates no pod has used for this long; 0 to keep them',
      env('SIGIL_IDENTITY_GRACE_PERIOD', '168h'),
    )
    .option(
      '--create-default-issuer <caSecret>',
      'create the default ClusterIssuer, signing with this CA Secret (in --namespace), if it does not exist',
      process.env.SIGIL_CREATE_DEFAULT_ISSUER,
    )
    .option(
      '--default-issuer-policy <json>',
      'spec.policy of the default ClusterIssuer it creates, as JSON',
      process.env.SIGIL_DEFAULT_ISSUER_POLICY,
    )
    .option(
      '--default-issuer-rotation <json>',
      'spec.rotation of the default ClusterIssuer (propagationDelay, reissuePerSecond, automatic, prepareAtPercent), as JSON',
      process.env.SIGIL_DEFAULT_ISSUER_ROTATION,
    )
    .option(
      '--bootstrap-ca-secret <name>',
      'create a self-signed root CA in this Secret (in --namespace) if it does not exist',
      process.env.SIGIL_BOOTSTRAP_CA_SECRET,
    )
    .option('--no-webhook-tls', 'do not manage the webhook serving certificate and caBundle')
    .option(
      '--webhook-service <name>',
      'the webhook Service the serving certificate names',
      env('SIGIL_WEBHOOK_SERVICE', 'sigil-webhook'),
    )
    .option(
      '--webhook-configuration <name>',
      'MutatingWebhookConfiguration whose caBundle the operator keeps',
      env('SIGIL_WEBHOOK_CONFIGURATION', 'sigil-webhook'),
    )
    .option(
      '--webhook-tls-secret <name>',
      'Secret holding the webhook serving certificate',
      env('SIGIL_WEBHOOK_TLS_SECRET', 'sigil-webhook-tls'),
    )
    .option(
      '--webhook-ca-secret <name>',
      'Secret holding the webhook internal CA',
      env('SIGIL_WEBHOOK_CA_SECRET', 'sigil-webhook-ca'),
    )
    .option(
      '--webhook-ip-sans <ips>',
      'extra IP SANs for the serving certificate (comma-separated), e.g. 127.0.0.1 for a URL-registered webhook',
      env('SIGIL_WEBHOOK_IP_SANS', ''),
    )
    .option(
      '--webhook-dns-names <names>',
      'extra DNS SANs for the serving certificate (comma-separated)',
      env('SIGIL_WEBHOOK_DNS_NAMES', ''),
    )
    .option(
      '--webhook-cert-duration <duration>',
      'lifetime of the webhook serving certificate',
      env('SIGIL_WEBHOOK_CERT_DURATION', '720h'),
    )
    .option(
      '--webhook-ca-duration <duration>',
      'lifetime of the webhook internal CA',
      env('SIGIL_WEBHOOK_CA_DURATION', '43800h'),
    )
    .action(async (opts) => {
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
        logger.error(
          'invalid --webhook-cert-duration or --webhook-ca-duration: use a Go duration such as 720h',
        );
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
        defaultIssuerRotation = opts.defaultIssuerRotation
          ? JSON.parse(opts.defaultIssuerRotation)
          : undefined;
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
        metrics:
          typeof address === 'object' && address ? `${address.address}:${address.port}` : String(address),
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
    });
}
