// sigil ca status and sigil ca rotate as a person runs them, against the test control plane. No
// operator runs here: each issuer's status is written by hand, as the operator would write it, so
// the CLI reads a known rotation. An issuer whose CA Secret is missing, or whose status matches its
// Secrets, keeps that status should another test's operator look at it.
import { execFile } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import {
  Annotation,
  type CARef,
  type Condition,
  GROUP,
  type IssuerKind,
  type IssuerSpec,
  type IssuerStatus,
  Plural,
  type RotationStatus,
  VERSION,
} from '../lib/api/types.ts';
import { parseCertificateChain } from '../lib/pki/certificate.ts';
import { createTestNamespace, kubeconfigPath, testKubeConfig } from './support/kube.ts';
import {
  caSecretData,
  createIssuer,
  createSecret,
  DAY,
  ensureCrds,
  getIssuer,
  HOUR,
  randomName,
} from './support/sigil.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const kc: KubeConfig = testKubeConfig();
const custom = kc.makeApiClient(CustomObjectsApi);
const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
let ns: string;
/** Prefix of this file's ClusterIssuers and of the Secrets they name, so no other test's operator has them. */
const id = randomName('ca-cli');
const clusterIssuers: string[] = [];

/** The CLI against the test control plane; stdout and stderr together. */
function sigil(...args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((r) => {
    execFile(
      process.execPath,
      [join(ROOT, 'cli', 'main.ts'), ...args, '--kubeconfig', kubeconfigPath()],
      { env: { ...process.env, NODE_NO_WARNINGS: '1' } },
      (e, stdout, stderr) =>
        r({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` }),
    );
  });
}

interface TestCA {
  ref: CARef;
  /** The Ready message the operator writes for it. */
  message: string;
}

/** A CA in a new Secret of the test namespace. */
async function caSecret(name: string, commonName: string, annotations?: Record<string, string>) {
  const data = await caSecretData(commonName);
  const core = kc.makeApiClient(CoreV1Api);
  await core.createNamespacedSecret({
    namespace: ns,
    body: { metadata: { name, annotations }, type: 'kubernetes.io/tls', data },
  });
  const cert = parseCertificateChain(Buffer.from(data['tls.crt'], 'base64'))[0]!;
  const notAfter = cert.facts.notAfter.toISOString();
  return {
    ref: {
      secretName: name,
      fingerprint: cert.facts.fingerprint,
      notAfter,
      certificate: cert.pem,
      trustAnchor: cert.pem,
    },
    message: `CA "${commonName}" is valid until ${notAfter}`,
  } satisfies TestCA;
}

function ready(status: 'True' | 'False', reason: string, message: string): Condition {
  return {
    type: 'Ready',
    status,
    reason,
    message,
    lastTransitionTime: new Date().toISOString(),
    observedGeneration: 1,
  };
}

const signingWith = (ca: TestCA, desired = ca): IssuerStatus => ({
  conditions: [ready('True', 'CAReady', desired.message)],
  fingerprint: ca.ref.fingerprint,
  notAfter: ca.ref.notAfter,
  secretName: ca.ref.secretName,
  bundle: [ca.ref.fingerprint],
});

const secretMissing = (namespace: string, secretName: string, lastSecret: string): IssuerStatus => ({
  conditions: [
    ready(
      'False',
      'SecretNotFound',
      `CA Secret ${namespace}/${secretName} does not exist; create it with the CA certificate in tls.crt and its key in tls.key`,
    ),
  ],
  secretName: lastSecret,
});

function rotation(
  phase: RotationStatus['phase'],
  from: TestCA,
  to: TestCA,
  more: Partial<RotationStatus>,
): RotationStatus {
  const startedAt = new Date(Date.now() - HOUR).toISOString();
  return {
    phase,
    since: new Date(Date.now() - 10 * 60_000).toISOString(),
    startedAt,
    waitingFor: '',
    from: from.ref,
    to: to.ref,
    trigger: 'SecretChanged',
    ...more,
  };
}

/** An issuer with its status subresource written as given. */
async function issuer(kind: IssuerKind, name: string, spec: IssuerSpec, status?: IssuerStatus) {
  await createIssuer(kc, kind, name, spec, kind === 'Issuer' ? ns : undefined);
  if (kind === 'ClusterIssuer') clusterIssuers.push(name);
  if (!status) return;
  const common = { group: GROUP, version: VERSION, name, body: { status } };
  if (kind === 'Issuer')
    await custom.patchNamespacedCustomObjectStatus(
      { ...common, namespace: ns, plural: Plural.Issuer },
      merge,
    );
  else await custom.patchClusterCustomObjectStatus({ ...common, plural: Plural.ClusterIssuer }, merge);
}

const annotations = async (kind: IssuerKind, name: string) =>
  (await getIssuer(kc, kind, name, kind === 'Issuer' ? ns : undefined)).metadata.annotations ?? {};

/** An annotation value the CLI wrote: an ISO time of the last minute. */
function expectRecentTime(value: string | undefined) {
  expect(value).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  expect(Math.abs(Date.now() - Date.parse(value!))).toBeLessThan(60_000);
}

let oldCa: TestCA;
let newCa: TestCA;
const waitingFor =
  '3 leaves still signed by the old CA to be re-issued (1 on the new one); then rotates to ca-missing, which spec.ca.secretName names now';

beforeAll(async () => {
  await ensureCrds(kc);
  ns = await createTestNamespace(kc, 'ca-cli');
  oldCa = await caSecret('ca-old', 'Old CA');
  newCa = await caSecret('ca-new', 'New CA');
  await createSecret(kc, ns, 'not-a-ca', {
    'tls.crt': Buffer.from('not a certificate').toString('base64'),
    'tls.key': Buffer.from('not a key').toString('base64'),
  });
  // Ready, no rotation, one finished three days ago.
  await issuer(
    'Issuer',
    'steady',
    { ca: { secretName: 'ca-old' } },
    {
      ...signingWith(oldCa),
      lastRotation: {
        from: newCa.ref.fingerprint,
        to: oldCa.ref.fingerprint,
        startedAt: new Date(Date.now() - 4 * DAY).toISOString(),
        completedAt: new Date(Date.now() - 3 * DAY).toISOString(),
        trigger: 'Requested',
      },
    },
  );
  // Ready, in Prepare: the old CA signs, both are in the bundle, and a day-long propagation delay
  // keeps it there.
  await issuer(
    'Issuer',
    'rotating',
    { ca: { secretName: 'ca-new' }, rotation: { propagationDelay: '24h' } },
    {
      ...signingWith(oldCa, newCa),
      bundle: [newCa.ref.fingerprint, oldCa.ref.fingerprint],
      rotation: rotation('Prepare', oldCa, newCa, {
        waitingFor: 'the bundle with both CAs to reach every pod: 24h left of the 24h propagation delay',
        bundleWrittenAt: new Date().toISOString(),
        leavesOnOld: 0,
        leavesOnNew: 0,
      }),
    },
  );
  // Not Ready (its new CA Secret is gone) in the middle of Activate.
  await issuer(
    'Issuer',
    'stuck',
    { ca: { secretName: 'ca-missing' } },
    {
      ...secretMissing(ns, 'ca-missing', 'ca-new'),
      bundle: [newCa.ref.fingerprint, oldCa.ref.fingerprint],
      rotation: rotation('Activate', oldCa, newCa, {
        waitingFor,
        leavesOnOld: 3,
        leavesOnNew: 1,
        remaining: 3,
        progressAt: new Date(Date.now() - 5 * 60_000).toISOString(),
      }),
    },
  );
  await issuer('Issuer', 'mine', { ca: { secretName: 'ca-old' } }, signingWith(oldCa));
  // ClusterIssuers: their Secrets are read from --ca-namespace, this test's namespace.
  await caSecret(`${id}-generated`, 'Generated CA', { [Annotation.Bootstrap]: 'true' });
  await caSecret(`${id}-user`, 'User CA');
  await issuer('ClusterIssuer', `${id}-generated`, { ca: { secretName: `${id}-generated` } });
  await issuer('ClusterIssuer', `${id}-user`, { ca: { secretName: `${id}-user` } });
  await issuer('ClusterIssuer', `${id}-switch`, { ca: { secretName: `${id}-user` } });
  await issuer(
    'ClusterIssuer',
    `${id}-missing`,
    { ca: { secretName: `${id}-missing` } },
    secretMissing('sigil-system', `${id}-missing`, `${id}-missing`),
  );
}, 60_000);

afterAll(async () => {
  for (const name of clusterIssuers)
    await custom
      .deleteClusterCustomObject({ group: GROUP, version: VERSION, plural: Plural.ClusterIssuer, name })
      .catch(() => {});
});

describe('sigil ca status', () => {
  it('should show a rotation in Prepare: the old CA signs, both are in the bundle, and what it waits for', async () => {
    const res = await sigil('ca', 'status', 'rotating', '--kind', 'Issuer', '-n', ns);
    expect(res.code).toBe(0);
    expect(res.out.split('\n')[0]).toMatch(
      /^KIND +NAMESPACE +NAME +READY +SIGNING CA +EXPIRES +ROTATION +WAITING FOR +LEAVES OLD\/NEW +LAST ROTATION$/,
    );
    expect(res.out).toMatch(
      new RegExp(
        `Issuer +${ns} +rotating +True +${oldCa.ref.fingerprint.slice(0, 16)} \\(ca-old\\) +\\d+d +Prepare +the bundle with both CAs to reach every pod.* +0/0 +-\\n`,
      ),
    );
    expect(res.out).toContain(`Spec CA:        Secret ca-new\n`);
    expect(res.out).toContain(
      `Bundle:         ${newCa.ref.fingerprint}\n                ${oldCa.ref.fingerprint}\n`,
    );
    expect(res.out).toContain('Rotation:       Prepare, trigger SecretChanged\n');
    expect(res.out).toContain(
      `  from:         Secret ca-old, ${oldCa.ref.fingerprint}, expires ${oldCa.ref.notAfter}\n`,
    );
    expect(res.out).toContain(
      `  to:           Secret ca-new, ${newCa.ref.fingerprint}, expires ${newCa.ref.notAfter}\n`,
    );
    expect(res.out).toMatch(/ {2}since: +\S+Z \(-10m\)\n/);
    expect(res.out).toMatch(/ {2}startedAt: +\S+Z \(-60m\)\n/);
  });

  it('should exit 1 for an issuer that is not Ready, and cut a long wait short in the table only', async () => {
    const res = await sigil('ca', 'status', 'stuck', '--kind', 'Issuer', '-n', ns);
    expect(res.code).toBe(1);
    const row = res.out.split('\n').find((l) => l.startsWith('Issuer'))!;
    expect(row).toMatch(new RegExp(`^Issuer +${ns} +stuck +False +- \\(ca-new\\) +- +Activate +3 leaves `));
    expect(row).toMatch(/ 3\/1 +-$/);
    expect(row).toContain(`${waitingFor.slice(0, 47)}… `);
    expect(row).not.toContain('spec.ca.secretName');
    expect(res.out).toContain(`  waiting for:  ${waitingFor}\n`);
    expect(res.out).toContain('  leaves:       3 on the old CA, 1 on the new\n');
    expect(res.out).toMatch(/ {2}remaining: +3, last went down \S+Z \(-5m\)\n/);
    expect(res.out).toContain(
      `Ready:          False (SecretNotFound): CA Secret ${ns}/ca-missing does not exist`,
    );
  });

  it('should show when the last rotation finished, and exit 0 when Ready', async () => {
    const res = await sigil('ca', 'status', 'steady', '--kind', 'Issuer', '-n', ns);
    expect(res.code).toBe(0);
    expect(res.out).toMatch(
      new RegExp(`Issuer +${ns} +steady +True +${oldCa.ref.fingerprint.slice(0, 16)} .* +- +- +- +-3d\\n`),
    );
    expect(res.out).toContain(
      `Last rotation:  ${newCa.ref.fingerprint.slice(0, 16)} to ${oldCa.ref.fingerprint.slice(0, 16)} (Requested)`,
    );
    expect(res.out).toContain('Rotation:       none in progress\n');
  });

  it('should list ClusterIssuers and the Issuers of the namespace without a name, and exit 1 for the one not Ready', async () => {
    const res = await sigil('ca', 'status', '-n', ns);
    expect(res.code).toBe(1);
    expect(res.out).toMatch(new RegExp(`\\nClusterIssuer +- +${id}-missing +False +- \\(${id}-missing\\) `));
    for (const name of ['mine', 'rotating', 'steady', 'stuck'])
      expect(res.out).toMatch(new RegExp(`\\nIssuer +${ns} +${name} `));
    // ClusterIssuers first; no detail block without a name.
    expect(res.out.indexOf(`${id}-missing`)).toBeLessThan(res.out.indexOf('steady'));
    expect(res.out).not.toContain('Spec CA:');
  });

  it('should list one kind with --kind, and exit 0 when every one listed is Ready', async () => {
    const res = await sigil('ca', 'status', '--kind', 'ClusterIssuer');
    expect(res.out).toContain(`${id}-missing`);
    expect(res.out).not.toMatch(/\nIssuer /);
    expect(res.code).toBe(1);
    const ready = await sigil('ca', 'status', 'mine', '--kind', 'Issuer', '-n', ns);
    expect(ready.code).toBe(0);
  });

  it('should take a name for a ClusterIssuer unless --kind Issuer', async () => {
    const cluster = await sigil('ca', 'status', `${id}-missing`);
    expect(cluster.code).toBe(1);
    expect(cluster.out).toMatch(new RegExp(`\\nClusterIssuer +- +${id}-missing +False `));
    const res = await sigil('ca', 'status', 'steady', '-n', ns);
    expect(res.code).toBe(2);
    expect(res.out.trim()).toBe(
      'sigil: ClusterIssuer steady not found (for an Issuer, add --kind Issuer and its namespace with -n)',
    );
  });

  it('should refuse a --kind that is not an issuer kind', async () => {
    const res = await sigil('ca', 'status', '--kind', 'Certificate');
    expect(res.code).toBe(2);
    expect(res.out).toContain('Allowed choices are Issuer, ClusterIssuer');
  });
});

describe('sigil ca rotate --secret', () => {
  it("should point a ClusterIssuer at the new CA's Secret and say how to follow the rotation", async () => {
    const res = await sigil('ca', 'rotate', `${id}-switch`, '--secret', 'ca-new', '--ca-namespace', ns);
    expect(res.code).toBe(0);
    expect((await getIssuer(kc, 'ClusterIssuer', `${id}-switch`)).spec.ca.secretName).toBe('ca-new');
    expect(res.out).toContain(
      `ClusterIssuer ${id}-switch: spec.ca.secretName set to ca-new (was ${id}-user)`,
    );
    expect(res.out).toContain(`the operator rotates to ca-new (${newCa.ref.fingerprint.slice(0, 16)})`);
    expect(res.out).toContain(`Follow it with: sigil ca status ${id}-switch\n`);
  });

  it('should point an Issuer at a Secret of its namespace', async () => {
    const res = await sigil('ca', 'rotate', 'mine', '--kind', 'Issuer', '-n', ns, '--secret', 'ca-new');
    expect(res.code).toBe(0);
    expect((await getIssuer(kc, 'Issuer', 'mine', ns)).spec.ca.secretName).toBe('ca-new');
    expect(res.out).toContain(`Follow it with: sigil ca status mine --kind Issuer -n ${ns}\n`);
  });

  it('should refuse a Secret that does not exist, and say how to create it', async () => {
    const res = await sigil('ca', 'rotate', 'steady', '--kind', 'Issuer', '-n', ns, '--secret', 'ca-next');
    expect(res.code).toBe(2);
    expect(res.out).toContain(`Secret ${ns}/ca-next not found`);
    expect(res.out).toContain(`kubectl -n ${ns} create secret tls ca-next --cert=ca.crt --key=ca.key`);
    expect((await getIssuer(kc, 'Issuer', 'steady', ns)).spec.ca.secretName).toBe('ca-old');
  });

  it("should look for a ClusterIssuer's Secret in --ca-namespace, and name it", async () => {
    const res = await sigil(
      'ca',
      'rotate',
      `${id}-user`,
      '--secret',
      'ca-new',
      '--ca-namespace',
      'kube-public',
    );
    expect(res.code).toBe(2);
    expect(res.out).toContain('Secret kube-public/ca-new not found');
    expect(res.out).toContain('kubectl -n kube-public create secret tls ca-new');
    expect((await getIssuer(kc, 'ClusterIssuer', `${id}-user`)).spec.ca.secretName).toBe(`${id}-user`);
  });

  it('should refuse a Secret the issuer could not sign with', async () => {
    const res = await sigil('ca', 'rotate', 'steady', '--kind', 'Issuer', '-n', ns, '--secret', 'not-a-ca');
    expect(res.code).toBe(2);
    expect(res.out).toMatch(new RegExp(`Secret ${ns}/not-a-ca.*; Issuer ${ns}/steady was not changed`));
    expect((await getIssuer(kc, 'Issuer', 'steady', ns)).spec.ca.secretName).toBe('ca-old');
  });

  it('should refuse another CA while a rotation is in progress, naming the phase and the way back', async () => {
    const res = await sigil('ca', 'rotate', 'rotating', '--kind', 'Issuer', '-n', ns, '--secret', 'ca-next');
    expect(res.code).toBe(2);
    expect(res.out).toContain(`Issuer ${ns}/rotating is rotating from ca-old`);
    expect(res.out).toContain('in phase Prepare');
    expect(res.out).toContain(
      `or roll it back: sigil ca rotate rotating --kind Issuer -n ${ns} --secret ca-old`,
    );
    expect((await getIssuer(kc, 'Issuer', 'rotating', ns)).spec.ca.secretName).toBe('ca-new');
  });
});

describe('sigil ca rotate --retire-now', () => {
  it('should refuse when no rotation is in progress', async () => {
    const res = await sigil('ca', 'rotate', 'steady', '--kind', 'Issuer', '-n', ns, '--retire-now');
    expect(res.code).toBe(2);
    expect(res.out.trim()).toBe(
      `sigil: Issuer ${ns}/steady has no CA rotation in progress: --retire-now ends a rotation, and there is none to end`,
    );
    expect((await annotations('Issuer', 'steady'))[Annotation.RetireNow]).toBeUndefined();
  });

  it('should set the annotation and warn that holders of old leaves fail their handshakes', async () => {
    const res = await sigil('ca', 'rotate', 'stuck', '--kind', 'Issuer', '-n', ns, '--retire-now');
    expect(res.code).toBe(0);
    expectRecentTime((await annotations('Issuer', 'stuck'))[Annotation.RetireNow]);
    expect(res.out).toContain('WARNING: ca-old');
    expect(res.out).toContain(
      '(3 leaves are still signed by it): peers still holding a leaf it signed fail their handshakes',
    );
  });
});

describe('sigil ca rotate without --secret', () => {
  it('should ask the operator to rotate a CA it generated', async () => {
    const res = await sigil('ca', 'rotate', `${id}-generated`, '--ca-namespace', ns);
    expect(res.code).toBe(0);
    expectRecentTime((await annotations('ClusterIssuer', `${id}-generated`))[Annotation.RotateRequestedAt]);
    expect(res.out).toContain('the operator generates the next CA in a new Secret');
  });

  it('should refuse a CA of your own, and say to use --secret', async () => {
    const res = await sigil('ca', 'rotate', `${id}-user`, '--ca-namespace', ns);
    expect(res.code).toBe(2);
    expect(res.out).toContain(`Secret ${ns}/${id}-user of ClusterIssuer ${id}-user holds a CA of your own`);
    expect(res.out).toContain('RotationNotPossible');
    expect(res.out).toContain(`sigil ca rotate ${id}-user --secret <new-secret>`);
    expect((await annotations('ClusterIssuer', `${id}-user`))[Annotation.RotateRequestedAt]).toBeUndefined();
  });

  it('should refuse an Issuer, whose CA is always your own', async () => {
    const res = await sigil('ca', 'rotate', 'steady', '--kind', 'Issuer', '-n', ns);
    expect(res.code).toBe(2);
    expect(res.out).toContain(`kubectl -n ${ns} create secret tls <new-secret>`);
    expect((await annotations('Issuer', 'steady'))[Annotation.RotateRequestedAt]).toBeUndefined();
  });

  it('should ask anyway when the CA Secret cannot be read, and say what the operator will do', async () => {
    const res = await sigil('ca', 'rotate', `${id}-missing`, '--ca-namespace', ns);
    expect(res.code).toBe(0);
    expectRecentTime((await annotations('ClusterIssuer', `${id}-missing`))[Annotation.RotateRequestedAt]);
    expect(res.out).toContain(`could not read Secret ${ns}/${id}-missing`);
    expect(res.out).toContain('the operator refuses with a RotationNotPossible Warning Event');
    expect(res.out).not.toContain('the operator generates the next CA');
  });

  it('should refuse while a rotation is in progress', async () => {
    const res = await sigil('ca', 'rotate', 'rotating', '--kind', 'Issuer', '-n', ns);
    expect(res.code).toBe(2);
    expect(res.out).toContain('in phase Prepare');
    expect(res.out).toContain('a new rotation can start once it is done');
  });
});
