// Builders for integration tests: CA Secrets, issuers, Certificates, and an
// operator running in this process against the test control plane.
import { randomBytes } from 'node:crypto';
import { CoreV1Api, CustomObjectsApi, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import {
  API_VERSION,
  type Certificate,
  type CertificateSpec,
  findCondition,
  GROUP,
  type Issuer,
  type IssuerSpec,
  Plural,
  VERSION,
} from '../../lib/api/types.ts';
import { installCrds } from '../../lib/kube/crds.ts';
import { isConflict } from '../../lib/kube/errors.ts';
import { createLogger, silentLogger } from '../../lib/log.ts';
import { createSelfSignedCA } from '../../lib/pki/ca.ts';
import { type Operator, type OperatorOptions, startOperator } from '../../operator/operator.ts';
import { eventually } from './kube.ts';

export const HOUR = 3_600_000;
export const DAY = 24 * HOUR;

let crdsInstalled: Promise<void> | undefined;
export function ensureCrds(kc: KubeConfig): Promise<void> {
  crdsInstalled ??= installCrds(kc);
  return crdsInstalled;
}

export function randomName(prefix: string): string {
  return `${prefix}-${randomBytes(3).toString('hex')}`;
}

export async function ensureNamespace(kc: KubeConfig, name: string) {
  try {
    await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name } } });
  } catch (err) {
    if (!isConflict(err)) throw err;
  }
}

export async function caSecretData(commonName = 'Test CA', notAfter = new Date(Date.now() + 365 * DAY)) {
  const ca = await createSelfSignedCA({ commonName, notBefore: new Date(Date.now() - HOUR), notAfter });
  return {
    'tls.crt': Buffer.from(ca.certPem).toString('base64'),
    'tls.key': Buffer.from(ca.keyPem).toString('base64'),
  };
}

export async function createSecret(
  kc: KubeConfig,
  namespace: string,
  name: string,
  data: Record<string, string>,
  type = 'kubernetes.io/tls',
) {
  return kc
    .makeApiClient(CoreV1Api)
    .createNamespacedSecret({ namespace, body: { metadata: { name }, type, data } });
}

export async function replaceSecretData(
  kc: KubeConfig,
  namespace: string,
  name: string,
  data: Record<string, string>,
) {
  const core = kc.makeApiClient(CoreV1Api);
  const current = await core.readNamespacedSecret({ name, namespace });
  current.data = data;
  return core.replaceNamespacedSecret({ name, namespace, body: current });
}

/** External names test issuers sign: the domains reserved for examples (RFC 2606). */
export const TEST_DNS_NAMES = ['**.example.com', '**.example.org'];

export async function createIssuer(
  kc: KubeConfig,
  kind: 'Issuer' | 'ClusterIssuer',
  name: string,
  spec: IssuerSpec,
  namespace?: string,
) {
  const custom = kc.makeApiClient(CustomObjectsApi);
  const body = {
    apiVersion: API_VERSION,
    kind,
    metadata: { name, ...(namespace ? { namespace } : {}) },
    // Tests name hosts in the reserved example domains; an issuer signs names outside a Certificate's
    // namespace only when its policy lists them. A test that gives a policy of its own states it whole.
    spec: spec.policy ? spec : { ...spec, policy: { allowedDNSNames: TEST_DNS_NAMES } },
  };
  if (kind === 'Issuer') {
    return custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: namespace!,
      plural: Plural.Issuer,
      body,
    });
  }
  return custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: Plural.ClusterIssuer,
    body,
  });
}

export async function createCertificate(
  kc: KubeConfig,
  namespace: string,
  name: string,
  spec: CertificateSpec,
  annotations?: Record<string, string>,
) {
  return (await kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: Plural.Certificate,
    body: { apiVersion: API_VERSION, kind: 'Certificate', metadata: { name, namespace, annotations }, spec },
  })) as Certificate;
}

export async function getCertificate(kc: KubeConfig, namespace: string, name: string): Promise<Certificate> {
  return (await kc.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: Plural.Certificate,
    name,
  })) as Certificate;
}

export async function getIssuer(
  kc: KubeConfig,
  kind: 'Issuer' | 'ClusterIssuer',
  name: string,
  namespace?: string,
): Promise<Issuer> {
  const custom = kc.makeApiClient(CustomObjectsApi);
  return (
    kind === 'Issuer'
      ? await custom.getNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: namespace!,
          plural: Plural.Issuer,
          name,
        })
      : await custom.getClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: Plural.ClusterIssuer,
          name,
        })
  ) as Issuer;
}

/** Waits until the Certificate's Ready condition has `status` (and `reason`, if given); returns the Certificate. */
export function waitForCertificate(
  kc: KubeConfig,
  namespace: string,
  name: string,
  want: { status: 'True' | 'False'; reason?: string; revision?: number },
  timeoutMs = 20_000,
): Promise<Certificate> {
  return eventually(
    `Certificate ${namespace}/${name} Ready=${want.status}${want.reason ? ` (${want.reason})` : ''}`,
    async () => {
      const c = await getCertificate(kc, namespace, name);
      const ready = findCondition(c.status?.conditions, 'Ready');
      if (ready?.status !== want.status) return undefined;
      if (want.reason && ready.reason !== want.reason) return undefined;
      if (want.revision !== undefined && (c.status?.revision ?? 0) < want.revision) return undefined;
      return c;
    },
    timeoutMs,
  );
}

export function waitForIssuer(
  kc: KubeConfig,
  kind: 'Issuer' | 'ClusterIssuer',
  name: string,
  want: { status: 'True' | 'False'; reason?: string },
  namespace?: string,
) {
  return eventually(`${kind} ${name} Ready=${want.status} ${want.reason ?? ''}`, async () => {
    const i = await getIssuer(kc, kind, name, namespace);
    const ready = findCondition(i.status?.conditions, 'Ready');
    if (ready?.status !== want.status || (want.reason && ready.reason !== want.reason)) return undefined;
    return i;
  });
}

export async function readSecret(kc: KubeConfig, namespace: string, name: string): Promise<V1Secret> {
  return kc.makeApiClient(CoreV1Api).readNamespacedSecret({ name, namespace });
}

export function decode(secret: V1Secret, key: string): string {
  return Buffer.from(secret.data?.[key] ?? '', 'base64').toString('utf8');
}

/** An operator in this process. Each test file gets its own operator namespace, so leases and ClusterIssuer Secrets do not collide. */
export async function startTestOperator(
  kc: KubeConfig,
  overrides: Partial<OperatorOptions> = {},
): Promise<Operator> {
  return startOperator({
    kc,
    namespace: 'sigil-system',
    defaultIssuer: { kind: 'ClusterIssuer', name: 'sigil-ca' },
    trustDomain: 'cluster.local',
    metricsAddress: '127.0.0.1:0',
    leaderElection: false,
    minDurationMs: 60_000,
    ownerReferences: false,
    concurrency: 8,
    logger: process.env.SIGIL_TEST_LOG
      ? createLogger(process.env.SIGIL_TEST_LOG, 'operator')
      : silentLogger(),
    ...overrides,
  });
}
