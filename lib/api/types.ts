// The sigil.dev/v1alpha1 API as TypeScript types, and the names every
// component agrees on (labels, annotations, condition types).
import type { V1ObjectMeta } from '@kubernetes/client-node';

export const GROUP = 'sigil.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

export const Plural = {
  Certificate: 'certificates',
  Issuer: 'issuers',
  ClusterIssuer: 'clusterissuers',
} as const;

/**
 * The API path of Sigil's resources: a collection (all namespaces without
 * `namespace`), one object, or its subresource.
 */
export function sigilPath(
  plural: (typeof Plural)[keyof typeof Plural],
  namespace?: string,
  name?: string,
  subresource?: 'status',
): string {
  let p = `/apis/${GROUP}/${VERSION}`;
  if (namespace !== undefined) p += `/namespaces/${encodeURIComponent(namespace)}`;
  p += `/${plural}`;
  if (name !== undefined) p += `/${encodeURIComponent(name)}`;
  return subresource ? `${p}/${subresource}` : p;
}

/** Labels Sigil puts on what it writes. */
export const Label = {
  /** On every Secret Sigil writes; the operator watches only Secrets with it. */
  Managed: 'sigil.dev/managed',
  /** On identity Certificates the webhook creates. */
  Identity: 'sigil.dev/identity',
  /** Namespace or pod opt-in to injection (InjectValue). */
  Inject: 'sigil.dev/inject',
} as const;

/**
 * Values of the sigil.dev/inject label. Either "on" value opts in on a namespace and on a pod
 * alike (enabled was documented for namespaces, true for pods; the other did nothing); a pod
 * labelled with an "off" value is never injected.
 */
export const InjectValue = {
  on: ['enabled', 'true'] as readonly string[],
  off: ['false', 'disabled'] as readonly string[],
};

export const Annotation = {
  CertificateName: 'sigil.dev/certificate-name',
  IssuerName: 'sigil.dev/issuer-name',
  IssuerKind: 'sigil.dev/issuer-kind',
  SerialNumber: 'sigil.dev/serial-number',
  /** Set (to any new value, conventionally a timestamp) on a Certificate to ask for re-issuance now. */
  RenewRequestedAt: 'sigil.dev/renew-requested-at',
  /** Written to the Secret: the renew request it answered. */
  RenewHandled: 'sigil.dev/renew-handled',
  /**
   * Set on an existing Secret, by someone who may write it, to hand it to the Certificate it names:
   * Sigil never writes a Secret it did not create for that Certificate without it.
   */
  AllowTakeover: 'sigil.dev/allow-takeover',
} as const;

export const ConditionType = { Ready: 'Ready', Issuing: 'Issuing' } as const;
export type ConditionStatus = 'True' | 'False' | 'Unknown';

export interface Condition {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number | undefined;
}

export type IssuerKind = 'Issuer' | 'ClusterIssuer';

export interface IssuerRef {
  name: string;
  kind?: IssuerKind | undefined;
}

export interface CertificateSpec {
  secretName: string;
  issuerRef?: IssuerRef | undefined;
  commonName?: string | undefined;
  dnsNames?: string[] | undefined;
  ipAddresses?: string[] | undefined;
  uris?: string[] | undefined;
  emailAddresses?: string[] | undefined;
  subject?:
    | {
        organizations?: string[];
        organizationalUnits?: string[];
        countries?: string[];
        localities?: string[];
        provinces?: string[];
      }
    | undefined;
  duration?: string | undefined;
  renewBefore?: string | undefined;
  renewBeforePercentage?: number | undefined;
  usages?: string[] | undefined;
  privateKey?:
    | {
        algorithm?: 'ECDSA' | 'RSA' | 'Ed25519';
        size?: number;
        encoding?: 'PKCS1' | 'PKCS8';
        rotationPolicy?: 'Always' | 'Never';
      }
    | undefined;
  isCA?: boolean | undefined;
  secretTemplate?: { labels?: Record<string, string>; annotations?: Record<string, string> } | undefined;
}

export interface CertificateStatus {
  conditions?: Condition[];
  notBefore?: string;
  notAfter?: string;
  renewalTime?: string;
  revision?: number;
  serialNumber?: string;
  /** The issuer that signs it, Kind/name: spec.issuerRef, or the operator's default when that is empty. */
  issuer?: string;
  lastFailureTime?: string;
  failedIssuanceAttempts?: number;
}

export interface Certificate {
  apiVersion: string;
  kind: 'Certificate';
  metadata: V1ObjectMeta;
  spec: CertificateSpec;
  status?: CertificateStatus;
}

/**
 * What an issuer may sign beyond what tenancy gives every namespace (its own
 * in-cluster names and SPIFFE IDs, the default usages). Without a policy: no
 * other DNS names, no CAs, IP addresses, emails, other URIs or organizations.
 */
export interface IssuerPolicy {
  allowedNamespaces?: string[];
  allowedDNSNames?: string[];
  /** CIDR ranges IP SANs may come from; without it no IP SAN is signed. */
  allowedIPRanges?: string[];
  /** Non-SPIFFE URI SANs, exact or ending in "*" (a prefix); without it none are signed. */
  allowedURIs?: string[];
  /** Email SANs, exact or "*@domain"; without it none are signed. */
  allowedEmailAddresses?: string[];
  /** Usages beyond the defaults (code signing, email protection, timestamping, ocsp signing). */
  allowedUsages?: string[];
  /** Subject organizations and units this issuer signs, exact or ending in "*"; without it none. */
  allowedOrganizations?: string[];
  /** Namespaces whose Certificates may be subordinate CAs (isCA, cert sign, crl sign). */
  allowedCANamespaces?: string[];
  maxDuration?: string;
  allowedKeyAlgorithms?: ('ECDSA' | 'RSA' | 'Ed25519')[];
  /** RSA and ECDSA key sizes this issuer signs; empty allows all Sigil supports. */
  allowedKeySizes?: number[];
}

export interface IssuerSpec {
  ca: { secretName: string };
  policy?: IssuerPolicy;
  trustDomain?: string;
}

export interface IssuerStatus {
  conditions?: Condition[];
  notAfter?: string;
  fingerprint?: string;
}

export interface Issuer {
  apiVersion: string;
  kind: IssuerKind;
  metadata: V1ObjectMeta;
  spec: IssuerSpec;
  status?: IssuerStatus;
}

export function findCondition(
  conditions: readonly Condition[] | undefined,
  type: string,
): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

/**
 * Returns conditions with `next` set, keeping lastTransitionTime when the
 * status did not change (as Kubernetes' meta.SetStatusCondition does).
 */
export function setCondition(conditions: readonly Condition[] | undefined, next: Condition): Condition[] {
  const out = (conditions ?? []).filter((c) => c.type !== next.type);
  const prev = findCondition(conditions, next.type);
  out.push(
    prev && prev.status === next.status ? { ...next, lastTransitionTime: prev.lastTransitionTime } : next,
  );
  return out.sort((a, b) => a.type.localeCompare(b.type));
}

export function objectKey(obj: { metadata?: V1ObjectMeta | undefined }): string {
  const ns = obj.metadata?.namespace;
  return ns ? `${ns}/${obj.metadata?.name}` : `${obj.metadata?.name}`;
}

export function splitKey(key: string): { namespace: string | undefined; name: string } {
  const i = key.indexOf('/');
  return i < 0 ? { namespace: undefined, name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}
