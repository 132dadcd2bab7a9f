// Every way an admission can fail, with a stable code, the HTTP status used
// when there is no review to answer, and whether the pod is denied or the
// request refused. `toAdmissionResponse` is the one place errors become answers.
export const ReviewErrorCode = {
  /** The body is not an AdmissionReview Sigil can read. */
  MalformedReview: 'MalformedReview',
  /** The review is for something other than creating a Pod. */
  UnsupportedRequest: 'UnsupportedRequest',
  /** A sigil.dev annotation cannot be honoured. */
  InvalidAnnotation: 'InvalidAnnotation',
  /** The pod claims a name outside its namespace that the issuer does not allow. */
  NameNotAllowed: 'NameNotAllowed',
  /** The pod already uses Sigil's volume, mount path or variables. */
  Conflict: 'Conflict',
  /** The identity's Certificate could not be created; the pod would start without a certificate. */
  CertificateUnavailable: 'CertificateUnavailable',
  /** A Certificate the webhook did not create holds the identity's deterministic name. */
  IdentitySquatted: 'IdentitySquatted',
  /** The namespace's opt-in could not be read, so the webhook cannot tell whether to inject. */
  NamespaceUnavailable: 'NamespaceUnavailable',
  /** Injecting would make the pod larger than the API server stores. */
  PodTooLarge: 'PodTooLarge',
  /** Too many reviews in flight, in total or from the pod's namespace; retry shortly. */
  Overloaded: 'Overloaded',
  /** The body did not arrive soon after its headers; the connection is closed. */
  SlowRequest: 'SlowRequest',
  /** The caller did not present a client certificate from the client CA. */
  Unauthenticated: 'Unauthenticated',
  /** The caller's client certificate names no one allowed by --client-names. */
  Forbidden: 'Forbidden',
  /** Anything else. */
  Internal: 'Internal',
} as const;
export type ReviewErrorCode = (typeof ReviewErrorCode)[keyof typeof ReviewErrorCode];

const HTTP_STATUS: Record<ReviewErrorCode, number> = {
  MalformedReview: 400,
  UnsupportedRequest: 400,
  InvalidAnnotation: 400,
  NameNotAllowed: 403,
  Conflict: 409,
  CertificateUnavailable: 503,
  IdentitySquatted: 409,
  NamespaceUnavailable: 503,
  PodTooLarge: 400,
  Overloaded: 429,
  SlowRequest: 408,
  Unauthenticated: 401,
  Forbidden: 403,
  Internal: 500,
};

export class ReviewError extends Error {
  readonly code: ReviewErrorCode;
  private readonly status: number | undefined;
  /** `status` overrides the code's HTTP status (413 for a body too large to read, say). */
  constructor(code: ReviewErrorCode, message: string, status?: number) {
    super(message);
    this.code = code;
    this.status = status;
  }
  get httpStatus(): number {
    return this.status ?? HTTP_STATUS[this.code];
  }
}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patchType?: 'JSONPatch';
  patch?: string;
  status?: { code: number; reason?: string; message: string };
  warnings?: string[];
}

/** Turns any error into a denial the API server shows to the person who created the pod. */
export function toAdmissionResponse(uid: string, err: unknown): AdmissionResponse {
  const e =
    err instanceof ReviewError
      ? err
      : new ReviewError(
          ReviewErrorCode.Internal,
          `sigil webhook failed: ${(err as Error)?.message ?? String(err)}`,
        );
  return {
    uid,
    allowed: false,
    status: { code: e.httpStatus, reason: e.code, message: `sigil: ${e.message}` },
  };
}
