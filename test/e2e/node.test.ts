// A real one-node cluster: pods from the Sigil image this checkout builds run
// on a kubelet with containerd, a Deployment is scaled by
// kube-controller-manager, a Service answers at its ClusterIP (kube-proxy) and
// by name (CoreDNS), and stopping the cluster leaves nothing on the host.
// Skipped, saying why, on a machine that cannot run a node.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type Cluster,
  nodeBinaryDir,
  nodeBlockers,
  startCluster,
  stopCluster,
} from '../../lib/testing/node/cluster.ts';
import { chartImage, IMAGE_DIR, sigilImage, writeImage } from '../../lib/testing/node/images.ts';
import { apiRequest, importImage, leftovers, type NodeState } from '../../lib/testing/node/node.ts';

const blockers = nodeBlockers();
const describeNode = blockers.length === 0 ? describe : describe.skip;
if (blockers.length > 0) console.log(`e2e skipped: this machine cannot run a node: ${blockers.join('; ')}`);

const IMAGE = chartImage();
const NAMESPACE = 'e2e';

interface Pod {
  status: {
    phase?: string;
    podIP?: string;
    containerStatuses?: { state?: { terminated?: { exitCode: number } } }[];
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(check: () => Promise<boolean>, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(200);
  }
  throw new Error(`not true within ${timeoutMs / 1000}s: ${check.toString()}`);
}

/** A pod running one container of the Sigil image. */
function pod(name: string, container: Record<string, unknown>, labels: Record<string, string> = {}) {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NAMESPACE, labels },
    spec: {
      restartPolicy: 'Never',
      terminationGracePeriodSeconds: 1,
      containers: [{ name: 'main', image: IMAGE, imagePullPolicy: 'Never', ...container }],
    },
  };
}

/** A tiny HTTP server answering with its pod's name. */
const SERVER = `require('node:http').createServer((q, s) => s.end('hello from ' + require('node:os').hostname())).listen(8080)`;

/**
 * Fetches each URL given as an argument and prints what it answered; retries for up to 10 s,
 * as kube-proxy writes a new Service's rules a moment after its endpoints are ready.
 */
const CLIENT = `const get = async (url, tries) => { try { return await (await fetch(url)).text(); } catch (e) { if (tries <= 1) throw e; await new Promise((r) => setTimeout(r, 500)); return get(url, tries - 1); } };
  (async () => { for (const url of process.argv.slice(1)) console.log(url + ' -> ' + (await get(url, 20))); })().catch((e) => { console.error(e.cause ?? e); process.exit(1); })`;

describeNode('a real one-node cluster', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-e2e-'));
  let cluster: Cluster;
  let node: NodeState;
  const timings: Record<string, string> = {};
  let binDir: string;

  const api = (method: string, path: string, body?: unknown) =>
    apiRequest(cluster.controlPlane, method, path, body);
  const kubectl = (...args: string[]) =>
    execFileSync(join(binDir, 'kubectl'), [`--kubeconfig=${cluster.controlPlane.kubeconfig}`, ...args], {
      encoding: 'utf8',
    });

  async function create(path: string, object: unknown) {
    const res = await api('POST', path, object);
    if (res.status !== 201) throw new Error(`POST ${path}: ${res.status} ${res.body}`);
  }

  async function waitForPod(name: string, phases: string[], timeoutMs = 60_000): Promise<Pod> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      const res = await api('GET', `/api/v1/namespaces/${NAMESPACE}/pods/${name}`);
      if (res.status === 200) {
        const current = JSON.parse(res.body) as Pod;
        if (phases.includes(current.status.phase ?? '')) return current;
        last = res.body;
      }
      await sleep(100);
    }
    throw new Error(`pod ${name} did not reach ${phases.join('/')} in ${timeoutMs / 1000}s: ${last}`);
  }

  beforeAll(async () => {
    const archive = join(IMAGE_DIR, `sigil-${IMAGE.slice(IMAGE.lastIndexOf(':') + 1)}.oci.tar`);
    const image = existsSync(archive)
      ? archive
      : writeImage(sigilImage(IMAGE), `sigil-${IMAGE.split(':')[1]}.oci.tar`);
    binDir = nodeBinaryDir();
    const started = Date.now();
    cluster = await startCluster({ dir, node: true, syncFrequency: '5s' });
    node = cluster.node!;
    timings['cluster up'] = `${Date.now() - started} ms`;
    const importStarted = Date.now();
    importImage(node, image);
    timings['image import'] = `${Date.now() - importStarted} ms`;
    await create('/api/v1/namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: NAMESPACE },
    });
    // The ServiceAccount admission plugin refuses pods until kube-controller-manager has created the
    // namespace's default ServiceAccount, as on any cluster.
    await waitFor(
      async () =>
        (await api('GET', `/api/v1/namespaces/${NAMESPACE}/serviceaccounts/default`)).status === 200,
    );
  }, 600_000);

  afterAll(async () => {
    // Stops whatever started, even when beforeAll failed half-way.
    if (existsSync(dir)) await stopCluster(dir);
    console.log(`e2e timings: ${JSON.stringify(timings)}`);
  }, 120_000);

  it('should run the Sigil image as a non-root pod to completion', async () => {
    await create(`/api/v1/namespaces/${NAMESPACE}/pods`, pod('sigil-help', { args: ['--help'] }));
    const done = await waitForPod('sigil-help', ['Succeeded', 'Failed']);
    const logs = kubectl('logs', '-n', NAMESPACE, 'sigil-help');
    expect({ phase: done.status.phase, logs }).toEqual({
      phase: 'Succeeded',
      logs: expect.stringContaining('mTLS identities for Kubernetes pods'),
    });

    await create(
      `/api/v1/namespaces/${NAMESPACE}/pods`,
      pod('whoami', {
        command: ['/usr/local/bin/node', '-e', 'console.log(process.getuid() + ":" + process.getgid())'],
      }),
    );
    await waitForPod('whoami', ['Succeeded', 'Failed']);
    expect(kubectl('logs', '-n', NAMESPACE, 'whoami').trim()).toBe('65532:65532');
  }, 120_000);

  it('should take a new pod from creation to Running in a few seconds', async () => {
    const created = Date.now();
    await create(
      `/api/v1/namespaces/${NAMESPACE}/pods`,
      pod('runner', { command: ['/usr/local/bin/node', '-e', 'setInterval(() => {}, 1000)'] }),
    );
    await waitForPod('runner', ['Running']);
    const ms = Date.now() - created;
    timings['pod create to Running'] = `${ms} ms`;
    expect(ms).toBeLessThan(30_000);
  }, 60_000);

  it('should run a Deployment through kube-controller-manager and serve it by ClusterIP and by DNS name', async () => {
    kubectl(
      'create',
      'deployment',
      'web',
      '-n',
      NAMESPACE,
      `--image=${IMAGE}`,
      '--replicas=2',
      '--port=8080',
      '--',
      '/usr/local/bin/node',
      '-e',
      SERVER,
    );
    kubectl(
      'patch',
      'deployment',
      'web',
      '-n',
      NAMESPACE,
      '--type=json',
      '-p',
      '[{"op":"add","path":"/spec/template/spec/containers/0/imagePullPolicy","value":"Never"}]',
    );
    kubectl('rollout', 'status', 'deployment/web', '-n', NAMESPACE, '--timeout=90s');
    kubectl('expose', 'deployment', 'web', '-n', NAMESPACE, '--port=80', '--target-port=8080');
    const clusterIP = kubectl('get', 'service', 'web', '-n', NAMESPACE, '-o', 'jsonpath={.spec.clusterIP}');

    await create(
      `/api/v1/namespaces/${NAMESPACE}/pods`,
      pod('client', {
        command: ['/usr/local/bin/node', '-e', CLIENT],
        args: [`http://${clusterIP}/`, `http://web.${NAMESPACE}.svc.cluster.local/`, 'http://web/'],
      }),
    );
    const done = await waitForPod('client', ['Succeeded', 'Failed'], 90_000);
    const logs = kubectl('logs', '-n', NAMESPACE, 'client');
    expect({ phase: done.status.phase, logs }).toEqual({
      phase: 'Succeeded',
      logs: expect.stringMatching(
        new RegExp(
          `http://${clusterIP.replace(/\./g, '\\.')}/ -> hello from web-.*\\n.*svc\\.cluster\\.local/ -> hello from web-.*\\nhttp://web/ -> hello from web-`,
        ),
      ),
    });
  }, 240_000);

  it('should let a pod call the API server at the kubernetes Service with the token the ServiceAccount admission plugin mounted, verifying the certificate', async () => {
    const whoAmI = `const https = require('node:https'); const fs = require('node:fs');
      const dir = '/var/run/secrets/kubernetes.io/serviceaccount';
      https.get({ host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT,
        path: '/version', ca: fs.readFileSync(dir + '/ca.crt'),
        headers: { authorization: 'Bearer ' + fs.readFileSync(dir + '/token', 'utf8') } }, (res) => {
        let body = ''; res.on('data', (c) => { body += c; });
        res.on('end', () => { console.log(res.statusCode + ' ' + JSON.parse(body).gitVersion); process.exit(res.statusCode === 200 ? 0 : 1); });
      }).on('error', (e) => { console.error(e); process.exit(1); });`;
    await create(
      `/api/v1/namespaces/${NAMESPACE}/pods`,
      pod('api-client', { command: ['/usr/local/bin/node', '-e', whoAmI] }),
    );
    const done = await waitForPod('api-client', ['Succeeded', 'Failed']);
    expect({ phase: done.status.phase, logs: kubectl('logs', '-n', NAMESPACE, 'api-client').trim() }).toEqual(
      {
        phase: 'Succeeded',
        logs: `200 ${process.env.SIGIL_KUBE_VERSION ?? 'v1.37.2'}`,
      },
    );
  }, 120_000);

  it('should bring a changed Secret into a running container (kubelet syncFrequency 5s), read through kubectl exec', async () => {
    const secret = (value: string) => ({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'rotating', namespace: NAMESPACE },
      stringData: { value },
    });
    await create(`/api/v1/namespaces/${NAMESPACE}/secrets`, secret('one'));
    const object = pod('reader', {
      command: ['/usr/local/bin/node', '-e', 'setInterval(() => {}, 1000)'],
    }) as {
      spec: Record<string, unknown> & { containers: Record<string, unknown>[] };
    };
    object.spec.volumes = [{ name: 'secret', secret: { secretName: 'rotating' } }];
    object.spec.containers[0]!.volumeMounts = [{ name: 'secret', mountPath: '/secret', readOnly: true }];
    await create(`/api/v1/namespaces/${NAMESPACE}/pods`, object);
    await waitForPod('reader', ['Running']);
    // Read through kubectl exec: the API server reaches the kubelet's streaming endpoint.
    const read = () =>
      kubectl(
        'exec',
        '-n',
        NAMESPACE,
        'reader',
        '--',
        '/usr/local/bin/node',
        '-p',
        'require("fs").readFileSync("/secret/value", "utf8")',
      ).trim();
    expect(read()).toBe('one');

    const changed = Date.now();
    const res = await api('PUT', `/api/v1/namespaces/${NAMESPACE}/secrets/rotating`, secret('two'));
    expect(res.status).toBe(200);
    await waitFor(async () => read() === 'two', 30_000);
    const ms = Date.now() - changed;
    timings['Secret change to file (syncFrequency 5s)'] = `${ms} ms`;
    expect(ms).toBeLessThan(15_000);
  }, 120_000);

  it('should leave no process, mount, interface, iptables chain or cgroup behind when it stops', async () => {
    const started = Date.now();
    await stopCluster(dir);
    timings['cluster down'] = `${Date.now() - started} ms`;
    expect({ leftovers: leftovers(node), dir: existsSync(dir) }).toEqual({ leftovers: [], dir: false });
  }, 120_000);
});
