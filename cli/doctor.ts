// sigil doctor: checks an installation end to end and says how to fix what is wrong.
import { request } from 'node:https';
import {
  ApiException,
  CoordinationV1Api,
  CoreV1Api,
  type V1MutatingWebhookConfiguration,
  type V1Pod,
} from '@kubernetes/client-node';
import type { Command } from 'commander';
import { findCondition, Label } from '../lib/api/types.ts';

import { describeApiError, isNotFound } from '../lib/kube/errors.ts';
import { rawRequest } from '../lib/kube/rest.ts';
import { isSignedBy, parseCertificateChain } from '../lib/pki/certificate.ts';
import { Exit } from './errors.ts';
import { cliKubeConfig, listCertificates, listIssuers } from './kube.ts';

type Level = 'ok' | 'warn' | 'fail';
interface Finding {
  level: Level;
  check: string;
  message: string;
}

const DAY = 86_400_000;
const CRDS = ['certificates.sigil.dev', 'issuers.sigil.dev', 'clusterissuers.sigil.dev'];

/** POSTs a dry-run AdmissionReview to a URL-registered webhook, trusting only caBundle. */
function probeWebhook(url: string, caBundle: string): Promise<string | undefined> {
  const review = {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'sigil-doctor',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      operation: 'CREATE',
      namespace: 'sigil-doctor',
      dryRun: true,
      object: {
        metadata: { name: 'doctor', annotations: { 'sigil.dev/status': 'injected' } },
        spec: { containers: [{ name: 'c', image: 'x' }] },
      },
    },
  };
  return new Promise((resolve) => {
    const u = new URL(url);
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: 'POST',
        ca: caBundle,
        timeout: 5000,
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        let body = '';
        res.on('data', (d) => {
          body += d;
        });
        res.on('end', () => {
          try {
            const parsed = JSON.parse(body);
            // A webhook that requires the API server's client certificate refuses this probe (which has none)
            // with Unauthenticated after the TLS handshake against caBundle: it is up and serving.
            const authenticating = res.statusCode === 401 && parsed.error === 'Unauthenticated';
            resolve(
              parsed.response?.allowed === true || authenticating
                ? undefined
                : `answered ${res.statusCode} without allowing a harmless pod`,
            );
          } catch {
            resolve(`answered ${res.statusCode} with a body that is not an AdmissionReview`);
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer within 5s')));
    req.on('error', (err) => resolve(err.message));
    req.end(JSON.stringify(review));
  });
}

export function doctorCommand(program: Command) {
  program
    .command('doctor')
    .description(
      'Check CRDs, issuers, CA expiry, the webhook, certificates near expiry, subPath mounts and the leader',
    )
    .option('--kubeconfig <path>', 'kubeconfig file')
    .option('--namespace <ns>', "Sigil's namespace", process.env.SIGIL_NAMESPACE ?? 'sigil-system')
    .option('--webhook-configuration <name>', 'MutatingWebhookConfiguration name', 'sigil-webhook')
    .option('--webhook-tls-secret <name>', 'the webhook serving certificate Secret', 'sigil-webhook-tls')
    .option('--lease <name>', 'leader election Lease', 'sigil-operator')
    .option(
      '--only-namespace <ns>',
      'look at Issuers, Certificates and pods of this namespace only, and at the ClusterIssuers its Certificates use',
    )
    .option(
      '--default-issuer <name>',
      "the operator's default ClusterIssuer, which Certificates without issuerRef use",
      process.env.SIGIL_DEFAULT_ISSUER ?? 'sigil-ca',
    )
    .action(async (opts) => {
      const kc = cliKubeConfig(opts.kubeconfig);
      const findings: Finding[] = [];
      const add = (level: Level, check: string, message: string) => findings.push({ level, check, message });
      const now = Date.now();

      // CRDs
      for (const name of CRDS) {
        try {
          const crd = await rawRequest<{ status?: { conditions?: { type: string; status: string }[] } }>(
            kc,
            'GET',
            `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`,
          );
          const established = crd.status?.conditions?.some(
            (c) => c.type === 'Established' && c.status === 'True',
          );
          add(
            established ? 'ok' : 'fail',
            'CRDs',
            established ? `${name} installed` : `${name} is not established; check the API server logs`,
          );
        } catch (err) {
          // The API itself failing (unreachable, refused credentials, 429) is an error of the run: exit 2.
          if (!isNotFound(err)) throw err;
          add(
            'fail',
            'CRDs',
            `${name} is missing: install the CRDs (helm install, or kubectl apply -f crds/)`,
          );
        }
      }
      if (findings.some((f) => f.level === 'fail')) return report(findings);

      // Issuers and CA expiry
      // With one namespace: its Issuers and the ClusterIssuers its Certificates use, not every other team's.
      const used = opts.onlyNamespace
        ? new Set(
            (await listCertificates(kc, opts.onlyNamespace))
              .filter((c) => (c.spec.issuerRef?.kind ?? 'ClusterIssuer') === 'ClusterIssuer')
              .map((c) => c.spec.issuerRef?.name ?? opts.defaultIssuer),
          )
        : undefined;
      const issuers = (await listIssuers(kc)).filter((i) =>
        !used
          ? true
          : i.kind === 'ClusterIssuer'
            ? used.has(i.metadata.name!)
            : i.metadata.namespace === opts.onlyNamespace,
      );
      if (issuers.length === 0)
        add(
          'warn',
          'issuers',
          used
            ? `no Issuer exists in ${opts.onlyNamespace} and its Certificates use no ClusterIssuer that exists`
            : 'no Issuer or ClusterIssuer exists: Certificates cannot be issued',
        );
      for (const i of issuers) {
        const where = `${i.kind} ${i.metadata.namespace ? `${i.metadata.namespace}/` : ''}${i.metadata.name}`;
        const ready = findCondition(i.status?.conditions, 'Ready');
        if (ready?.status !== 'True') {
          add(
            'fail',
            'issuers',
            `${where} is not ready (${ready?.reason ?? 'no status yet: is the operator running?'}): ${ready?.message ?? ''}`.trim(),
          );
          continue;
        }
        const left = i.status?.notAfter ? new Date(i.status.notAfter).getTime() - now : Infinity;
        if (left < 30 * DAY)
          add(
            'warn',
            'CA expiry',
            `${where}: its CA expires ${i.status!.notAfter}; replace the CA Secret before then`,
          );
        else add('ok', 'issuers', `${where} ready, CA valid until ${i.status?.notAfter}`);
      }

      // Webhook configuration, caBundle and a live answer
      try {
        const config = await rawRequest<V1MutatingWebhookConfiguration>(
          kc,
          'GET',
          `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${opts.webhookConfiguration}`,
        );
        const hook = config.webhooks?.[0];
        const bundle = hook?.clientConfig.caBundle
          ? Buffer.from(hook.clientConfig.caBundle, 'base64').toString('utf8')
          : '';
        if (!bundle) {
          add(
            'fail',
            'webhook',
            `${opts.webhookConfiguration} has no caBundle: the operator fills it; is it running with webhook TLS enabled?`,
          );
        } else {
          try {
            const secret = await kc
              .makeApiClient(CoreV1Api)
              .readNamespacedSecret({ name: opts.webhookTlsSecret, namespace: opts.namespace });
            const serving = parseCertificateChain(
              Buffer.from(secret.data?.['tls.crt'] ?? '', 'base64'),
              'webhook tls.crt',
            )[0]!;
            const anchors = parseCertificateChain(bundle, 'caBundle');
            if (anchors.some((a) => isSignedBy(serving, a)))
              add('ok', 'webhook', 'caBundle verifies the serving certificate');
            else
              add(
                'fail',
                'webhook',
                `caBundle does not verify the serving certificate in ${opts.namespace}/${opts.webhookTlsSecret}; restart the operator so it republishes the bundle`,
              );
          } catch (err) {
            add(
              'fail',
              'webhook',
              `serving certificate Secret ${opts.namespace}/${opts.webhookTlsSecret}: ${(err as Error).message}`,
            );
          }
          if (hook?.clientConfig.url) {
            const problem = await probeWebhook(hook.clientConfig.url, bundle);
            if (problem)
              add(
                'fail',
                'webhook',
                `the webhook at ${hook.clientConfig.url} does not answer: ${problem}. Opted-in pods are refused until it does; start it or check its logs`,
              );
            else
              add(
                'ok',
                'webhook',
                `the webhook at ${hook.clientConfig.url} answers over TLS the caBundle trusts`,
              );
          } else if (hook?.clientConfig.service) {
            add(
              'ok',
              'webhook',
              `registered through Service ${hook.clientConfig.service.namespace}/${hook.clientConfig.service.name} (not probed from outside the cluster)`,
            );
          }
        }
      } catch (err) {
        // The API refusing or failing (401, 403, 429, 5xx) ends the run with exit 2, as elsewhere.
        if (err instanceof ApiException && !isNotFound(err)) throw err;
        add(
          'fail',
          'webhook',
          isNotFound(err)
            ? `MutatingWebhookConfiguration ${opts.webhookConfiguration} is missing: pods are not injected; reinstall the chart`
            : describeApiError(err),
        );
      }

      // Certificates near expiry or overdue for renewal
      const certs = await listCertificates(kc, opts.onlyNamespace);
      let healthy = 0;
      for (const c of certs) {
        const key = `${c.metadata.namespace}/${c.metadata.name}`;
        const ready = findCondition(c.status?.conditions, 'Ready');
        const notAfter = c.status?.notAfter ? new Date(c.status.notAfter).getTime() : undefined;
        const renewal = c.status?.renewalTime ? new Date(c.status.renewalTime).getTime() : undefined;
        if (ready?.status !== 'True')
          add(
            'warn',
            'certificates',
            `${key} is not ready (${ready?.reason ?? 'no status'}): ${ready?.message ?? ''}`.trim(),
          );
        else if (
          notAfter !== undefined &&
          notAfter - now < DAY &&
          renewal !== undefined &&
          now > renewal + 5 * 60_000
        ) {
          add(
            'fail',
            'certificates',
            `${key} expires ${c.status!.notAfter} and its renewal (${c.status!.renewalTime}) is overdue; check the operator logs`,
          );
        } else healthy++;
      }
      add(
        healthy === certs.length ? 'ok' : 'warn',
        'certificates',
        healthy === certs.length
          ? `${healthy} of ${certs.length} Certificates ready and on schedule`
          : `${healthy} of ${certs.length} Certificates ready and on schedule; the others are listed above`,
      );

      // Pods mounting Sigil Secrets through subPath (they never see renewals)
      const core = kc.makeApiClient(CoreV1Api);
      const managed = opts.onlyNamespace
        ? await core.listNamespacedSecret({
            namespace: opts.onlyNamespace,
            labelSelector: `${Label.Managed}=true`,
          })
        : await core.listSecretForAllNamespaces({ labelSelector: `${Label.Managed}=true` });
      const managedNames = new Set(managed.items.map((s) => `${s.metadata?.namespace}/${s.metadata?.name}`));
      const pods = opts.onlyNamespace
        ? await core.listNamespacedPod({ namespace: opts.onlyNamespace })
        : await core.listPodForAllNamespaces({});
      let subPathPods = 0;
      for (const p of pods.items as V1Pod[]) {
        const ns = p.metadata?.namespace;
        const sigilVolumes = new Set(
          (p.spec?.volumes ?? [])
            .filter((v) =>
              [v.secret?.secretName, ...(v.projected?.sources ?? []).map((s) => s.secret?.name)].some(
                (n) => n && managedNames.has(`${ns}/${n}`),
              ),
            )
            .map((v) => v.name),
        );
        for (const c of [...(p.spec?.initContainers ?? []), ...(p.spec?.containers ?? [])]) {
          for (const m of c.volumeMounts ?? []) {
            if (m.subPath && sigilVolumes.has(m.name)) {
              subPathPods++;
              add(
                'fail',
                'subPath',
                `pod ${ns}/${p.metadata?.name} container ${c.name} mounts ${m.name} with subPath ${m.subPath}: it will never see renewed certificates. Mount the volume as a directory instead`,
              );
            }
          }
        }
      }
      if (subPathPods === 0) add('ok', 'subPath', 'no pod mounts a Sigil Secret through subPath');

      // Leader
      try {
        const lease = await kc
          .makeApiClient(CoordinationV1Api)
          .readNamespacedLease({ name: opts.lease, namespace: opts.namespace });
        const renew = lease.spec?.renewTime
          ? new Date(lease.spec.renewTime as unknown as string).getTime()
          : 0;
        const duration = (lease.spec?.leaseDurationSeconds ?? 15) * 1000;
        if (lease.spec?.holderIdentity && now - renew < duration * 2)
          add('ok', 'leader', `operator leader ${lease.spec.holderIdentity}`);
        else
          add(
            'fail',
            'leader',
            `no operator holds Lease ${opts.namespace}/${opts.lease} (last renewed ${lease.spec?.renewTime ?? 'never'}): start the operator`,
          );
      } catch (err) {
        if (err instanceof ApiException && !isNotFound(err)) throw err;
        add(
          isNotFound(err) ? 'warn' : 'fail',
          'leader',
          isNotFound(err)
            ? `no Lease ${opts.namespace}/${opts.lease}: the operator runs without leader election, or is not running`
            : describeApiError(err),
        );
      }
      report(findings);
    });
}

function report(findings: Finding[]): never {
  const mark = { ok: '✓', warn: '!', fail: '✗' };
  for (const f of findings) console.log(`${mark[f.level]} ${f.check.padEnd(13)} ${f.message}`);
  console.log(`\nsigil doctor: ${doctorSummary(findings)}`);
  const failed = findings.filter((f) => f.level === 'fail').length;
  process.exit(failed === 0 ? Exit.Ok : Exit.NotReady);
}

/** The last line: problems (✗) and warnings (!) counted as the lines above show them. */
export function doctorSummary(findings: readonly { level: Level }[]): string {
  const count = (level: Level) => findings.filter((f) => f.level === level).length;
  const problems = count('fail');
  const warnings = count('warn');
  if (problems === 0 && warnings === 0) return 'no problems found';
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  return [
    ...(problems > 0 ? [plural(problems, 'problem')] : []),
    ...(warnings > 0 ? [plural(warnings, 'warning')] : []),
  ].join(', ');
}
