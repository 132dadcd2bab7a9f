// make demo on a real one-node cluster: the chart installed with helm from the
// image this checkout builds, a Certificate applied with kubectl, two
// Deployments talking mutual TLS through a Service (examples/mtls), an
// impostor with a certificate from another CA refused, a forced renewal
// reaching the running pods through the kubelet, and sigil doctor.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSelfSignedCA, loadCertificateAuthority } from '../lib/pki/ca.ts';
import { displaySerial } from '../lib/pki/certificate.ts';
import { issueCertificate } from '../lib/pki/issue.ts';
import { serverVersion } from '../lib/testing/controlplane.ts';
import { type Cluster, nodeBinaryDir, startCluster, stopCluster } from '../lib/testing/node/cluster.ts';
import { REPO_ROOT } from '../lib/testing/node/images.ts';
import { leftovers } from '../lib/testing/node/node.ts';
import { type ClusterTools, clusterTools, ensureHelm, importChartImage } from '../lib/testing/node/tools.ts';

export interface NodeDemoOptions {
  dir: string;
  keep: boolean;
  /** The kubelet's syncFrequency: how often it refreshes Secret volumes in running pods. */
  syncFrequency: string;
  title: (s: string) => void;
  result: (s: string) => void;
  detail: (s: string) => void;
}

const RELEASE = 'sigil';
const RELEASE_NS = 'sigil-system';
const APP_NS = 'shop';
const TD = 'spiffe://cluster.local';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function nodeDemo(o: NodeDemoOptions): Promise<string[]> {
  const { title, result, detail } = o;
  const summary: string[] = [];
  const manifests = join(o.dir, 'manifests');
  let cluster: Cluster | undefined;

  let tools: ClusterTools | undefined;
  const kubectl = (...args: string[]) => tools!.kubectl(...args);
  const exec = (file: string, args: string[]): string => {
    try {
      return execFileSync(file, args, {
        encoding: 'utf8',
        env: { ...process.env, NODE_NO_WARNINGS: '1' },
        timeout: 120_000,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new Error(`${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
    }
  };
  const sigil = (...args: string[]) =>
    exec(process.execPath, [
      join(REPO_ROOT, 'cli', 'main.ts'),
      ...args,
      '--kubeconfig',
      cluster!.controlPlane.kubeconfig,
    ]);
  /** The command line as a user types it, printed before its output. */
  const shown = (command: string, out: string) => detail(`$ ${command}\n${out.trimEnd()}`);
  const logs = (target: string) => kubectl('logs', '-n', APP_NS, target);
  const waitForLog = async (target: string, text: string | RegExp, timeoutMs: number): Promise<string> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const out = logs(target);
      if (typeof text === 'string' ? out.includes(text) : text.test(out)) return out;
      if (Date.now() > deadline) throw new Error(`${target} never logged "${text}"; its log:\n${out}`);
      await sleep(250);
    }
  };
  const describeState = () => {
    try {
      return [
        kubectl('get', 'pods', '-A', '-o', 'wide'),
        kubectl('get', 'events', '-A', '--sort-by=.lastTimestamp'),
      ].join('\n');
    } catch (err) {
      return String(err);
    }
  };

  try {
    title('Start a one-node cluster: etcd, kube-apiserver, kubelet with containerd, kube-proxy, CoreDNS');
    const binDir = nodeBinaryDir();
    ensureHelm();
    mkdirSync(manifests, { recursive: true });
    let started = Date.now();
    cluster = await startCluster({
      dir: o.dir,
      node: true,
      persistent: true,
      syncFrequency: o.syncFrequency,
    });
    const node = cluster.node!;
    tools = clusterTools(binDir, cluster.controlPlane.kubeconfig, o.dir);
    result(
      `kube-apiserver ${await serverVersion(cluster.controlPlane)} with node ${kubectl('get', 'nodes', '-o', 'jsonpath={.items[0].metadata.name}')} up in ${((Date.now() - started) / 1000).toFixed(1)} s` +
        ` (kubelet syncFrequency ${o.syncFrequency}; the kubelet's default is 1m)`,
    );

    title('Load the Sigil image make image built (no registry) and helm install the chart');
    const image = importChartImage(node);
    result(`${image} imported into the node's containerd from dist/images/`);
    const install = `helm install ${RELEASE} charts/sigil -n ${RELEASE_NS} --create-namespace --set image.pullPolicy=Never --wait`;
    started = Date.now();
    try {
      tools.installChart(RELEASE, RELEASE_NS);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${describeState()}`);
    }
    shown(install, kubectl('get', 'pods', '-n', RELEASE_NS, '-o', 'wide'));
    result(
      `operator (2 replicas, one leading) and webhook (2) running as pods under the chart's RBAC, in ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
    summary.push('chart installed with helm from the built image; operator and webhook run as pods');

    title('kubectl apply an example Certificate');
    kubectl('apply', '-f', join(REPO_ROOT, 'examples', 'certificate.yaml'));
    kubectl('wait', '--for=condition=Ready', 'certificates.sigil.dev/web', '-n', 'default', '--timeout=60s');
    shown(
      'kubectl apply -f examples/certificate.yaml && kubectl get scert web',
      kubectl('get', 'scert', 'web', '-n', 'default'),
    );
    shown('sigil inspect web-tls -n default', sigil('inspect', 'web-tls', '-n', 'default'));
    result('Certificate web Ready; Secret default/web-tls holds tls.crt, tls.key and ca.crt');
    summary.push('a Certificate applied with kubectl, issued and Ready');

    title(
      `kubectl apply -k examples/mtls: namespace ${APP_NS} labelled for injection, a backend and a frontend`,
    );
    started = Date.now();
    kubectl('apply', '-k', join(REPO_ROOT, 'examples', 'mtls'));
    try {
      for (const d of ['backend', 'frontend'])
        kubectl('wait', '--for=condition=Available', `deployment/${d}`, '-n', APP_NS, '--timeout=120s');
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${describeState()}`);
    }
    result(`both Deployments Available ${((Date.now() - started) / 1000).toFixed(1)} s after kubectl apply`);
    shown(
      `kubectl get pods -n ${APP_NS}   # with Sigil's annotations as columns`,
      kubectl(
        'get',
        'pods',
        '-n',
        APP_NS,
        '-o',
        'custom-columns=POD:.metadata.name,STATUS:.status.phase,SIGIL:.metadata.annotations.sigil\\.dev/status,CERTIFICATE:.metadata.annotations.sigil\\.dev/certificate',
      ),
    );
    shown(`sigil status -n ${APP_NS}`, sigil('status', '-n', APP_NS));
    const frontendLog = await waitForLog('deployment/frontend', 'answered', 60_000);
    const backendLog = await waitForLog('deployment/backend', 'accepted', 10_000);
    shown(`kubectl logs -n ${APP_NS} deployment/backend`, backendLog);
    shown(`kubectl logs -n ${APP_NS} deployment/frontend`, frontendLog);
    if (!frontendLog.includes(`server ${TD}/ns/${APP_NS}/sa/backend answered`))
      throw new Error('the frontend did not see the backend SPIFFE ID');
    if (!backendLog.includes(`accepted ${TD}/ns/${APP_NS}/sa/frontend`))
      throw new Error('the backend did not see the frontend SPIFFE ID');
    result(
      "frontend and backend talk mutual TLS through the Service backend, each logging the other's SPIFFE ID",
    );
    summary.push("two Deployments talk mutual TLS through a Service, each logging the other's SPIFFE ID");

    title("An impostor: the frontend's SPIFFE ID on a certificate from another CA");
    const other = await createSelfSignedCA({
      commonName: 'Some other CA',
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 86_400_000),
    });
    const forged = await issueCertificate(
      loadCertificateAuthority(other.certPem, other.keyPem, new Date()),
      { uris: [`${TD}/ns/${APP_NS}/sa/frontend`], durationMs: 3_600_000 },
      new Date(),
    );
    const caBundle = Buffer.from(
      kubectl('get', 'secret', 'web-tls', '-n', 'default', '-o', 'jsonpath={.data.ca\\.crt}'),
      'base64',
    ).toString('utf8');
    const frontendPod = JSON.parse(kubectl('get', 'deployment', 'frontend', '-n', APP_NS, '-o', 'json')) as {
      spec: { template: { spec: { volumes: { name: string; configMap?: { name: string } }[] } } };
    };
    const appConfigMap = frontendPod.spec.template.spec.volumes.find((v) => v.configMap)!.configMap!.name;
    const impostor = join(manifests, 'impostor.json');
    writeFileSync(
      impostor,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'List',
        items: [
          {
            apiVersion: 'v1',
            kind: 'Secret',
            metadata: { name: 'impostor-tls', namespace: APP_NS },
            type: 'kubernetes.io/tls',
            stringData: {
              'tls.crt': forged.certificatePem,
              'tls.key': forged.privateKeyPem,
              'ca.crt': caBundle,
            },
          },
          {
            apiVersion: 'v1',
            kind: 'Pod',
            // sigil.dev/inject=false: no identity from Sigil; it brings its own.
            metadata: { name: 'impostor', namespace: APP_NS, labels: { 'sigil.dev/inject': 'false' } },
            spec: {
              automountServiceAccountToken: false,
              terminationGracePeriodSeconds: 1,
              securityContext: { runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000 },
              containers: [
                {
                  name: 'app',
                  image,
                  imagePullPolicy: 'IfNotPresent',
                  command: ['/usr/local/bin/node', '/app/examples/mtls/app.mjs'],
                  env: [
                    { name: 'ROLE', value: 'frontend' },
                    { name: 'ALLOWED_PEERS', value: `${TD}/ns/${APP_NS}/sa/backend` },
                    { name: 'BACKEND', value: 'backend:443' },
                  ],
                  volumeMounts: [
                    { name: 'identity', mountPath: '/var/run/secrets/sigil.dev', readOnly: true },
                    { name: 'app', mountPath: '/app/examples/mtls', readOnly: true },
                  ],
                },
              ],
              volumes: [
                { name: 'identity', secret: { secretName: 'impostor-tls' } },
                { name: 'app', configMap: { name: appConfigMap } },
              ],
            },
          },
        ],
      }),
    );
    kubectl('apply', '-f', impostor);
    kubectl('wait', '--for=condition=Ready', 'pod/impostor', '-n', APP_NS, '--timeout=60s');
    const impostorLog = await waitForLog('impostor', 'refused by server', 30_000);
    const refusedLog = await waitForLog('deployment/backend', 'refused a client', 10_000);
    shown(`kubectl logs -n ${APP_NS} impostor`, impostorLog);
    shown(
      `kubectl logs -n ${APP_NS} deployment/backend | grep refused`,
      refusedLog
        .split('\n')
        .filter((l) => l.includes('refused'))
        .join('\n'),
    );
    if (impostorLog.includes('answered')) throw new Error('the backend answered a client from another CA');
    kubectl('delete', 'pod', 'impostor', '-n', APP_NS, '--wait=false');
    result('the backend refused it at the handshake: only the cluster CA vouches for spiffe://cluster.local');
    summary.push('a client with a certificate from another CA refused');

    title('Force a renewal of the backend identity and watch it reach the running pods');
    const backendPod = JSON.parse(
      kubectl('get', 'pods', '-n', APP_NS, '-l', 'app=backend', '-o', 'json'),
    ) as {
      items: { metadata: { name: string; uid: string; annotations: Record<string, string> } }[];
    };
    const pod = backendPod.items[0]!;
    const certificate = pod.metadata.annotations['sigil.dev/certificate']!;
    const statusSerial = () =>
      displaySerial(
        kubectl('get', 'scert', certificate, '-n', APP_NS, '-o', 'jsonpath={.status.serialNumber}').trim(),
      );
    const before = statusSerial();
    const asked = Date.now();
    shown(`sigil renew ${certificate} -n ${APP_NS}`, sigil('renew', certificate, '-n', APP_NS));
    let renewed = before;
    let issuedMs = -1;
    let reload = '';
    const deadline = asked + 150_000;
    while (Date.now() < deadline) {
      if (issuedMs < 0) {
        renewed = statusSerial();
        if (renewed !== before) issuedMs = Date.now() - asked;
      } else {
        reload =
          logs(`pod/${pod.metadata.name}`)
            .split('\n')
            .find((l) => new RegExp(`^certificate files changed: now serial 0*${renewed} `).test(l)) ?? '';
        if (reload) break;
      }
      await sleep(250);
    }
    const reachedMs = Date.now() - asked;
    if (!reload) throw new Error(`the backend pod never saw serial ${renewed} (was ${before})`);
    detail(`backend: ${reload}`);
    // The app prints serials as node:crypto does, with a leading zero where the DER has one.
    const renewedLine = new RegExp(`answered: .*serial 0*${renewed}$`, 'm');
    const answered = await waitForLog('deployment/frontend', renewedLine, 30_000);
    detail(`frontend: ${answered.split('\n').find((l) => renewedLine.test(l))}`);
    const restarts = kubectl(
      'get',
      'pod',
      pod.metadata.name,
      '-n',
      APP_NS,
      '-o',
      'jsonpath={.metadata.uid} {.status.containerStatuses[0].restartCount}',
    ).trim();
    if (restarts !== `${pod.metadata.uid} 0`) throw new Error(`the backend pod was restarted: ${restarts}`);
    result(
      `serial ${before} → ${renewed}: issued after ${(issuedMs / 1000).toFixed(1)} s, in the running backend after ${(reachedMs / 1000).toFixed(1)} s (kubelet syncFrequency ${o.syncFrequency}), same pod, 0 restarts`,
    );
    summary.push(
      `a forced renewal reached the running pods in ${(reachedMs / 1000).toFixed(1)} s through the kubelet, no restart`,
    );

    title('sigil doctor');
    let doctor = '';
    try {
      doctor = sigil('doctor', '--namespace', RELEASE_NS);
    } catch (err) {
      throw new Error(`sigil doctor found problems:\n${(err as Error).message}`);
    }
    shown(`sigil doctor --namespace ${RELEASE_NS}`, doctor);
    result('doctor passes');
    summary.push('sigil doctor passes');

    if (o.keep) {
      console.log(
        `\nEverything is still running. Explore with:\n  export KUBECONFIG=${cluster.controlPlane.kubeconfig}\n  alias kubectl=${join(nodeBinaryDir(), 'kubectl')}\n  kubectl logs -n ${APP_NS} deployment/frontend -f\n  make build && bin/kubectl-sigil status -A   # or kubectl sigil, with bin/ on PATH\nStop with: make demo-down`,
      );
    } else {
      title('Stop the cluster');
      started = Date.now();
      await stopCluster(o.dir);
      const left = leftovers(node);
      if (left.length > 0) throw new Error(`left behind: ${left.join('; ')}`);
      result(
        `stopped in ${((Date.now() - started) / 1000).toFixed(1)} s; no process, mount, interface or iptables chain left`,
      );
    }
    return summary;
  } catch (err) {
    if (!o.keep && cluster) await stopCluster(o.dir).catch(() => undefined);
    throw err;
  }
}
