// The Helm chart against its own real API server: install, the components
// running as the chart's ServiceAccounts doing their whole job, every RBAC rule
// shown to be needed, upgrade, uninstall, and the values schema.
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  AppsV1Api,
  AuthorizationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  RbacAuthorizationV1Api,
  type V1Deployment,
  type V1PolicyRule,
} from '@kubernetes/client-node';
import { parse, parseAllDocuments } from 'yaml';
import {
  Annotation,
  bundleKey,
  type Certificate,
  findCondition,
  GROUP,
  type Issuer,
  Plural,
  TRUST_BUNDLE_CONFIGMAP,
  VERSION,
} from '../lib/api/types.ts';
import { describeApiError, statusCode } from '../lib/kube/errors.ts';
import { rawRequest } from '../lib/kube/rest.ts';
import { createSelfSignedCA } from '../lib/pki/ca.ts';
import {
  type ControlPlaneState,
  freePort,
  removeDir,
  startControlPlane,
  stopControlPlane,
  WEBHOOK_CLIENT_NAME,
} from '../lib/testing/controlplane.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CHART = join(ROOT, 'charts', 'sigil');
const NS = 'sigil-system';
const RELEASE = 'sigil';
const helmBin = join(
  execFileSync(join(ROOT, 'hack', 'build-tools.sh'), ['--print-dir'], { encoding: 'utf8' }).trim(),
  'helm',
);

let cp: ControlPlaneState;
let kc: KubeConfig;
let work: string;

function helm(...args: string[]): Promise<{ code: number; out: string }> {
  // helm template has no cluster to ask: it assumes the Kubernetes version its build was stamped with
  // (hack/build-tools.sh stamps it as helm's releases are). Everything else talks to the test API server.
  const extra = args[0] === 'template' ? [] : ['--kubeconfig', cp.kubeconfig];
  const env = {
    ...process.env,
    HELM_CACHE_HOME: join(work, 'helm-cache'),
    HELM_CONFIG_HOME: join(work, 'helm-config'),
    HELM_DATA_HOME: join(work, 'helm-data'),
  };
  return new Promise((r) =>
    execFile(helmBin, [...args, ...extra], { env }, (err, stdout, stderr) =>
      r({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` }),
    ),
  );
}

/** Set to stop a running scenario early: its waits give up at once. */
let abandon = false;

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (abandon) throw new Error(`abandoned while waiting for ${what}`);
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch {}
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A kubeconfig that authenticates as a ServiceAccount with a token from the TokenRequest API. */
async function serviceAccountKubeconfig(name: string, namespace = NS): Promise<string> {
  const res = await kc.makeApiClient(CoreV1Api).createNamespacedServiceAccountToken({
    name,
    namespace,
    body: { spec: { expirationSeconds: 3600 } },
  });
  const file = join(work, `${name}.kubeconfig`);
  const yaml = [
    'apiVersion: v1',
    'kind: Config',
    `clusters: [{name: local, cluster: {server: "${cp.server}", certificate-authority-data: ${Buffer.from(cp.caPem).toString('base64')}}}]`,
    `users: [{name: ${name}, user: {token: ${res.status!.token}}}]`,
    `contexts: [{name: local, context: {cluster: local, user: ${name}}}]`,
    'current-context: local',
  ].join('\n');
  writeFileSync(file, yaml, { mode: 0o600 });
  return file;
}

/** The container args the chart renders, as the Deployment in the API server holds them. */
async function deploymentArgs(name: string, namespace = NS): Promise<string[]> {
  const d = await kc.makeApiClient(AppsV1Api).readNamespacedDeployment({ name, namespace });
  return d.spec!.template.spec!.containers[0]!.args!.map((a) => a.replace('$(POD_NAMESPACE)', namespace));
}

interface Running {
  children: ChildProcess[];
  logs: string[];
  /** Where the webhook process listens. */
  webhookUrl: string;
  stop: () => Promise<void>;
}

/** The chart mounts the client CA from a ConfigMap; a local process reads the same bytes from a file. */
async function localClientCaFile(deployment: string, namespace: string): Promise<string> {
  const pod = (await kc.makeApiClient(AppsV1Api).readNamespacedDeployment({ name: deployment, namespace }))
    .spec!.template.spec!;
  const configMap = pod.volumes!.find((v) => v.name === 'client-ca')!.configMap!.name!;
  const data = (await core().readNamespacedConfigMap({ name: configMap, namespace })).data!['ca.crt']!;
  const file = join(work, `${namespace}-${configMap}.crt`);
  writeFileSync(file, data);
  return file;
}

async function runComponents(release = RELEASE, namespace = NS): Promise<Running> {
  const logs: string[] = [];
  const children: ChildProcess[] = [];
  const start = async (deployment: string, overrides: string[]) => {
    const mountedCa = '--client-ca-file=/etc/sigil/client-ca/ca.crt';
    const rendered = await deploymentArgs(deployment, namespace);
    const args = [
      ...(rendered.includes(mountedCa)
        ? [
            ...rendered.filter((a) => a !== mountedCa),
            `--client-ca-file=${await localClientCaFile(deployment, namespace)}`,
          ]
        : rendered),
      ...overrides,
      '--kubeconfig',
      await serviceAccountKubeconfig(deployment, namespace),
    ];
    const child = spawn(process.execPath, [join(ROOT, 'cli', 'main.ts'), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NODE_NO_WARNINGS: '1' },
    });
    for (const s of [child.stdout!, child.stderr!])
      s.on('data', (d) =>
        logs.push(
          ...String(d)
            .split('\n')
            .filter(Boolean)
            .map((l) => `${deployment}: ${l}`),
        ),
      );
    children.push(child);
  };
  const webhookPort = await freePort();
  await start(`${release}-operator`, [
    `--metrics-address=127.0.0.1:${await freePort()}`,
    '--webhook-ip-sans=127.0.0.1',
    '--identity-grace-period=2s',
    '--min-duration=1m',
  ]);
  await start(`${release}-webhook`, [`--address=127.0.0.1:${webhookPort}`]);
  // The API server here cannot reach a Service: point the chart's webhook at the local process instead.
  const path = `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${release}-webhook`;
  const config = await rawRequest<{ webhooks: unknown[] }>(kc, 'GET', path);
  await rawRequest(
    kc,
    'PATCH',
    path,
    config.webhooks.flatMap((_, i) => [
      { op: 'remove', path: `/webhooks/${i}/clientConfig/service` },
      {
        op: 'add',
        path: `/webhooks/${i}/clientConfig/url`,
        value: `https://127.0.0.1:${webhookPort}/mutate-v1-pod`,
      },
    ]),
    'application/json-patch+json',
  );
  return {
    children,
    logs,
    webhookUrl: `https://127.0.0.1:${webhookPort}/mutate-v1-pod`,
    stop: async () => {
      // SIGTERM: the leader releases its Lease, so the next run's operator leads at once.
      for (const c of children) c.kill('SIGTERM');
      const killer = setTimeout(() => {
        for (const c of children) c.kill('SIGKILL');
      }, 5_000);
      await Promise.all(
        children.map(
          (c) =>
            new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(null) : c.on('exit', r))),
        ),
      );
      clearTimeout(killer);
      const current = await rawRequest<{ webhooks: { clientConfig: { caBundle?: string } }[] }>(
        kc,
        'GET',
        path,
      );
      await rawRequest(
        kc,
        'PATCH',
        path,
        current.webhooks.flatMap((_, i) => [
          { op: 'remove', path: `/webhooks/${i}/clientConfig/url` },
          {
            op: 'add',
            path: `/webhooks/${i}/clientConfig/service`,
            value: { name: `${release}-webhook`, namespace, path: '/mutate-v1-pod', port: 443 },
          },
        ]),
        'application/json-patch+json',
      );
    },
  };
}

const custom = () => kc.makeApiClient(CustomObjectsApi);
const core = () => kc.makeApiClient(CoreV1Api);

/** A client authenticated as one of a release's ServiceAccounts, with a token from the TokenRequest API. */
async function asServiceAccount(name: string, namespace = NS): Promise<KubeConfig> {
  const client = new KubeConfig();
  client.loadFromFile(await serviceAccountKubeconfig(name, namespace));
  return client;
}

/** Creates a Certificate as `who` (a dry run creates nothing); the HTTP status and the API server's message. */
async function createCertificateAs(
  who: KubeConfig,
  namespace: string,
  dryRun = false,
): Promise<{ code: number; message: string }> {
  try {
    await rawRequest(
      who,
      'POST',
      `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${Plural.Certificate}${dryRun ? '?dryRun=All' : ''}`,
      {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'Certificate',
        metadata: { name: 'probe' },
        spec: { secretName: 'probe-tls', dnsNames: [`probe.${namespace}.svc`] },
      },
    );
    return { code: 201, message: '' };
  } catch (err) {
    return { code: statusCode(err) ?? 0, message: describeApiError(err) };
  }
}

/** Whether RBAC lets `user` (a ServiceAccount) do `verb` on `resource`, as the API server decides it. */
async function allowed(
  user: string,
  verb: string,
  resource: string,
  namespace?: string,
  name?: string,
): Promise<boolean> {
  const [group, plural] = resource.includes('.')
    ? [resource.slice(resource.indexOf('.') + 1), resource.split('.')[0]]
    : ['', resource];
  const saNamespace = user.split(':')[2]!;
  const review = await kc.makeApiClient(AuthorizationV1Api).createSubjectAccessReview({
    body: {
      spec: {
        user,
        groups: ['system:serviceaccounts', `system:serviceaccounts:${saNamespace}`, 'system:authenticated'],
        resourceAttributes: { verb, group, resource: plural, namespace, name },
      },
    },
  });
  return review.status?.allowed === true;
}
let scenarioCount = 0;

/** The whole job, as a platform team would see it. Returns the first step that did not happen, or undefined. */
async function wholeJob(timeoutMs = 15_000): Promise<string | undefined> {
  const ns = `app-${++scenarioCount}`;
  const step = async <T>(what: string, fn: () => Promise<T | undefined>) => until(what, fn, timeoutMs);
  try {
    await step('a leader', async () => {
      const lease = await kc
        .makeApiClient((await import('@kubernetes/client-node')).CoordinationV1Api)
        .readNamespacedLease({ name: `${RELEASE}-operator`, namespace: NS });
      return lease.spec?.holderIdentity ? true : undefined;
    });
    await step('the default ClusterIssuer Ready with the bootstrap CA', async () => {
      const i = (await custom().getClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: Plural.ClusterIssuer,
        name: 'sigil-ca',
      })) as Certificate;
      return findCondition(i.status?.conditions, 'Ready')?.status === 'True' ? true : undefined;
    });
    await step('the caBundle published', async () => {
      const c = await rawRequest<{ webhooks: { clientConfig: { caBundle?: string } }[] }>(
        kc,
        'GET',
        `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${RELEASE}-webhook`,
      );
      return c.webhooks.every((w) => w.clientConfig.caBundle) ? true : undefined;
    });
    await core().createNamespace({
      body: { metadata: { name: ns, labels: { 'sigil.dev/inject': 'enabled' } } },
    });
    await custom().createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: Plural.Issuer,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'Issuer',
        metadata: { name: 'no-ca' },
        spec: { ca: { secretName: 'absent' } },
      },
    });
    await step('an Issuer reporting its missing CA Secret', async () => {
      const i = (await custom().getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: Plural.Issuer,
        name: 'no-ca',
      })) as Certificate;
      return findCondition(i.status?.conditions, 'Ready')?.reason === 'SecretNotFound' ? true : undefined;
    });
    await custom().createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: Plural.Certificate,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'Certificate',
        metadata: { name: 'c1' },
        spec: { secretName: 'c1-tls', dnsNames: ['c1.example.com'] },
      },
    });
    const get = async () =>
      (await custom().getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: Plural.Certificate,
        name: 'c1',
      })) as Certificate;
    await step('a Certificate Ready', async () =>
      findCondition((await get()).status?.conditions, 'Ready')?.status === 'True' ? true : undefined,
    );
    const { setHeaderOptions } = await import('@kubernetes/client-node');
    const merge = setHeaderOptions('Content-Type', 'application/merge-patch+json');
    await custom().patchNamespacedCustomObject(
      {
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: Plural.Certificate,
        name: 'c1',
        body: { metadata: { annotations: { 'sigil.dev/renew-requested-at': 'now' } } },
      },
      merge,
    );
    await step('a renewal', async () => ((await get()).status?.revision === 2 ? true : undefined));
    await core().patchNamespacedSecret(
      {
        name: 'c1-tls',
        namespace: ns,
        body: { metadata: { annotations: { 'sigil.dev/issuer-name': null } } },
      },
      merge,
    );
    await step('the Secret metadata repaired', async () =>
      (await core().readNamespacedSecret({ name: 'c1-tls', namespace: ns })).metadata?.annotations?.[
        'sigil.dev/issuer-name'
      ] === 'sigil-ca'
        ? true
        : undefined,
    );
    const oldTls = (await core().readNamespacedSecret({ name: `${RELEASE}-webhook-tls`, namespace: NS }))
      .data!['tls.crt'];
    await core().deleteNamespacedSecret({ name: `${RELEASE}-webhook-tls`, namespace: NS });
    await step('the webhook serving certificate rotated', async () => {
      const s = await core().readNamespacedSecret({ name: `${RELEASE}-webhook-tls`, namespace: NS });
      return s.data!['tls.crt'] !== oldTls ? true : undefined;
    });
    const pod = await step('a pod injected', async () => {
      const p = await core().createNamespacedPod({
        namespace: ns,
        body: {
          // A name outside the namespace that the release's issuer policy lists: the webhook reads the issuer.
          metadata: { generateName: 'web-', annotations: { 'sigil.dev/dns-names': 'web.example.com' } },
          spec: { serviceAccountName: 'web', containers: [{ name: 'a', image: 'x' }] },
        },
      });
      return p.metadata?.annotations?.['sigil.dev/status'] === 'injected' ? p : undefined;
    });
    const identity = pod.metadata!.annotations!['sigil.dev/certificate']!;
    await step('the identity Ready', async () => {
      const c = (await custom().getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: Plural.Certificate,
        name: identity,
      })) as Certificate;
      return findCondition(c.status?.conditions, 'Ready')?.status === 'True' ? true : undefined;
    });
    await core().deleteNamespacedPod({ name: pod.metadata!.name!, namespace: ns });
    await step('the unused identity and its Secret deleted', async () => {
      const list = (await custom().listNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: Plural.Certificate,
      })) as { items: Certificate[] };
      const secrets = await core().listNamespacedSecret({ namespace: ns });
      return list.items.every((c) => c.metadata.name !== identity) &&
        secrets.items.every((s) => s.metadata?.name !== identity)
        ? true
        : undefined;
    });
    // The generated CA rotates when asked: the operator makes the next CA, points the default ClusterIssuer at
    // it and runs the rotation to its end, publishing the bundle in a ConfigMap in each namespace.
    const clusterIssuer = async () =>
      (await custom().getClusterCustomObject({
        group: GROUP,
        version: VERSION,
        plural: Plural.ClusterIssuer,
        name: 'sigil-ca',
      })) as Issuer;
    const before = (await clusterIssuer()).spec.ca.secretName;
    await custom().patchClusterCustomObject(
      {
        group: GROUP,
        version: VERSION,
        plural: Plural.ClusterIssuer,
        name: 'sigil-ca',
        body: { metadata: { annotations: { [Annotation.RotateRequestedAt]: ns } } },
      },
      merge,
    );
    await step('the generated CA rotated', async () => {
      const i = await clusterIssuer();
      return i.spec.ca.secretName !== before &&
        i.status?.handled?.rotateRequestedAt === ns &&
        !i.status.rotation &&
        i.status.secretName === i.spec.ca.secretName
        ? true
        : undefined;
    });
    await step('the trust bundle in the namespace', async () => {
      const cm = await core()
        .readNamespacedConfigMap({ name: TRUST_BUNDLE_CONFIGMAP, namespace: ns })
        .catch(() => undefined);
      return cm?.data?.[bundleKey('ClusterIssuer', 'sigil-ca')] ? true : undefined;
    });
    // A namespace without Certificates gets the bundle too once the ClusterIssuer's selector picks it.
    await custom().patchClusterCustomObject(
      {
        group: GROUP,
        version: VERSION,
        plural: Plural.ClusterIssuer,
        name: 'sigil-ca',
        body: {
          spec: { trustBundle: { namespaceSelector: { matchLabels: { 'trust.example.com/sigil': 'yes' } } } },
        },
      },
      merge,
    );
    await core().createNamespace({
      body: { metadata: { name: `${ns}-trust`, labels: { 'trust.example.com/sigil': 'yes' } } },
    });
    await step('the trust bundle in a namespace picked by selector', async () => {
      const cm = await core()
        .readNamespacedConfigMap({ name: TRUST_BUNDLE_CONFIGMAP, namespace: `${ns}-trust` })
        .catch(() => undefined);
      return cm?.data?.[bundleKey('ClusterIssuer', 'sigil-ca')]?.includes('BEGIN CERTIFICATE')
        ? true
        : undefined;
    });
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'sigil-chart-'));
  cp = await startControlPlane({ dir: join(work, 'cp'), persistent: false });
  kc = new KubeConfig();
  kc.loadFromFile(cp.kubeconfig);
}, 60_000);

afterAll(async () => {
  if (cp) await stopControlPlane(cp);
  if (work) removeDir(work);
});

describe('helm install with default values', () => {
  it('should install into the real API server', async () => {
    const res = await helm(
      'install',
      RELEASE,
      CHART,
      '-n',
      NS,
      '--create-namespace',
      '--set-json',
      'issuer.policy={"allowedDNSNames":["*.example.com"]}',
      // Rotations in the whole job finish in seconds: nothing here runs pods to wait for.
      '--set-json',
      'issuer.rotation={"propagationDelay":"1s","reissuePerSecond":200}',
    );
    expect(res.out).toContain('STATUS: deployed');
    expect(res.out).toContain('NO CA WAS GIVEN');
    expect(res.code).toBe(0);
  });

  it("should let the operator and webhook, authenticated as the chart's ServiceAccounts, do their whole job", async () => {
    const running = await runComponents();
    try {
      const failure = await wholeJob();
      const forbidden = running.logs.filter((l) => /forbidden/i.test(l));
      // On failure the components' last log lines say why.
      expect({ failure, forbidden, logs: failure ? running.logs.slice(-15) : [] }).toEqual({
        failure: undefined,
        forbidden: [],
        logs: [],
      });
    } finally {
      await running.stop();
    }
  }, 120_000);
});

describe("the webhook's ServiceAccount and excluded namespaces", () => {
  it('should be refused a Certificate in kube-system and the release namespace, and allowed one in an opted-in namespace', async () => {
    const webhook = await asServiceAccount(`${RELEASE}-webhook`);
    await core().createNamespace({
      body: { metadata: { name: 'opted-in', labels: { 'sigil.dev/inject': 'enabled' } } },
    });
    // A new ValidatingAdmissionPolicy takes effect within a second or so: wait on dry runs, which create nothing.
    await until('the ValidatingAdmissionPolicy in force', async () =>
      (await createCertificateAs(webhook, 'kube-system', true)).code === 403 ? true : undefined,
    );
    const refusal = (ns: string) => ({
      code: 403,
      message: expect.stringContaining(
        `the Sigil webhook may not create Certificates in namespace ${ns}: pods there are never injected`,
      ),
    });
    expect({
      'kube-system': await createCertificateAs(webhook, 'kube-system'),
      [NS]: await createCertificateAs(webhook, NS),
      'opted-in': await createCertificateAs(webhook, 'opted-in'),
      'kube-system, as an administrator': await createCertificateAs(kc, 'kube-system', true),
    }).toEqual({
      'kube-system': refusal('kube-system'),
      [NS]: refusal(NS),
      'opted-in': { code: 201, message: '' },
      'kube-system, as an administrator': { code: 201, message: '' },
    });
    await custom().deleteNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: 'opted-in',
      plural: Plural.Certificate,
      name: 'probe',
    });
  });
});

describe('least privilege: every RBAC rule is needed', () => {
  const roles: [string, string, 'ClusterRole' | 'Role'][] = [
    ['operator', `${RELEASE}-operator`, 'ClusterRole'],
    ['operator', `${RELEASE}-operator`, 'Role'],
    ['webhook', `${RELEASE}-webhook`, 'ClusterRole'],
    ['webhook', `${RELEASE}-webhook`, 'Role'],
  ];
  const rbac = () => kc.makeApiClient(RbacAuthorizationV1Api);
  const readRules = async (kind: 'ClusterRole' | 'Role', name: string): Promise<V1PolicyRule[]> =>
    kind === 'ClusterRole'
      ? (await rbac().readClusterRole({ name })).rules!
      : (await rbac().readNamespacedRole({ name, namespace: NS })).rules!;
  const writeRules = async (kind: 'ClusterRole' | 'Role', name: string, rules: V1PolicyRule[]) => {
    if (kind === 'ClusterRole') {
      const r = await rbac().readClusterRole({ name });
      await rbac().replaceClusterRole({ name, body: { ...r, rules } });
    } else {
      const r = await rbac().readNamespacedRole({ name, namespace: NS });
      await rbac().replaceNamespacedRole({ name, namespace: NS, body: { ...r, rules } });
    }
  };

  it('should fail with a clear permission error when any single rule is removed', async () => {
    const outcomes: string[] = [];
    for (const [component, name, kind] of roles) {
      const rules = await readRules(kind, name);
      for (let i = 0; i < rules.length; i++) {
        const rule = rules[i]!;
        const label = `${component} ${kind} rule ${rule.apiGroups?.join(',') || 'core'}/${rule.resources?.join(',')} [${rule.verbs.join(',')}]`;
        await writeRules(
          kind,
          name,
          rules.filter((_, j) => j !== i),
        );
        // A status already current is not written again: clear the default ClusterIssuer's, so its write is needed.
        await rawRequest(
          kc,
          'PATCH',
          `/apis/${GROUP}/${VERSION}/${Plural.ClusterIssuer}/sigil-ca/status`,
          { status: null },
          'application/merge-patch+json',
        );
        const running = await runComponents();
        const permissionError = () =>
          running.logs.find((l) => /forbidden|cannot (list|watch|get|create|update|patch|delete)/i.test(l));
        let failure: string | undefined;
        try {
          // The job runs until it finishes or fails; a permission error in the logs settles it sooner.
          abandon = false;
          const job = wholeJob(15_000);
          failure = await Promise.race([
            job,
            until(
              'a permission error',
              async () => (permissionError() ? 'permission error' : undefined),
              60_000,
            ).catch(() => undefined),
          ]);
          abandon = true;
          await job;
          abandon = false;
        } finally {
          await running.stop();
          await writeRules(kind, name, rules);
        }
        const forbidden = running.logs.find((l) =>
          /forbidden|cannot (list|watch|get|create|update|patch|delete)/i.test(l),
        );
        outcomes.push(
          `${label}: ${forbidden ? 'permission error logged' : 'NO permission error logged'}; ${failure ? 'job failed' : 'job still completed'}`,
        );
      }
    }
    // Every removal shows up as a permission error in the components' logs.
    expect(outcomes.filter((o) => o.includes('NO permission error'))).toEqual([]);
  }, 900_000);
});

describe('helm upgrade and uninstall', () => {
  it('should upgrade with changed values', async () => {
    const res = await helm(
      'upgrade',
      RELEASE,
      CHART,
      '-n',
      NS,
      '--reuse-values',
      '--set',
      'webhook.failurePolicy=Ignore',
      '--set',
      'operator.logLevel=debug',
    );
    expect(res.code).toBe(0);
    const config = await rawRequest<{ webhooks: { failurePolicy: string }[] }>(
      kc,
      'GET',
      `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${RELEASE}-webhook`,
    );
    expect(config.webhooks.map((w) => w.failurePolicy)).toEqual(['Ignore', 'Ignore']);
    expect(await deploymentArgs(`${RELEASE}-operator`)).toContain('--log-level=debug');
  });

  it('should keep the CRDs on uninstall when crds.keep is true', async () => {
    expect((await helm('uninstall', RELEASE, '-n', NS)).code).toBe(0);
    const crd = await rawRequest<{ metadata: { name: string } }>(
      kc,
      'GET',
      '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/certificates.sigil.dev',
    );
    expect(crd.metadata.name).toBe('certificates.sigil.dev');
  });

  it('should install with every option on, and remove the CRDs on uninstall when crds.keep is false', async () => {
    for (const name of ['certificates', 'issuers', 'clusterissuers']) {
      await rawRequest(
        kc,
        'DELETE',
        `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}.sigil.dev`,
      );
    }
    await sigilCrdsGone('CRDs gone');
    // The Prometheus Operator's CRDs, as a cluster with monitoring has them.
    for (const [plural, kind] of [
      ['servicemonitors', 'ServiceMonitor'],
      ['prometheusrules', 'PrometheusRule'],
    ] as const) {
      await rawRequest(kc, 'POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', {
        apiVersion: 'apiextensions.k8s.io/v1',
        kind: 'CustomResourceDefinition',
        metadata: { name: `${plural}.monitoring.coreos.com` },
        spec: {
          group: 'monitoring.coreos.com',
          scope: 'Namespaced',
          names: { plural, kind, singular: kind.toLowerCase() },
          versions: [
            {
              name: 'v1',
              served: true,
              storage: true,
              schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
            },
          ],
        },
      });
    }
    await new Promise((r) => setTimeout(r, 1500));
    // Any PEM bundle stands in for the CA of the API server's webhook client certificate.
    const clientCaFile = join(work, 'apiserver-webhook-client-ca.crt');
    writeFileSync(clientCaFile, cp.caPem);
    const res = await helm(
      'install',
      'full',
      CHART,
      '-n',
      'sigil-full',
      '--create-namespace',
      '--set',
      'crds.keep=false',
      '--set',
      'prometheus.serviceMonitor.enabled=true',
      '--set',
      'prometheus.prometheusRule.enabled=true',
      '--set',
      'networkPolicy.enabled=true',
      '--set',
      'operator.ownerReferences=true',
      '--set',
      'ca.existingSecret=my-ca',
      '--set-json',
      'issuer.policy={"maxDuration":"720h","allowedDNSNames":["*.example.com"]}',
      '--set',
      'webhook.clientAuth.enabled=true',
      '--set-file',
      `webhook.clientAuth.caBundle=${clientCaFile}`,
      '--set',
      'webhook.clientAuth.allowedNames={kube-apiserver-webhook-client,front-proxy-client}',
      '--set-json',
      'networkPolicy.metricsPodSelector={"matchLabels":{"app.kubernetes.io/name":"prometheus"}}',
    );
    expect(res.out).toContain('STATUS: deployed');
    expect(res.out).not.toContain('NO CA WAS GIVEN');
    // The webhook is told where the API server's client CA is mounted and which names to accept.
    const webhookPod = (
      await kc
        .makeApiClient(AppsV1Api)
        .readNamespacedDeployment({ name: 'full-sigil-webhook', namespace: 'sigil-full' })
    ).spec!.template.spec!;
    expect(webhookPod.containers[0]!.args).toEqual(
      expect.arrayContaining([
        '--client-ca-file=/etc/sigil/client-ca/ca.crt',
        '--client-names=kube-apiserver-webhook-client,front-proxy-client',
      ]),
    );
    expect(webhookPod.volumes).toEqual([
      { name: 'client-ca', configMap: expect.objectContaining({ name: 'full-sigil-webhook-client-ca' }) },
    ]);
    const clientCa = await core().readNamespacedConfigMap({
      name: 'full-sigil-webhook-client-ca',
      namespace: 'sigil-full',
    });
    expect(clientCa.data!['ca.crt']).toBe(cp.caPem);
    expect((await helm('uninstall', 'full', '-n', 'sigil-full')).code).toBe(0);
    await sigilCrdsGone('CRDs removed');
  }, 180_000);
});

describe('namespace-scoped install (scope.mode=Namespace)', () => {
  const release = 'scoped-sigil';
  const namespace = 'sigil-scoped';
  const watched = 'team-a';
  const operator = `system:serviceaccount:${namespace}:${release}-operator`;
  const webhook = `system:serviceaccount:${namespace}:${release}-webhook`;

  it('should install', async () => {
    for (const name of [watched, 'team-b'])
      await core().createNamespace({
        body: { metadata: { name, labels: { 'sigil.dev/inject': 'enabled' } } },
      });
    const res = await helm(
      'install',
      release,
      CHART,
      '-n',
      namespace,
      '--create-namespace',
      '--set',
      'scope.mode=Namespace',
      '--set',
      `scope.namespace=${watched}`,
      // The test API server presents a client certificate to webhooks, as a self-managed control plane can.
      '--set',
      'webhook.clientAuth.enabled=true',
      '--set-file',
      `webhook.clientAuth.caBundle=${cp.webhookClient!.caFile}`,
      '--set',
      `webhook.clientAuth.allowedNames={${WEBHOOK_CLIENT_NAME}}`,
    );
    expect(res.out).toContain('STATUS: deployed');
    expect(await deploymentArgs(`${release}-operator`, namespace)).toContain(`--watch-namespace=${watched}`);
  });

  it("should give the operator's ServiceAccount namespaced rights only in the watched and release namespaces", async () => {
    const checks: [string, string, string | undefined, string?][] = [
      ['list', 'secrets', watched],
      ['delete', 'secrets', watched],
      ['list', 'secrets', namespace],
      ['create', 'secrets', namespace],
      ['delete', 'secrets', namespace],
      ['get', 'secrets', 'team-b'],
      ['list', 'secrets', 'kube-system'],
      ['list', 'secrets', undefined],
      ['list', 'certificates.sigil.dev', watched],
      ['list', 'certificates.sigil.dev', 'team-b'],
      ['list', 'certificates.sigil.dev', undefined],
      ['list', 'issuers.sigil.dev', 'team-b'],
      ['list', 'pods', watched],
      ['list', 'pods', 'team-b'],
      ['create', 'events', 'team-b'],
      ['list', 'clusterissuers.sigil.dev', undefined],
      [
        'patch',
        'mutatingwebhookconfigurations.admissionregistration.k8s.io',
        undefined,
        `${release}-webhook`,
      ],
      ['patch', 'mutatingwebhookconfigurations.admissionregistration.k8s.io', undefined, 'another-webhook'],
      ['update', 'leases.coordination.k8s.io', namespace],
      ['update', 'leases.coordination.k8s.io', watched],
    ];
    const decided: Record<string, boolean> = {};
    for (const [verb, resource, ns, name] of checks)
      decided[`${verb} ${resource}${name ? `/${name}` : ''} in ${ns ?? 'the cluster'}`] = await allowed(
        operator,
        verb,
        resource,
        ns,
        name,
      );
    expect(decided).toEqual({
      [`list secrets in ${watched}`]: true,
      [`delete secrets in ${watched}`]: true,
      [`list secrets in ${namespace}`]: true,
      [`create secrets in ${namespace}`]: true,
      [`delete secrets in ${namespace}`]: false,
      'get secrets in team-b': false,
      'list secrets in kube-system': false,
      'list secrets in the cluster': false,
      [`list certificates.sigil.dev in ${watched}`]: true,
      'list certificates.sigil.dev in team-b': false,
      'list certificates.sigil.dev in the cluster': false,
      'list issuers.sigil.dev in team-b': false,
      [`list pods in ${watched}`]: true,
      'list pods in team-b': false,
      'create events in team-b': false,
      'list clusterissuers.sigil.dev in the cluster': true,
      [`patch mutatingwebhookconfigurations.admissionregistration.k8s.io/${release}-webhook in the cluster`]: true,
      'patch mutatingwebhookconfigurations.admissionregistration.k8s.io/another-webhook in the cluster': false,
      [`update leases.coordination.k8s.io in ${namespace}`]: true,
      [`update leases.coordination.k8s.io in ${watched}`]: false,
    });
    // And with its real token: another namespace's Secrets stay out of reach.
    const asOperator = await asServiceAccount(`${release}-operator`, namespace);
    const read = await rawRequest(asOperator, 'GET', '/api/v1/namespaces/team-b/secrets').then(
      () => 'read',
      (err) => describeApiError(err),
    );
    expect(read).toMatch(/^403: .*cannot list resource "secrets" .* in the namespace "team-b"/);
  });

  it("should let the webhook's ServiceAccount create Certificates in the watched namespace only", async () => {
    const asWebhook = await asServiceAccount(`${release}-webhook`, namespace);
    expect({
      [watched]: (await createCertificateAs(asWebhook, watched, true)).code,
      'team-b': (await createCertificateAs(asWebhook, 'team-b', true)).code,
      'kube-system': (await createCertificateAs(asWebhook, 'kube-system', true)).code,
      'read Secrets in the watched namespace': await allowed(webhook, 'list', 'secrets', watched),
    }).toEqual({
      [watched]: 201,
      'team-b': 403,
      'kube-system': 403,
      'read Secrets in the watched namespace': false,
    });
  });

  it('should issue and inject in the watched namespace with only those rights, and leave other namespaces alone', async () => {
    const running = await runComponents(release, namespace);
    let failure: string | undefined;
    let anonymous: number | undefined;
    try {
      failure = await scopedJob(release, namespace, watched);
      // The API server's certificate got the pods through; a caller without one is turned away.
      anonymous = await postWithoutClientCertificate(running.webhookUrl);
    } finally {
      await running.stop();
    }
    expect(anonymous === 401 || anonymous === 403 ? 'refused' : anonymous).toBe('refused');
    const forbidden = running.logs.filter((l) => /forbidden/i.test(l));
    expect({ failure, forbidden, logs: failure ? running.logs.slice(-15) : [] }).toEqual({
      failure: undefined,
      forbidden: [],
      logs: [],
    });
  }, 120_000);

  it('should uninstall', async () => {
    expect((await helm('uninstall', release, '-n', namespace)).code).toBe(0);
  });
});

/**
 * Until none of Sigil's CRDs is left. A deleted CRD stays, terminating, until the API server has
 * removed its objects, one CRD after another: waiting for one alone let the next install find
 * another still there, owned by the release just uninstalled.
 */
async function sigilCrdsGone(what: string): Promise<void> {
  await until(
    what,
    async () => {
      const crds = await rawRequest<{ items: { metadata: { name: string } }[] }>(
        kc,
        'GET',
        '/apis/apiextensions.k8s.io/v1/customresourcedefinitions',
      );
      return crds.items.some((c) => c.metadata.name.endsWith('.sigil.dev')) ? undefined : true;
    },
    60_000,
  );
}

async function crdsInstalled(): Promise<boolean> {
  try {
    await rawRequest(
      kc,
      'GET',
      '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/certificates.sigil.dev',
    );
    return true;
  } catch (err) {
    if (statusCode(err) === 404) return false;
    throw err;
  }
}

describe('helm upgrade with a new ca.existingSecret', () => {
  const release = 'own-ca-sigil';
  const namespace = 'sigil-own-ca';
  const issuerName = 'own-ca';
  const clusterIssuer = async () =>
    (await custom().getClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: Plural.ClusterIssuer,
      name: issuerName,
    })) as Issuer;
  const caSecret = async (name: string) => {
    const ca = await createSelfSignedCA({
      commonName: name,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 365 * 86_400_000),
    });
    await core().createNamespacedSecret({
      namespace,
      body: {
        metadata: { name },
        type: 'kubernetes.io/tls',
        data: {
          'tls.crt': Buffer.from(ca.certPem).toString('base64'),
          'tls.key': Buffer.from(ca.keyPem).toString('base64'),
        },
      },
    });
  };

  it("should rotate the chart's ClusterIssuer to the new Secret: one value changed, the rotation run to its end", async () => {
    await core().createNamespace({ body: { metadata: { name: namespace } } });
    await caSecret('ca-2026');
    const install = await helm(
      'install',
      release,
      CHART,
      '-n',
      namespace,
      // CRDs another release of this file installed (and kept) belong to that release.
      '--set',
      `crds.enabled=${!(await crdsInstalled())}`,
      '--set',
      'ca.existingSecret=ca-2026',
      '--set',
      `issuer.name=${issuerName}`,
      '--set-json',
      'issuer.rotation={"propagationDelay":"1s"}',
    );
    expect({ code: install.code, out: install.code === 0 ? '' : install.out }).toEqual({ code: 0, out: '' });
    let running = await runComponents(release, namespace);
    try {
      await until('the ClusterIssuer on ca-2026', async () => {
        const i = await clusterIssuer().catch(() => undefined);
        return i?.status?.secretName === 'ca-2026' ? true : undefined;
      });
    } finally {
      await running.stop();
    }
    await caSecret('ca-2027');
    const upgrade = await helm(
      'upgrade',
      release,
      CHART,
      '-n',
      namespace,
      '--reuse-values',
      '--set',
      'ca.existingSecret=ca-2027',
    );
    expect(upgrade.code).toBe(0);
    running = await runComponents(release, namespace);
    try {
      const done = await until(
        'the rotation to ca-2027 done',
        async () => {
          const i = await clusterIssuer();
          return i.spec.ca.secretName === 'ca-2027' &&
            i.status?.secretName === 'ca-2027' &&
            !i.status.rotation
            ? i
            : undefined;
        },
        30_000,
      );
      expect(done.status?.lastRotation?.trigger).toBe('SecretChanged');
      expect(running.logs.filter((l) => /forbidden/i.test(l))).toEqual([]);
    } finally {
      await running.stop();
    }
    expect((await helm('uninstall', release, '-n', namespace)).code).toBe(0);
  }, 120_000);
});

/** POSTs an AdmissionReview to the webhook without a client certificate; the HTTP status. */
function postWithoutClientCertificate(url: string): Promise<number> {
  const body = JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: '1',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      namespace: 'team-a',
      operation: 'CREATE',
    },
  });
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      { method: 'POST', rejectUnauthorized: false, headers: { 'content-type': 'application/json' } },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Issuance and injection in the one watched namespace; a pod in another opted-in namespace is left alone. */
async function scopedJob(release: string, namespace: string, watched: string): Promise<string | undefined> {
  const step = async <T>(what: string, fn: () => Promise<T | undefined>) => until(what, fn, 20_000);
  const certificate = async (name: string) =>
    (await custom().getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: watched,
      plural: Plural.Certificate,
      name,
    })) as Certificate;
  try {
    await step('a leader', async () => {
      const lease = await rawRequest<{ spec?: { holderIdentity?: string } }>(
        kc,
        'GET',
        `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases/${release}-operator`,
      );
      return lease.spec?.holderIdentity ? true : undefined;
    });
    await step('the caBundle published', async () => {
      const c = await rawRequest<{ webhooks: { clientConfig: { caBundle?: string } }[] }>(
        kc,
        'GET',
        `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${release}-webhook`,
      );
      return c.webhooks.every((w) => w.clientConfig.caBundle) ? true : undefined;
    });
    await custom().createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: watched,
      plural: Plural.Certificate,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'Certificate',
        metadata: { name: 'c1' },
        spec: { secretName: 'c1-tls', dnsNames: [`c1.${watched}.svc`] },
      },
    });
    await step('a Certificate Ready', async () =>
      findCondition((await certificate('c1')).status?.conditions, 'Ready')?.status === 'True'
        ? true
        : undefined,
    );
    const pod = await step('a pod injected', async () => {
      const p = await core().createNamespacedPod({
        namespace: watched,
        body: {
          metadata: { generateName: 'web-' },
          spec: { serviceAccountName: 'web', containers: [{ name: 'a', image: 'x' }] },
        },
      });
      return p.metadata?.annotations?.['sigil.dev/status'] === 'injected' ? p : undefined;
    });
    await step('the identity Ready', async () =>
      findCondition(
        (await certificate(pod.metadata!.annotations!['sigil.dev/certificate']!)).status?.conditions,
        'Ready',
      )?.status === 'True'
        ? true
        : undefined,
    );
    const outside = await core().createNamespacedPod({
      namespace: 'team-b',
      body: {
        metadata: { generateName: 'web-' },
        spec: { serviceAccountName: 'web', containers: [{ name: 'a', image: 'x' }] },
      },
    });
    if (outside.metadata?.annotations?.['sigil.dev/status'])
      return 'a pod in a namespace this installation does not serve was sent to its webhook';
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

describe('values.schema.json', () => {
  it.each([
    [['--set', 'bogus=1'], "additional properties 'bogus' not allowed"],
    [['--set', 'operator.replicas=two'], "at '/operator/replicas': got string, want integer"],
    [['--set', 'webhook.failurePolicy=Sometimes'], '/webhook/failurePolicy'],
    [['--set', 'scope.mode=Namespace'], 'scope.namespace is required when scope.mode is Namespace'],
    [['--set', 'scope.mode=Namespace', '--set', 'scope.namespace=kube-system'], 'is never injected'],
    [['--set', 'scope.mode=Namespaced'], '/scope/mode'],
    [['--set', 'webhook.clientAuth.enabled=true'], 'set webhook.clientAuth.caBundle (PEM) or'],
    [
      ['--set', 'webhook.clientAuth.enabled=true', '--set', 'webhook.clientAuth.existingConfigMap=ca'],
      'webhook.clientAuth.enabled needs webhook.clientAuth.allowedNames',
    ],
    [
      ['--set', 'webhook.clusterDomain=corp.example'],
      'webhook.clusterDomain moved to the top-level clusterDomain',
    ],
    [['--set', 'clusterDomain=Corp_Example'], '/clusterDomain'],
  ])('should reject %j with a readable message', async (args, message) => {
    const res = await helm('template', 'x', CHART, ...args);
    expect(res.code).not.toBe(0);
    expect(res.out).toContain(message);
  });
});

describe('helm install naming a CA Secret', () => {
  it.each([
    ['that does not exist', false, true],
    ['that exists', true, false],
  ])('should say in its NOTES when ca.existingSecret names a Secret %s', async (_n, create, warned) => {
    const namespace = `ca-notes-${create ? 'present' : 'missing'}`;
    await core().createNamespace({ body: { metadata: { name: namespace } } });
    if (create)
      await core().createNamespacedSecret({
        namespace,
        body: { metadata: { name: 'my-ca' }, type: 'Opaque', stringData: { 'tls.crt': 'x', 'tls.key': 'y' } },
      });
    // --dry-run=server: the chart's lookups ask the real API server, and nothing is installed.
    // Without the CRDs and the ClusterIssuer, which releases installed above already own.
    const res = await helm(
      'install',
      'notes',
      CHART,
      '-n',
      namespace,
      '--dry-run=server',
      '--set',
      'ca.existingSecret=my-ca',
      '--set',
      'crds.enabled=false',
      '--set',
      'issuer.create=false',
    );
    expect({ code: res.code, out: res.code === 0 ? '' : res.out }).toEqual({ code: 0, out: '' });
    expect(res.out.includes('CA SECRET MISSING')).toBe(warned);
    if (warned)
      expect(res.out).toContain(`kubectl -n ${namespace} create secret tls my-ca --cert=ca.crt --key=ca.key`);
    expect(res.out).toContain(`kubectl sigil doctor --namespace ${namespace}`);
  });
});

/** The first container of the release's Deployment for one component, from rendered manifests. */
const renderedContainer = (manifests: string, component: string) =>
  parseAllDocuments(manifests)
    .map((d) => d.toJS() as V1Deployment | null)
    .find((o) => o?.kind === 'Deployment' && o.metadata?.name === `${RELEASE}-${component}`)!.spec!.template
    .spec!.containers[0]!;
const renderedArgs = (manifests: string, component: string) => renderedContainer(manifests, component).args!;
/** `helm template` of the release, without a cluster. */
const template = (...args: string[]) => helm('template', RELEASE, CHART, '-n', NS, ...args);

describe('helm template without a cluster', () => {
  it('should render with no --kube-version: helm assumes the Kubernetes its build was stamped with, not v1.20', async () => {
    const res = await template('--set', 'operator.minDuration=2h');
    expect(res.code).toBe(0);
    // The operator and the webhook get the same shortest duration.
    const args = (component: string) => renderedArgs(res.out, component);
    for (const component of ['operator', 'webhook'])
      expect(args(component).filter((a) => a.startsWith('--min-duration'))).toEqual(['--min-duration=2h']);
  });
});

describe('clusterDomain', () => {
  it('should reach both the operator and the webhook, so both decide which names belong to a namespace alike', async () => {
    const res = await template('--set', 'clusterDomain=corp.example');
    expect(res.code).toBe(0);
    const args = (component: string) => renderedArgs(res.out, component);
    for (const component of ['operator', 'webhook'])
      expect(args(component).filter((a) => a.startsWith('--cluster-domain'))).toEqual([
        '--cluster-domain=corp.example',
      ]);
  });
});

describe('nodeArgs', () => {
  const command = (manifests: string, component: string) => renderedContainer(manifests, component).command;
  const values = parse(readFileSync(join(CHART, 'values.yaml'), 'utf8'));

  it("should put each component's Node flags on its command line, with a heap sized to its memory limit", async () => {
    const res = await template();
    expect(res.code).toBe(0);
    const limitMiB = (component: string) => Number.parseInt(values[component].resources.limits.memory, 10);
    // The old space gets the limit less 96 MiB, and at least half of it.
    const heap = (component: string) =>
      `--max-old-space-size=${Math.max(limitMiB(component) - 96, Math.floor(limitMiB(component) / 2))}`;
    expect(command(res.out, 'operator')).toEqual([
      '/usr/local/bin/node',
      '--max-semi-space-size=1',
      '--lite-mode',
      '--use-openssl-ca',
      '--incremental-marking-soft-trigger=30',
      '--incremental-marking-hard-trigger=70',
      heap('operator'),
      '/app/dist/bundle/sigil.mjs',
    ]);
    expect(command(res.out, 'webhook')).toEqual([
      '/usr/local/bin/node',
      '--max-semi-space-size=8',
      '--lite-mode',
      '--use-openssl-ca',
      heap('webhook'),
      '/app/dist/bundle/sigil.mjs',
    ]);
  });

  it('should give only flags the pinned Node starts with (it exits on a V8 flag it does not know)', () => {
    const run = (flags: string[]) =>
      execFileSync(process.execPath, [...flags, '-e', 'process.exit(0)'], { stdio: 'pipe' });
    for (const component of ['operator', 'webhook']) {
      const flags: string[] = values[component].nodeArgs;
      expect(flags.length).toBeGreaterThan(0);
      expect(() => run(flags)).not.toThrow();
    }
    // What a flag V8 dropped would do to the pod: node exits before the operator starts.
    expect(() => run(['--incremental-marking-sometimes-trigger=30'])).toThrow(/bad option/);
  });

  it.each([
    ['1Gi', '--max-old-space-size=928'],
    ['1.5Gi', '--max-old-space-size=1440'],
    ['512M', '--max-old-space-size=392'],
    ['262144Ki', '--max-old-space-size=160'],
    ['134217728', '--max-old-space-size=64'],
  ])('should size the heap from a limit of %s', async (limit, flag) => {
    const res = await template('--set-string', `operator.resources.limits.memory=${limit}`);
    expect(res.code).toBe(0);
    expect(command(res.out, 'operator')).toContain(flag);
  });

  it('should read a limit written as a number of bytes in a values file', async () => {
    const values = join(work, 'values.yaml');
    // YAML gives helm this as a float: 4.02653184e+08.
    writeFileSync(values, 'operator:\n  resources:\n    limits:\n      memory: 402653184\n');
    const res = await template('-f', values);
    expect(res.code).toBe(0);
    expect(command(res.out, 'operator')).toContain('--max-old-space-size=288');
  });

  it('should keep a heap size given in nodeArgs, and add none without a memory limit', async () => {
    const given = await template(
      '--set',
      'operator.nodeArgs={--max-old-space-size=300}',
      '--set',
      'webhook.resources.limits=null',
      '--set',
      'webhook.nodeArgs=null',
    );
    expect(given.code).toBe(0);
    expect(command(given.out, 'operator')).toEqual([
      '/usr/local/bin/node',
      '--max-old-space-size=300',
      '/app/dist/bundle/sigil.mjs',
    ]);
    // No flags at all: the image's entrypoint and NODE_OPTIONS.
    expect(command(given.out, 'webhook')).toBeUndefined();
  });

  it('should refuse a memory limit it cannot read, or one too small to run in, saying what to write', async () => {
    const unread = await template('--set', 'operator.resources.limits.memory=lots');
    expect(unread.code).not.toBe(0);
    expect(unread.out).toContain(
      'operator.resources.limits.memory is "lots": write a memory quantity such as 384Mi, 1Gi or 1.5Gi',
    );
    const small = await template('--set', 'webhook.resources.limits.memory=64Mi');
    expect(small.code).not.toBe(0);
    expect(small.out).toContain('webhook.resources.limits.memory is 64Mi, below 96Mi');
  });

  it('should refuse anything but --flags', async () => {
    const res = await template('--set', 'operator.nodeArgs={rm -rf /}');
    expect(res.code).not.toBe(0);
    expect(res.out).toContain("'/operator/nodeArgs/0': 'rm -rf /' does not match pattern");
  });
});
