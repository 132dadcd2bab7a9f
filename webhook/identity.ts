// What identity a pod gets, from its namespace, service account and
// annotations. Pure: no API calls.
import { createHash } from 'node:crypto';
import type { V1Pod } from '@kubernetes/client-node';
import { type CertificateSpec, InjectValue, Label } from '../lib/api/types.ts';
import { dnsNameProblem } from '../lib/pki/names.ts';
import { DEFAULT_DURATION_MS, formatDuration, parseDuration } from '../lib/pki/renewal.ts';
import { identityCertificateName, SERVICE_ACCOUNT_NAME } from '../lib/tenancy/identity.ts';
import { dnsNameOwner, workloadSpiffeId } from '../lib/tenancy/index.ts';

export const PodAnnotation = {
  DnsNames: 'sigil.dev/dns-names',
  Service: 'sigil.dev/service',
  Duration: 'sigil.dev/duration',
  Issuer: 'sigil.dev/issuer',
  MountPath: 'sigil.dev/mount-path',
  Containers: 'sigil.dev/containers',
  /** Written by the webhook. */
  Status: 'sigil.dev/status',
  CertificateName: 'sigil.dev/certificate',
  /** Written by the webhook when the kubelet delivers the identity (PodCertificate). */
  Delivery: 'sigil.dev/delivery',
} as const;

export const DEFAULT_MOUNT_PATH = '/var/run/secrets/sigil.dev';

/** Unknown annotations named in warnings at most; the rest are counted. */
const MAX_WARNINGS = 5;

/** Edit distance, for suggesting the annotation a typo meant. */
function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++)
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    previous = current;
  }
  return previous[b.length]!;
}

/**
 * Admission warnings (kubectl prints them) for what a pod says to Sigil that Sigil does not read:
 * a sigil.dev/ annotation it does not know (a typo such as sigil.dev/dns-name is otherwise silently
 * ignored), and a sigil.dev/inject label value that is neither on nor off.
 */
export function podWarnings(pod: V1Pod): string[] {
  const known: string[] = Object.values(PodAnnotation);
  const read = known.filter(
    (k) => k !== PodAnnotation.Status && k !== PodAnnotation.CertificateName && k !== PodAnnotation.Delivery,
  );
  const unknown = Object.keys(pod.metadata?.annotations ?? {})
    .filter((key) => key.startsWith('sigil.dev/') && !known.includes(key))
    .sort();
  // Bounded work and output whatever the pod holds: a few warnings, each key compared once with
  // the handful of known names (and only names close in length can be within the distance).
  const warnings = unknown.slice(0, MAX_WARNINGS).map((key) => {
    let closest: string | undefined;
    let best = Number.POSITIVE_INFINITY;
    for (const candidate of known) {
      if (key.length > 64 || Math.abs(candidate.length - key.length) > 3) continue;
      const d = distance(key, candidate);
      if (d < best) [closest, best] = [candidate, d];
    }
    return closest && best <= 3
      ? `annotation ${key} is not one Sigil reads and was ignored; did you mean ${closest}?`
      : `annotation ${key.slice(0, 80)} is not one Sigil reads and was ignored; Sigil reads ${read.join(', ')}`;
  });
  if (unknown.length > MAX_WARNINGS)
    warnings.push(`and ${unknown.length - MAX_WARNINGS} more sigil.dev/ annotations Sigil does not read`);
  const label = pod.metadata?.labels?.[Label.Inject];
  if (label !== undefined && !InjectValue.on.includes(label) && !InjectValue.off.includes(label))
    warnings.push(
      `label ${Label.Inject}=${label} is neither ${InjectValue.on.join(' nor ')} (inject) nor ${InjectValue.off.join(' nor ')} (don't); the namespace's opt-in applied`,
    );
  return warnings;
}

export interface Identity {
  namespace: string;
  serviceAccount: string;
  spiffeId: string;
  dnsNames: string[];
  duration: string | undefined;
  issuerRef: { name: string; kind: 'Issuer' | 'ClusterIssuer' } | undefined;
  /** Deterministic: every replica of a workload with the same identity shares it. */
  certificateName: string;
  mountPath: string;
  /** Containers to mount into; undefined means all. */
  containers: string[] | undefined;
}

export class IdentityError extends Error {}

function list(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
}

export interface IdentityOptions {
  trustDomain: string;
  clusterDomain: string;
  /** The operator's --min-duration: a shorter sigil.dev/duration could never be issued. */
  minDurationMs?: number | undefined;
  /** The ClusterIssuer a pod without the issuer annotation gets (the operator's default). */
  defaultIssuer?: string | undefined;
}

/**
 * The identity for a pod. Throws IdentityError with a sentence for
 * annotations that cannot be honoured. Names outside the namespace are
 * returned (in `foreignNames`) for the caller to check against the issuer's
 * policy with the tenancy rules (lib/tenancy), as the operator will.
 */
export function podIdentity(
  pod: V1Pod,
  namespace: string,
  o: IdentityOptions,
): { identity: Identity; foreignNames: string[] } {
  const annotations = pod.metadata?.annotations ?? {};
  if (typeof annotations !== 'object' || Array.isArray(annotations))
    throw new IdentityError('metadata.annotations must be a map of strings');
  for (const [key, value] of Object.entries(annotations)) {
    if (key.startsWith('sigil.dev/') && typeof value !== 'string')
      throw new IdentityError(`annotation ${key} must be a string`);
  }
  const sa = pod.spec?.serviceAccountName ?? pod.spec?.serviceAccount;
  if (
    sa !== undefined &&
    sa !== null &&
    (typeof sa !== 'string' || (sa !== '' && !SERVICE_ACCOUNT_NAME.test(sa)))
  ) {
    throw new IdentityError(
      'spec.serviceAccountName must be a lower-case DNS subdomain of at most 253 characters, as Kubernetes requires',
    );
  }
  const serviceAccount = pod.spec?.serviceAccountName || pod.spec?.serviceAccount || 'default';
  const names = new Set<string>();
  for (const service of list(annotations[PodAnnotation.Service])) {
    if (dnsNameProblem(service) || service.includes('.')) {
      throw new IdentityError(
        `annotation ${PodAnnotation.Service}: "${service}" is not a service name (one DNS label)`,
      );
    }
    // No bare service name: every namespace resolves it to a service of its own (see lib/tenancy).
    for (const n of [
      `${service}.${namespace}`,
      `${service}.${namespace}.svc`,
      `${service}.${namespace}.svc.${o.clusterDomain}`,
    ]) {
      names.add(n);
    }
  }
  for (const name of list(annotations[PodAnnotation.DnsNames])) {
    const problem = dnsNameProblem(name);
    if (problem) throw new IdentityError(`annotation ${PodAnnotation.DnsNames}: "${name}" ${problem}`);
    names.add(name);
  }
  const dnsNames = [...names].sort();
  if (dnsNames.length > 50)
    throw new IdentityError(`annotations claim ${dnsNames.length} DNS names; at most 50 are allowed`);
  const duration = annotations[PodAnnotation.Duration];
  if (duration !== undefined) {
    const ms = parseDuration(duration);
    if (ms === undefined)
      throw new IdentityError(
        `annotation ${PodAnnotation.Duration}: "${duration}" is not a Go duration such as 24h`,
      );
    if (o.minDurationMs !== undefined && ms < o.minDurationMs)
      throw new IdentityError(
        `annotation ${PodAnnotation.Duration}: "${duration}" is shorter than the shortest certificate the operator issues (${formatDuration(o.minDurationMs)}, its --min-duration), so the pod would wait for it forever; set ${formatDuration(o.minDurationMs)} or more${o.minDurationMs <= DEFAULT_DURATION_MS ? ', or remove the annotation for the default 24h' : ''}`,
      );
  }
  let issuerRef: Identity['issuerRef'];
  const issuer = annotations[PodAnnotation.Issuer];
  if (issuer) {
    const [a, b] = issuer.split('/');
    issuerRef =
      b === undefined
        ? { name: a!, kind: 'ClusterIssuer' }
        : { name: b, kind: a === 'Issuer' ? 'Issuer' : 'ClusterIssuer' };
    if (dnsNameProblem(issuerRef.name) || (b !== undefined && a !== 'Issuer' && a !== 'ClusterIssuer')) {
      throw new IdentityError(
        `annotation ${PodAnnotation.Issuer}: "${issuer}" must be <name>, Issuer/<name> or ClusterIssuer/<name>`,
      );
    }
  }
  const mountPath = annotations[PodAnnotation.MountPath] ?? DEFAULT_MOUNT_PATH;
  if (
    !mountPath.startsWith('/') ||
    mountPath.includes('..') ||
    mountPath.includes(':') ||
    mountPath.length > 256
  ) {
    throw new IdentityError(
      `annotation ${PodAnnotation.MountPath}: "${mountPath}" must be an absolute path without ".." or ":"`,
    );
  }
  const containers = annotations[PodAnnotation.Containers]
    ? list(annotations[PodAnnotation.Containers])
    : undefined;
  const spiffeId = workloadSpiffeId(o.trustDomain, namespace, serviceAccount);
  const digest = createHash('sha256')
    .update(JSON.stringify([serviceAccount, dnsNames, duration ?? '', issuerRef ?? '']))
    .digest('hex')
    .slice(0, 10);
  const certificateName = identityCertificateName(serviceAccount, digest);
  return {
    identity: {
      namespace,
      serviceAccount,
      spiffeId,
      dnsNames,
      duration,
      issuerRef,
      certificateName,
      mountPath,
      containers,
    },
    foreignNames: dnsNames.filter((n) => {
      const owner = dnsNameOwner(n, o.clusterDomain);
      return owner.kind !== 'namespace' || owner.namespace !== namespace;
    }),
  };
}

/**
 * A label value standing for `value`: itself when it is one (at most 63
 * characters, alphanumeric at both ends), else a readable prefix and a digest
 * of the whole, so two long values never share a label.
 */
export function labelValueFor(value: string): string {
  if (/^(?=.{1,63}$)[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(value)) return value;
  const digest = createHash('sha256').update(value).digest('hex').slice(0, 10);
  const prefix = value
    .slice(0, 52)
    .replace(/[^-A-Za-z0-9_.]/g, '-')
    .replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '');
  return prefix ? `${prefix}-${digest}` : digest;
}

/** The Certificate the webhook creates for an identity. */
export function identityCertificateSpec(identity: Identity): CertificateSpec {
  return {
    secretName: identity.certificateName,
    ...(identity.issuerRef ? { issuerRef: identity.issuerRef } : {}),
    uris: [identity.spiffeId],
    ...(identity.dnsNames.length > 0 ? { dnsNames: identity.dnsNames } : {}),
    ...(identity.duration ? { duration: identity.duration } : {}),
    usages: ['digital signature', 'key encipherment', 'server auth', 'client auth'],
  };
}
