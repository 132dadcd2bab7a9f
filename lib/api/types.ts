// The sigil.dev/v1alpha1 API as TypeScript types, and the names every
// component agrees on (labels, annotations, condition types).
import type { V1ObjectMeta } from '@kubernetes/client-node';
import type { LabelSelector } from '../kube/selector.ts';

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
  /** Namespace label: Secret or PodCertificate, overriding the issuer's spec.delivery for its pods. */
  Delivery: 'sigil.dev/delivery',
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
  /** On a CA Secret the operator generated (the bootstrap CA and its successors): it may rotate it on its own. */
  Bootstrap: 'sigil.dev/bootstrap',
  /**
   * Set (to any new value) on an issuer whose CA the operator generated to ask for a rotation now
   * (`sigil ca rotate`). A user's CA rotates by pointing spec.ca.secretName at the new CA's Secret.
   */
  RotateRequestedAt: 'sigil.dev/rotate-requested-at',
  /**
   * Set (to any new value) on an issuer to end the rotation in progress at once: the old CA leaves
   * every bundle without waiting. Peers still holding a leaf of the old CA fail their handshakes until
   * they get a new one; it exists to recover from a compromised CA, and to prove the waits matter.
   */
  RetireNow: 'sigil.dev/retire-now',
} as const;

/**
 * The per-namespace ConfigMap that carries the trust bundles of the issuers used there, one key
 * per issuer (bundleKey). The operator writes it; injected pods read ca.crt from it.
 */
export const TRUST_BUNDLE_CONFIGMAP = 'sigil-trust-bundle';
/** The label on every trust-bundle ConfigMap: the operator watches only ConfigMaps with it. */
export const TRUST_BUNDLE_LABEL = 'sigil.dev/trust-bundle';

/**
 * The key of an issuer's bundle in the trust-bundle ConfigMap: `clusterissuer.<name>.crt` or
 * `issuer.<name>.crt`. A name too long for a ConfigMap key (253 characters) is shortened to its
 * first 200 characters and a hash, so distinct issuers never share a key.
 */
export function bundleKey(kind: IssuerKind, name: string): string {
  const key = `${kind.toLowerCase()}.${name}.crt`;
  if (key.length <= 253) return key;
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return `${kind.toLowerCase()}.${name.slice(0, 200)}-${h.toString(16).padStart(8, '0')}.crt`;
}

/** cert-manager's convention for CSR signers: one Kubernetes signer name per issuer (pod certificates). */
export const SignerDomain = {
  ClusterIssuer: 'clusterissuers.sigil.dev',
  Issuer: 'issuers.sigil.dev',
} as const;

/** The signer name of an issuer: clusterissuers.sigil.dev/<name> or issuers.sigil.dev/<namespace>.<name>. */
export function signerNameFor(kind: IssuerKind, namespace: string | undefined, name: string): string {
  return kind === 'ClusterIssuer'
    ? `${SignerDomain.ClusterIssuer}/${name}`
    : `${SignerDomain.Issuer}/${namespace}.${name}`;
}

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

/** How the issuer's CA rotates (see README "CA rotation"). */
export interface RotationSpec {
  /** Rotate a CA the operator generated on its own once prepareAtPercent of its life has passed (default true). */
  automatic?: boolean;
  /** The share of a generated CA's lifetime after which its successor is prepared (default 50). */
  prepareAtPercent?: number;
  /**
   * How long a bundle or leaf change takes to reach every running pod: the kubelet's sync period
   * plus its cache delay (default 2m, for the kubelet's default syncFrequency of 1m).
   */
  propagationDelay?: string;
  /** Leaves re-issued early from the new CA per second, at most (default 5). */
  reissuePerSecond?: number;
}

/** How the webhook delivers an injected identity (see README "Pod certificates"). */
export const Delivery = { Secret: 'Secret', PodCertificate: 'PodCertificate' } as const;
export type Delivery = (typeof Delivery)[keyof typeof Delivery];

export interface IssuerSpec {
  ca: { secretName: string };
  /** Secret (default) or PodCertificate: the kubelet generates the key and the operator signs its request. */
  delivery?: Delivery;
  policy?: IssuerPolicy;
  trustDomain?: string;
  rotation?: RotationSpec;
  /**
   * ClusterIssuers only: also publish the trust bundle in the namespaces this selects (an empty
   * selector selects all), for pods that trust the issuer without an identity of their own.
   */
  trustBundle?: { namespaceSelector?: LabelSelector };
}

/** A CA of a rotation: where it came from and its trust anchor. */
export interface CARef {
  secretName: string;
  fingerprint: string;
  notAfter: string;
  /** The CA certificate that signs (PEM). */
  certificate: string;
  /** What peers trust for it: the last certificate of its chain (PEM). */
  trustAnchor: string;
}

export const RotationPhase = {
  /** The new CA is in every bundle; the old one still signs. Waits for the bundle to reach every pod. */
  Prepare: 'Prepare',
  /** The new CA signs; leaves of the old one are re-issued at a bounded rate. Waits until none is left, and for them to reach every pod. */
  Activate: 'Activate',
  /** The old CA leaves the bundles. Waits until every bundle is written. */
  Retire: 'Retire',
} as const;
export type RotationPhaseName = (typeof RotationPhase)[keyof typeof RotationPhase];

export interface RotationStatus {
  phase: RotationPhaseName;
  /** When the phase began. */
  since: string;
  /** When the rotation began. */
  startedAt: string;
  /** What the phase waits for, in words. */
  waitingFor: string;
  from: CARef;
  to: CARef;
  /** When every bundle object (ConfigMaps, Secrets' ca.crt) held this phase's bundle. */
  bundleWrittenAt?: string;
  /** When the last leaf of the old CA was replaced (Activate). */
  leavesMovedAt?: string;
  leavesOnOld?: number;
  leavesOnNew?: number;
  /** What the current wait still waits on (bundle objects or leaves), and when that last went down. */
  remaining?: number;
  progressAt?: string;
  /** Why it started: SecretChanged, Automatic, Requested, Rollback. */
  trigger: string;
}

export interface IssuerStatus {
  conditions?: Condition[];
  /** Expiry of the CA that signs. */
  notAfter?: string;
  /** SHA-256 fingerprint of the CA that signs. */
  fingerprint?: string;
  /** The Secret of the CA that signs: spec.ca.secretName, or the old one while a rotation has not activated. */
  secretName?: string;
  /** SHA-256 fingerprints of the trust anchors in the issuer's bundle. */
  bundle?: string[];
  rotation?: RotationStatus;
  lastRotation?: { from: string; to: string; startedAt: string; completedAt: string; trigger: string };
  /** The rotate-requested-at and retire-now annotation values already acted on. */
  handled?: { rotateRequestedAt?: string; retireNow?: string };
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
 * Orders strings by UTF-16 code unit, as a canonical form wants: not localeCompare, whose order
 * depends on the locale and whose first call loads ICU's collation tables (2.6 MiB resident for
 * the life of the process).
 */
export function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
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
  return out.sort((a, b) => byCodeUnit(a.type, b.type));
}

export function objectKey(obj: { metadata?: V1ObjectMeta | undefined }): string {
  const ns = obj.metadata?.namespace;
  return ns ? `${ns}/${obj.metadata?.name}` : `${obj.metadata?.name}`;
}

export function splitKey(key: string): { namespace: string | undefined; name: string } {
  const i = key.indexOf('/');
  return i < 0 ? { namespace: undefined, name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}
