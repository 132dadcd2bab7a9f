// Builds the Secret a Certificate's issuance writes, and what the operator's
// cache keeps of Secrets. Pure: existing metadata that other tools added is
// kept; Sigil's labels and annotations are laid on top.
import type { V1OwnerReference, V1Secret } from '@kubernetes/client-node';
import { Annotation, type Certificate, Label } from '../../lib/api/types.ts';
import type { IssuedCertificate } from '../../lib/pki/issue.ts';

export interface SecretInputs {
  certificate: Certificate;
  issued: IssuedCertificate;
  issuerKind: string;
  issuerName: string;
  existing: V1Secret | undefined;
  ownerReference: boolean;
}

export function b64(text: string): string {
  return Buffer.from(text).toString('base64');
}

/** Sigil's own metadata on the Secret (labels, annotations), given the Certificate. */
export function managedMetadata(certificate: Certificate, issuerKind: string, issuerName: string) {
  return {
    labels: { ...(certificate.spec.secretTemplate?.labels ?? {}), [Label.Managed]: 'true' },
    annotations: {
      ...(certificate.spec.secretTemplate?.annotations ?? {}),
      [Annotation.CertificateName]: certificate.metadata.name!,
      [Annotation.IssuerName]: issuerName,
      [Annotation.IssuerKind]: issuerKind,
    },
  };
}

export function ownerReferenceFor(certificate: Certificate): V1OwnerReference {
  return {
    apiVersion: certificate.apiVersion,
    kind: 'Certificate',
    name: certificate.metadata.name!,
    uid: certificate.metadata.uid!,
    controller: true,
    blockOwnerDeletion: false,
  };
}

/** The data keys Sigil writes and reads; the only ones its cache keeps. */
export const TLS_KEYS = ['tls.crt', 'tls.key', 'ca.crt'] as const;
/** Base64 of the largest PEM bundle Sigil reads back (256 KiB); a larger value is dropped from the cache. */
const MAX_CACHED_VALUE_CHARS = Math.ceil((256 * 1024) / 3) * 4;

const partialViews = new WeakSet<V1Secret>();

/** True when the cache dropped some of this Secret's TLS data: read it from the API before relying on it. */
export function isPartialView(secret: V1Secret): boolean {
  return partialViews.has(secret);
}

/**
 * What the operator caches of a Secret carrying the managed label. The label
 * selector is the server-side filter, but anyone who may write Secrets can set
 * the label, so it proves nothing. A Secret whose certificate-name annotation
 * names a Certificate that uses it (`claimed`) keeps its metadata and the three
 * TLS keys (each at most what Sigil parses); any other keeps only its name,
 * type, resourceVersion and Sigil's own labels and annotations, no data.
 */
export function cachedSecretView(secret: V1Secret, claimed: (secret: V1Secret) => boolean): V1Secret {
  const meta = secret.metadata ?? {};
  const isClaimed =
    secret.type === 'kubernetes.io/tls' &&
    !!meta.annotations?.[Annotation.CertificateName] &&
    claimed(secret);
  const data: Record<string, string> = {};
  let dropped = false;
  if (isClaimed) {
    for (const k of TLS_KEYS) {
      const v = secret.data?.[k];
      if (v === undefined) continue;
      if (v.length <= MAX_CACHED_VALUE_CHARS) data[k] = v;
      else dropped = true;
    }
    const view: V1Secret = {
      apiVersion: secret.apiVersion,
      kind: secret.kind,
      type: secret.type,
      metadata: meta,
      data,
    };
    if (dropped) partialViews.add(view);
    return view;
  }
  const sigilOnly = (m: Record<string, string> | undefined) =>
    m ? Object.fromEntries(Object.entries(m).filter(([k]) => k.startsWith('sigil.dev/'))) : undefined;
  const view: V1Secret = {
    apiVersion: secret.apiVersion,
    kind: secret.kind,
    type: secret.type,
    metadata: {
      name: meta.name,
      namespace: meta.namespace,
      uid: meta.uid,
      resourceVersion: meta.resourceVersion,
      creationTimestamp: meta.creationTimestamp,
      labels: sigilOnly(meta.labels),
      annotations: sigilOnly(meta.annotations),
      ownerReferences: meta.ownerReferences,
    },
  };
  if (secret.data && Object.keys(secret.data).length > 0) partialViews.add(view);
  return view;
}

/**
 * A JSON merge patch that writes a new issuance into a Secret Sigil may write:
 * only Sigil's keys, labels and annotations change, with the Secret's
 * resourceVersion as a precondition (a change since it was read is a 409).
 */
export function secretPatch(i: SecretInputs & { existing: V1Secret }): V1Secret {
  const full = buildSecret(i);
  const before = i.existing.metadata?.ownerReferences ?? [];
  const after = full.metadata?.ownerReferences ?? [];
  const ownersChanged = JSON.stringify(before) !== JSON.stringify(after);
  const managed = managedMetadata(i.certificate, i.issuerKind, i.issuerName);
  const annotations: Record<string, string> = {
    ...managed.annotations,
    [Annotation.SerialNumber]: i.issued.serialNumber,
  };
  const renewAsked = i.certificate.metadata.annotations?.[Annotation.RenewRequestedAt];
  if (renewAsked) annotations[Annotation.RenewHandled] = renewAsked;
  return {
    metadata: {
      resourceVersion: i.existing.metadata?.resourceVersion,
      labels: managed.labels,
      annotations,
      ...(ownersChanged ? { ownerReferences: after } : {}),
    },
    data: {
      'tls.crt': b64(i.issued.certificatePem),
      'tls.key': b64(i.issued.privateKeyPem),
      'ca.crt': b64(i.issued.caPem),
    },
  };
}

export function buildSecret(i: SecretInputs): V1Secret {
  const managed = managedMetadata(i.certificate, i.issuerKind, i.issuerName);
  const renewAsked = i.certificate.metadata.annotations?.[Annotation.RenewRequestedAt];
  const annotations: Record<string, string> = {
    ...(i.existing?.metadata?.annotations ?? {}),
    ...managed.annotations,
    [Annotation.SerialNumber]: i.issued.serialNumber,
  };
  if (renewAsked) annotations[Annotation.RenewHandled] = renewAsked;
  // A Secret has one controller: a stale reference to an earlier Certificate of the same name gives way.
  const owners = (i.existing?.metadata?.ownerReferences ?? []).filter(
    (o) =>
      o.uid !== i.certificate.metadata.uid && !(i.ownerReference && o.controller && o.kind === 'Certificate'),
  );
  if (i.ownerReference) owners.push(ownerReferenceFor(i.certificate));
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'kubernetes.io/tls',
    metadata: {
      name: i.certificate.spec.secretName,
      namespace: i.certificate.metadata.namespace,
      resourceVersion: i.existing?.metadata?.resourceVersion,
      labels: { ...(i.existing?.metadata?.labels ?? {}), ...managed.labels },
      annotations,
      ownerReferences: owners.length > 0 ? owners : undefined,
    },
    data: {
      ...(i.existing?.data ?? {}),
      'tls.crt': b64(i.issued.certificatePem),
      'tls.key': b64(i.issued.privateKeyPem),
      'ca.crt': b64(i.issued.caPem),
    },
  };
}

/** True when the Secret lacks some of Sigil's labels or annotations (a metadata-only repair, no re-issue). */
export function metadataDrift(
  secret: V1Secret,
  certificate: Certificate,
  issuerKind: string,
  issuerName: string,
): boolean {
  const managed = managedMetadata(certificate, issuerKind, issuerName);
  const labels = secret.metadata?.labels ?? {};
  const annotations = secret.metadata?.annotations ?? {};
  return (
    Object.entries(managed.labels).some(([k, v]) => labels[k] !== v) ||
    Object.entries(managed.annotations).some(([k, v]) => annotations[k] !== v)
  );
}
