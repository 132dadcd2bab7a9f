// The pod admission handler. `planAdmission` is pure: from an AdmissionReview it
// decides the answer, or the patch plus what must exist first (the identity's
// Certificate, issuer approval for names outside the namespace). The server
// carries out the plan; errors become answers in one place (errors.ts).
import type { V1Pod } from '@kubernetes/client-node';
import { InjectValue, Label } from '../lib/api/types.ts';
import { type AdmissionResponse, ReviewError, ReviewErrorCode } from './errors.ts';
import {
  type Identity,
  IdentityError,
  type IdentityOptions,
  PodAnnotation,
  podIdentity,
  podWarnings,
} from './identity.ts';
import { alreadyInjected, buildPatch, DEFAULT_ISSUER, PatchConflict, type PatchOp } from './patch.ts';

export interface AdmissionRequest {
  uid: string;
  namespace: string;
  dryRun: boolean;
  pod: V1Pod;
}

export type Plan =
  | { kind: 'respond'; response: AdmissionResponse }
  | {
      kind: 'inject';
      request: AdmissionRequest;
      identity: Identity;
      patch: PatchOp[];
      /** For the person creating the pod: what it says that Sigil ignores. */
      warnings: string[];
    };

const UID = /^[A-Za-z0-9-]{1,128}$/;

/** Reads an AdmissionReview body; throws ReviewError(MalformedReview) with what is wrong. */
export function readReview(body: unknown): AdmissionRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ReviewError(ReviewErrorCode.MalformedReview, 'the body is not a JSON object');
  }
  const review = body as { apiVersion?: unknown; kind?: unknown; request?: Record<string, unknown> };
  if (review.kind !== 'AdmissionReview' || review.apiVersion !== 'admission.k8s.io/v1') {
    throw new ReviewError(
      ReviewErrorCode.MalformedReview,
      'expected kind AdmissionReview, apiVersion admission.k8s.io/v1',
    );
  }
  const req = review.request;
  if (typeof req !== 'object' || req === null)
    throw new ReviewError(ReviewErrorCode.MalformedReview, 'the review has no request');
  if (typeof req.uid !== 'string' || !UID.test(req.uid)) {
    throw new ReviewError(ReviewErrorCode.MalformedReview, 'request.uid is missing or not a UID');
  }
  const kind = req.kind as { group?: unknown; kind?: unknown } | undefined;
  if (kind?.kind !== 'Pod' || (kind.group ?? '') !== '') {
    throw new ReviewError(
      ReviewErrorCode.UnsupportedRequest,
      `this webhook admits Pods only, not ${String(kind?.kind)}`,
    );
  }
  if (req.operation !== 'CREATE') {
    throw new ReviewError(
      ReviewErrorCode.UnsupportedRequest,
      `this webhook handles CREATE only, not ${String(req.operation)}`,
    );
  }
  const pod = req.object as V1Pod | undefined;
  if (
    typeof pod !== 'object' ||
    pod === null ||
    typeof pod.spec !== 'object' ||
    pod.spec === null ||
    !Array.isArray(pod.spec.containers)
  ) {
    throw new ReviewError(
      ReviewErrorCode.MalformedReview,
      'request.object is not a Pod with spec.containers',
    );
  }
  const namespace = typeof req.namespace === 'string' ? req.namespace : pod.metadata?.namespace;
  if (typeof namespace !== 'string' || namespace.length === 0 || namespace.length > 63) {
    throw new ReviewError(ReviewErrorCode.MalformedReview, 'request.namespace is missing');
  }
  return { uid: req.uid, namespace, dryRun: req.dryRun === true, pod };
}

/**
 * Reads a review, attaching the request's uid to any error when it could be
 * read, so the server can answer with a denial rather than an HTTP error.
 */
export function parseReview(body: unknown): AdmissionRequest {
  try {
    return readReview(body);
  } catch (err) {
    const uid = (body as { request?: { uid?: unknown } } | null)?.request?.uid;
    // A body that is not an AdmissionReview gets an HTTP error; a review Sigil cannot handle gets a denial.
    const answerable =
      err instanceof ReviewError &&
      err.code !== ReviewErrorCode.MalformedReview &&
      typeof uid === 'string' &&
      UID.test(uid);
    throw answerable ? Object.assign(err, { uid }) : err;
  }
}

/** How far into a body `peekReview` looks. */
const PEEK_BYTES = 16 * 1024;
const PEEK_UID = /"uid"\s*:\s*"([A-Za-z0-9-]{1,128})"/;
const PEEK_NAMESPACE = /"namespace"\s*:\s*"([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)"/;

/**
 * The uid and namespace a review's body names first, read from its first
 * bytes without parsing it, so a review over its namespace's share can be
 * refused for next to nothing. The API server writes request.uid and
 * request.namespace before the object, so for its reviews these are the
 * request's own; for any other body they are only a hint, and the parsed
 * review decides.
 */
export function peekReview(body: Buffer): { uid?: string; namespace?: string } {
  const head = body.toString('latin1', 0, Math.min(body.length, PEEK_BYTES));
  const uid = PEEK_UID.exec(head)?.[1];
  const namespace = PEEK_NAMESPACE.exec(head)?.[1];
  return { ...(uid ? { uid } : {}), ...(namespace ? { namespace } : {}) };
}

/** Namespaces the webhook never injects into, whatever their labels say. */
export interface OptInOptions {
  excludedNamespaces: readonly string[];
}

/**
 * Whether a pod opted in, as the webhook configuration's selectors say it must
 * have (the handler checks again: a review may come from a misconfigured
 * webhook configuration or from a caller that is not the API server).
 * `namespaceLabels` is asked for only when the pod's own labels do not decide.
 * A reason when the pod is not to be injected.
 */
export async function optInProblem(
  request: AdmissionRequest,
  o: OptInOptions,
  namespaceLabels: (namespace: string) => Promise<Record<string, string> | undefined>,
): Promise<string | undefined> {
  const { namespace, pod } = request;
  if (o.excludedNamespaces.includes(namespace))
    return `namespace ${namespace} is never injected (kube-system and Sigil's own namespace are excluded)`;
  const podLabel = (pod.metadata?.labels as Record<string, unknown> | undefined)?.[Label.Inject];
  if (typeof podLabel === 'string' && InjectValue.on.includes(podLabel)) return undefined;
  if (typeof podLabel === 'string' && InjectValue.off.includes(podLabel))
    return `the pod is labelled ${Label.Inject}=${podLabel}`;
  const labels = await namespaceLabels(namespace);
  const nsLabel = labels?.[Label.Inject];
  if (nsLabel !== undefined && InjectValue.on.includes(nsLabel)) return undefined;
  return `neither namespace ${namespace} nor the pod opted in (${Label.Inject}=enabled or true)`;
}

/**
 * The largest patch the webhook answers with. Kubernetes sets no limit on
 * containers per pod, only on the object's size (etcd stores 1.5 MiB by
 * default); the patch adds a volume mount and four variables per selected
 * container, so a pod of very many tiny containers could grow past what the
 * API server can store. Beyond this the pod is denied with a way out.
 */
export const MAX_PATCH_BYTES = 1024 * 1024;

/**
 * Decides what to do with a review. Throws ReviewError, carrying the request's
 * uid when it could be read, so the server can answer with a denial.
 */
export function planAdmission(body: unknown, options: IdentityOptions): Plan {
  return planRequest(parseReview(body), options);
}

/** The answer, or the patch and what must exist first, for a review already read. */
export function planRequest(request: AdmissionRequest, options: IdentityOptions): Plan {
  const { uid, pod, namespace } = request;
  if (alreadyInjected(pod)) return { kind: 'respond', response: { uid, allowed: true } };
  let plan: Plan;
  try {
    // Names outside the namespace are judged with the rest of the identity by the tenancy module
    // when the issuer is read (server.ts issuerRefusal).
    const { identity } = podIdentity(pod, namespace, options);
    const patch = buildPatch(pod, identity, options.defaultIssuer ?? DEFAULT_ISSUER);
    plan = { kind: 'inject', request, identity, patch, warnings: podWarnings(pod) };
  } catch (err) {
    if (err instanceof IdentityError)
      throw Object.assign(new ReviewError(ReviewErrorCode.InvalidAnnotation, err.message), { uid });
    if (err instanceof PatchConflict)
      throw Object.assign(new ReviewError(ReviewErrorCode.Conflict, err.message), { uid });
    // Anything else means fields of the wrong shape deep in the pod; the API server never sends those.
    throw Object.assign(
      new ReviewError(
        ReviewErrorCode.MalformedReview,
        `the pod object is malformed (${(err as Error)?.message ?? String(err)})`,
      ),
      { uid },
    );
  }
  const size = Buffer.byteLength(JSON.stringify(plan.patch));
  if (size > MAX_PATCH_BYTES) {
    throw Object.assign(
      new ReviewError(
        ReviewErrorCode.PodTooLarge,
        `injecting into every container would add ${size} bytes to the pod, more than the ${MAX_PATCH_BYTES} the webhook allows (the API server stores objects up to 1.5 MiB); name the containers that need the identity in ${PodAnnotation.Containers}`,
      ),
      { uid },
    );
  }
  return plan;
}

export function allowWithPatch(uid: string, patch: PatchOp[], warnings: string[] = []): AdmissionResponse {
  return {
    uid,
    allowed: true,
    patchType: 'JSONPatch',
    patch: Buffer.from(JSON.stringify(patch)).toString('base64'),
    ...(warnings.length > 0 ? { warnings } : {}),
  };
}
