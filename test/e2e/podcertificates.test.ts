// Kubernetes-native pod certificates on a real node: the kubelet generates each pod's key and asks
// Sigil's signer through a PodCertificateRequest; the chain and the issuer's ClusterTrustBundle are
// mounted by the kubelet. Shown here: OpenSSL verifies a pod's chain against the published bundle
// and the pod carries its SPIFFE ID; examples/mtls talks mutual TLS with identities delivered this
// way (the namespace label sigil.dev/delivery=PodCertificate); a pod claiming another namespace's
// name through its user annotations is Denied with the reason; no Secret holds any of these keys;
// and the kubelet refreshes a certificate on its own, with a new key, at the time Sigil set.
//
// The refresh cannot be forced: Kubernetes puts it at least 10 minutes after notBefore and the
// kubelet adds up to 5 minutes of jitter, so the last test waits 10-17 minutes. Its pod is created
// first, so the other tests run while it waits.
// Skipped, saying why, on a machine that cannot run a node.
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type Cluster,
  nodeBinaryDir,
  nodeBlockers,
  startCluster,
  stopCluster,
} from '../../lib/testing/node/cluster.ts';
import { chartImage, IMAGE_DIR, REPO_ROOT, sigilImage, writeImage } from '../../lib/testing/node/images.ts';
import { importImage } from '../../lib/testing/node/node.ts';
import { type ClusterTools, clusterTools, ensureHelm } from '../../lib/testing/node/tools.ts';
import { opensslVerify } from '../../lib/testing/pki.ts';

const blockers = nodeBlockers();
const describeNode = blockers.length === 0 ? describe : describe.skip;
if (blockers.length > 0) console.log(`e2e skipped: this machine cannot run a node: ${blockers.join('; ')}`);

const RELEASE = 'sigil';
const RELEASE_NAMESPACE = 'sigil-system';
const NS = 'workloads';
const SIGNER = 'clusterissuers.sigil.dev/sigil-ca';
const BUNDLE_OBJECT = 'clusterissuers.sigil.dev:sigil-ca:bundle';
const MOUNT = '/var/run/sigil';
/** Refresh no earlier than 10 minutes after notBefore, plus the kubelet's jitter of up to 5 minutes. */
const REFRESH_TIMEOUT_MS = 20 * 60_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface PodCertificateRequest {
  metadata: { name: string; creationTimestamp: string };
  spec: { podName: string; signerName: string };
  status?: {
    conditions?: { type: string; reason: string; message: string; lastTransitionTime: string }[];
    certificateChain?: string;
    notBefore?: string;
    beginRefreshAt?: string;
    notAfter?: string;
  };
}

/** A pod of the Sigil image that idles, with one projected volume for Sigil's signer. */
function podWith(name: string, podCertificate: Record<string, unknown>, serviceAccount = 'api') {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NS },
    spec: {
      serviceAccountName: serviceAccount,
      terminationGracePeriodSeconds: 1,
      containers: [
        {
          name: 'main',
          image: chartImage(),
          imagePullPolicy: 'Never',
          command: ['/usr/local/bin/node', '-e', 'setInterval(() => {}, 3600000)'],
          volumeMounts: [{ name: 'identity', mountPath: MOUNT, readOnly: true }],
        },
      ],
      volumes: [
        {
          name: 'identity',
          projected: {
            sources: [
              {
                podCertificate: {
                  signerName: SIGNER,
                  keyType: 'ECDSAP256',
                  credentialBundlePath: 'credentials.pem',
                  ...podCertificate,
                },
              },
              { clusterTrustBundle: { signerName: SIGNER, labelSelector: {}, path: 'ca.crt' } },
            ],
          },
        },
      ],
    },
  };
}

const certificates = (pem: string) =>
  pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];

describeNode('Kubernetes-native pod certificates on a real one-node cluster', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-e2e-podcerts-'));
  let cluster: Cluster;
  let tools: ClusterTools;
  const timings: Record<string, string> = {};
  const kubectl = (...args: string[]) => tools.kubectl(...args);
  const apply = (object: unknown) => {
    const file = join(dir, `object-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(file, JSON.stringify(object));
    return kubectl('apply', '-f', file);
  };
  const requestsOf = (pod: string) =>
    (
      JSON.parse(kubectl('get', 'podcertificaterequests', '-n', NS, '-o', 'json')) as {
        items: PodCertificateRequest[];
      }
    ).items
      .filter((r) => r.spec.podName === pod)
      .sort((a, b) => a.metadata.creationTimestamp.localeCompare(b.metadata.creationTimestamp));
  const conditionOf = (r: PodCertificateRequest) => r.status?.conditions?.[0];
  const waitForAnswer = async (pod: string, count = 1, timeoutMs = 90_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const answered = requestsOf(pod).filter((r) => conditionOf(r));
      if (answered.length >= count) return answered[count - 1]!;
      if (Date.now() > deadline)
        throw new Error(
          `no answer to request ${count} of pod ${pod} in ${timeoutMs / 1000}s: ${JSON.stringify(requestsOf(pod))}`,
        );
      await sleep(1000);
    }
  };
  const waitForRunning = async (pod: string, timeoutMs = 90_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const phase = kubectl('get', 'pod', '-n', NS, pod, '-o', 'jsonpath={.status.phase}');
      if (phase === 'Running') return;
      if (Date.now() > deadline)
        throw new Error(
          `pod ${pod} is ${phase} after ${timeoutMs / 1000}s: ${kubectl('describe', 'pod', '-n', NS, pod)}`,
        );
      await sleep(500);
    }
  };
  /** A file of the pod's volume, read by the image's Node (the image has no shell or cat). */
  const read = (pod: string, file: string) =>
    kubectl(
      'exec',
      '-n',
      NS,
      pod,
      '--',
      '/usr/local/bin/node',
      '-e',
      `process.stdout.write(require('node:fs').readFileSync('${MOUNT}/${file}', 'utf8'))`,
    );

  beforeAll(async () => {
    const image = chartImage();
    const archive = join(IMAGE_DIR, `sigil-${image.slice(image.lastIndexOf(':') + 1)}.oci.tar`);
    const oci = existsSync(archive)
      ? archive
      : writeImage(sigilImage(image), `sigil-${image.split(':')[1]}.oci.tar`);
    ensureHelm();
    let started = Date.now();
    cluster = await startCluster({ dir: join(dir, 'cluster'), node: true, syncFrequency: '5s' });
    timings['cluster up'] = `${Date.now() - started} ms`;
    tools = clusterTools(nodeBinaryDir(), cluster.controlPlane.kubeconfig, dir);
    importImage(cluster.node!, oci);
    started = Date.now();
    tools.installChart(RELEASE, RELEASE_NAMESPACE, ['--set', 'podCertificates.enabled=true']);
    timings['helm install'] = `${Date.now() - started} ms`;
    kubectl('create', 'namespace', NS);
    kubectl('create', 'serviceaccount', '-n', NS, 'api');
    // The refresh clock starts now: one hour of life, refresh asked for 50 minutes before the end,
    // which Kubernetes' bounds turn into 10 minutes after notBefore.
    apply(
      podWith('refresher', {
        maxExpirationSeconds: 3600,
        userAnnotations: { 'sigil.dev/renew-before': '50m' },
      }),
    );
  }, 600_000);

  afterAll(async () => {
    if (existsSync(join(dir, 'cluster'))) await stopCluster(join(dir, 'cluster'));
    rmSync(dir, { recursive: true, force: true });
    console.log(`e2e pod certificate timings: ${JSON.stringify(timings)}`);
  }, 120_000);

  it("should start a pod whose kubelet-made key and Sigil-signed chain OpenSSL verifies against the published ClusterTrustBundle, carrying the pod's SPIFFE ID", async () => {
    const created = Date.now();
    apply(podWith('api', { userAnnotations: { 'sigil.dev/dns-names': `api.${NS}.svc` } }));
    const answer = await waitForAnswer('api');
    expect(conditionOf(answer)).toMatchObject({ type: 'Issued', reason: 'Issued' });
    await waitForRunning('api');
    timings['pod created → Running'] = `${Date.now() - created} ms`;

    const published = kubectl(
      'get',
      'clustertrustbundle',
      BUNDLE_OBJECT,
      '-o',
      'jsonpath={.spec.trustBundle}',
    );
    expect(kubectl('get', 'clustertrustbundle', BUNDLE_OBJECT, '-o', 'jsonpath={.spec.signerName}')).toBe(
      SIGNER,
    );
    const mountedCa = read('api', 'ca.crt');
    expect(certificates(mountedCa)).toEqual(certificates(published));
    const bundle = read('api', 'credentials.pem');
    // The kubelet's file: the PKCS#8 key first, then the chain Sigil signed.
    expect(bundle.startsWith('-----BEGIN PRIVATE KEY-----')).toBe(true);
    const chain = certificates(bundle).join('');
    // The kubelet writes the blocks as the signer sent them (it drops only what lies between them).
    const blocks = (pem: string) => certificates(pem).map((c) => c.trim());
    expect(blocks(chain)).toEqual(blocks(answer.status!.certificateChain!));
    expect(opensslVerify(published, chain, 'sslclient')).toContain('OK');
    expect(opensslVerify(published, chain, 'sslserver')).toContain('OK');
    const leaf = new X509Certificate(certificates(chain)[0]!);
    expect(leaf.subjectAltName).toBe(`DNS:api.${NS}.svc, URI:spiffe://cluster.local/ns/${NS}/sa/api`);
    const key = createPrivateKey(bundle.slice(0, bundle.indexOf('-----END PRIVATE KEY-----') + 25));
    expect(
      createPublicKey(key)
        .export({ type: 'spki', format: 'der' })
        .equals(leaf.publicKey.export({ type: 'spki', format: 'der' })),
    ).toBe(true);
    // Status times equal the leaf's; refresh at two thirds of the default 24 h.
    expect(new Date(answer.status!.notBefore!).getTime()).toBe(new Date(leaf.validFrom).getTime());
    expect(new Date(answer.status!.notAfter!).getTime() - new Date(answer.status!.notBefore!).getTime()).toBe(
      24 * 3_600_000,
    );
    expect(
      new Date(answer.status!.beginRefreshAt!).getTime() - new Date(answer.status!.notBefore!).getTime(),
    ).toBe(16 * 3_600_000);
    const events = kubectl(
      'get',
      'events',
      '-n',
      NS,
      '--field-selector',
      'involvedObject.name=api',
      '-o',
      'json',
    );
    expect(events).toContain(`${SIGNER} issued api's certificate`);
  }, 180_000);

  it("should deny a request for another namespace's name through user annotations, with the reason, and keep the pod from starting", async () => {
    apply(podWith('thief', { userAnnotations: { 'sigil.dev/dns-names': 'backend.shop.svc.cluster.local' } }));
    const answer = await waitForAnswer('thief');
    expect(conditionOf(answer)).toMatchObject({ type: 'Denied', reason: 'DNSNameNotAllowed' });
    expect(conditionOf(answer)!.message).toContain('backend.shop.svc.cluster.local');
    expect(answer.status!.certificateChain).toBeUndefined();
    apply(podWith('typo', { userAnnotations: { 'sigil.dev/dns-name': `api.${NS}.svc` } }));
    const typo = await waitForAnswer('typo');
    expect(conditionOf(typo)).toMatchObject({ type: 'Denied', reason: 'InvalidUnverifiedUserAnnotations' });
    await sleep(3_000);
    for (const pod of ['thief', 'typo'])
      expect(kubectl('get', 'pod', '-n', NS, pod, '-o', 'jsonpath={.status.phase}')).toBe('Pending');
    const events = kubectl(
      'get',
      'events',
      '-n',
      NS,
      '--field-selector',
      'involvedObject.name=thief',
      '-o',
      'json',
    );
    expect(events).toContain('DNSNameNotAllowed');
  }, 180_000);

  it('should run examples/mtls over mutual TLS with identities the webhook delivers through the kubelet, and no private key in any Secret', async () => {
    const started = Date.now();
    kubectl('create', 'namespace', 'shop');
    kubectl('label', 'namespace', 'shop', 'sigil.dev/inject=enabled', 'sigil.dev/delivery=PodCertificate');
    kubectl('apply', '-k', join(REPO_ROOT, 'examples', 'mtls'));
    for (const role of ['backend', 'frontend'])
      kubectl('rollout', 'status', `deployment/${role}`, '-n', 'shop', '--timeout=180s');
    timings['examples/mtls Available'] = `${Date.now() - started} ms`;
    const pods = JSON.parse(kubectl('get', 'pods', '-n', 'shop', '-o', 'json')) as {
      items: {
        metadata: { annotations?: Record<string, string> };
        spec: { volumes: { projected?: { sources: Record<string, unknown>[] } }[] };
      }[];
    };
    expect(pods.items.length).toBe(2);
    for (const p of pods.items) {
      expect(p.metadata.annotations?.['sigil.dev/delivery']).toBe('PodCertificate');
      const sources = p.spec.volumes.flatMap((v) => v.projected?.sources ?? []).map((s) => Object.keys(s)[0]);
      expect(sources).toEqual(expect.arrayContaining(['podCertificate', 'clusterTrustBundle']));
    }
    // The frontend logs what the backend answered over mTLS, naming the backend's SPIFFE ID.
    let logs = '';
    for (let i = 0; i < 60 && !logs.includes('answered'); i++) {
      await sleep(1000);
      logs = kubectl('logs', '-n', 'shop', 'deployment/frontend', '--tail=50');
    }
    expect(logs).toContain('server spiffe://cluster.local/ns/shop/sa/backend answered');
    const backend = kubectl('logs', '-n', 'shop', 'deployment/backend', '--tail=50');
    expect(backend).toContain('spiffe://cluster.local/ns/shop/sa/frontend');
    // No Certificate was made for these pods, and no Secret anywhere but Sigil's own namespace holds a key.
    expect(kubectl('get', 'certificates.sigil.dev', '-A', '-o', 'name').trim()).toBe('');
    const secrets = JSON.parse(kubectl('get', 'secrets', '-A', '-o', 'json')) as {
      items: { metadata: { namespace: string; name: string }; data?: Record<string, string> }[];
    };
    const withKeys = secrets.items
      .filter((s) => s.metadata.namespace !== RELEASE_NAMESPACE)
      .filter((s) => Object.keys(s.data ?? {}).some((k) => k.endsWith('.key') || k.includes('key')))
      .map((s) => `${s.metadata.namespace}/${s.metadata.name}`);
    expect(withKeys).toEqual([]);
  }, 300_000);

  it(
    'should see the kubelet refresh a certificate with a new key at the time Sigil set, and the pod read the new one',
    async () => {
      const first = await waitForAnswer('refresher');
      expect(conditionOf(first)).toMatchObject({ type: 'Issued' });
      const notBefore = new Date(first.status!.notBefore!).getTime();
      expect(new Date(first.status!.beginRefreshAt!).getTime() - notBefore).toBe(10 * 60_000);
      await waitForRunning('refresher');
      const before = read('refresher', 'credentials.pem');
      const second = await waitForAnswer('refresher', 2, REFRESH_TIMEOUT_MS);
      expect(conditionOf(second)).toMatchObject({ type: 'Issued' });
      const refreshedAfter = new Date(second.metadata.creationTimestamp).getTime() - notBefore;
      timings['refresh requested after notBefore'] = `${Math.round(refreshedAfter / 1000)} s`;
      expect(refreshedAfter).toBeGreaterThanOrEqual(10 * 60_000);
      // The kubelet writes the new bundle into the running pod.
      let after = before;
      for (let i = 0; i < 60 && after === before; i++) {
        await sleep(2000);
        after = read('refresher', 'credentials.pem');
      }
      expect(after).not.toBe(before);
      const oldLeaf = new X509Certificate(certificates(before)[0]!);
      const newLeaf = new X509Certificate(certificates(after)[0]!);
      expect(newLeaf.serialNumber).not.toBe(oldLeaf.serialNumber);
      // A new key, not the old one signed again.
      expect(newLeaf.publicKey.export({ type: 'spki', format: 'der' })).not.toEqual(
        oldLeaf.publicKey.export({ type: 'spki', format: 'der' }),
      );
      expect(newLeaf.subjectAltName).toBe(oldLeaf.subjectAltName);
      timings['refresh seen in the pod after notBefore'] = `${Math.round((Date.now() - notBefore) / 1000)} s`;
    },
    REFRESH_TIMEOUT_MS + 180_000,
  );
});
