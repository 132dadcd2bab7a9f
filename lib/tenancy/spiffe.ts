// The one definition of a canonical SPIFFE ID, used where an ID is issued
// (operator, webhook, PKI) and where a peer's ID is read (sigil/mtls). It
// works on the exact text written into or read from a certificate, never on a
// parsed and re-serialised URL: a check that normalises what a verifier does
// not (or the other way round) is a hole.

/** SPIFFE's limit on a whole ID, in bytes. */
export const MAX_SPIFFE_ID_BYTES = 2048;
/** SPIFFE's limit on a trust domain name. */
export const MAX_TRUST_DOMAIN_LENGTH = 255;

const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;

export interface SpiffeId {
  trustDomain: string;
  /** Path segments, without the leading slash: ["ns", "shop", "sa", "api"]. */
  segments: string[];
}

/** True when the URI's scheme is spiffe in any letter case: such a URI must be a canonical SPIFFE ID. */
export function hasSpiffeScheme(uri: string): boolean {
  return /^\s*spiffe:/i.test(uri);
}

/** Why `id` is not a canonical SPIFFE ID, as a phrase ("has an empty path segment"); undefined when it is one. */
export function spiffeIdProblem(id: string): string | undefined {
  if (Buffer.byteLength(id, 'utf8') > MAX_SPIFFE_ID_BYTES)
    return `is longer than ${MAX_SPIFFE_ID_BYTES} bytes`;
  if (!/^[\x21-\x7e]*$/.test(id))
    return 'contains spaces, control or non-ASCII characters; SPIFFE IDs are ASCII only';
  if (!id.startsWith('spiffe://')) {
    return hasSpiffeScheme(id)
      ? 'must start with "spiffe://" exactly (lower-case scheme, two slashes)'
      : 'is not a SPIFFE ID (spiffe://<trust domain>/<path>)';
  }
  const rest = id.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash < 0 ? rest : rest.slice(0, slash);
  if (trustDomain.length === 0) return 'has no trust domain';
  if (trustDomain.length > MAX_TRUST_DOMAIN_LENGTH)
    return `has a trust domain longer than ${MAX_TRUST_DOMAIN_LENGTH} characters`;
  if (!TRUST_DOMAIN.test(trustDomain)) {
    return `has trust domain "${trustDomain}", which may hold only lower-case letters, digits, ".", "-" and "_" (no port, user or upper case)`;
  }
  if (slash < 0) return undefined;
  const path = rest.slice(slash + 1);
  if (path.length === 0) return 'ends with "/"; a SPIFFE path has no trailing slash';
  for (const segment of path.split('/')) {
    if (segment.length === 0) return 'has an empty path segment ("//" or a trailing "/")';
    if (segment === '.' || segment === '..') return `has a "${segment}" path segment`;
    if (!SEGMENT.test(segment)) {
      return `has path segment "${segment}", which may hold only letters, digits, ".", "-" and "_" (no percent-encoding, query or fragment)`;
    }
  }
  return undefined;
}

/** The parts of a canonical SPIFFE ID; undefined for anything else. */
export function parseSpiffeId(id: string): SpiffeId | undefined {
  if (spiffeIdProblem(id) !== undefined) return undefined;
  const rest = id.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  return slash < 0
    ? { trustDomain: rest, segments: [] }
    : { trustDomain: rest.slice(0, slash), segments: rest.slice(slash + 1).split('/') };
}

/** The workload identity the webhook gives a pod. */
export function workloadSpiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}
