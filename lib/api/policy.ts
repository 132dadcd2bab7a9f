// Issuer policy and tenancy rules, as pure functions of the request.

import type { IssueRequest } from '../pki/issue.ts';
import { formatDuration, parseDuration } from '../pki/renewal.ts';
import type { IssuerPolicy } from './types.ts';

/** "*" matches exactly one DNS label, "**" one or more leading labels; anything else matches itself. */
export function dnsPatternMatches(pattern: string, name: string): boolean {
  const p = pattern.toLowerCase().split('.');
  const n = name.toLowerCase().split('.');
  if (p[0] === '**') {
    const rest = p.slice(1);
    if (n.length <= rest.length) return false;
    return rest.every((label, i) => label === n[n.length - rest.length + i]);
  }
  if (p.length !== n.length) return false;
  return p.every((label, i) => label === '*' || label === n[i]);
}

export function namespaceAllowed(allowed: readonly string[] | undefined, namespace: string): boolean {
  if (!allowed || allowed.length === 0) return true;
  return allowed.some((a) => (a.endsWith('*') ? namespace.startsWith(a.slice(0, -1)) : a === namespace));
}

/** The first way the request breaks the issuer's policy, as a sentence; undefined when it is allowed. */
export function policyViolation(
  policy: IssuerPolicy | undefined,
  namespace: string,
  req: IssueRequest,
): string | undefined {
  if (!policy) return undefined;
  if (!namespaceAllowed(policy.allowedNamespaces, namespace)) {
    return `namespace ${namespace} may not use this issuer (allowed: ${policy.allowedNamespaces!.join(', ')})`;
  }
  if (policy.allowedDNSNames && policy.allowedDNSNames.length > 0) {
    for (const name of req.dnsNames ?? []) {
      if (!policy.allowedDNSNames.some((p) => dnsPatternMatches(p, name))) {
        return `DNS name ${name} is not allowed by the issuer (allowed: ${policy.allowedDNSNames.join(', ')})`;
      }
    }
  }
  if (policy.maxDuration) {
    const max = parseDuration(policy.maxDuration);
    if (max !== undefined && req.durationMs > max) {
      return `duration ${formatDuration(req.durationMs)} is longer than the issuer's maximum ${policy.maxDuration}`;
    }
  }
  const algorithm = req.key?.algorithm ?? 'ECDSA';
  if (
    policy.allowedKeyAlgorithms &&
    policy.allowedKeyAlgorithms.length > 0 &&
    !policy.allowedKeyAlgorithms.includes(algorithm)
  ) {
    return `key algorithm ${algorithm} is not allowed by the issuer (allowed: ${policy.allowedKeyAlgorithms.join(', ')})`;
  }
  return undefined;
}

/**
 * SPIFFE IDs in the issuer's trust domain must name the Certificate's own
 * namespace: spiffe://<trustDomain>/ns/<namespace>/... A Certificate can never
 * claim another namespace's workload identity, whatever the issuer policy says.
 */
export function spiffeViolation(
  trustDomain: string,
  namespace: string,
  uris: readonly string[] | undefined,
): string | undefined {
  for (const uri of uris ?? []) {
    if (!uri.startsWith('spiffe://')) continue;
    let url: URL;
    try {
      url = new URL(uri);
    } catch {
      return `URI ${uri} is not a valid SPIFFE ID`;
    }
    if (url.hostname !== trustDomain) {
      return `SPIFFE ID ${uri} is outside the issuer's trust domain ${trustDomain}`;
    }
    const segments = url.pathname.split('/');
    if (segments[1] !== 'ns' || segments[2] !== namespace) {
      return `SPIFFE ID ${uri} names another namespace; Certificates in ${namespace} may only claim spiffe://${trustDomain}/ns/${namespace}/...`;
    }
  }
  return undefined;
}

/**
 * In-cluster service names belong to their namespace: a Certificate in `a` may
 * not carry `x.b.svc` or `x.b.svc.<clusterDomain>` unless the issuer's policy
 * lists the name explicitly in allowedDNSNames.
 */
export function clusterNameViolation(
  namespace: string,
  dnsNames: readonly string[] | undefined,
  clusterDomain: string,
  policy: IssuerPolicy | undefined,
): string | undefined {
  const suffix = `.svc.${clusterDomain}`;
  for (const name of dnsNames ?? []) {
    const base = name.endsWith(suffix) ? name.slice(0, -clusterDomain.length - 1) : name;
    const labels = base.split('.');
    if (labels.length < 3 || labels[labels.length - 1] !== 'svc') continue;
    const owner = labels[labels.length - 2];
    if (owner === namespace) continue;
    if ((policy?.allowedDNSNames ?? []).some((p) => dnsPatternMatches(p, name))) continue;
    return `DNS name ${name} is a service name of namespace ${owner}; Certificates in ${namespace} may only claim service names of their own namespace unless the issuer's policy.allowedDNSNames lists it`;
  }
  return undefined;
}
