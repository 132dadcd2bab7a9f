import type { Command } from 'commander';
import { loadKubeConfig } from '../lib/kube/config.ts';
import { createLogger } from '../lib/log.ts';
import { startWebhook } from '../webhook/server.ts';

const env = (name: string, fallback: string) => process.env[name] ?? fallback;

export function webhookCommand(program: Command) {
  program
    .command('webhook')
    .description('Serve the mutating admission webhook that mounts identities into pods')
    .option('--kubeconfig <path>', 'kubeconfig file (default: $KUBECONFIG, then in-cluster)')
    .option(
      '--namespace <ns>',
      "the operator's namespace, where the serving certificate Secret lives",
      env('SIGIL_NAMESPACE', 'sigil-system'),
    )
    .option(
      '--tls-secret <name>',
      'Secret with the serving certificate, kept by the operator',
      env('SIGIL_WEBHOOK_TLS_SECRET', 'sigil-webhook-tls'),
    )
    .option(
      '--address <host:port>',
      'HTTPS address for /mutate-v1-pod, /healthz, /readyz, /metrics',
      env('SIGIL_WEBHOOK_ADDRESS', '0.0.0.0:8443'),
    )
    .option('--trust-domain <domain>', 'SPIFFE trust domain', env('SIGIL_TRUST_DOMAIN', 'cluster.local'))
    .option(
      '--cluster-domain <domain>',
      'cluster DNS domain for sigil.dev/service names',
      env('SIGIL_CLUSTER_DOMAIN', 'cluster.local'),
    )
    .option(
      '--default-issuer <name>',
      'ClusterIssuer for identities without sigil.dev/issuer',
      env('SIGIL_DEFAULT_ISSUER', 'sigil-ca'),
    )
    .option('--log-level <level>', 'error, warn, info or debug', env('SIGIL_LOG_LEVEL', 'info'))
    .action(async (opts) => {
      const logger = createLogger(opts.logLevel, 'webhook');
      const webhook = await startWebhook({
        kc: loadKubeConfig(opts.kubeconfig),
        namespace: opts.namespace,
        tlsSecretName: opts.tlsSecret,
        address: opts.address,
        trustDomain: opts.trustDomain,
        clusterDomain: opts.clusterDomain,
        defaultIssuer: { kind: 'ClusterIssuer', name: opts.defaultIssuer },
        logger,
      });
      logger.info('webhook started', {
        port: webhook.port,
        namespace: opts.namespace,
        tlsSecret: opts.tlsSecret,
      });
      const shutdown = async (signal: string) => {
        logger.info('shutting down', { signal });
        await webhook.stop();
        process.exit(0);
      };
      process.once('SIGTERM', () => void shutdown('SIGTERM'));
      process.once('SIGINT', () => void shutdown('SIGINT'));
    });
}
