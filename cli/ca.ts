// sigil ca status, sigil ca rotate: an issuer's CA and its rotation.
import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1Secret,
} from '@kubernetes/client-node';
import { type Command, Option } from 'commander';
import {
  Annotation,
  type CARef,
  ConditionType,
  findCondition,
  GROUP,
  type Issuer,
  type IssuerKind,
  Plural,
  RotationPhase,
  VERSION,
} from '../lib/api/types.ts';
import { describeApiError, isConflict, isNotFound } from '../lib/kube/errors.ts';
import { loadCertificateAuthority } from '../lib/pki/ca.ts';
import { isPkiError } from '../lib/pki/errors.ts';
import { CliError, Exit } from './errors.ts';
import { cliKubeConfig, namespaceOf, relative, table } from './kube.ts';

/** Where a ClusterIssuer's CA Secrets live unless --ca-namespace says otherwise: the operator's namespace. */
const OPERATOR_NAMESPACE = process.env.SIGIL_NAMESPACE ?? 'sigil-system';
/** The WAITING FOR column is cut here; `sigil ca status <issuer>` prints it whole. */
const WAITING_WIDTH = 48;

const kindOption = () =>
  new Option('--kind <kind>', 'Issuer or ClusterIssuer').choices(['Issuer', 'ClusterIssuer'] as const);

/** "ClusterIssuer name" or "Issuer ns/name", as messages name it. */
function labelOf(i: Issuer): string {
  return i.kind === 'Issuer'
    ? `Issuer ${i.metadata.namespace}/${i.metadata.name}`
    : `ClusterIssuer ${i.metadata.name}`;
}

/** The arguments that select this issuer again (`sigil ca status <these>`). */
function selectorOf(i: Issuer): string {
  return i.kind === 'Issuer'
    ? `${i.metadata.name} --kind Issuer -n ${i.metadata.namespace}`
    : i.metadata.name!;
}

const short = (ref: CARef) => `${ref.secretName} (${ref.fingerprint.slice(0, 16)})`;

function truncate(text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, width - 1)}…`;
}

/**
 * Issuers of one kind: in `namespace` (all namespaces when undefined; ignored for ClusterIssuers),
 * only `name` when given. A list, not a get, so a missing object is an empty answer and a 404 means
 * the CRDs are missing.
 */
async function listIssuers(
  kc: KubeConfig,
  kind: IssuerKind,
  namespace: string | undefined,
  name?: string,
): Promise<Issuer[]> {
  const custom = kc.makeApiClient(CustomObjectsApi);
  const fieldSelector = name ? `metadata.name=${name}` : undefined;
  const res = (
    kind === 'Issuer' && namespace
      ? await custom.listNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace,
          plural: Plural.Issuer,
          fieldSelector,
        })
      : await custom.listClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: kind === 'Issuer' ? Plural.Issuer : Plural.ClusterIssuer,
          fieldSelector,
        })
  ) as { items: Issuer[] };
  return res.items.map((i) => ({ ...i, kind }));
}

function notFound(kind: IssuerKind, name: string, namespace: string | undefined): CliError {
  return new CliError(
    kind === 'ClusterIssuer'
      ? `ClusterIssuer ${name} not found (for an Issuer, add --kind Issuer and its namespace with -n)`
      : `Issuer ${name} not found in namespace ${namespace} (for a ClusterIssuer, leave --kind out)`,
  );
}

function statusRow(i: Issuer, now: number): string[] {
  const s = i.status;
  const r = s?.rotation;
  const signing = s?.fingerprint
    ? `${s.fingerprint.slice(0, 16)} (${s.secretName ?? i.spec.ca.secretName})`
    : s?.secretName
      ? `- (${s.secretName})`
      : '-';
  return [
    i.kind,
    i.metadata.namespace ?? '-',
    i.metadata.name!,
    findCondition(s?.conditions, ConditionType.Ready)?.status ?? 'Unknown',
    signing,
    relative(s?.notAfter, now),
    r?.phase ?? '-',
    r ? truncate(r.waitingFor || '-', WAITING_WIDTH) : '-',
    r ? `${r.leavesOnOld ?? '-'}/${r.leavesOnNew ?? '-'}` : '-',
    relative(s?.lastRotation?.completedAt, now),
  ];
}

/** Everything the status of one issuer says about its CA, as `label: value` lines. */
function statusDetail(i: Issuer, now: number): string[] {
  const s = i.status;
  const r = s?.rotation;
  const at = (iso: string | undefined) => (iso ? `${iso} (${relative(iso, now)})` : '-');
  const lines: [string, string][] = [];
  for (const c of s?.conditions ?? []) lines.push([c.type, `${c.status} (${c.reason}): ${c.message}`]);
  lines.push(['Spec CA', `Secret ${i.spec.ca.secretName}`]);
  lines.push([
    'Signing CA',
    s?.fingerprint
      ? `${s.fingerprint} in Secret ${s.secretName ?? '-'}, expires ${at(s.notAfter)}`
      : `none${s?.secretName ? ` (last signed with Secret ${s.secretName})` : ''}`,
  ]);
  const bundle = s?.bundle ?? [];
  lines.push(['Bundle', bundle[0] ?? '-']);
  for (const fp of bundle.slice(1)) lines.push(['', fp]);
  if (r) {
    lines.push(['Rotation', `${r.phase}, trigger ${r.trigger}`]);
    lines.push([
      '  from',
      `Secret ${r.from.secretName}, ${r.from.fingerprint}, expires ${r.from.notAfter ?? '-'}`,
    ]);
    lines.push(['  to', `Secret ${r.to.secretName}, ${r.to.fingerprint}, expires ${r.to.notAfter ?? '-'}`]);
    lines.push(['  since', at(r.since)]);
    lines.push(['  startedAt', at(r.startedAt)]);
    lines.push(['  waiting for', r.waitingFor || '-']);
    lines.push(['  leaves', `${r.leavesOnOld ?? '-'} on the old CA, ${r.leavesOnNew ?? '-'} on the new`]);
    if (r.remaining !== undefined)
      lines.push(['  remaining', `${r.remaining}, last went down ${at(r.progressAt)}`]);
  } else {
    lines.push(['Rotation', 'none in progress']);
  }
  const last = s?.lastRotation;
  lines.push([
    'Last rotation',
    last
      ? `${last.from.slice(0, 16)} to ${last.to.slice(0, 16)} (${last.trigger}), ${last.startedAt} to ${at(last.completedAt)}`
      : '-',
  ]);
  // A request the operator has not acted on yet: it has not seen it, or is waiting to act.
  const annotations = i.metadata.annotations ?? {};
  const rotateAsk = annotations[Annotation.RotateRequestedAt];
  if (rotateAsk && rotateAsk !== s?.handled?.rotateRequestedAt)
    lines.push(['Pending', `${Annotation.RotateRequestedAt}=${rotateAsk}`]);
  const retireAsk = annotations[Annotation.RetireNow];
  if (retireAsk && retireAsk !== s?.handled?.retireNow)
    lines.push(['Pending', `${Annotation.RetireNow}=${retireAsk}`]);
  return lines.map(([k, v]) => `${(k ? `${k}:` : '').padEnd(16)}${v}`);
}

/** What `sigil ca rotate` does, read from the cluster before anything is written. */
interface RotateInput {
  issuer: Issuer;
  /** The namespace of the issuer's CA Secrets. */
  caNamespace: string;
  mode: 'secret' | 'request' | 'retire';
  /** --secret, and that Secret as read (undefined when it does not exist). */
  secretName?: string | undefined;
  target?: V1Secret | undefined;
  /** For a rotation on request: the Secret spec.ca.secretName names, or why it could not be read. */
  current?: V1Secret | { unreadable: string } | undefined;
  now: Date;
  cli: string;
}

interface RotatePlan {
  /** The merge patch to write; undefined when there is nothing to change. */
  patch: Record<string, unknown> | undefined;
  said: string[];
  warnings: string[];
}

const createSecretHint = (namespace: string, name: string) =>
  `kubectl -n ${namespace} create secret tls ${name} --cert=ca.crt --key=ca.key`;

/** Decides what `sigil ca rotate` writes, or refuses (CliError) with what to do instead. */
function decideRotate(i: RotateInput): RotatePlan {
  const { issuer, caNamespace, now } = i;
  const label = labelOf(issuer);
  const r = issuer.status?.rotation;
  const resourceVersion = issuer.metadata.resourceVersion;
  const annotate = (key: string) => ({
    metadata: { resourceVersion, annotations: { [key]: now.toISOString() } },
  });
  const inProgress = r
    ? `${label} is rotating from ${short(r.from)} to ${short(r.to)}, in phase ${r.phase} (waiting for ${r.waitingFor || 'the operator'})`
    : '';

  if (i.mode === 'retire') {
    if (!r)
      throw new CliError(
        `${label} has no CA rotation in progress: --retire-now ends a rotation, and there is none to end`,
      );
    if (r.phase === RotationPhase.Retire)
      return {
        patch: annotate(Annotation.RetireNow),
        said: [
          `${label} is in phase Retire already: set ${Annotation.RetireNow}; the operator stops waiting for every trust bundle to be rewritten and ends the rotation now`,
        ],
        warnings: [
          `WARNING: bundles not rewritten yet keep ${short(r.from)} until the operator reaches them`,
        ],
      };
    const holders =
      r.phase === RotationPhase.Prepare
        ? 'it still signs, so every leaf of the issuer is one of its'
        : `${r.leavesOnOld ?? 'some'} leaves are still signed by it`;
    return {
      patch: annotate(Annotation.RetireNow),
      said: [
        `${label}: set ${Annotation.RetireNow}; the operator ends the rotation now: ${short(r.to)} signs and ${short(r.from)} leaves every trust bundle`,
      ],
      warnings: [
        `WARNING: ${short(r.from)} is retired in phase ${r.phase}, before its wait is over (${holders}): peers still holding a leaf it signed fail their handshakes until they get a new one`,
      ],
    };
  }

  if (i.mode === 'secret') {
    const name = i.secretName!;
    if (name === issuer.spec.ca.secretName)
      return {
        patch: undefined,
        said: [
          `${label}: spec.ca.secretName is ${name} already; nothing changed${r ? ` (${r.phase}, waiting for ${r.waitingFor || 'the operator'})` : ''}`,
        ],
        warnings: [],
      };
    const rollback = !!r && name === r.from.secretName;
    if (r && !rollback)
      throw new CliError(
        `${inProgress}: let it finish before rotating to ${name} (${i.cli} ca status ${selectorOf(issuer)}), or roll it back: ${i.cli} ca rotate ${selectorOf(issuer)} --secret ${r.from.secretName}`,
      );
    if (!i.target)
      throw new CliError(
        `Secret ${caNamespace}/${name} not found: create it with the new CA first (${createSecretHint(caNamespace, name)}), then run this again${issuer.kind === 'ClusterIssuer' ? "; a ClusterIssuer's CA Secrets live in the operator's namespace (--ca-namespace)" : ''}`,
      );
    // A Secret the operator cannot sign with would leave the issuer not Ready: refuse it here.
    const data = i.target.data ?? {};
    let fingerprint: string;
    try {
      fingerprint = loadCertificateAuthority(
        data['tls.crt'] ? Buffer.from(data['tls.crt'], 'base64') : undefined,
        data['tls.key'] ? Buffer.from(data['tls.key'], 'base64') : undefined,
        now,
        `Secret ${caNamespace}/${name}`,
      ).facts.fingerprint;
    } catch (err) {
      if (!isPkiError(err)) throw err;
      throw new CliError(`${err.message}; ${label} was not changed, as it could not sign with it`);
    }
    const said = [
      `${label}: spec.ca.secretName set to ${name} (was ${issuer.spec.ca.secretName})`,
      rollback
        ? `the operator rolls the rotation back to ${short(r!.from)}, which every trust bundle still holds`
        : fingerprint === issuer.status?.fingerprint
          ? `Secret ${name} holds the CA that signs now (${fingerprint.slice(0, 16)}): the issuer uses it without a rotation`
          : `the operator rotates to ${name} (${fingerprint.slice(0, 16)}): Prepare (the new CA joins every trust bundle), Activate (it signs; leaves move to it), Retire (the old CA leaves the bundles)`,
    ];
    return {
      patch: { metadata: { resourceVersion }, spec: { ca: { secretName: name } } },
      said,
      warnings: [],
    };
  }

  // A rotation on request: only for a CA the operator generated.
  if (r)
    throw new CliError(
      `${inProgress}: a new rotation can start once it is done (${i.cli} ca status ${selectorOf(issuer)})`,
    );
  const secretName = issuer.spec.ca.secretName;
  const instead = (namespace: string) =>
    `put the new CA in a new Secret (${createSecretHint(namespace, '<new-secret>')}) and run: ${i.cli} ca rotate ${selectorOf(issuer)} --secret <new-secret>`;
  if (issuer.kind === 'Issuer')
    throw new CliError(
      `the operator rotates on request only a CA it generated for a ClusterIssuer, and ${label} holds a CA of your own (it would refuse with a RotationNotPossible Warning Event): ${instead(caNamespace)}`,
    );
  const current = i.current;
  const warnings: string[] = [];
  if (current && 'unreadable' in current) {
    warnings.push(
      `could not read Secret ${caNamespace}/${secretName} (${current.unreadable}) to tell whose CA it holds: if the operator generated it, the operator makes the next CA and rotates to it; if it is a CA of your own, the operator refuses with a RotationNotPossible Warning Event (kubectl describe clusterissuers.sigil.dev ${issuer.metadata.name}), and the way to rotate is --secret`,
    );
  } else if (current?.metadata?.annotations?.[Annotation.Bootstrap] !== 'true') {
    throw new CliError(
      `Secret ${caNamespace}/${secretName} of ${label} holds a CA of your own (it has no ${Annotation.Bootstrap}: "true" annotation): the operator rotates on request only a CA it generated, and would refuse with a RotationNotPossible Warning Event; ${instead(caNamespace)}`,
    );
  }
  return {
    patch: annotate(Annotation.RotateRequestedAt),
    said: [
      `${label}: rotation requested (${Annotation.RotateRequestedAt}=${now.toISOString()})${
        warnings.length > 0
          ? ''
          : `; the operator generates the next CA in a new Secret next to ${secretName}, points spec.ca.secretName at it and rotates: Prepare, Activate, Retire`
      }`,
    ],
    warnings,
  };
}

async function readSecret(
  kc: KubeConfig,
  namespace: string,
  name: string,
): Promise<V1Secret | { unreadable: string } | undefined> {
  try {
    return await kc.makeApiClient(CoreV1Api).readNamespacedSecret({ name, namespace });
  } catch (err) {
    if (isNotFound(err)) return undefined;
    return { unreadable: describeApiError(err) };
  }
}

export function caCommands(program: Command) {
  const ca = program.command('ca').description("An issuer's CA: its status and rotation");

  ca.command('status [issuer]')
    .description(
      'Show issuers: signing CA, expiry, rotation phase and what it waits for; exit 1 if any is not Ready',
    )
    .addOption(kindOption())
    .option('--kubeconfig <path>', 'kubeconfig file')
    .option('-n, --namespace <ns>', "namespace of Issuers (default: the context's)")
    .option('-A, --all-namespaces', 'Issuers of every namespace')
    .addHelpText(
      'after',
      '\nWithout a name, ClusterIssuers and the Issuers of the namespace are listed (--kind for one kind).\nWith a name, it is a ClusterIssuer unless --kind Issuer, and the rotation is shown in full.',
    )
    .action(async (name: string | undefined, opts) => {
      if (name && opts.allNamespaces)
        throw new CliError(
          `-A lists every namespace; to show ${name}, leave -A out (an Issuer's namespace goes in -n)`,
        );
      const kc = cliKubeConfig(opts.kubeconfig);
      const ns = namespaceOf(kc, opts);
      const kinds: IssuerKind[] = name
        ? [opts.kind ?? 'ClusterIssuer']
        : opts.kind
          ? [opts.kind]
          : ['ClusterIssuer', 'Issuer'];
      const issuers = (await Promise.all(kinds.map((k) => listIssuers(kc, k, ns, name)))).flat();
      if (name && issuers.length === 0) throw notFound(kinds[0]!, name, ns);
      const now = Date.now();
      const rows = [
        [
          'KIND',
          'NAMESPACE',
          'NAME',
          'READY',
          'SIGNING CA',
          'EXPIRES',
          'ROTATION',
          'WAITING FOR',
          'LEAVES OLD/NEW',
          'LAST ROTATION',
        ],
      ];
      const order = (i: Issuer) =>
        `${i.kind === 'ClusterIssuer' ? 0 : 1}/${i.metadata.namespace}/${i.metadata.name}`;
      let notReady = 0;
      for (const i of issuers.sort((a, b) => order(a).localeCompare(order(b)))) {
        const row = statusRow(i, now);
        if (row[3] !== 'True') notReady++;
        rows.push(row);
      }
      console.log(table(rows));
      if (name) console.log(`\n${statusDetail(issuers[0]!, now).join('\n')}`);
      process.exit(notReady > 0 ? Exit.NotReady : Exit.Ok);
    });

  ca.command('rotate <issuer>')
    .description(
      "Rotate an issuer's CA: to the CA in another Secret (--secret), to a new one the operator generates (no --secret; for a CA it generated), or end a rotation now (--retire-now)",
    )
    .addOption(kindOption().default('ClusterIssuer'))
    .option('--kubeconfig <path>', 'kubeconfig file')
    .option('-n, --namespace <ns>', "namespace of an Issuer (default: the context's)")
    .option(
      '--secret <name>',
      'the Secret holding the new CA (tls.crt, tls.key): spec.ca.secretName is pointed at it',
    )
    .option(
      '--ca-namespace <ns>',
      "where a ClusterIssuer's CA Secrets live: the operator's namespace ($SIGIL_NAMESPACE, else sigil-system); an Issuer's live in its own",
    )
    .option(
      '--retire-now',
      'end the rotation in progress at once: the old CA leaves every bundle without waiting, and peers still holding its leaves fail their handshakes',
    )
    .addHelpText(
      'after',
      `\nWithout --secret, asks the operator to generate the next CA (${Annotation.RotateRequestedAt}); it does so only\nfor a ClusterIssuer whose CA it generated (its Secret has ${Annotation.Bootstrap}: "true"). A CA of your own rotates\nwith --secret: first kubectl -n <ns> create secret tls <name> --cert=ca.crt --key=ca.key.\nTo roll a rotation back, --secret the Secret it started from (${program.name()} ca status <issuer> names it).`,
    )
    .action(async (name: string, opts) => {
      const kind: IssuerKind = opts.kind;
      if (opts.secret && opts.retireNow)
        throw new CliError('--secret starts a rotation and --retire-now ends one: give one of them');
      if (kind === 'Issuer' && opts.caNamespace)
        throw new CliError(
          "--ca-namespace is for ClusterIssuers: an Issuer's CA Secrets live in its own namespace (-n)",
        );
      const kc = cliKubeConfig(opts.kubeconfig);
      const ns = kind === 'Issuer' ? namespaceOf(kc, opts)! : undefined;
      const [issuer] = await listIssuers(kc, kind, ns, name);
      if (!issuer) throw notFound(kind, name, ns);
      const caNamespace = ns ?? opts.caNamespace ?? OPERATOR_NAMESPACE;
      const mode = opts.retireNow ? 'retire' : opts.secret ? 'secret' : 'request';

      // Gather, decide, act.
      let target: V1Secret | undefined;
      if (mode === 'secret') {
        const read = await readSecret(kc, caNamespace, opts.secret);
        if (read && 'unreadable' in read)
          throw new CliError(`cannot read Secret ${caNamespace}/${opts.secret}: ${read.unreadable}`);
        target = read;
      }
      const current =
        mode === 'request' && kind === 'ClusterIssuer'
          ? ((await readSecret(kc, caNamespace, issuer.spec.ca.secretName)) ?? {
              unreadable: `not found in ${caNamespace}; is --ca-namespace the operator's namespace?`,
            })
          : undefined;
      const plan = decideRotate({
        issuer,
        caNamespace,
        mode,
        secretName: opts.secret,
        target,
        current,
        now: new Date(),
        cli: program.name(),
      });
      if (plan.patch) {
        const custom = kc.makeApiClient(CustomObjectsApi);
        const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
        try {
          if (kind === 'Issuer')
            await custom.patchNamespacedCustomObject(
              {
                group: GROUP,
                version: VERSION,
                namespace: ns!,
                plural: Plural.Issuer,
                name,
                body: plan.patch,
              },
              merge,
            );
          else
            await custom.patchClusterCustomObject(
              { group: GROUP, version: VERSION, plural: Plural.ClusterIssuer, name, body: plan.patch },
              merge,
            );
        } catch (err) {
          if (!isConflict(err)) throw err;
          throw new CliError(`${labelOf(issuer)} changed while this ran; nothing was written: run it again`);
        }
      }
      for (const w of plan.warnings) console.error(w);
      for (const line of plan.said) console.log(line);
      console.log(`Follow it with: ${program.name()} ca status ${selectorOf(issuer)}`);
      process.exit(Exit.Ok);
    });
}
