// make dev: the local control plane, the CRDs, a bootstrap CA and ClusterIssuer,
// and the operator and webhook in this process, until Ctrl-C. The webhook is
// registered by URL on 127.0.0.1 (the API server cannot reach a Service here).
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { API_VERSION, GROUP, Plural, VERSION } from '../lib/api/types.ts';
import { loadKubeConfig } from '../lib/kube/config.ts';
import { installCrds } from '../lib/kube/crds.ts';
import { isConflict, isNotFound } from '../lib/kube/errors.ts';
import { rawRequest } from '../lib/kube/rest.ts';
import { webhookConfiguration } from '../lib/kube/webhookconfig.ts';
import { createLogger } from '../lib/log.ts';
import { createSelfSignedCA } from '../lib/pki/ca.ts';
import { freePort, isHealthy, readState, startControlPlane } from '../lib/testing/controlplane.ts';
import { startOperator } from '../operator/operator.ts';
import { startWebhook } from '../webhook/server.ts';

const dir = resolve(process.env.SIGIL_CLUSTER_DIR ?? '.cluster');
const NS = 'sigil-system';
const ISSUER = 'sigil-ca';
const CONFIG = 'sigil-webhook';
const logger = createLogger(process.env.SIGIL_LOG_LEVEL ?? 'info', 'dev');

const state = readState(dir);
if (!(state && (await isHealthy(state)))) {
  if (existsSync(dir)) throw new Error(`${dir} holds a stopped control plane: run make cluster-down first`);
  await startControlPlane({ dir, persistent: true });
}
const kc = loadKubeConfig(resolve(dir, 'kubeconfig'));
await installCrds(kc);
const core = kc.makeApiClient(CoreV1Api);
await core.createNamespace({ body: { metadata: { name: NS } } }).catch((err) => {
  if (!isConflict(err)) throw err;
});
try {
  await core.readNamespacedSecret({ name: ISSUER, namespace: NS });
} catch (err) {
  if (!isNotFound(err)) throw err;
  const ca = await createSelfSignedCA({
    commonName: 'sigil dev root CA',
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 365 * 86_400_000),
  });
  await core.createNamespacedSecret({
    namespace: NS,
    body: {
      metadata: { name: ISSUER },
      type: 'kubernetes.io/tls',
      stringData: { 'tls.crt': ca.certPem, 'tls.key': ca.keyPem },
    },
  });
  logger.info('bootstrapped a dev CA', { secret: `${NS}/${ISSUER}` });
}
await kc
  .makeApiClient(CustomObjectsApi)
  .createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: Plural.ClusterIssuer,
    body: {
      apiVersion: API_VERSION,
      kind: 'ClusterIssuer',
      metadata: { name: ISSUER },
      spec: { ca: { secretName: ISSUER } },
    },
  })
  .catch((err) => {
    if (!isConflict(err)) throw err;
  });

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
  webhook:    https://127.0.0.1:${webhook.port}/mutate-v1-pod (MutatingWebhookConfiguration ${CONFIG})
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
