import { loadAccess } from '../lib/kube/access.ts';
import { createLogger } from '../lib/log.ts';
import { parseDuration } from '../lib/pki/renewal.ts';
import type { CommandSpec, FlagValues } from './flags.ts';

const env = (name: string, fallback: string) => process.env[name] ?? fallback;

export const webhookSpec: CommandSpec = {
  name: 'webhook',
  description: 'Serve the mutating admission webhook that mounts identities into pods',
  flags: [
    {
      name: 'kubeconfig',
      value: '<path>',
      description: 'kubeconfig file (default: $KUBECONFIG, then in-cluster)',
    },
    {
      name: 'namespace',
      value: '<ns>',
      description: "the operator's namespace, where the serving certificate Secret lives",
      default: env('SIGIL_NAMESPACE', 'sigil-system'),
    },
    {
      name: 'tls-secret',
      value: '<name>',
      description: 'Secret with the serving certificate, kept by the operator',
      default: env('SIGIL_WEBHOOK_TLS_SECRET', 'sigil-webhook-tls'),
    },
    {
      name: 'address',
      value: '<host:port>',
      description: 'HTTPS address for /mutate-v1-pod, /healthz, /readyz, /metrics',
      default: env('SIGIL_WEBHOOK_ADDRESS', '0.0.0.0:8443'),
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
      description: 'cluster DNS domain for sigil.dev/service names',
      default: env('SIGIL_CLUSTER_DOMAIN', 'cluster.local'),
    },
    {
      name: 'default-issuer',
      value: '<name>',
      description: 'ClusterIssuer for identities without sigil.dev/issuer',
      default: env('SIGIL_DEFAULT_ISSUER', 'sigil-ca'),
    },
    {
      name: 'client-ca-file',
      value: '<path>',
      description:
        "PEM bundle of the CA that signs the API server's client certificate; when set, /mutate-v1-pod answers only callers presenting one (the probes and /metrics stay open)",
      default: process.env.SIGIL_WEBHOOK_CLIENT_CA_FILE,
    },
    {
      name: 'client-names',
      value: '<names>',
      description:
        'comma-separated subject common names or DNS SANs allowed to call /mutate-v1-pod (with --client-ca-file; default: any certificate from that CA)',
      default: env('SIGIL_WEBHOOK_CLIENT_NAMES', ''),
    },
    {
      name: 'min-duration',
      value: '<duration>',
      description: "the operator's --min-duration: pods asking for a shorter sigil.dev/duration are refused",
      default: env('SIGIL_MIN_DURATION', '1h'),
    },
    {
      name: 'pod-certificates',
      description:
        "the operator signs pod certificates (its --pod-certificates): only then may an issuer's spec.delivery or a namespace's sigil.dev/delivery label choose PodCertificate",
      default: process.env.SIGIL_POD_CERTIFICATES === 'true',
    },
    {
      name: 'log-level',
      value: '<level>',
      description: 'error, warn, info or debug',
      default: env('SIGIL_LOG_LEVEL', 'info'),
    },
  ],
};

/** The webhook's flags as parseFlags returns them for webhookSpec. */
interface WebhookFlags {
  kubeconfig?: string;
  namespace: string;
  tlsSecret: string;
  address: string;
  trustDomain: string;
  clusterDomain: string;
  defaultIssuer: string;
  clientCaFile?: string;
  clientNames: string;
  minDuration: string;
  podCertificates: boolean;
  logLevel: string;
}

export async function runWebhook(values: FlagValues): Promise<void> {
  const opts = values as unknown as WebhookFlags;
  const logger = createLogger(opts.logLevel, 'webhook');
  const minDurationMs = parseDuration(opts.minDuration);
  if (minDurationMs === undefined) {
    logger.error(`--min-duration "${opts.minDuration}" is not a Go duration such as 1h`);
    process.exit(2);
  }
  // Loaded here, not at the top: the operator's process (same entry point) never loads the webhook.
  const [{ readClientCa }, { startWebhook }] = await Promise.all([
    import('../webhook/clientauth.ts'),
    import('../webhook/server.ts'),
  ]);
  const names = String(opts.clientNames ?? '')
    .split(',')
    .map((n: string) => n.trim())
    .filter(Boolean);
  if (opts.clientCaFile) {
    try {
      readClientCa(opts.clientCaFile);
    } catch (err) {
      logger.error((err as Error).message);
      process.exit(2);
    }
  }
  if (names.length > 0 && !opts.clientCaFile) {
    logger.error('--client-names needs --client-ca-file: names are checked on certificates from that CA');
    process.exit(2);
  }
  const webhook = await startWebhook({
    kc: await loadAccess(opts.kubeconfig),
    namespace: opts.namespace,
    tlsSecretName: opts.tlsSecret,
    address: opts.address,
    trustDomain: opts.trustDomain,
    clusterDomain: opts.clusterDomain,
    defaultIssuer: { kind: 'ClusterIssuer', name: opts.defaultIssuer },
    minDurationMs,
    podCertificates: Boolean(opts.podCertificates),
    logger,
    clientAuth: opts.clientCaFile ? { caFile: opts.clientCaFile, names } : undefined,
  });
  logger.info('webhook started', {
    port: webhook.port,
    namespace: opts.namespace,
    tlsSecret: opts.tlsSecret,
    clientAuth: opts.clientCaFile ? `client certificates from ${opts.clientCaFile}` : 'off',
  });
  if (!opts.clientCaFile)
    logger.warn(
      "client authentication is off: anyone who reaches the webhook can send it reviews; set --client-ca-file to the CA of the API server's admission client certificate",
    );
  const shutdown = async (signal: string) => {
    logger.info('shutting down', { signal });
    await webhook.stop();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
}
