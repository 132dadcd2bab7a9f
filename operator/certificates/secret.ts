// Builds the Secret a Certificate's issuance writes. Pure: existing metadata
// that other tools added is kept; Sigil's labels and annotations are laid on top.
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

export function buildSecret(i: SecretInputs): V1Secret {
  const managed = managedMetadata(i.certificate, i.issuerKind, i.issuerName);
  const renewAsked = i.certificate.metadata.annotations?.[Annotation.RenewRequestedAt];
  const annotations: Record<string, string> = {
    ...(i.existing?.metadata?.annotations ?? {}),
    ...managed.annotations,
    [Annotation.SerialNumber]: i.issued.serialNumber,
  };
  if (renewAsked) annotations[Annotation.RenewHandled] = renewAsked;
  const owners = (i.existing?.metadata?.ownerReferences ?? []).filter(
    (o) => o.uid !== i.certificate.metadata.uid,
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
