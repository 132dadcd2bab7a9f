// The webhook process: HTTPS on node:https (see lib/http.ts). It serves with the certificate the
// operator keeps in a Secret and swaps it in without a restart when it rotates.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { V1Namespace, V1Secret } from '@kubernetes/client-node';
import type { Logger } from 'winston';
import { resolveSpec } from '../lib/api/request.ts';
import {
  API_VERSION,
  type Certificate,
  Delivery,
  InjectValue,
  type Issuer,
  Label,
  Plural,
  sigilPath,
} from '../lib/api/types.ts';
import { fs } from '../lib/builtins.ts';
import { pathOf, sendJson, serveProbes } from '../lib/http.ts';
import { type KubeAccess, kubeFor, paths } from '../lib/kube/client.ts';
import { describeApiError, isConflict, isNotFound } from '../lib/kube/errors.ts';
import { Informer } from '../lib/kube/informer.ts';
import { listPage } from '../lib/kube/rest.ts';
import { createSelfSignedCA } from '../lib/pki/ca.ts';
import { parseDuration } from '../lib/pki/renewal.ts';
import { type TenancyContext, TenancyReason, tenancyViolation } from '../lib/tenancy/index.ts';
import { readBody } from './body.ts';
import { type ClientAuthOptions, clientAuthProblem, readClientCa } from './clientauth.ts';
import { type AdmissionResponse, ReviewError, ReviewErrorCode, toAdmissionResponse } from './errors.ts';
import { type Identity, identityCertificateSpec, labelValueFor, PodAnnotation } from './identity.ts';
import { InFlight, type InFlightLimits, type Ticket } from './inflight.ts';
import { createWebhookMetrics, type WebhookMetrics } from './metrics.ts';
import { squatProblem } from './ownership.ts';
import { buildPatch, deliveryFor } from './patch.ts';
import { allowWithPatch, optInProblem, type Plan, parseReview, peekReview, planRequest } from './review.ts';

/** The longest pod certificate Kubernetes allows (spec.maxExpirationSeconds: 91 days). */
const MAX_POD_CERTIFICATE_SECONDS = 7_862_400;

export interface WebhookOptions {
  kc: KubeAccess;
  /** Namespace of the serving-certificate Secret (the operator's); never injected. */
  namespace: string;
  tlsSecretName: string;
  /** host:port to listen on; port 0 picks a free one. */
  address: string;
  trustDomain: string;
  clusterDomain: string;
  defaultIssuer: { kind: 'ClusterIssuer'; name: string };
  /** The operator's --min-duration: pods asking for less are refused, as it would never issue them. */
  minDurationMs?: number | undefined;
  /** The operator signs PodCertificateRequests: PodCertificate delivery may be chosen. */
  podCertificates?: boolean | undefined;
  logger: Logger;
  /** Largest AdmissionReview accepted (default 7 MiB, see MAX_BODY). */
  maxBodyBytes?: number;
  /** Require a client certificate from this CA on /mutate-v1-pod (the probes and /metrics stay open). */
  clientAuth?: ClientAuthOptions | undefined;
  /** Bounds on reviews held at once (defaults in DEFAULT_LIMITS). */
  limits?: Partial<InFlightLimits>;
  /** Time from a review's headers to its body's last byte (default BODY_DEADLINE_MS). */
  bodyDeadlineMs?: number;
}

export interface Webhook {
  server: Server;
  port: number;
  metrics: WebhookMetrics;
  inFlight: InFlight;
  /** True once the operator-issued serving certificate is in use. */
  servingOperatorCertificate: () => boolean;
  stop: () => Promise<void>;
}

/**
 * The API server accepts request bodies up to 3 MiB, so a pod can be that
 * large; its AdmissionReview adds the envelope and the user's info, and an
 * UPDATE would carry the old object too. 7 MiB covers twice the largest pod
 * with room for the envelope: every pod the API server accepts is read.
 */
const MAX_BODY = 7 * 1024 * 1024;
/**
 * Sized for the chart's 256 MiB limit: a review held in memory costs about
 * four times its JSON size (the chunks, the joined body, the parsed object,
 * the answer), so 16 MiB of reviews held at once, at most 8 of it in reviews
 * over 64 KiB, stays inside it (the tenant-flood row of make bench measures
 * the peak). Bytes count as they arrive, so only bodies actually sent hold
 * any of it, and only for BODY_DEADLINE_MS at most while they arrive.
 * A complete review takes one of 256 slots and one of its namespace's 8: the
 * namespace is read from the body's first bytes before anything is parsed,
 * so a namespace's flood beyond its 8 is refused at once for little work, and
 * the event loop's turns go to the reviews within their shares. Eight reviews
 * in flight per namespace is well above what one namespace's pod creations
 * keep at a webhook answering in milliseconds.
 */
export const DEFAULT_LIMITS: InFlightLimits = {
  maxReviews: 256,
  maxBytes: 16 * 1024 * 1024,
  maxReviewsPerNamespace: 8,
  maxBytesPerNamespace: 4 * 1024 * 1024,
  reservedForSmallBytes: 8 * 1024 * 1024,
};
/**
 * How long a complete review may wait for a slot of its namespace's share, and
 * how many of one namespace may wait: a Deployment scaled up sends its
 * replicas at once, and they should queue briefly rather than be refused. Well
 * inside the API server's webhook timeout (10 s in the chart).
 */
const NAMESPACE_WAIT_MS = 3_000;
const NAMESPACE_MAX_WAITERS = 64;
/**
 * Time from a review's headers to its body's last byte. The API server writes
 * the whole review at once (a few KiB, at most a few MiB over a local
 * network); a body still arriving after this is held open on purpose.
 */
const BODY_DEADLINE_MS = 2_000;
const HANDSHAKE_TIMEOUT_MS = 5_000;
const HEADERS_TIMEOUT_MS = 5_000;
const REQUEST_TIMEOUT_MS = 10_000;
const KEEP_ALIVE_TIMEOUT_MS = 5_000;
/** A connection with nothing in either direction for this long is closed. */
const IDLE_SOCKET_TIMEOUT_MS = 10_000;
/**
 * How long a verified identity Certificate is trusted before it is read again
 * (`fresh`), and how much longer a pod may still be admitted on that check
 * while it is read again in the background (`stale`): a namespace creating
 * pods steadily waits on no API call, and a Certificate replaced by someone
 * else is found within `fresh` of the next pod after `fresh` has passed.
 */
const KNOWN_TTL_MS = { fresh: 10_000, stale: 30_000 };
/**
 * How long a namespace's opt-in is remembered (opted in), or not (not opted
 * in), and how long an opt-in is still used while it is read again in the background.
 */
const NAMESPACE_TTL_MS = { optedIn: 30_000, optedInStale: 300_000, not: 1_000 };
const MAX_CACHED_NAMESPACES = 4096;

export async function startWebhook(o: WebhookOptions): Promise<Webhook> {
  const metrics = createWebhookMetrics();
  const kube = kubeFor(o.kc);
  const maxBody = o.maxBodyBytes ?? MAX_BODY;
  const bodyDeadlineMs = o.bodyDeadlineMs ?? BODY_DEADLINE_MS;
  const inFlight = new InFlight({ ...DEFAULT_LIMITS, ...o.limits });
  const excludedNamespaces = ['kube-system', o.namespace];
  /** Identity Certificates verified to be the webhook's own, with when. Only ever set after a check. */
  const known = new Map<string, number>();
  /** One check per identity at a time: replicas created together share it. */
  const ensuring = new Map<string, Promise<void>>();
  const namespaces = new Map<string, { labels: Record<string, string> | undefined; at: number }>();
  const namespaceReads = new Map<string, Promise<Record<string, string> | undefined>>();
  let servingReal = false;
  let clientCa = o.clientAuth ? readClientCa(o.clientAuth.caFile) : undefined;

  // Until the operator's certificate arrives, serve a throwaway one and report not ready.
  const temp = await createSelfSignedCA({
    commonName: 'sigil-webhook-bootstrap',
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
  });

  /**
   * What the webhook needs of an issuer (its trust domain and policy), read recently, so steady pod
   * creation costs no API call. Bounded: at most ISSUER_CACHE_MAX entries, oldest first out, and a
   * policy larger than ISSUER_CACHE_MAX_BYTES is read each time rather than held (a tenant may
   * create Issuers with large policies). Concurrent reads of one issuer share one request. A
   * missing issuer is never remembered.
   */
  type IssuerFacts = {
    trustDomain: string | undefined;
    policy: Issuer['spec']['policy'];
    delivery: Issuer['spec']['delivery'];
  };
  const issuerCache = new Map<string, { facts: IssuerFacts; at: number }>();
  const issuerReads = new Map<string, Promise<IssuerFacts>>();
  const ISSUER_TTL_MS = 10_000;
  const ISSUER_CACHE_MAX = 256;
  const ISSUER_CACHE_MAX_BYTES = 16 * 1024;
  const readIssuer = (ref: { kind: 'Issuer' | 'ClusterIssuer'; name: string }, namespace: string) => {
    const key = ref.kind === 'Issuer' ? `Issuer/${namespace}/${ref.name}` : `ClusterIssuer/${ref.name}`;
    const cached = issuerCache.get(key);
    if (cached && Date.now() - cached.at < ISSUER_TTL_MS) return Promise.resolve(cached.facts);
    if (cached) issuerCache.delete(key);
    const pending = issuerReads.get(key);
    if (pending) return pending;
    const read = (async () => {
      const issuer = await kube.get<Issuer>(
        ref.kind === 'Issuer'
          ? sigilPath(Plural.Issuer, namespace, ref.name)
          : sigilPath(Plural.ClusterIssuer, undefined, ref.name),
      );
      const facts: IssuerFacts = {
        trustDomain: issuer.spec.trustDomain,
        policy: issuer.spec.policy,
        delivery: issuer.spec.delivery,
      };
      if (JSON.stringify(facts.policy ?? {}).length <= ISSUER_CACHE_MAX_BYTES) {
        issuerCache.set(key, { facts, at: Date.now() });
        while (issuerCache.size > ISSUER_CACHE_MAX) issuerCache.delete(issuerCache.keys().next().value!);
      }
      return facts;
    })().finally(() => issuerReads.delete(key));
    issuerReads.set(key, read);
    return read;
  };

  /**
   * Why the identity's Certificate could never be issued, or undefined, by the rules the operator
   * issues by (lib/api/request.ts, lib/tenancy): its issuer does not exist, its duration is outside
   * the operator's minimum or the issuer's maximum, or the issuer's policy refuses its namespace,
   * SPIFFE ID (another trust domain), names or key. Such a pod would otherwise wait in
   * ContainerCreating for a Secret that never comes.
   */
  const issuerRefusal = async (identity: Identity): Promise<ReviewError | undefined> => {
    const ref = identity.issuerRef ?? o.defaultIssuer;
    const resolved = resolveSpec(identityCertificateSpec(identity), o.minDurationMs ?? 0);
    if ('problem' in resolved)
      return new ReviewError(
        ReviewErrorCode.InvalidAnnotation,
        `this pod's certificate could never be issued: ${resolved.problem.replace(/^duration /, `duration (${PodAnnotation.Duration}) `)}`,
      );
    let issuer: IssuerFacts;
    try {
      issuer = await readIssuer(ref, identity.namespace);
    } catch (err) {
      if (!isNotFound(err))
        return new ReviewError(
          ReviewErrorCode.CertificateUnavailable,
          `could not read ${ref.kind} ${ref.name}: ${describeApiError(err)}`,
        );
      const where = ref.kind === 'Issuer' ? ` in namespace ${identity.namespace}` : '';
      return identity.issuerRef
        ? new ReviewError(
            ReviewErrorCode.InvalidAnnotation,
            `annotation ${PodAnnotation.Issuer}: ${ref.kind} ${ref.name} does not exist${where}, so this pod's certificate could never be issued; name an existing one (kubectl get ${ref.kind === 'Issuer' ? 'issuers' : 'clusterissuers'}.sigil.dev) or remove the annotation for the default ClusterIssuer ${o.defaultIssuer.name}`,
          )
        : new ReviewError(
            ReviewErrorCode.CertificateUnavailable,
            `the default ClusterIssuer ${ref.name} does not exist, so this pod's certificate could never be issued; create it (the chart does, issuer.create) or name another with the ${PodAnnotation.Issuer} annotation`,
          );
    }
    const ctx: TenancyContext = {
      namespace: identity.namespace,
      trustDomain: issuer.trustDomain ?? o.trustDomain,
      clusterDomain: o.clusterDomain,
      policy: issuer.policy,
      issuer: `${ref.kind} ${ref.name}`,
    };
    const violation = tenancyViolation(ctx, resolved.request);
    if (!violation) return undefined;
    if (violation.reason === TenancyReason.DurationTooLong)
      return new ReviewError(
        ReviewErrorCode.InvalidAnnotation,
        `this pod's certificate could never be issued: ${violation.message}; set ${PodAnnotation.Duration} within it`,
      );
    return new ReviewError(ReviewErrorCode.NameNotAllowed, violation.message);
  };

  const squatted = (identity: Identity, existing: Certificate): ReviewError | undefined => {
    const problem = squatProblem(existing, identity);
    if (!problem) return undefined;
    metrics.certificateCreates.inc({ result: 'squatted' });
    const key = `${identity.namespace}/${identity.certificateName}`;
    return new ReviewError(
      ReviewErrorCode.IdentitySquatted,
      `Certificate ${key} already exists and is not the one Sigil creates for this pod's identity (${identity.spiffeId}): ${problem}. Sigil will not mount a Secret it does not control; delete that Certificate (kubectl delete certificates.sigil.dev -n ${identity.namespace} ${identity.certificateName}) and create the pod again`,
    );
  };

  const readCertificate = async (identity: Identity): Promise<Certificate | undefined> => {
    try {
      return await kube.get<Certificate>(
        sigilPath(Plural.Certificate, identity.namespace, identity.certificateName),
      );
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  };

  const createCertificate = (identity: Identity) =>
    kube.create<Certificate>(sigilPath(Plural.Certificate, identity.namespace), {
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
    });

  /**
   * Makes sure the identity's Certificate exists and is the webhook's own:
   * created now, or found with the webhook's label and spec. A Certificate
   * someone else put at the deterministic name denies the pod.
   */
  const ensureCertificate = async (identity: Identity): Promise<void> => {
    const key = `${identity.namespace}/${identity.certificateName}`;
    const seen = known.get(key);
    if (seen && Date.now() - seen < KNOWN_TTL_MS.fresh) return;
    try {
      let existing = await readCertificate(identity);
      if (!existing) {
        try {
          await createCertificate(identity);
          metrics.certificateCreates.inc({ result: 'created' });
        } catch (err) {
          if (!isConflict(err)) throw err;
          // Created by someone else between the read and the create: check what it is.
          existing = await readCertificate(identity);
          if (!existing) throw err;
        }
      }
      if (existing) {
        const refused = squatted(identity, existing);
        if (refused) {
          known.delete(key);
          throw refused;
        }
        metrics.certificateCreates.inc({ result: 'exists' });
      }
    } catch (err) {
      if (err instanceof ReviewError) throw err;
      metrics.certificateCreates.inc({ result: 'error' });
      throw new ReviewError(
        ReviewErrorCode.CertificateUnavailable,
        `could not create Certificate ${key} for this pod's identity (${describeApiError(err)}); the pod is not admitted without it, retry shortly`,
      );
    }
    if (known.size > 10_000) known.clear();
    known.set(key, Date.now());
  };

  const ensureShared = (identity: Identity): Promise<void> => {
    const key = `${identity.namespace}/${identity.certificateName}`;
    const running = ensuring.get(key);
    if (running) return running;
    const promise = ensureCertificate(identity).finally(() => ensuring.delete(key));
    ensuring.set(key, promise);
    return promise;
  };

  /** Waits for the check only when the last one is too old to admit a pod on; otherwise renews it in the background. */
  const ensureKnown = async (identity: Identity): Promise<void> => {
    const seen = known.get(`${identity.namespace}/${identity.certificateName}`);
    const age = seen === undefined ? Number.POSITIVE_INFINITY : Date.now() - seen;
    if (age < KNOWN_TTL_MS.fresh) return;
    if (age < KNOWN_TTL_MS.stale) {
      // A failure here is the next pod's to report: it waits for a check of its own.
      ensureShared(identity).catch(() => undefined);
      return;
    }
    await ensureShared(identity);
  };

  const readNamespaceLabels = (name: string): Promise<Record<string, string> | undefined> => {
    const running = namespaceReads.get(name);
    if (running) return running;
    const read = kube
      .get<V1Namespace>(paths.namespaces(name))
      .then(
        (ns: V1Namespace) => ns.metadata?.labels ?? {},
        (err: unknown) => {
          if (isNotFound(err)) return undefined;
          throw new ReviewError(
            ReviewErrorCode.NamespaceUnavailable,
            `could not read namespace ${name} to confirm it opted in to injection (${describeApiError(err)}); the webhook needs get on namespaces; retry shortly`,
          );
        },
      )
      .then((labels) => {
        namespaces.delete(name);
        if (namespaces.size >= MAX_CACHED_NAMESPACES) namespaces.delete(namespaces.keys().next().value!);
        namespaces.set(name, { labels, at: Date.now() });
        return labels;
      })
      .finally(() => namespaceReads.delete(name));
    namespaceReads.set(name, read);
    return read;
  };

  /** A namespace's labels; an opt-in a little old is used while it is read again in the background. */
  const namespaceLabels = async (name: string): Promise<Record<string, string> | undefined> => {
    const cached = namespaces.get(name);
    if (cached) {
      const age = Date.now() - cached.at;
      const label = cached.labels?.[Label.Inject];
      const optedIn = label !== undefined && InjectValue.on.includes(label);
      if (age < (optedIn ? NAMESPACE_TTL_MS.optedIn : NAMESPACE_TTL_MS.not)) return cached.labels;
      if (optedIn && age < NAMESPACE_TTL_MS.optedInStale) {
        readNamespaceLabels(name).catch((err) =>
          o.logger.warn('could not read a namespace again; using its opt-in read earlier', {
            namespace: name,
            err: (err as Error).message,
          }),
        );
        return cached.labels;
      }
    }
    return readNamespaceLabels(name);
  };

  /** Secret or PodCertificate for this pod: its namespace's label, else its issuer's spec.delivery. */
  const deliveryOf = async (identity: Identity): Promise<Delivery> => {
    const labels = await namespaceLabels(identity.namespace);
    const facts = await readIssuer(identity.issuerRef ?? o.defaultIssuer, identity.namespace);
    const delivery = deliveryFor(labels?.[Label.Delivery], facts.delivery);
    if (typeof delivery !== 'string')
      throw new ReviewError(ReviewErrorCode.InvalidAnnotation, delivery.problem);
    if (delivery === Delivery.PodCertificate && identity.duration) {
      const ms = parseDuration(identity.duration) ?? 0;
      if (ms < 3_600_000 || ms > MAX_POD_CERTIFICATE_SECONDS * 1000)
        throw new ReviewError(
          ReviewErrorCode.InvalidAnnotation,
          `annotation ${PodAnnotation.Duration}: "${identity.duration}" is outside what Kubernetes allows a pod certificate (1h to 2184h); set it within, or remove it for the default 24h`,
        );
    }
    return delivery;
  };

  const carryOut = async (plan: Plan): Promise<AdmissionResponse> => {
    if (plan.kind === 'respond') return plan.response;
    const { request, identity, warnings } = plan;
    let { patch } = plan;
    const refused = await issuerRefusal(identity);
    if (refused) throw Object.assign(refused, { uid: request.uid });
    let delivery: Delivery;
    try {
      delivery = await deliveryOf(identity);
    } catch (err) {
      throw Object.assign(err as Error, { uid: request.uid });
    }
    if (delivery === Delivery.PodCertificate) {
      // The kubelet asks the operator for the certificate: no Certificate, no Secret.
      patch = buildPatch(request.pod, identity, o.defaultIssuer.name, delivery);
    } else if (!request.dryRun) {
      try {
        await ensureKnown(identity);
      } catch (err) {
        throw Object.assign(err as Error, { uid: request.uid });
      }
    }
    return allowWithPatch(request.uid, patch, warnings);
  };

  /** Decides and carries out one review whose body has been read; throws errors carrying the uid. */
  /** The answer to a review beyond the webhook's or its namespace's share: at once, and saying so. */
  const overloadedError = (reason: string) => {
    metrics.refused.inc({ reason: 'namespace' });
    return new ReviewError(
      ReviewErrorCode.Overloaded,
      `${reason}; this pod was not admitted, create it again shortly (controllers retry on their own)`,
    );
  };

  /** Decides and carries out one review whose body has been read; throws errors carrying the uid. */
  const admit = async (
    body: unknown,
    ticket: Ticket,
  ): Promise<{ response: AdmissionResponse; plan?: Plan; skipped?: string }> => {
    const request = parseReview(body);
    const withUid = (err: unknown) => Object.assign(err as Error, { uid: request.uid });
    // The slot was taken for the namespace the body's first bytes named; a hand-made review may name
    // another one further in, and the slot moves to that one's share.
    const overloaded = inFlight.admit(ticket, request.namespace);
    if (overloaded) throw withUid(overloadedError(overloaded));
    const notOptedIn = await optInProblem(request, { excludedNamespaces }, namespaceLabels).catch((err) => {
      throw withUid(err);
    });
    if (notOptedIn) return { response: { uid: request.uid, allowed: true }, skipped: notOptedIn };
    const plan = planRequest(request, {
      trustDomain: o.trustDomain,
      clusterDomain: o.clusterDomain,
      minDurationMs: o.minDurationMs,
      defaultIssuer: o.defaultIssuer.name,
    });
    return { response: await carryOut(plan), plan };
  };

  /**
   * Answers a request whose body was not read (or not all of it) and closes
   * its connection: the rest of the body is never read, and a caller cut off
   * keeps nothing open.
   */
  const refuse = (req: IncomingMessage, res: ServerResponse, e: ReviewError) => {
    res.setHeader('connection', 'close');
    res.once('finish', () => req.socket.destroy());
    sendJson(res, e.httpStatus, { error: e.code, message: e.message });
  };
  /**
   * Closes the connection of a review refused as over its share, once answered.
   * A saturated Node event loop serves the connections it already has and
   * leaves new ones waiting in the accept queue (measured: a new TLS
   * connection waited for the whole 10 s of a flood on 200 kept-alive
   * connections). Closing the flood's connections as they are refused sends
   * its next reviews through that same queue, in turn with everyone else's.
   */
  const shedConnection = (res: ServerResponse) => res.setHeader('connection', 'close');
  /** Answers a review that was read, with an AdmissionReview when it has a uid, else with an HTTP error. */
  const answer = (res: ServerResponse, response: AdmissionResponse) =>
    sendJson(res, 200, { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response });
  const review = async (req: IncomingMessage, res: ServerResponse) => {
    if (o.clientAuth) {
      const problem = clientAuthProblem(req.socket as TLSSocket, o.clientAuth.names);
      if (problem) {
        metrics.refused.inc({
          reason: problem.code === ReviewErrorCode.Forbidden ? 'forbidden' : 'unauthenticated',
        });
        refuse(req, res, problem);
        return;
      }
    }
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxBody) {
      metrics.admissions.inc({ result: 'malformed' });
      refuse(
        req,
        res,
        new ReviewError(ReviewErrorCode.MalformedReview, `the body is larger than ${maxBody} bytes`, 413),
      );
      return;
    }
    const ticket = inFlight.start();
    metrics.inFlight.inc();
    res.once('close', () => {
      inFlight.release(ticket);
      metrics.inFlight.dec();
    });
    let body: unknown;
    try {
      const bytes = await readBody(req, {
        maxBytes: maxBody,
        deadlineMs: bodyDeadlineMs,
        receive: (n) => inFlight.receive(ticket, n),
      });
      // Before any parsing: a review beyond its namespace's share is refused for the price of a
      // look at its first bytes, so a flood's excess costs next to nothing and the work left is
      // the work of reviews within their shares.
      const peeked = peekReview(bytes);
      if (peeked.namespace) {
        const overloaded = await inFlight.admitOrWait(
          ticket,
          peeked.namespace,
          NAMESPACE_WAIT_MS,
          NAMESPACE_MAX_WAITERS,
        );
        if (overloaded) {
          const refused = overloadedError(overloaded);
          metrics.admissions.inc({ result: 'denied' });
          shedConnection(res);
          if (peeked.uid) answer(res, toAdmissionResponse(peeked.uid, refused));
          else sendJson(res, refused.httpStatus, { error: refused.code, message: refused.message });
          return;
        }
      }
      body = JSON.parse(bytes.toString('utf8'));
    } catch (err) {
      if (err instanceof ReviewError) {
        if (err.code === ReviewErrorCode.Overloaded) {
          metrics.refused.inc({ reason: 'busy' });
          res.setHeader('retry-after', '1');
        } else if (err.code === ReviewErrorCode.SlowRequest) metrics.refused.inc({ reason: 'slow' });
        else metrics.admissions.inc({ result: 'malformed' });
        refuse(req, res, err);
        return;
      }
      metrics.admissions.inc({ result: 'malformed' });
      if (err instanceof SyntaxError) {
        sendJson(res, 400, {
          error: ReviewErrorCode.MalformedReview,
          message: `the body is not valid JSON: ${err.message}`,
        });
        return;
      }
      // The connection failed while the body arrived: there is no one to answer.
      req.socket.destroy();
      return;
    }
    const end = metrics.duration.startTimer();
    const pod = (
      body as {
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
      const { response: decided, plan, skipped } = await admit(body, ticket);
      response = decided;
      const result = skipped ? 'skipped' : plan?.kind === 'inject' ? 'injected' : 'unchanged';
      metrics.admissions.inc({ result });
      if (skipped)
        o.logger.warn('review for a pod that did not opt in; allowed unchanged', {
          ...context,
          reason: skipped,
        });
      if (plan?.kind === 'inject')
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
        sendJson(res, e.httpStatus, { error: e.code, message: e.message });
        return;
      }
      response = toAdmissionResponse(uid, err);
      if (err instanceof ReviewError && err.code === ReviewErrorCode.Overloaded) shedConnection(res);
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
    answer(res, response);
  };
  const probes = {
    live: () => true,
    notReady: () => (servingReal ? undefined : 'waiting for the serving certificate Secret'),
    registry: metrics.registry,
  };
  const app = (req: IncomingMessage, res: ServerResponse) => {
    if (req.method === 'POST' && pathOf(req) === '/mutate-v1-pod') {
      review(req, res).catch((err: unknown) => {
        o.logger.error('review failed', err as Error);
        if (!res.headersSent) sendJson(res, 500, { error: ReviewErrorCode.Internal, message: String(err) });
        else res.destroy();
      });
      return;
    }
    if (serveProbes(req, res, probes)) return;
    sendJson(res, 404, {
      error: 'NotFound',
      message: 'the webhook serves POST /mutate-v1-pod, /healthz, /readyz and /metrics',
    });
  };

  // With a client CA, ask every client for a certificate but let the handshake finish without
  // one: the probes and /metrics need none, and /mutate-v1-pod refuses with a reason (401/403).
  const clientOptions = () => (clientCa ? { ca: clientCa } : {});
  const server = createServer(
    {
      cert: temp.certPem,
      key: temp.keyPem,
      minVersion: 'TLSv1.2',
      ...clientOptions(),
      ...(o.clientAuth ? { requestCert: true, rejectUnauthorized: false } : {}),
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      connectionsCheckingInterval: 500,
    },
    app,
  );
  // The API server opens a connection and sends a review at once. A connection that does not is cut
  // soon: the handshake, the headers and the whole request each have a deadline (the body's own, from
  // its headers, is bodyDeadlineMs), an idle kept-alive connection closes after a few seconds, and the
  // deadlines are checked every half second rather than Node's default 30.
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  server.timeout = IDLE_SOCKET_TIMEOUT_MS;

  const tlsSecrets = new Informer<V1Secret>(o.kc, {
    name: `webhook-tls ${o.namespace}/${o.tlsSecretName}`,
    path: paths.secrets(o.namespace),
    fieldSelector: `metadata.name=${o.tlsSecretName}`,
    list: (page) =>
      listPage<V1Secret>(
        o.kc,
        paths.secrets(o.namespace),
        { fieldSelector: `metadata.name=${o.tlsSecretName}` },
        page,
      ),
    logger: o.logger,
  });
  let loadedVersion = '';
  let serving: { cert: Buffer; key: Buffer } | undefined;
  const applyContext = () => {
    const pair = serving ?? { cert: Buffer.from(temp.certPem), key: Buffer.from(temp.keyPem) };
    server.setSecureContext({ ...pair, minVersion: 'TLSv1.2', ...clientOptions() });
  };
  const load = (secret: V1Secret) => {
    const cert = secret.data?.['tls.crt'];
    const key = secret.data?.['tls.key'];
    if (!cert || !key || secret.metadata?.resourceVersion === loadedVersion) return;
    try {
      const pair = { cert: Buffer.from(cert, 'base64'), key: Buffer.from(key, 'base64') };
      server.setSecureContext({ ...pair, minVersion: 'TLSv1.2', ...clientOptions() });
      serving = pair;
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

  // The client CA is mounted from a ConfigMap or Secret that may be rotated: pick up changes.
  const clientCaFile = o.clientAuth?.caFile;
  if (clientCaFile) {
    fs.watchFile(clientCaFile, { interval: 10_000, persistent: false }, () => {
      try {
        const next = readClientCa(clientCaFile);
        if (next === clientCa) return;
        clientCa = next;
        applyContext();
        o.logger.info('client CA reloaded', { file: clientCaFile });
      } catch (err) {
        o.logger.error('client CA file is unusable; keeping the previous one', err as Error);
      }
    });
  }

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
    inFlight,
    servingOperatorCertificate: () => servingReal,
    stop: async () => {
      tlsSecrets.stop();
      if (clientCaFile) fs.unwatchFile(clientCaFile);
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections();
      await closed;
    },
  };
}
