// Which Certificate may write which Secret. Pure: the controller gathers the
// Secret and the Certificates naming the same secretName, this decides.
//
// A Secret belongs to a Certificate when it carries Sigil's managed label AND
// the sigil.dev/certificate-name annotation naming that Certificate (and, when
// it has a controller ownerReference to a Certificate, that reference names it
// too). The label alone proves nothing: anyone who may write a Secret can set
// it. A Certificate-only user cannot set either on a Secret, so nothing they put
// in a Certificate makes Sigil write a Secret they could not write themselves.
import type { V1Secret } from '@kubernetes/client-node';
import { Annotation, type Certificate, Label } from '../../lib/api/types.ts';

/** Reasons on the Ready condition when Sigil will not write the Secret. */
export const SecretReason = {
  /** Another live Certificate in the namespace names the same spec.secretName and owns the Secret. */
  DuplicateSecretName: 'DuplicateSecretName',
  /** A Secret Sigil did not create for this Certificate already has the name, and does not opt in. */
  SecretNotOwned: 'SecretNotOwned',
  /** A Secret of another type already has the name (a Secret's type cannot change). */
  SecretConflict: 'SecretConflict',
} as const;

export type SecretClaim =
  | { ok: true; owned: boolean }
  | { ok: false; reason: (typeof SecretReason)[keyof typeof SecretReason]; message: string };

/** True when the Secret is the one Sigil wrote for this Certificate. */
export function ownedBy(secret: V1Secret, certificate: Certificate): boolean {
  const name = certificate.metadata.name;
  if (secret.metadata?.labels?.[Label.Managed] !== 'true') return false;
  if (secret.metadata?.annotations?.[Annotation.CertificateName] !== name) return false;
  const controller = (secret.metadata?.ownerReferences ?? []).find(
    (o) => o.controller && o.kind === 'Certificate',
  );
  return !controller || controller.name === name;
}

/** True when someone who may write the Secret handed it to this Certificate. */
export function optedIn(secret: V1Secret, certificate: Certificate): boolean {
  return secret.metadata?.annotations?.[Annotation.AllowTakeover] === certificate.metadata.name;
}

/** Oldest first, then by name: the order that decides which of several Certificates gets a Secret name first. */
export function claimOrder(a: Certificate, b: Certificate): number {
  const at = Date.parse(String(a.metadata.creationTimestamp ?? '')) || 0;
  const bt = Date.parse(String(b.metadata.creationTimestamp ?? '')) || 0;
  if (at !== bt) return at - bt;
  const an = a.metadata.name ?? '';
  const bn = b.metadata.name ?? '';
  return an < bn ? -1 : an > bn ? 1 : 0;
}

function duplicate(certificate: Certificate, other: string): SecretClaim {
  const secretName = certificate.spec.secretName;
  return {
    ok: false,
    reason: SecretReason.DuplicateSecretName,
    message: `Certificate ${other} already uses Secret ${secretName}; nothing was written. Two Certificates cannot share a Secret: set another spec.secretName on this Certificate (or delete it)`,
  };
}

function notOwned(certificate: Certificate, secret: V1Secret): SecretClaim {
  const name = certificate.metadata.name!;
  const secretName = certificate.spec.secretName;
  const former = secret.metadata?.annotations?.[Annotation.CertificateName];
  const origin = former
    ? `was written for Certificate ${former}, which no longer uses it`
    : 'was not created by Sigil for this Certificate';
  return {
    ok: false,
    reason: SecretReason.SecretNotOwned,
    message: `Secret ${secretName} already exists and ${origin}; nothing was written. To let Sigil manage it, someone who may edit the Secret runs: kubectl annotate secret ${secretName} -n ${certificate.metadata.namespace} ${Annotation.AllowTakeover}=${name}; or set another spec.secretName`,
  };
}

/**
 * May `certificate` write `secret` (undefined: none exists)? `peers` are the
 * other live Certificates of the namespace naming the same spec.secretName.
 */
export function secretClaim(
  certificate: Certificate,
  secret: V1Secret | undefined,
  peers: readonly Certificate[],
): SecretClaim {
  const secretName = certificate.spec.secretName;
  if (!secret) {
    // Nobody owns the name yet: the oldest Certificate naming it gets it, deterministically on every replica.
    const first = [certificate, ...peers].sort(claimOrder)[0]!;
    return first === certificate ? { ok: true, owned: false } : duplicate(certificate, first.metadata.name!);
  }
  if (secret.type !== undefined && secret.type !== 'kubernetes.io/tls') {
    return {
      ok: false,
      reason: SecretReason.SecretConflict,
      message: `Secret ${secretName} already exists with type ${secret.type}; delete it or choose another spec.secretName`,
    };
  }
  if (ownedBy(secret, certificate)) return { ok: true, owned: true };
  if (optedIn(secret, certificate)) return { ok: true, owned: false };
  const owner = secret.metadata?.annotations?.[Annotation.CertificateName];
  const live = owner ? peers.find((p) => p.metadata.name === owner) : undefined;
  if (live && ownedBy(secret, live)) return duplicate(certificate, owner!);
  return notOwned(certificate, secret);
}
