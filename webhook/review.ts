// The pod admission handler. `planAdmission` is pure: from an AdmissionReview it
// decides the answer, or the patch plus what must exist first (the identity's
// Certificate, issuer approval for names outside the namespace). The server
// carries out the plan; errors become answers in one place (errors.ts).
import type { V1Pod } from '@kubernetes/client-node';
import { type AdmissionResponse, ReviewError, ReviewErrorCode } from './errors.ts';
import { type Identity, IdentityError, type IdentityOptions, podIdentity } from './identity.ts';
import { alreadyInjected, buildPatch, PatchConflict, type PatchOp } from './patch.ts';

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
      foreignNames: string[];
      patch: PatchOp[];
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
 * Decides what to do with a review. Throws ReviewError, carrying the request's
 * uid when it could be read, so the server can answer with a denial.
 */
export function planAdmission(body: unknown, options: IdentityOptions): Plan {
  let request: AdmissionRequest;
  try {
    request = readReview(body);
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
  const { uid, pod, namespace } = request;
  if (alreadyInjected(pod)) return { kind: 'respond', response: { uid, allowed: true } };
  try {
    const { identity, foreignNames } = podIdentity(pod, namespace, options);
    const patch = buildPatch(pod, identity);
    return { kind: 'inject', request, identity, foreignNames, patch };
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
}

export function allowWithPatch(uid: string, patch: PatchOp[]): AdmissionResponse {
  return {
    uid,
    allowed: true,
    patchType: 'JSONPatch',
    patch: Buffer.from(JSON.stringify(patch)).toString('base64'),
  };
}
