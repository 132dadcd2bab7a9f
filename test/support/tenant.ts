// Tenants for attack tests: a ServiceAccount bound to exactly the rights a
// test names, and a KubeConfig that authenticates as it with a token from the
// TokenRequest API. The API server itself enforces the rights; nothing here
// is mocked.
import { CoreV1Api, KubeConfig, RbacAuthorizationV1Api, type V1PolicyRule } from '@kubernetes/client-node';
import { reuseConnections } from '../../lib/kube/config.ts';
import { isConflict } from '../../lib/kube/errors.ts';
import { randomName } from './sigil.ts';

/** May create, read, update and delete Certificates in one namespace, and nothing else. */
export const CERTIFICATES_ONLY: V1PolicyRule[] = [
  {
    apiGroups: ['sigil.dev'],
    resources: ['certificates'],
    verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
  },
];

/** Certificates, plus pods, Secrets and ServiceAccounts: a typical namespace developer. */
export const NAMESPACE_DEVELOPER: V1PolicyRule[] = [
  ...CERTIFICATES_ONLY,
  {
    apiGroups: [''],
    resources: ['pods', 'secrets', 'serviceaccounts'],
    verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
  },
];

export interface Tenant {
  /** Authenticates as the tenant's ServiceAccount. */
  kc: KubeConfig;
  namespace: string;
  /** system:serviceaccount:<namespace>:<name> */
  username: string;
}

/**
 * A tenant of `namespace` holding only `rules` there (a Role and RoleBinding
 * made by the admin `kc`). Its ServiceAccount lives in the namespace, as a
 * real tenant's would; the token lasts an hour.
 */
export async function createTenant(
  admin: KubeConfig,
  namespace: string,
  rules: V1PolicyRule[],
  prefix = 'tenant',
): Promise<Tenant> {
  const core = admin.makeApiClient(CoreV1Api);
  const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
  const name = randomName(prefix);
  await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name } } });
  await rbac.createNamespacedRole({ namespace, body: { metadata: { name }, rules } });
  await rbac.createNamespacedRoleBinding({
    namespace,
    body: {
      metadata: { name },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
      subjects: [{ kind: 'ServiceAccount', name, namespace }],
    },
  });
  const token = await core.createNamespacedServiceAccountToken({
    name,
    namespace,
    body: { spec: { audiences: [], expirationSeconds: 3600 } },
  });
  const cluster = admin.getCurrentCluster()!;
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ ...cluster, name: 'test' }],
    users: [{ name, token: token.status!.token }],
    contexts: [{ name: 'tenant', cluster: 'test', user: name }],
    currentContext: 'tenant',
  });
  return { kc: reuseConnections(kc), namespace, username: `system:serviceaccount:${namespace}:${name}` };
}

/** Grants an extra cluster-wide rule to a tenant (for tests that need, say, to read namespaces). */
export async function grantClusterRule(admin: KubeConfig, tenant: Tenant, rule: V1PolicyRule) {
  const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
  const name = randomName('tenant-extra');
  try {
    await rbac.createClusterRole({ body: { metadata: { name }, rules: [rule] } });
  } catch (err) {
    if (!isConflict(err)) throw err;
  }
  const [, , ns, sa] = tenant.username.split(':');
  await rbac.createClusterRoleBinding({
    body: {
      metadata: { name },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name },
      subjects: [{ kind: 'ServiceAccount', name: sa!, namespace: ns! }],
    },
  });
}
