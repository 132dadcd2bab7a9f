// The Helm chart against its own real API server: install, the components
// running as the chart's ServiceAccounts doing their whole job, every RBAC rule
// shown to be needed, upgrade, uninstall, and the values schema.
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  RbacAuthorizationV1Api,
  type V1PolicyRule,
} from '@kubernetes/client-node';
import { type Certificate, findCondition, GROUP, Plural, VERSION } from '../lib/api/types.ts';
import { rawRequest } from '../lib/kube/rest.ts';
import {
  type ControlPlaneState,
  freePort,
  removeDir,
  startControlPlane,
  stopControlPlane,
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
  // helm template has no cluster to ask for its version; everything else talks to the test API server.
  const extra = args[0] === 'template' ? ['--kube-version', '1.34.4'] : ['--kubeconfig', cp.kubeconfig];
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
async function serviceAccountKubeconfig(name: string): Promise<string> {
  const res = await kc.makeApiClient(CoreV1Api).createNamespacedServiceAccountToken({
    name,
    namespace: NS,
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
async function deploymentArgs(name: string): Promise<string[]> {
  const d = await kc.makeApiClient(AppsV1Api).readNamespacedDeployment({ name, namespace: NS });
  return d.spec!.template.spec!.containers[0]!.args!.map((a) => a.replace('$(POD_NAMESPACE)', NS));
}

interface Running {
  children: ChildProcess[];
  logs: string[];
  stop: () => Promise<void>;
}

async function runComponents(): Promise<Running> {
  const logs: string[] = [];
  const children: ChildProcess[] = [];
  const start = async (deployment: string, overrides: string[]) => {
    const args = [
      ...(await deploymentArgs(deployment)),
      ...overrides,
      '--kubeconfig',
      await serviceAccountKubeconfig(deployment),
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
  await start(`${RELEASE}-operator`, [
    `--metrics-address=127.0.0.1:${await freePort()}`,
    '--webhook-ip-sans=127.0.0.1',
    '--identity-grace-period=2s',
    '--min-duration=1m',
  ]);
  await start(`${RELEASE}-webhook`, [`--address=127.0.0.1:${webhookPort}`]);
  // The API server here cannot reach a Service: point the chart's webhook at the local process instead.
  const path = `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${RELEASE}-webhook`;
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
            value: { name: `${RELEASE}-webhook`, namespace: NS, path: '/mutate-v1-pod', port: 443 },
          },
        ]),
        'application/json-patch+json',
      );
    },
  };
}

const custom = () => kc.makeApiClient(CustomObjectsApi);
const core = () => kc.makeApiClient(CoreV1Api);
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
    await until('CRDs gone', async () =>
      rawRequest(
        kc,
        'GET',
        '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/certificates.sigil.dev',
      ).then(
        () => undefined,
        () => true,
      ),
    );
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
    );
    expect(res.out).toContain('STATUS: deployed');
    expect(res.out).not.toContain('NO CA WAS GIVEN');
    expect((await helm('uninstall', 'full', '-n', 'sigil-full')).code).toBe(0);
    await until('CRDs removed', async () =>
      rawRequest(
        kc,
        'GET',
        '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/certificates.sigil.dev',
      ).then(
        () => undefined,
        () => true,
      ),
    );
  }, 60_000);
});

describe('values.schema.json', () => {
  it.each([
    [['--set', 'bogus=1'], "additional properties 'bogus' not allowed"],
    [['--set', 'operator.replicas=two'], "at '/operator/replicas': got string, want integer"],
    [['--set', 'webhook.failurePolicy=Sometimes'], '/webhook/failurePolicy'],
  ])('should reject %j with a readable message', async (args, message) => {
    const res = await helm('template', 'x', CHART, ...args);
    expect(res.code).not.toBe(0);
    expect(res.out).toContain(message);
  });
});
