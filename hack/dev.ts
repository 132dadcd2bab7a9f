// make dev: the local control plane, the CRDs, a bootstrap CA and ClusterIssuer,
// and the operator and webhook in this process, until Ctrl-C. The webhook is
// registered by URL on 127.0.0.1 (the API server cannot reach a Service here).
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { loadKubeConfig } from '../lib/kube/config.ts';
import { installCrds } from '../lib/kube/crds.ts';
import { isConflict } from '../lib/kube/errors.ts';
import { rawRequest } from '../lib/kube/rest.ts';
import { webhookConfiguration } from '../lib/kube/webhookconfig.ts';
import { createLogger } from '../lib/log.ts';
import { freePort, isHealthy, readState, startControlPlane } from '../lib/testing/controlplane.ts';
import { startOperator } from '../operator/operator.ts';
import { startWebhook } from '../webhook/server.ts';

const dir = resolve(process.env.SIGIL_CLUSTER_DIR ?? '.cluster');
const NS = 'sigil-system';
const ISSUER = 'sigil-ca';
const CONFIG = 'sigil-webhook';
const logger = createLogger(process.env.SIGIL_LOG_LEVEL ?? 'info', 'dev');

let state = readState(dir);
if (!(state && (await isHealthy(state)))) {
  if (existsSync(dir)) throw new Error(`${dir} holds a stopped control plane: run make cluster-down first`);
  state = await startControlPlane({ dir, persistent: true });
}
// The webhook answers only the API server's admission client certificate, as the chart's does with clientAuth.
const client = state.webhookClient;
if (!client)
  throw new Error(
    `the control plane in ${dir} presents no client certificate to webhooks (it predates that): run make cluster-down and start again`,
  );
const kc = loadKubeConfig(resolve(dir, 'kubeconfig'));
await installCrds(kc);
const core = kc.makeApiClient(CoreV1Api);
await core.createNamespace({ body: { metadata: { name: NS } } }).catch((err) => {
  if (!isConflict(err)) throw err;
});
// The operator bootstraps the dev CA into a Secret and creates the ClusterIssuer on start.
const port = Number(process.env.SIGIL_WEBHOOK_PORT ?? (await freePort()));
const webhook = await startWebhook({
  kc,
  namespace: NS,
  tlsSecretName: 'sigil-webhook-tls',
  address: `127.0.0.1:${port}`,
  trustDomain: 'cluster.local',
  clusterDomain: 'cluster.local',
  defaultIssuer: { kind: 'ClusterIssuer', name: ISSUER },
  logger: logger.child({ component: 'webhook' }),
  clientAuth: { caFile: client.caFile, names: [client.name] },
});
const config = webhookConfiguration({
  name: CONFIG,
  operatorNamespace: NS,
  url: `https://127.0.0.1:${webhook.port}/mutate-v1-pod`,
});
const path = '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations';
await rawRequest(kc, 'DELETE', `${path}/${CONFIG}`).catch(() => {});
await rawRequest(kc, 'POST', path, config);
const operator = await startOperator({
  kc,
  namespace: NS,
  defaultIssuer: { kind: 'ClusterIssuer', name: ISSUER },
  trustDomain: 'cluster.local',
  metricsAddress: `127.0.0.1:${process.env.SIGIL_METRICS_PORT ?? 9402}`,
  leaderElection: false,
  minDurationMs: 60_000,
  ownerReferences: false,
  concurrency: 8,
  identityGracePeriodMs: 3_600_000,
  bootstrapCaSecret: ISSUER,
  createDefaultIssuer: { secretName: ISSUER },
  logger: logger.child({ component: 'operator' }),
  webhookTls: {
    caSecretName: 'sigil-webhook-ca',
    tlsSecretName: 'sigil-webhook-tls',
    serviceName: 'sigil-webhook',
    extraDnsNames: [],
    ipAddresses: ['127.0.0.1'],
    webhookConfigurationName: CONFIG,
    caDurationMs: 365 * 86_400_000,
    certDurationMs: 30 * 86_400_000,
  },
});
console.log(`
sigil dev environment
  kubeconfig: export KUBECONFIG=${resolve(dir, 'kubeconfig')}
  webhook:    https://127.0.0.1:${webhook.port}/mutate-v1-pod (MutatingWebhookConfiguration ${CONFIG};
              answers only the API server's client certificate, ${client.name})
  metrics:    http://127.0.0.1:${process.env.SIGIL_METRICS_PORT ?? 9402}/metrics
  issuer:     ClusterIssuer ${ISSUER} (CA in Secret ${NS}/${ISSUER}), minimum duration 1m
Label a namespace with sigil.dev/inject=enabled and create pods in it. Ctrl-C stops the operator and the
webhook and removes the webhook configuration; the control plane keeps running (make cluster-down).
`);
const shutdown = async () => {
  await rawRequest(kc, 'DELETE', `${path}/${CONFIG}`).catch(() => {});
  await operator.stop();
  await webhook.stop();
  process.exit(0);
};
process.once('SIGINT', () => void shutdown());
process.once('SIGTERM', () => void shutdown());
