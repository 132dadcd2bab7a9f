// Sigil's webhook and operator wired to the test control plane: the API server
// calls the webhook at https://127.0.0.1:<port>/mutate-v1-pod with the caBundle
// the operator publishes.
import {
  CoreV1Api,
  type KubeConfig,
  type V1MutatingWebhookConfiguration,
  type V1Pod,
} from '@kubernetes/client-node';
import { isNotFound } from '../../lib/kube/errors.ts';
import { rawRequest } from '../../lib/kube/rest.ts';
import { webhookConfiguration } from '../../lib/kube/webhookconfig.ts';
import { createLogger, silentLogger } from '../../lib/log.ts';
import { type WebhookClient, webhookClientFor } from '../../lib/testing/controlplane.ts';
import type { Operator } from '../../operator/operator.ts';
import { startWebhook, type Webhook, type WebhookOptions } from '../../webhook/server.ts';
import { eventually } from './kube.ts';
import {
  caSecretData,
  createIssuer,
  createSecret,
  ensureCrds,
  ensureNamespace,
  randomName,
  startTestOperator,
} from './sigil.ts';

export const CONFIG_PATH = '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations';

export interface InjectionSetup {
  operatorNamespace: string;
  issuer: string;
  configName: string;
  operator: Operator;
  webhook: Webhook;
  /** The API server's admission client certificate, which the webhook requires of its callers. */
  client: WebhookClient | undefined;
  restartWebhook: () => Promise<void>;
  stop: () => Promise<void>;
}

const logger = () =>
  process.env.SIGIL_TEST_LOG ? createLogger(process.env.SIGIL_TEST_LOG, 'test') : silentLogger();

export async function setupInjection(
  kc: KubeConfig,
  options: { certDurationMs?: number; limits?: WebhookOptions['limits'] } = {},
): Promise<InjectionSetup> {
  // Every control plane from lib/testing presents a client certificate to webhooks; the webhook
  // requires it, as the chart's does.
  const client = webhookClientFor(kc.getCurrentCluster()!.server);
  await ensureCrds(kc);
  const operatorNamespace = randomName('sigil-op');
  await ensureNamespace(kc, operatorNamespace);
  const issuer = randomName('identity-ca');
  await createSecret(kc, operatorNamespace, issuer, await caSecretData('Identity CA'));
  await createIssuer(kc, 'ClusterIssuer', issuer, {
    ca: { secretName: issuer },
    trustDomain: 'cluster.local',
  });
  const configName = randomName('sigil-webhook');
  const startHook = (port = 0) =>
    startWebhook({
      kc,
      namespace: operatorNamespace,
      tlsSecretName: 'sigil-webhook-tls',
      address: `127.0.0.1:${port}`,
      trustDomain: 'cluster.local',
      clusterDomain: 'cluster.local',
      defaultIssuer: { kind: 'ClusterIssuer', name: issuer },
      // As the operator's (startTestOperator's) shortest duration.
      minDurationMs: 60_000,
      logger: logger(),
      clientAuth: client ? { caFile: client.caFile, names: [client.name] } : undefined,
      ...(options.limits ? { limits: options.limits } : {}),
    });
  let webhook = await startHook();
  await rawRequest(
    kc,
    'POST',
    CONFIG_PATH,
    webhookConfiguration({
      name: configName,
      operatorNamespace,
      url: `https://127.0.0.1:${webhook.port}/mutate-v1-pod`,
      timeoutSeconds: 5,
    }),
  );
  const operator = await startTestOperator(kc, {
    namespace: operatorNamespace,
    defaultIssuer: { kind: 'ClusterIssuer', name: issuer },
    logger: logger(),
    identityGracePeriodMs: 2_000,
    webhookTls: {
      caSecretName: 'sigil-webhook-ca',
      tlsSecretName: 'sigil-webhook-tls',
      serviceName: 'sigil-webhook',
      extraDnsNames: [],
      ipAddresses: ['127.0.0.1'],
      webhookConfigurationName: configName,
      caDurationMs: 365 * 86_400_000,
      certDurationMs: options.certDurationMs ?? 30 * 86_400_000,
    },
  });
  await eventually('caBundle published and serving certificate loaded', async () => {
    const config = await rawRequest<V1MutatingWebhookConfiguration>(
      kc,
      'GET',
      `${CONFIG_PATH}/${configName}`,
    );
    return config.webhooks?.every((w) => w.clientConfig.caBundle) && webhook.servingOperatorCertificate()
      ? true
      : undefined;
  });
  const setup: InjectionSetup = {
    operatorNamespace,
    issuer,
    configName,
    operator,
    webhook,
    client,
    restartWebhook: async () => {
      const port = webhook.port;
      await webhook.stop();
      webhook = await startHook(port);
      setup.webhook = webhook;
      await eventually('webhook to load its certificate', async () =>
        webhook.servingOperatorCertificate() ? true : undefined,
      );
    },
    stop: async () => {
      await rawRequest(kc, 'DELETE', `${CONFIG_PATH}/${configName}`).catch((err) => {
        if (!isNotFound(err)) throw err;
      });
      // A ClusterIssuer reads its CA from the operator's namespace: leave none behind for the next
      // test file's operator, which has a namespace of its own.
      await rawRequest(kc, 'DELETE', `/apis/sigil.dev/v1alpha1/clusterissuers/${issuer}`).catch((err) => {
        if (!isNotFound(err)) throw err;
      });
      await setup.webhook.stop();
      await operator.stop();
    },
  };
  return setup;
}

export function pod(
  name: string,
  overrides: Partial<V1Pod['spec']> = {},
  meta: V1Pod['metadata'] = {},
): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, ...meta },
    spec: { containers: [{ name: 'app', image: 'example.com/app:1' }], ...overrides },
  };
}

export async function createPod(
  kc: KubeConfig,
  namespace: string,
  body: V1Pod,
  dryRun = false,
): Promise<V1Pod> {
  return kc
    .makeApiClient(CoreV1Api)
    .createNamespacedPod({ namespace, body, ...(dryRun ? { dryRun: 'All' } : {}) });
}
