// The names of the identities the webhook gives pods: which service-account
// names exist, what the identity's Certificate and Secret are called, and how
// to read a name back. The webhook names identities with it; the operator
// reserves those names and garbage-collects by them.

/** What Kubernetes accepts as a ServiceAccount name: a DNS-1123 subdomain (RFC 1123 labels joined by dots). */
export const SERVICE_ACCOUNT_NAME =
  /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Characters of the service account kept in the Certificate name, for people reading `kubectl get`. */
const NAME_PREFIX_LENGTH = 40;

/** <service account prefix>-sigil-<10 hex digits>. */
const IDENTITY_NAME = /^(.+)-sigil-([0-9a-f]{10})$/;

/**
 * The Certificate (and Secret) name for an identity: a readable prefix of the
 * service account, then `-sigil-` and a digest of everything that makes the
 * identity, so the digest keeps long names apart. The prefix loses trailing
 * dots and dashes (a cut can land on one), so the name is a DNS subdomain of at
 * most 57 characters that is also a valid label value (the pod's
 * `sigil.dev/identity` label carries it).
 */
export function identityCertificateName(serviceAccount: string, digest: string): string {
  const prefix = serviceAccount.slice(0, NAME_PREFIX_LENGTH).replace(/[-.]+$/, '');
  return `${prefix || 'sa'}-sigil-${digest}`;
}

/** The digest of a name of the identity form; undefined for any other name. */
export function identityNameDigest(name: string): string | undefined {
  return IDENTITY_NAME.exec(name)?.[2];
}
