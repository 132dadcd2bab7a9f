// Keeps the webhook's serving TLS: an internal CA and a serving certificate in
// Secrets in the operator's namespace, and the CA bundle in the
// MutatingWebhookConfiguration. Rotation never breaks admission: a new CA is
// published in caBundle (next to the old one) before anything is signed with it.
import type { V1MutatingWebhookConfiguration, V1Secret } from '@kubernetes/client-node';
import type { Logger } from 'winston';
import { Label } from '../../lib/api/types.ts';
import { type Kube, type KubeAccess, kubeFor, paths } from '../../lib/kube/client.ts';
import { describeApiError, isConflict } from '../../lib/kube/errors.ts';
import { Informer } from '../../lib/kube/informer.ts';
import { listPage } from '../../lib/kube/rest.ts';
import { createSelfSignedCA, loadCertificateAuthority } from '../../lib/pki/ca.ts';
import {
  type ParsedCertificate,
  parseCertificateChain,
  publicKeyOf,
  x509,
} from '../../lib/pki/certificate.ts';
import { readKeyPair } from '../../lib/pki/inspect.ts';
import { issueCertificate } from '../../lib/pki/issue.ts';
import { renewalTime } from '../../lib/pki/renewal.ts';
import { isoString } from '../../lib/time.ts';

export interface WebhookTlsOptions {
  kc: KubeAccess;
  namespace: string;
  caSecretName: string;
  tlsSecretName: string;
  /** The webhook Service; the certificate names <svc>, <svc>.<ns>, <svc>.<ns>.svc. */
  serviceName: string;
  extraDnsNames: string[];
  ipAddresses: string[];
  webhookConfigurationName: string;
  caDurationMs: number;
  certDurationMs: number;
  logger: Logger;
  now: () => Date;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string | undefined) => (s ? Buffer.from(s, 'base64').toString('utf8') : '');

export class WebhookTlsController {
  private readonly o: WebhookTlsOptions;
  private readonly kube: Kube;
  private readonly secrets: Informer<V1Secret>;
  private readonly configs: Informer<V1MutatingWebhookConfiguration>;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private again = false;
  private stopped = false;
  private failures = 0;

  constructor(o: WebhookTlsOptions) {
    this.o = o;
    this.kube = kubeFor(o.kc);
    const selector = `${Label.Managed}=true`;
    // Both Secrets carry the managed label; this watch is limited to the operator's namespace.
    this.secrets = new Informer<V1Secret>(o.kc, {
      name: 'webhook-tls-secrets',
      path: paths.secrets(o.namespace),
      labelSelector: `${selector},sigil.dev/webhook-tls=true`,
      list: (page) =>
        listPage<V1Secret>(
          o.kc,
          paths.secrets(o.namespace),
          { labelSelector: `${selector},sigil.dev/webhook-tls=true` },
          page,
        ),
      logger: o.logger,
      // writeSecret replaces a Secret with its cached metadata: nothing of it may be left out.
      keepLastApplied: true,
    });
    this.configs = new Informer<V1MutatingWebhookConfiguration>(o.kc, {
      name: 'webhook-configuration',
      path: paths.mutatingWebhookConfigurations(),
      fieldSelector: `metadata.name=${o.webhookConfigurationName}`,
      list: (page) =>
        listPage<V1MutatingWebhookConfiguration>(
          o.kc,
          paths.mutatingWebhookConfigurations(),
          { fieldSelector: `metadata.name=${o.webhookConfigurationName}` },
          page,
        ),
      logger: o.logger,
    });
    const kick = () => this.trigger();
    this.secrets.on('add', kick).on('update', kick).on('delete', kick);
    this.configs.on('add', kick).on('update', kick).on('delete', kick);
  }

  async start(): Promise<void> {
    await Promise.all([this.secrets.start(), this.configs.start()]);
    this.trigger();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.secrets.stop();
    this.configs.stop();
  }

  private trigger(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.reconcile()
      .then((nextMs) => {
        this.failures = 0;
        this.schedule(nextMs);
      })
      .catch((err) => {
        this.failures++;
        const delay = Math.min(60_000, 1000 * 2 ** Math.min(this.failures, 6));
        this.o.logger.warn('webhook TLS reconcile failed; retrying', {
          controller: 'webhook-tls',
          error: describeApiError(err),
          retryInMs: delay,
        });
        this.schedule(delay);
      })
      .finally(() => {
        this.running = false;
        if (this.again) {
          this.again = false;
          this.trigger();
        }
      });
  }

  private schedule(ms: number) {
    clearTimeout(this.timer);
    if (this.stopped) return;
    this.timer = setTimeout(() => this.trigger(), Math.min(Math.max(ms, 1000), 2 ** 31 - 1));
    this.timer.unref();
  }

  private dnsNames(): string[] {
    const { serviceName: s, namespace: ns } = this.o;
    return [s, `${s}.${ns}`, `${s}.${ns}.svc`, `${s}.${ns}.svc.cluster.local`, ...this.o.extraDnsNames];
  }

  /** One pass; returns when to look again. */
  private async reconcile(): Promise<number> {
    const now = this.o.now();
    const log = this.o.logger.child({ controller: 'webhook-tls' });
    // 1. The internal CA: valid and not past 2/3 of its life, else a new one.
    let caSecret = this.secrets.get(`${this.o.namespace}/${this.o.caSecretName}`);
    let ca: ReturnType<typeof loadCertificateAuthority> | undefined;
    try {
      ca = caSecret
        ? loadCertificateAuthority(unb64(caSecret.data?.['tls.crt']), unb64(caSecret.data?.['tls.key']), now)
        : undefined;
    } catch (err) {
      log.warn('webhook CA Secret is unusable; creating a new CA', { error: (err as Error).message });
    }
    const caRenewAt = ca ? renewalTime(ca.facts.notBefore, ca.facts.notAfter) : undefined;
    let bundle = unb64(caSecret?.data?.['ca.crt']);
    if (!ca || (caRenewAt && now >= caRenewAt)) {
      const fresh = await createSelfSignedCA({
        commonName: 'sigil-webhook-ca',
        notBefore: new Date(now.getTime() - 60_000),
        notAfter: new Date(now.getTime() + this.o.caDurationMs),
      });
      // Keep the previous CA in the bundle while it is valid, so certificates it signed still verify.
      const previous = ca && now < ca.facts.notAfter ? ca.certificate.pem : '';
      bundle = `${fresh.certPem.trimEnd()}\n${previous}`;
      caSecret = await this.writeSecret(this.o.caSecretName, caSecret, {
        'tls.crt': b64(fresh.certPem),
        'tls.key': b64(fresh.keyPem),
        'ca.crt': b64(bundle),
      });
      ca = loadCertificateAuthority(fresh.certPem, fresh.keyPem, now);
      log.info('created webhook CA', {
        notAfter: isoString(ca.facts.notAfter),
        keptPrevious: previous !== '',
      });
    }
    // Drop expired CAs from the bundle.
    const live: ParsedCertificate[] = parseCertificateChain(bundle || ca.certificate.pem).filter(
      (c) => now < c.facts.notAfter,
    );
    if (!live.some((c) => c.facts.fingerprint === ca!.facts.fingerprint)) live.unshift(ca.certificate);
    bundle = `${live.map((c) => c.pem.trimEnd()).join('\n')}\n`;

    // 2. Publish the bundle before the serving certificate can depend on it.
    await this.publishBundle(bundle, log);

    // 3. The serving certificate: signed by the current CA, right names, not past 2/3.
    let tls = this.secrets.get(`${this.o.namespace}/${this.o.tlsSecretName}`);
    let servingRenewAt: Date | undefined;
    try {
      if (tls) {
        const pair = readKeyPair(unb64(tls.data?.['tls.crt']), unb64(tls.data?.['tls.key']));
        const f = pair.leaf.facts;
        const names = [...this.dnsNames()].sort().join(',');
        const signedByCurrent =
          pair.leaf.facts.authorityKeyId === ca.facts.subjectKeyId &&
          x509(pair.leaf).verify(publicKeyOf(ca.certificate));
        if (
          pair.keyMatches &&
          signedByCurrent &&
          f.dnsNames.join(',') === names &&
          f.ipAddresses.join(',') === [...this.o.ipAddresses].sort().join(',')
        ) {
          servingRenewAt = renewalTime(f.notBefore, f.notAfter);
        }
      }
    } catch {
      servingRenewAt = undefined;
    }
    if (!servingRenewAt || now >= servingRenewAt) {
      const issued = await issueCertificate(
        ca,
        {
          commonName: this.o.serviceName,
          dnsNames: this.dnsNames(),
          ipAddresses: this.o.ipAddresses.length > 0 ? this.o.ipAddresses : undefined,
          usages: ['digital signature', 'key encipherment', 'server auth'],
          durationMs: this.o.certDurationMs,
        },
        now,
      );
      tls = await this.writeSecret(this.o.tlsSecretName, tls, {
        'tls.crt': b64(issued.certificatePem),
        'tls.key': b64(issued.privateKeyPem),
        'ca.crt': b64(bundle),
      });
      servingRenewAt = renewalTime(issued.notBefore, issued.notAfter);
      log.info('issued webhook serving certificate', {
        serial: issued.serialNumber,
        notAfter: isoString(issued.notAfter),
      });
    }
    const next =
      Math.min(servingRenewAt.getTime(), caRenewAt && caRenewAt > now ? caRenewAt.getTime() : Infinity) -
      now.getTime();
    return next + 100;
  }

  private async publishBundle(bundle: string, log: Logger) {
    const config = this.configs.get(this.o.webhookConfigurationName);
    if (!config) return; // installed later (chart or make dev); its add event brings us back
    const want = b64(bundle);
    const stale = (config.webhooks ?? [])
      .map((w, i) => (w.clientConfig.caBundle === want ? -1 : i))
      .filter((i) => i >= 0);
    if (stale.length === 0) return;
    const patch = stale.map((i) => ({
      op: 'replace',
      path: `/webhooks/${i}/clientConfig/caBundle`,
      value: want,
    }));
    // The test guards against a concurrent change of the webhook list.
    patch.unshift({
      op: 'test',
      path: '/metadata/resourceVersion',
      value: config.metadata?.resourceVersion,
    } as never);
    await this.kube.request(
      'PATCH',
      paths.mutatingWebhookConfigurations(this.o.webhookConfigurationName),
      patch,
      {
        contentType: 'application/json-patch+json',
      },
    );
    log.info('published webhook CA bundle', { webhooks: stale.length });
  }

  /**
   * Creates or replaces one of the two Secrets. A replacement starts from the Secret as it is:
   * only the three TLS keys and Sigil's two labels change, so keys, labels, annotations, owners
   * and finalizers someone else added stay. The PUT carries the resourceVersion it was built
   * from, so a change made meanwhile is a conflict and the next pass starts from it.
   */
  private async writeSecret(
    name: string,
    existing: V1Secret | undefined,
    data: Record<string, string>,
  ): Promise<V1Secret> {
    const body = (current: V1Secret | undefined): V1Secret => {
      const { managedFields: _, ...meta } = current?.metadata ?? {};
      return {
        apiVersion: 'v1',
        kind: 'Secret',
        type: 'kubernetes.io/tls',
        metadata: {
          ...meta,
          name,
          namespace: this.o.namespace,
          labels: { ...meta.labels, [Label.Managed]: 'true', 'sigil.dev/webhook-tls': 'true' },
        },
        data: { ...current?.data, ...data },
      };
    };
    const path = paths.secrets(this.o.namespace, name);
    if (existing) return this.kube.replace<V1Secret>(path, body(existing));
    try {
      return await this.kube.create<V1Secret>(paths.secrets(this.o.namespace), body(undefined));
    } catch (err) {
      if (!isConflict(err)) throw err;
      const found = await this.kube.get<V1Secret>(path);
      if (found.type !== 'kubernetes.io/tls') {
        throw new Error(
          `Secret ${this.o.namespace}/${name} exists with type ${found.type}; Sigil keeps the webhook's TLS there: delete it or configure another name`,
        );
      }
      return this.kube.replace<V1Secret>(path, body(found));
    }
  }
}
