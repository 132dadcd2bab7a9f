import type { Command } from 'commander';
import { loadKubeConfig } from '../lib/kube/config.ts';
import { createLogger } from '../lib/log.ts';
import { formatDuration, parseDuration } from '../lib/pki/renewal.ts';
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
      '--metrics-address <host:port>',
      'address for /healthz, /readyz and /metrics',
      env('SIGIL_METRICS_ADDRESS', '0.0.0.0:9402'),
    )
    .option('--no-leader-elect', 'run without leader election (one replica only)')
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
    .action(async (opts) => {
      const logger = createLogger(opts.logLevel, 'operator');
      const minDurationMs = parseDuration(opts.minDuration);
      const leaseDurationMs = parseDuration(opts.leaseDuration);
      if (minDurationMs === undefined || leaseDurationMs === undefined) {
        logger.error('invalid --min-duration or --lease-duration: use a Go duration such as 1h or 15s');
        process.exit(2);
      }
      const kc = loadKubeConfig(opts.kubeconfig);
      const operator = await startOperator({
        kc,
        namespace: opts.namespace,
        defaultIssuer: { kind: 'ClusterIssuer', name: opts.defaultIssuer },
        trustDomain: opts.trustDomain,
        metricsAddress: opts.metricsAddress,
        leaderElection: opts.leaderElect,
        leaseDurationMs,
        minDurationMs,
        ownerReferences: Boolean(opts.ownerReferences),
        watchNamespace: opts.watchNamespace,
        concurrency: Number(opts.concurrency),
        apiQps: Number(opts.apiQps),
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
