// Sigil as a Kubernetes signer for PodCertificateRequests (KEP-4317): signer
// names per issuer, and what to answer one request. Pure: no API calls.
//
// The kubelet generates the key and writes the request; the API server vouches
// for the pod's namespace, service account and node and has checked the proof
// of possession. Everything else in the request is the pod author's word and
// goes through the same tenancy rules as a Certificate (lib/tenancy).
import { type IssuerKind, type IssuerPolicy, SignerDomain, signerNameFor } from '../../lib/api/types.ts';
import { type RequestedKey, readPublicKey, requestPublicKey } from '../../lib/pki/csr.ts';
import { isPkiError } from '../../lib/pki/errors.ts';
import type { IssueRequest } from '../../lib/pki/issue.ts';
import { dnsNameProblem } from '../../lib/pki/names.ts';
import { formatDuration, parseDuration, renewalTime } from '../../lib/pki/renewal.ts';
import { type TenancyContext, tenancyViolation, workloadSpiffeId } from '../../lib/tenancy/index.ts';
import { isoString } from '../../lib/time.ts';

export { SignerDomain, signerNameFor } from '../../lib/api/types.ts';

export interface SignerRef {
  kind: IssuerKind;
  namespace: string | undefined;
  name: string;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/**
 * The issuer a signer name stands for; undefined when the name is not under
 * one of Sigil's signer domains (someone else's request). A namespace name is
 * one DNS label, so the first dot of issuers.sigil.dev/<namespace>.<name> ends it.
 */
export function parseSignerName(signerName: string): SignerRef | 'malformed' | undefined {
  const slash = signerName.indexOf('/');
  if (slash < 0) return undefined;
  const domain = signerName.slice(0, slash);
  const path = signerName.slice(slash + 1);
  if (domain === SignerDomain.ClusterIssuer) {
    return dnsNameProblem(path) ? 'malformed' : { kind: 'ClusterIssuer', namespace: undefined, name: path };
  }
  if (domain === SignerDomain.Issuer) {
    const dot = path.indexOf('.');
    const namespace = path.slice(0, dot);
    const name = path.slice(dot + 1);
    if (dot < 1 || !DNS_LABEL.test(namespace) || dnsNameProblem(name)) return 'malformed';
    return { kind: 'Issuer', namespace, name };
  }
  return undefined;
}

/** The ClusterTrustBundle publishing an issuer's trust bundle: the API requires the signer name as prefix. */
export function trustBundleObjectName(signerName: string): string {
  return `${signerName.replaceAll('/', ':')}:bundle`;
}

/** The unverifiedUserAnnotations Sigil reads; any other key is denied. Same meaning as the pod annotations. */
export const UserAnnotation = {
  /** Comma-separated DNS names, under the same tenancy rules as a Certificate's dnsNames. */
  DnsNames: 'sigil.dev/dns-names',
  /** Comma-separated Service names of the pod's namespace: each gives <svc>.<ns>, <svc>.<ns>.svc and <svc>.<ns>.svc.<cluster domain>. */
  Service: 'sigil.dev/service',
  /**
   * A Go duration: the kubelet starts refreshing this long before notAfter instead of at two
   * thirds of the lifetime (kept within the 10 minutes Kubernetes leaves at either end).
   */
  RenewBefore: 'sigil.dev/renew-before',
} as const;

/** Reasons Sigil denies or fails a request with: the first three are Kubernetes' own. */
export const DenyReason = {
  UnsupportedKeyType: 'UnsupportedKeyType',
  InvalidUnverifiedUserAnnotations: 'InvalidUnverifiedUserAnnotations',
  /** issuers.sigil.dev/<ns>.<name> asked for by a pod of another namespace, or a malformed Sigil signer name. */
  SignerNotAllowed: 'SignerNotAllowed',
  /** The issuer's CA expires before the shortest certificate Kubernetes accepts (1 h). Failed, not Denied. */
  CAExpiresTooSoon: 'CAExpiresTooSoon',
} as const;

/** Kubernetes' bounds: a pod certificate lives at least 1 h; refresh starts 10 min after notBefore at the earliest. */
export const MIN_LIFETIME_MS = 3_600_000;
export const REFRESH_MARGIN_MS = 10 * 60_000;
/** What the API server sets when the pod leaves maxExpirationSeconds out. */
export const DEFAULT_MAX_EXPIRATION_SECONDS = 86_400;

/** The fields of a PodCertificateRequest (v1 and v1beta1 alike) Sigil reads. */
export interface PodCertificateRequestSpec {
  signerName: string;
  podName: string;
  podUID: string;
  serviceAccountName: string;
  serviceAccountUID?: string;
  nodeName: string;
  nodeUID?: string;
  maxExpirationSeconds?: number;
  /** base64 DER (1.36+). */
  stubPKCS10Request?: string;
  /** base64 DER SubjectPublicKeyInfo (1.34–1.35; replaced by stubPKCS10Request). */
  pkixPublicKey?: string;
  unverifiedUserAnnotations?: Record<string, string>;
}

/** The issuer as the signer needs it. */
export interface SigningIssuer {
  ref: SignerRef;
  ready: boolean;
  /** Why not ready, for the Event. */
  message: string;
  trustDomain: string;
  policy: IssuerPolicy | undefined;
  /** The signing CA's notAfter; undefined when not ready. */
  caNotAfter: Date | undefined;
}

export type Decision =
  /** Not one of Sigil's signer names: someone else's request. */
  | { kind: 'ignore' }
  /** Cannot be answered yet (the issuer is missing or not ready): look again later. */
  | { kind: 'wait'; reason: string; message: string }
  | { kind: 'deny'; reason: string; message: string }
  | { kind: 'fail'; reason: string; message: string }
  | {
      kind: 'issue';
      issuer: SignerRef;
      request: IssueRequest;
      key: RequestedKey;
      /** When the kubelet should start refreshing, as a function of the issued window. */
      refreshAt: (notBefore: Date, notAfter: Date) => Date;
    };

export interface DecideContext {
  namespace: string;
  clusterDomain: string;
  /** The issuer named by the signer, when it exists. */
  issuer: (ref: SignerRef) => SigningIssuer | undefined;
  now: Date;
}

const KEY_TYPES = 'ECDSAP256, ECDSAP384, ED25519, RSA3072 or RSA4096';

function list(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
}

/** The DNS names the request's user annotations claim, or the reason they are refused. */
export function annotatedDnsNames(
  annotations: Record<string, string> | undefined,
  namespace: string,
  clusterDomain: string,
): { names: string[] } | { problem: string } {
  const known: string[] = Object.values(UserAnnotation);
  const entries = Object.entries(annotations ?? {});
  const unknown = entries.map(([k]) => k).filter((k) => !known.includes(k));
  if (unknown.length > 0) {
    return {
      problem: `unverifiedUserAnnotations ${unknown
        .slice(0, 5)
        .map((k) => `"${k.slice(0, 80)}"`)
        .join(
          ', ',
        )}${unknown.length > 5 ? ` and ${unknown.length - 5} more` : ''} ${unknown.length === 1 ? 'is' : 'are'} not read by Sigil; it reads only ${known.join(', ')}. Remove the others from the podCertificate volume's userAnnotations`,
    };
  }
  const names = new Set<string>();
  for (const [key, value] of entries) {
    if (typeof value !== 'string') return { problem: `unverifiedUserAnnotations "${key}" must be a string` };
    if (key === UserAnnotation.RenewBefore) {
      const ms = parseDuration(value);
      if (ms === undefined || ms <= 0)
        return { problem: `${key}: "${value.slice(0, 80)}" is not a positive Go duration such as 20m` };
    } else if (key === UserAnnotation.Service) {
      for (const service of list(value)) {
        if (dnsNameProblem(service) || service.includes('.'))
          return { problem: `${key}: "${service.slice(0, 80)}" is not a Service name (one DNS label)` };
        names.add(`${service}.${namespace}`);
        names.add(`${service}.${namespace}.svc`);
        names.add(`${service}.${namespace}.svc.${clusterDomain}`);
      }
    } else {
      for (const name of list(value)) {
        const problem = dnsNameProblem(name);
        if (problem) return { problem: `${key}: "${name.slice(0, 80)}" ${problem}` };
        names.add(name.toLowerCase());
      }
    }
  }
  if (names.size > 50)
    return { problem: `the user annotations claim ${names.size} DNS names; at most 50 are allowed` };
  return { names: [...names].sort() };
}

/** The public key of the request: stubPKCS10Request (1.36+) or pkixPublicKey (1.34–1.35). */
export function requestKey(spec: PodCertificateRequestSpec): RequestedKey {
  if (spec.stubPKCS10Request)
    return requestPublicKey(Buffer.from(spec.stubPKCS10Request, 'base64'), 'spec.stubPKCS10Request');
  return readPublicKey(Buffer.from(spec.pkixPublicKey ?? '', 'base64'), 'spec.pkixPublicKey');
}

/** Whether Sigil signs this key: the key types Sigil issues itself (the kubelet sends RSA as 3072 or 4096 only). */
function keyTypeProblem(key: RequestedKey): string | undefined {
  const { algorithm, size } = key.key;
  if (algorithm === 'Ed25519') return undefined;
  if (algorithm === 'ECDSA' && (size === 256 || size === 384)) return undefined;
  if (algorithm === 'RSA' && size >= 2048 && size <= 4096) return undefined;
  return `Sigil does not sign ${algorithm} ${size} keys; set the podCertificate volume's keyType to ${KEY_TYPES}`;
}

/**
 * What to answer a pending request. The order matters: a request for
 * someone else's signer is never touched, the signer's own tenancy comes
 * before anything the pod author wrote, and only an issuer that is not there
 * or not ready yet makes the request wait.
 */
export function decidePodCertificate(spec: PodCertificateRequestSpec, ctx: DecideContext): Decision {
  const ref = parseSignerName(spec.signerName);
  if (ref === undefined) return { kind: 'ignore' };
  if (ref === 'malformed') {
    return {
      kind: 'deny',
      reason: DenyReason.SignerNotAllowed,
      message: `signer name ${spec.signerName.slice(0, 300)} is not one Sigil serves: use ${SignerDomain.ClusterIssuer}/<ClusterIssuer name> or ${SignerDomain.Issuer}/<namespace>.<Issuer name>`,
    };
  }
  if (ref.kind === 'Issuer' && ref.namespace !== ctx.namespace) {
    return {
      kind: 'deny',
      reason: DenyReason.SignerNotAllowed,
      message: `a pod in namespace ${ctx.namespace} may not use Issuer ${ref.namespace}/${ref.name}: an Issuer signs only for its own namespace. Use ${signerNameFor('Issuer', ctx.namespace, '<name>')} or a ClusterIssuer`,
    };
  }
  const where = ref.kind === 'Issuer' ? `Issuer ${ref.namespace}/${ref.name}` : `ClusterIssuer ${ref.name}`;
  const annotated = annotatedDnsNames(spec.unverifiedUserAnnotations, ctx.namespace, ctx.clusterDomain);
  if ('problem' in annotated) {
    return { kind: 'deny', reason: DenyReason.InvalidUnverifiedUserAnnotations, message: annotated.problem };
  }
  let key: RequestedKey;
  try {
    key = requestKey(spec);
  } catch (err) {
    if (!isPkiError(err)) throw err;
    return {
      kind: 'deny',
      reason: DenyReason.UnsupportedKeyType,
      message: `${err.message}; set the podCertificate volume's keyType to ${KEY_TYPES}`,
    };
  }
  const keyProblem = keyTypeProblem(key);
  if (keyProblem) return { kind: 'deny', reason: DenyReason.UnsupportedKeyType, message: keyProblem };

  const issuer = ctx.issuer(ref);
  if (!issuer) {
    return {
      kind: 'wait',
      reason: 'IssuerNotFound',
      message: `${where} does not exist; create it or fix the podCertificate volume's signerName`,
    };
  }
  if (!issuer.ready || !issuer.caNotAfter) {
    return { kind: 'wait', reason: 'IssuerNotReady', message: `${where} is not ready: ${issuer.message}` };
  }
  const requestedMs = (spec.maxExpirationSeconds ?? DEFAULT_MAX_EXPIRATION_SECONDS) * 1000;
  const policyMax = issuer.policy?.maxDuration ? parseDuration(issuer.policy.maxDuration) : undefined;
  const durationMs = Math.min(requestedMs, policyMax ?? requestedMs);
  if (durationMs < MIN_LIFETIME_MS) {
    return {
      kind: 'deny',
      reason: 'MaxDurationTooShort',
      message: `${where}'s spec.policy.maxDuration ${issuer.policy?.maxDuration} is shorter than the 1h Kubernetes requires of a pod certificate; it cannot sign pod certificates until the maximum is 1h or more`,
    };
  }
  const caLeftMs = issuer.caNotAfter.getTime() - Math.floor(ctx.now.getTime() / 1000) * 1000;
  if (caLeftMs < MIN_LIFETIME_MS) {
    return {
      kind: 'fail',
      reason: DenyReason.CAExpiresTooSoon,
      message: `${where}'s CA expires at ${isoString(issuer.caNotAfter)}, sooner than the 1h Kubernetes requires of a pod certificate; rotate the CA (sigil ca rotate) and recreate the pod`,
    };
  }
  const request: IssueRequest = {
    uris: [workloadSpiffeId(issuer.trustDomain, ctx.namespace, spec.serviceAccountName)],
    ...(annotated.names.length > 0 ? { dnsNames: annotated.names } : {}),
    usages: ['digital signature', 'key encipherment', 'server auth', 'client auth'],
    durationMs,
    key: { algorithm: key.key.algorithm, size: key.key.size },
  };
  const tenancy: TenancyContext = {
    namespace: ctx.namespace,
    trustDomain: issuer.trustDomain,
    clusterDomain: ctx.clusterDomain,
    policy: issuer.policy,
    issuer: where,
  };
  const violation = tenancyViolation(tenancy, request);
  if (violation) {
    return {
      kind: 'deny',
      reason: violation.reason,
      message: `${where} refuses to sign: ${violation.message}`,
    };
  }
  const renewBefore = spec.unverifiedUserAnnotations?.[UserAnnotation.RenewBefore];
  const renewBeforeMs = renewBefore ? parseDuration(renewBefore) : undefined;
  return {
    kind: 'issue',
    issuer: ref,
    request,
    key,
    refreshAt: (notBefore, notAfter) => refreshTime(notBefore, notAfter, renewBeforeMs),
  };
}

/**
 * beginRefreshAt: Sigil's renewal point (two thirds of the lifetime, or renewBefore ahead of
 * notAfter when the pod's sigil.dev/renew-before annotation asks), kept
 * inside the window Kubernetes accepts ([notBefore + 10 min, notAfter - 10 min]).
 * The kubelet adds up to 5 minutes of jitter of its own.
 */
export function refreshTime(notBefore: Date, notAfter: Date, renewBeforeMs?: number): Date {
  const at = renewalTime(notBefore, notAfter, { renewBeforeMs }).getTime();
  const earliest = notBefore.getTime() + REFRESH_MARGIN_MS;
  const latest = notAfter.getTime() - REFRESH_MARGIN_MS;
  // Whole seconds, as the status fields are written.
  return new Date(Math.floor(Math.min(Math.max(at, earliest), latest) / 1000) * 1000);
}

/** A lifetime as the Events print it. */
export const lifetime = (notBefore: Date, notAfter: Date) =>
  formatDuration(notAfter.getTime() - notBefore.getTime());
