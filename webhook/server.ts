// The webhook process: express over HTTPS. It serves with the certificate the
// operator keeps in a Secret and swaps it in without a restart when it rotates.
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { CoreV1Api, CustomObjectsApi, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from 'winston';
import { dnsPatternMatches } from '../lib/api/policy.ts';
import { API_VERSION, GROUP, type Issuer, Label, Plural, VERSION } from '../lib/api/types.ts';
import { describeApiError, isConflict, isNotFound } from '../lib/kube/errors.ts';
import { Informer } from '../lib/kube/informer.ts';
import { createSelfSignedCA } from '../lib/pki/ca.ts';
import { type AdmissionResponse, ReviewError, ReviewErrorCode, toAdmissionResponse } from './errors.ts';
import { type Identity, identityCertificateSpec, labelValueFor } from './identity.ts';
import { createWebhookMetrics, type WebhookMetrics } from './metrics.ts';
import { allowWithPatch, type Plan, planAdmission } from './review.ts';

export interface WebhookOptions {
  kc: KubeConfig;
  /** Namespace of the serving-certificate Secret (the operator's). */
  namespace: string;
  tlsSecretName: string;
  /** host:port to listen on; port 0 picks a free one. */
  address: string;
  trustDomain: string;
  clusterDomain: string;
  defaultIssuer: { kind: 'ClusterIssuer'; name: string };
  logger: Logger;
  /** Largest AdmissionReview accepted; the API server sends far less. */
  maxBodyBytes?: number;
}

export interface Webhook {
  server: Server;
  port: number;
  metrics: WebhookMetrics;
  /** True once the operator-issued serving certificate is in use. */
  servingOperatorCertificate: () => boolean;
  stop: () => Promise<void>;
}

const MAX_BODY = 1024 * 1024;
/** How long an identity's Certificate is remembered to exist before it is checked again. */
const KNOWN_TTL_MS = 60_000;

export async function startWebhook(o: WebhookOptions): Promise<Webhook> {
  const metrics = createWebhookMetrics();
  const core = o.kc.makeApiClient(CoreV1Api);
  const custom = o.kc.makeApiClient(CustomObjectsApi);
  const known = new Map<string, number>();
  let servingReal = false;

  // Until the operator's certificate arrives, serve a throwaway one and report not ready.
  const temp = await createSelfSignedCA({
    commonName: 'sigil-webhook-bootstrap',
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
  });

  const issuerPolicyAllows = async (identity: Identity, names: string[]): Promise<string | undefined> => {
    const ref = identity.issuerRef ?? o.defaultIssuer;
    let issuer: Issuer;
    try {
      issuer = (
        ref.kind === 'Issuer'
          ? await custom.getNamespacedCustomObject({
              group: GROUP,
              version: VERSION,
              namespace: identity.namespace,
              plural: Plural.Issuer,
              name: ref.name,
            })
          : await custom.getClusterCustomObject({
              group: GROUP,
              version: VERSION,
              plural: Plural.ClusterIssuer,
              name: ref.name,
            })
      ) as Issuer;
    } catch (err) {
      return isNotFound(err)
        ? `${ref.kind} ${ref.name} does not exist`
        : `could not read ${ref.kind} ${ref.name}: ${describeApiError(err)}`;
    }
    const allowed = issuer.spec.policy?.allowedDNSNames ?? [];
    for (const name of names) {
      if (!allowed.some((p) => dnsPatternMatches(p, name))) {
        return `DNS name ${name} is outside namespace ${identity.namespace} and ${ref.kind} ${ref.name} does not allow it (spec.policy.allowedDNSNames)`;
      }
    }
    return undefined;
  };

  const ensureCertificate = async (identity: Identity) => {
    const key = `${identity.namespace}/${identity.certificateName}`;
    const seen = known.get(key);
    if (seen && Date.now() - seen < KNOWN_TTL_MS) return;
    try {
      await custom.createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: identity.namespace,
        plural: Plural.Certificate,
        body: {
          apiVersion: API_VERSION,
          kind: 'Certificate',
          metadata: {
            name: identity.certificateName,
            namespace: identity.namespace,
            labels: {
              [Label.Identity]: 'true',
              'sigil.dev/service-account': labelValueFor(identity.serviceAccount),
            },
          },
          spec: identityCertificateSpec(identity),
        },
      });
      metrics.certificateCreates.inc({ result: 'created' });
    } catch (err) {
      if (!isConflict(err)) {
        metrics.certificateCreates.inc({ result: 'error' });
        throw new ReviewError(
          ReviewErrorCode.CertificateUnavailable,
          `could not create Certificate ${key} for this pod's identity (${describeApiError(err)}); the pod is not admitted without it, retry shortly`,
        );
      }
      metrics.certificateCreates.inc({ result: 'exists' });
    }
    known.set(key, Date.now());
  };

  const carryOut = async (plan: Plan): Promise<AdmissionResponse> => {
    if (plan.kind === 'respond') return plan.response;
    const { request, identity, foreignNames, patch } = plan;
    if (foreignNames.length > 0) {
      const refused = await issuerPolicyAllows(identity, foreignNames);
      if (refused)
        throw Object.assign(new ReviewError(ReviewErrorCode.NameNotAllowed, refused), { uid: request.uid });
    }
    if (!request.dryRun) {
      try {
        await ensureCertificate(identity);
      } catch (err) {
        throw Object.assign(err as Error, { uid: request.uid });
      }
    }
    return allowWithPatch(request.uid, patch);
  };

  const app = express();
  app.disable('x-powered-by');
  app.get('/healthz', (_req, res) => void res.type('text/plain').send('ok\n'));
  app.get('/readyz', (_req, res) => {
    res
      .status(servingReal ? 200 : 503)
      .type('text/plain')
      .send(servingReal ? 'ok\n' : 'waiting for the serving certificate Secret\n');
  });
  app.get(
    '/metrics',
    async (_req, res) => void res.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
  );
  app.post(
    '/mutate-v1-pod',
    express.json({ limit: o.maxBodyBytes ?? MAX_BODY, type: () => true, strict: true }),
    async (req: Request, res: Response) => {
      const end = metrics.duration.startTimer();
      const pod = (
        req.body as {
          request?: { object?: { metadata?: { generateName?: string; name?: string } }; namespace?: string };
        }
      )?.request;
      const context = {
        namespace: pod?.namespace,
        generateName: pod?.object?.metadata?.generateName,
        name: pod?.object?.metadata?.name,
      };
      let response: AdmissionResponse;
      try {
        const plan = planAdmission(req.body, { trustDomain: o.trustDomain, clusterDomain: o.clusterDomain });
        response = await carryOut(plan);
        const result = plan.kind === 'respond' ? 'unchanged' : 'injected';
        metrics.admissions.inc({ result });
        if (plan.kind === 'inject')
          o.logger.info('injected identity', {
            ...context,
            certificate: plan.identity.certificateName,
            spiffeId: plan.identity.spiffeId,
            dryRun: plan.request.dryRun,
          });
      } catch (err) {
        const uid = (err as { uid?: string }).uid;
        if (uid === undefined) {
          const e = err instanceof ReviewError ? err : new ReviewError(ReviewErrorCode.Internal, String(err));
          metrics.admissions.inc({ result: 'malformed' });
          end();
          res.status(e.httpStatus).json({ error: e.code, message: e.message });
          return;
        }
        response = toAdmissionResponse(uid, err);
        metrics.admissions.inc({
          result: err instanceof ReviewError && err.code !== ReviewErrorCode.Internal ? 'denied' : 'error',
        });
        o.logger.warn('denied pod', {
          ...context,
          reason: response.status?.reason,
          detail: response.status?.message,
        });
      }
      end();
      res.json({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response });
    },
  );
  app.use(
    (_req, res) =>
      void res.status(404).json({
        error: 'NotFound',
        message: 'the webhook serves POST /mutate-v1-pod, /healthz, /readyz and /metrics',
      }),
  );
  // Body parser failures (not JSON, too large) answer here, with the parser's status.
  app.use(
    (
      err: { status?: number; type?: string; message?: string },
      _req: Request,
      res: Response,
      _next: NextFunction,
    ) => {
      metrics.admissions.inc({ result: 'malformed' });
      const status = err.status && err.status >= 400 && err.status < 500 ? err.status : 500;
      const message =
        err.type === 'entity.too.large'
          ? `the body is larger than ${o.maxBodyBytes ?? MAX_BODY} bytes`
          : `the body is not valid JSON: ${err.message}`;
      res.status(status).json({ error: ReviewErrorCode.MalformedReview, message });
    },
  );

  const server = createServer({ cert: temp.certPem, key: temp.keyPem, minVersion: 'TLSv1.2' }, app);
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;

  const tlsSecrets = new Informer<V1Secret>(o.kc, {
    name: `webhook-tls ${o.namespace}/${o.tlsSecretName}`,
    path: `/api/v1/namespaces/${o.namespace}/secrets`,
    fieldSelector: `metadata.name=${o.tlsSecretName}`,
    list: () =>
      core.listNamespacedSecret({
        namespace: o.namespace,
        fieldSelector: `metadata.name=${o.tlsSecretName}`,
      }),
    logger: o.logger,
  });
  let loadedVersion = '';
  const load = (secret: V1Secret) => {
    const cert = secret.data?.['tls.crt'];
    const key = secret.data?.['tls.key'];
    if (!cert || !key || secret.metadata?.resourceVersion === loadedVersion) return;
    try {
      server.setSecureContext({
        cert: Buffer.from(cert, 'base64'),
        key: Buffer.from(key, 'base64'),
        minVersion: 'TLSv1.2',
      });
      loadedVersion = secret.metadata?.resourceVersion ?? '';
      servingReal = true;
      o.logger.info('serving certificate loaded', {
        secret: `${o.namespace}/${o.tlsSecretName}`,
        resourceVersion: loadedVersion,
      });
    } catch (err) {
      o.logger.error('serving certificate Secret is unusable; keeping the previous one', err as Error);
    }
  };
  tlsSecrets.on('add', load).on('update', load);
  void tlsSecrets.start();

  const [host, portText] = [
    o.address.slice(0, o.address.lastIndexOf(':')) || '0.0.0.0',
    o.address.slice(o.address.lastIndexOf(':') + 1),
  ];
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(portText), host, () => resolve());
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    metrics,
    servingOperatorCertificate: () => servingReal,
    stop: async () => {
      tlsSecrets.stop();
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections();
      await closed;
    },
  };
}
