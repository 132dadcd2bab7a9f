// CA rotation against the real API server: pointing an Issuer at a new CA's Secret runs Prepare →
// Activate → Retire, and at every moment sampled each leaf in the namespace is trusted by every bundle
// a peer could hold (each Secret's ca.crt and the namespace's trust-bundle ConfigMap). Rollback, the
// forced retire (which breaks that, as it must), and a ConfigMap squatted by a tenant.
import { X509Certificate } from 'node:crypto';
import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  setHeaderOptions,
  type V1ConfigMap,
  type V1Secret,
  Watch,
} from '@kubernetes/client-node';
import {
  Annotation,
  bundleKey,
  GROUP,
  type Issuer,
  Plural,
  TRUST_BUNDLE_CONFIGMAP,
  VERSION,
} from '../lib/api/types.ts';
import type { Operator } from '../operator/operator.ts';
import { createTestNamespace, eventually, testKubeConfig } from './support/kube.ts';
import {
  caSecretData,
  createCertificate,
  createIssuer,
  createSecret,
  decode,
  ensureCrds,
  ensureNamespace,
  getIssuer,
  startTestOperator,
  waitForCertificate,
  waitForIssuer,
} from './support/sigil.ts';

const kc: KubeConfig = testKubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const custom = kc.makeApiClient(CustomObjectsApi);
const merge = setHeaderOptions('Content-Type', 'application/merge-patch+json');
const CERTS = 6;
const KEY = bundleKey('Issuer', 'ca');

let ns: string;
let operator: Operator;

async function patchIssuer(body: object) {
  await custom.patchNamespacedCustomObject(
    { group: GROUP, version: VERSION, namespace: ns, plural: Plural.Issuer, name: 'ca', body },
    merge,
  );
}

const splitPemBlocks = (pem: string) =>
  pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];

const pemOf = (data: Record<string, string> | undefined, key: string) =>
  Buffer.from(data?.[key] ?? '', 'base64').toString('utf8');

/**
 * The namespace as peers see it: each Secret's leaf and ca.crt, and the ConfigMap's bundle. `untrusted`
 * lists each (leaf, bundle) pair where the bundle does not hold the CA that signed the leaf: a handshake
 * between those two peers would fail.
 */
async function world() {
  const secrets = (
    await core.listNamespacedSecret({ namespace: ns, labelSelector: 'sigil.dev/managed=true' })
  ).items;
  const cm = await core
    .readNamespacedConfigMap({ name: TRUST_BUNDLE_CONFIGMAP, namespace: ns })
    .catch(() => undefined);
  return trustIn(secrets, cm);
}

/** Which leaf each bundle would refuse, for these Secrets and this ConfigMap. */
function trustIn(secrets: V1Secret[], cm: V1ConfigMap | undefined) {
  const bundles: [string, X509Certificate[]][] = secrets.map((s) => [
    `${s.metadata!.name} ca.crt`,
    splitPemBlocks(pemOf(s.data, 'ca.crt')).map((b) => new X509Certificate(b)),
  ]);
  if (cm?.data?.[KEY])
    bundles.push(['ConfigMap', splitPemBlocks(cm.data[KEY]).map((b) => new X509Certificate(b))]);
  const leaves = secrets.map(
    (s) => [s.metadata!.name!, new X509Certificate(pemOf(s.data, 'tls.crt'))] as const,
  );
  const untrusted: string[] = [];
  for (const [name, leaf] of leaves)
    for (const [where, cas] of bundles)
      if (!cas.some((ca) => leaf.checkIssued(ca) && leaf.verify(ca.publicKey)))
        untrusted.push(`${name}'s leaf by ${where}`);
  return {
    leaves,
    bundles,
    configMap: cm?.data?.[KEY],
    untrusted,
  };
}

/**
 * Records every version of the namespace's Secrets and ConfigMaps from now on, in etcd's order
 * (resourceVersion is its global revision). `breaches` replays them and lists, for each state peers
 * could have read however briefly, the leaves a bundle would have refused.
 */
async function recordVersions() {
  const secretList = await core.listNamespacedSecret({
    namespace: ns,
    labelSelector: 'sigil.dev/managed=true',
  });
  const cmList = await core.listNamespacedConfigMap({ namespace: ns });
  const versions: { rv: bigint; kind: string; type: string; obj: V1Secret & V1ConfigMap }[] = [];
  const watches = await Promise.all(
    [
      [`/api/v1/namespaces/${ns}/secrets`, 'Secret', secretList.metadata!.resourceVersion!],
      [`/api/v1/namespaces/${ns}/configmaps`, 'ConfigMap', cmList.metadata!.resourceVersion!],
    ].map(([path, kind, rv]) =>
      new Watch(kc).watch(
        path!,
        { resourceVersion: rv },
        (type: string, obj: V1Secret & V1ConfigMap) =>
          versions.push({ rv: BigInt(obj.metadata!.resourceVersion!), kind: kind!, type, obj }),
        () => undefined,
      ),
    ),
  );
  return {
    breaches: async () => {
      await new Promise((r) => setTimeout(r, 1000));
      for (const w of watches) w.abort();
      const secretsNow = new Map(secretList.items.map((x) => [x.metadata!.name!, x]));
      let cmNow = cmList.items.find((c) => c.metadata?.name === TRUST_BUNDLE_CONFIGMAP);
      const out: string[] = [];
      for (const v of versions.sort((a, b) => (a.rv < b.rv ? -1 : a.rv > b.rv ? 1 : 0))) {
        if (v.kind === 'ConfigMap') {
          if (v.obj.metadata?.name === TRUST_BUNDLE_CONFIGMAP)
            cmNow = v.type === 'DELETED' ? undefined : v.obj;
        } else if (v.obj.metadata?.labels?.['sigil.dev/managed'] === 'true') {
          if (v.type === 'DELETED') secretsNow.delete(v.obj.metadata.name!);
          else secretsNow.set(v.obj.metadata.name!, v.obj);
        }
        out.push(...trustIn([...secretsNow.values()], cmNow).untrusted.map((u) => `at ${v.rv}: ${u}`));
      }
      return { breaches: out, versions: versions.length };
    },
  };
}

async function fingerprintOf(secretName: string) {
  const s = await core.readNamespacedSecret({ name: secretName, namespace: ns });
  return new X509Certificate(pemOf(s.data, 'tls.crt')).fingerprint256.replaceAll(':', '').toLowerCase();
}

/** Samples the namespace until the issuer has no rotation in progress and lastRotation names `to`. */
async function watchRotation(to: string, timeoutMs = 60_000) {
  const phases: string[] = [];
  const breaches: string[] = [];
  await eventually(
    `the rotation to ${to.slice(0, 16)} done`,
    async () => {
      const issuer = await getIssuer(kc, 'Issuer', 'ca', ns);
      const phase =
        issuer.status?.rotation?.phase ?? (issuer.status?.lastRotation?.to === to ? 'Done' : 'none');
      if (phases[phases.length - 1] !== phase) phases.push(phase);
      const w = await world();
      breaches.push(...w.untrusted.map((u) => `${phase}: ${u}`));
      return phase === 'Done' ? issuer : undefined;
    },
    timeoutMs,
  );
  return { phases, breaches };
}

beforeAll(async () => {
  await ensureCrds(kc);
  await ensureNamespace(kc, 'sigil-system');
  ns = await createTestNamespace(kc, 'rotation');
  // A tenant's ConfigMap squatting the bundle's name in a namespace Sigil serves must neither be written
  // nor stall a rotation: see the last test. It lives in a second namespace of the same operator.
  await createSecret(kc, ns, 'ca-one', await caSecretData('Rotation CA one'));
  await createIssuer(
    kc,
    'Issuer',
    'ca',
    { ca: { secretName: 'ca-one' }, rotation: { propagationDelay: '2s', reissuePerSecond: 20 } },
    ns,
  );
  operator = await startTestOperator(kc, { watchNamespace: ns });
  await waitForIssuer(kc, 'Issuer', 'ca', { status: 'True', reason: 'CAReady' }, ns);
  for (let i = 0; i < CERTS; i++)
    await createCertificate(kc, ns, `svc-${i}`, {
      secretName: `svc-${i}-tls`,
      issuerRef: { name: 'ca', kind: 'Issuer' },
      dnsNames: [`svc-${i}.${ns}.svc`],
    });
  for (let i = 0; i < CERTS; i++) await waitForCertificate(kc, ns, `svc-${i}`, { status: 'True' });
});

afterAll(async () => {
  await operator?.stop();
});

describe('CA rotation', () => {
  it('should publish the issuer bundle in the namespace ConfigMap and in every Secret ca.crt', async () => {
    const issuer = await getIssuer(kc, 'Issuer', 'ca', ns);
    const w = await eventually('the bundle ConfigMap', async () => {
      const x = await world();
      return x.configMap ? x : undefined;
    });
    expect(issuer.status).toMatchObject({ secretName: 'ca-one', bundle: [issuer.status!.fingerprint] });
    expect(w.untrusted).toEqual([]);
    expect(w.bundles.map(([where, cas]) => [where, cas.length])).toEqual(
      expect.arrayContaining([['ConfigMap', 1]]),
    );
    const cm = await core.readNamespacedConfigMap({ name: TRUST_BUNDLE_CONFIGMAP, namespace: ns });
    expect(cm.metadata?.labels).toMatchObject({ 'sigil.dev/trust-bundle': 'true' });
    // A user's edit to the bundle is put back.
    await core.patchNamespacedConfigMap(
      { name: TRUST_BUNDLE_CONFIGMAP, namespace: ns, body: { data: { [KEY]: 'tampered' } } },
      merge,
    );
    await eventually('the bundle restored', async () =>
      (await world()).configMap?.includes('BEGIN CERTIFICATE') ? true : undefined,
    );
  });

  it('should rotate to a new CA Secret with every leaf trusted by every bundle at every moment, then drop the old CA', async () => {
    const before = await getIssuer(kc, 'Issuer', 'ca', ns);
    const oldFp = before.status!.fingerprint!;
    await createSecret(kc, ns, 'ca-two', await caSecretData('Rotation CA two'));
    const record = await recordVersions();
    await patchIssuer({ spec: { ca: { secretName: 'ca-two' } } });
    const newFp = await eventually('the rotation to start', async () => {
      const i = await getIssuer(kc, 'Issuer', 'ca', ns);
      return i.status?.rotation?.to.fingerprint;
    });
    const { phases, breaches } = await watchRotation(newFp);
    expect(breaches).toEqual([]);
    // Not only the samples: every state the Secrets and the ConfigMap went through.
    const replayed = await record.breaches();
    expect(replayed.breaches).toEqual([]);
    expect(replayed.versions).toBeGreaterThanOrEqual(3 * CERTS);
    // Retire lasts only until the bundles are rewritten, often less than a sample: the Events show it.
    expect(phases.filter((p) => p !== 'none' && p !== 'Retire')).toEqual(['Prepare', 'Activate', 'Done']);
    const issuer = await getIssuer(kc, 'Issuer', 'ca', ns);
    expect(issuer.status).toMatchObject({
      secretName: 'ca-two',
      fingerprint: newFp,
      bundle: [newFp],
      lastRotation: { from: oldFp, to: newFp, trigger: 'SecretChanged' },
    });
    expect(issuer.status?.rotation).toBeUndefined();
    const w = await world();
    // Every leaf now on the new CA, and the old CA in no bundle.
    const newCa = new X509Certificate(
      pemOf((await core.readNamespacedSecret({ name: 'ca-two', namespace: ns })).data, 'tls.crt'),
    );
    expect(w.leaves.filter(([, leaf]) => !leaf.verify(newCa.publicKey)).map(([n]) => n)).toEqual([]);
    for (const [where, cas] of w.bundles)
      expect([where, cas.map((c) => c.fingerprint256.replaceAll(':', '').toLowerCase())]).toEqual([
        where,
        [newFp],
      ]);
    const events = await core.listNamespacedEvent({
      namespace: ns,
      fieldSelector: 'involvedObject.kind=Issuer',
    });
    expect(events.items.map((e) => e.reason)).toEqual(
      expect.arrayContaining(['RotationStarted', 'RotationActivated', 'RotationRetiring', 'RotationDone']),
    );
    expect(await fingerprintOf('ca-one')).toBe(oldFp);
  }, 90_000);

  it('should roll back when the issuer is pointed at the old CA again during Prepare, the old CA never having stopped signing', async () => {
    const oldFp = (await getIssuer(kc, 'Issuer', 'ca', ns)).status!.fingerprint!;
    await createSecret(kc, ns, 'ca-three', await caSecretData('Rotation CA three'));
    // A long propagation delay holds the rotation in Prepare.
    await patchIssuer({ spec: { ca: { secretName: 'ca-three' }, rotation: { propagationDelay: '10m' } } });
    await eventually('Prepare with both CAs written', async () => {
      const i = await getIssuer(kc, 'Issuer', 'ca', ns);
      return i.status?.rotation?.phase === 'Prepare' && i.status.rotation.bundleWrittenAt ? i : undefined;
    });
    expect((await world()).bundles.every(([, cas]) => cas.length === 2)).toBe(true);
    await patchIssuer({ spec: { ca: { secretName: 'ca-two' }, rotation: { propagationDelay: '2s' } } });
    const { breaches } = await watchRotation(oldFp);
    expect(breaches).toEqual([]);
    const issuer = await getIssuer(kc, 'Issuer', 'ca', ns);
    expect(issuer.status).toMatchObject({
      fingerprint: oldFp,
      secretName: 'ca-two',
      bundle: [oldFp],
      lastRotation: { to: oldFp, trigger: 'Rollback' },
    });
    // Every leaf is on the CA kept, which never stopped signing.
    const kept = new X509Certificate(
      pemOf((await core.readNamespacedSecret({ name: 'ca-two', namespace: ns })).data, 'tls.crt'),
    );
    const w = await world();
    expect(w.leaves.filter(([, leaf]) => !leaf.verify(kept.publicKey)).map(([n]) => n)).toEqual([]);
    expect(w.untrusted).toEqual([]);
  }, 90_000);

  it('should break trust when the old CA is retired early, which is why the waits exist', async () => {
    await createSecret(kc, ns, 'ca-four', await caSecretData('Rotation CA four'));
    await patchIssuer({
      spec: { ca: { secretName: 'ca-four' }, rotation: { propagationDelay: '10m', reissuePerSecond: 0.2 } },
    });
    await eventually('Prepare with both CAs written', async () => {
      const i = await getIssuer(kc, 'Issuer', 'ca', ns);
      return i.status?.rotation?.phase === 'Prepare' && i.status.rotation.bundleWrittenAt ? i : undefined;
    });
    const record = await recordVersions();
    await patchIssuer({ metadata: { annotations: { [Annotation.RetireNow]: new Date().toISOString() } } });
    await eventually('the forced rotation done', async () => {
      const i = await getIssuer(kc, 'Issuer', 'ca', ns);
      return !i.status?.rotation && i.status?.secretName === 'ca-four' ? true : undefined;
    });
    const { breaches: broken } = await record.breaches();
    // The bundles dropped the old CA while leaves still carried it: some peer refused another.
    expect(broken.length).toBeGreaterThan(0);
    const events = await core.listNamespacedEvent({ namespace: ns, fieldSelector: 'reason=RotationForced' });
    expect(events.items[0]?.message).toContain('fail their handshakes');
    // It still ends on the new CA, every leaf re-issued at once (not at the early-reissue rate).
    await patchIssuer({ spec: { rotation: { propagationDelay: '2s', reissuePerSecond: 20 } } });
    await eventually(
      'every leaf trusted again',
      async () => {
        const i = await getIssuer(kc, 'Issuer', 'ca', ns);
        const w = await world();
        return !i.status?.rotation && w.untrusted.length === 0 ? true : undefined;
      },
      30_000,
    );
  }, 90_000);

  it("should leave a tenant's ConfigMap squatting the bundle name alone, and not stall the rotation on it", async () => {
    const other = await createTestNamespace(kc, 'squat');
    await core.createNamespacedConfigMap({
      namespace: other,
      body: { metadata: { name: TRUST_BUNDLE_CONFIGMAP }, data: { [KEY]: 'mine', note: 'keep me' } },
    });
    // The operator serves one namespace here; the squatting namespace gets its own operator and issuer.
    await createSecret(kc, other, 'ca-a', await caSecretData('Squat CA a'));
    await createIssuer(
      kc,
      'Issuer',
      'ca',
      { ca: { secretName: 'ca-a' }, rotation: { propagationDelay: '1s', reissuePerSecond: 50 } },
      other,
    );
    const second = await startTestOperator(kc, { watchNamespace: other, leaseName: 'squat' });
    try {
      await waitForIssuer(kc, 'Issuer', 'ca', { status: 'True' }, other);
      await createCertificate(kc, other, 'app', {
        secretName: 'app-tls',
        issuerRef: { name: 'ca', kind: 'Issuer' },
        dnsNames: [`app.${other}.svc`],
      });
      await waitForCertificate(kc, other, 'app', { status: 'True' });
      await createSecret(kc, other, 'ca-b', await caSecretData('Squat CA b'));
      await custom.patchNamespacedCustomObject(
        {
          group: GROUP,
          version: VERSION,
          namespace: other,
          plural: Plural.Issuer,
          name: 'ca',
          body: { spec: { ca: { secretName: 'ca-b' } } },
        },
        merge,
      );
      const done = await eventually(
        'the rotation done despite the squatted ConfigMap',
        async () => {
          const i = (await getIssuer(kc, 'Issuer', 'ca', other)) as Issuer;
          return i.status?.secretName === 'ca-b' && !i.status.rotation ? i : undefined;
        },
        30_000,
      );
      expect(done.status?.lastRotation?.trigger).toBe('SecretChanged');
      const cm = await core.readNamespacedConfigMap({ name: TRUST_BUNDLE_CONFIGMAP, namespace: other });
      expect(cm.data).toEqual({ [KEY]: 'mine', note: 'keep me' });
      // The Secret's ca.crt still carries the bundle: only the squatted ConfigMap is out of Sigil's hands.
      const s = await core.readNamespacedSecret({ name: 'app-tls', namespace: other });
      expect(decode(s, 'ca.crt')).toContain('BEGIN CERTIFICATE');
    } finally {
      await second.stop();
    }
  }, 60_000);
});
