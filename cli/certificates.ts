// sigil status, sigil renew, sigil inspect.
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type V1Secret,
} from '@kubernetes/client-node';
import type { Command } from 'commander';
import { Annotation, findCondition, GROUP, Plural, VERSION } from '../lib/api/types.ts';
import { isNotFound } from '../lib/kube/errors.ts';
import { displaySerial, isSignedBy, parseCertificateChain, x509 } from '../lib/pki/certificate.ts';
import { readKeyPair } from '../lib/pki/inspect.ts';
import { CliError, describeCliError, Exit } from './errors.ts';
import { cliKubeConfig, lastKubeConfig, listCertificates, namespaceOf, relative, table } from './kube.ts';

export { Exit } from './errors.ts';

export function certificateCommands(program: Command) {
  program
    .command('status [certificate]')
    .description('Show Certificates: ready, secret, issuer, expiry, renewal; exit 1 if any is not Ready')
    .option('--kubeconfig <path>', 'kubeconfig file')
    .option('-n, --namespace <ns>', "namespace (default: the context's)")
    .option('-A, --all-namespaces', 'every namespace')
    .action(async (name: string | undefined, opts) => {
      const kc = cliKubeConfig(opts.kubeconfig);
      const ns = namespaceOf(kc, opts);
      let certs = await listCertificates(kc, ns);
      if (name) certs = certs.filter((c) => c.metadata.name === name);
      if (name && certs.length === 0) {
        console.error(`Certificate ${name} not found in namespace ${ns}`);
        process.exit(Exit.Error);
      }
      const rows = [['NAMESPACE', 'NAME', 'READY', 'SECRET', 'ISSUER', 'EXPIRES', 'RENEWS', 'REASON']];
      let notReady = 0;
      for (const c of certs.sort((a, b) =>
        `${a.metadata.namespace}/${a.metadata.name}`.localeCompare(
          `${b.metadata.namespace}/${b.metadata.name}`,
        ),
      )) {
        const ready = findCondition(c.status?.conditions, 'Ready');
        if (ready?.status !== 'True') notReady++;
        rows.push([
          c.metadata.namespace!,
          c.metadata.name!,
          ready?.status ?? 'Unknown',
          c.spec.secretName,
          c.status?.issuer ?? c.spec.issuerRef?.name ?? '(default)',
          relative(c.status?.notAfter),
          relative(c.status?.renewalTime),
          ready?.reason ?? '',
        ]);
      }
      console.log(table(rows));
      if (name && certs[0]) {
        const c = certs[0];
        console.log('');
        for (const cond of c.status?.conditions ?? [])
          console.log(`${cond.type}=${cond.status} (${cond.reason}): ${cond.message}`);
        console.log(
          `serial ${c.status?.serialNumber ?? '-'}, revision ${c.status?.revision ?? 0}, notAfter ${c.status?.notAfter ?? '-'}`,
        );
      }
      process.exit(notReady > 0 ? Exit.NotReady : Exit.Ok);
    });

  program
    .command('renew [certificate]')
    .description('Ask for re-issuance now (sets the sigil.dev/renew-requested-at annotation)')
    .option('--kubeconfig <path>', 'kubeconfig file')
    .option('-n, --namespace <ns>', "namespace (default: the context's)")
    .option('-A, --all-namespaces', 'every namespace (with --all)')
    .option('--all', 'every Certificate in the namespace (or, with -A, the cluster)')
    .action(async (name: string | undefined, opts) => {
      if (!name === !opts.all) throw new CliError('give a Certificate name or --all');
      if (name && opts.allNamespaces)
        throw new CliError(
          `-A goes with --all; to renew ${name}, name its namespace with -n (or leave it for the context's)`,
        );
      const kc = cliKubeConfig(opts.kubeconfig);
      const ns = namespaceOf(kc, opts);
      const custom = kc.makeApiClient(CustomObjectsApi);
      const targets = name
        ? [{ namespace: ns!, name }]
        : (await listCertificates(kc, ns)).map((c) => ({
            namespace: c.metadata.namespace!,
            name: c.metadata.name!,
          }));
      const at = new Date().toISOString();
      let failed = 0;
      for (const t of targets) {
        try {
          await custom.patchNamespacedCustomObject(
            {
              group: GROUP,
              version: VERSION,
              namespace: t.namespace,
              plural: Plural.Certificate,
              name: t.name,
              body: { metadata: { annotations: { [Annotation.RenewRequestedAt]: at } } },
            },
            setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
          );
          console.log(`renewal requested for ${t.namespace}/${t.name}`);
        } catch (err) {
          // No answer at all (unreachable, TLS): the run fails as a whole, in one line.
          if (!(err instanceof ApiException)) throw err;
          failed++;
          console.error(
            `${t.namespace}/${t.name}: ${isNotFound(err) ? 'Certificate not found' : describeCliError(err, lastKubeConfig())}`,
          );
        }
      }
      process.exit(failed > 0 ? Exit.Error : Exit.Ok);
    });

  program
    .command('inspect <secret>')
    .description(
      'Decode a certificate Secret: subject, SANs, SPIFFE ID, issuer, validity, fingerprint, key match',
    )
    .option('--kubeconfig <path>', 'kubeconfig file')
    .option('-n, --namespace <ns>', "namespace (default: the context's)")
    .action(async (secretName: string, opts) => {
      const kc = cliKubeConfig(opts.kubeconfig);
      const ns = namespaceOf(kc, opts)!;
      let secret: V1Secret;
      try {
        secret = await kc.makeApiClient(CoreV1Api).readNamespacedSecret({ name: secretName, namespace: ns });
      } catch (err) {
        if (!isNotFound(err)) throw err;
        console.error(`Secret ${ns}/${secretName} not found`);
        process.exit(Exit.Error);
      }
      const text = (k: string) => Buffer.from(secret.data?.[k] ?? '', 'base64').toString('utf8');
      const missing = ['tls.crt', 'tls.key'].filter((k) => !secret.data?.[k]);
      if (missing.length > 0) {
        const has = Object.keys(secret.data ?? {});
        console.error(
          `Secret ${ns}/${secretName} has no ${missing.join(' or ')} (its keys: ${has.length > 0 ? has.join(', ') : 'none'}); inspect reads a kubernetes.io/tls Secret, such as a Certificate's spec.secretName`,
        );
        process.exit(Exit.NotReady);
      }
      try {
        const pair = readKeyPair(text('tls.crt'), text('tls.key'), `Secret ${ns}/${secretName}`);
        const f = pair.leaf.facts;
        const node = x509(pair.leaf);
        const caChain = text('ca.crt') ? parseCertificateChain(text('ca.crt'), 'ca.crt') : [];
        const chain = [...pair.chain, ...caChain];
        const verified = pair.chain.every((c, i) => {
          const parent = chain[i + 1] ?? c;
          return isSignedBy(c, parent);
        });
        const lines: [string, string][] = [
          ['Subject', (node.subject ?? '').replaceAll('\n', ', ') || '(empty)'],
          ['Issuer', (node.issuer ?? '').replaceAll('\n', ', ')],
          ['SPIFFE ID', f.uris.find((u) => u.startsWith('spiffe://')) ?? '-'],
          ['DNS names', f.dnsNames.join(', ') || '-'],
          ['IP addresses', f.ipAddresses.join(', ') || '-'],
          ['URIs', f.uris.join(', ') || '-'],
          ['Emails', f.emailAddresses.join(', ') || '-'],
          [
            'Valid',
            `${f.notBefore.toISOString()} to ${f.notAfter.toISOString()} (expires in ${relative(f.notAfter.toISOString())})`,
          ],
          ['Serial', displaySerial(f.serialNumber)],
          ['Key', `${f.key.algorithm} ${f.key.size}`],
          ['Fingerprint', `SHA256 ${f.fingerprint}`],
          ['Key matches', pair.keyMatches ? 'yes' : 'NO: tls.key does not belong to tls.crt'],
          [
            'Chain',
            `${pair.chain.length} certificate(s); ${verified ? 'signatures verify up to ca.crt' : 'DOES NOT VERIFY against ca.crt'}`,
          ],
          ['Certificate', secret.metadata?.annotations?.[Annotation.CertificateName] ?? '-'],
        ];
        for (const [k, v] of lines) console.log(`${`${k}:`.padEnd(14)}${v}`);
        const expired = Date.now() >= f.notAfter.getTime();
        process.exit(pair.keyMatches && verified && !expired ? Exit.Ok : Exit.NotReady);
      } catch (err) {
        console.error((err as Error).message);
        process.exit(Exit.NotReady);
      }
    });
}
