// Whether an existing Certificate is the webhook's own for an identity. Its
// name is deterministic, so anyone who may create Certificates in the
// namespace can take it first; pods must then not mount what that object
// writes. Pure: the server reads the object, this decides.
import { type Certificate, Label } from '../lib/api/types.ts';
import { type Identity, identityCertificateSpec } from './identity.ts';

/** The defaults the Certificate CRD applies, so a stored spec compares equal to the one the webhook sent. */
const DEFAULT_DURATION = '24h';
const DEFAULT_ISSUER_KIND = 'ClusterIssuer';
const DEFAULT_PRIVATE_KEY = { algorithm: 'ECDSA', encoding: 'PKCS8', rotationPolicy: 'Always' };

function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object')
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, v]) => v !== undefined)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([k, v]) => [k, canonical(v)]),
    );
  return value;
}

function withDefaults(spec: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...spec, duration: spec.duration ?? DEFAULT_DURATION };
  const ref = spec.issuerRef as { kind?: string } | undefined;
  if (ref) out.issuerRef = { ...ref, kind: ref.kind ?? DEFAULT_ISSUER_KIND };
  const key = spec.privateKey as Record<string, unknown> | undefined;
  if (key) {
    const filled = { ...DEFAULT_PRIVATE_KEY, ...key };
    if (JSON.stringify(canonical(filled)) === JSON.stringify(canonical(DEFAULT_PRIVATE_KEY)))
      delete out.privateKey;
    else out.privateKey = filled;
  }
  return out;
}

/**
 * Undefined when `existing` is the Certificate the webhook would create for
 * `identity` (its label, and the same spec once CRD defaults are applied);
 * otherwise what differs, for the denial message.
 */
export function squatProblem(existing: Certificate, identity: Identity): string | undefined {
  if (existing.metadata?.labels?.[Label.Identity] !== 'true')
    return `it lacks the label ${Label.Identity}=true the webhook sets`;
  const want = canonical(
    withDefaults(identityCertificateSpec(identity) as unknown as Record<string, unknown>),
  );
  const have = canonical(withDefaults((existing.spec ?? {}) as unknown as Record<string, unknown>));
  if (JSON.stringify(want) === JSON.stringify(have)) return undefined;
  const keys = new Set([...Object.keys(want as object), ...Object.keys(have as object)]);
  const differing = [...keys].filter(
    (k) =>
      JSON.stringify((want as Record<string, unknown>)[k]) !==
      JSON.stringify((have as Record<string, unknown>)[k]),
  );
  return `its spec differs from the one the webhook creates (${differing.map((k) => `spec.${k}`).join(', ')})`;
}
