// Tenancy: who may get which identity, name, key usage and key. The operator
// (before it signs), the webhook (before it admits a pod) and sigil/mtls
// (when it reads a peer) all decide here, so the rule exists once.
//
// The contract (README, Security model): a namespace is the tenant. Without
// an issuer policy that grants more, a Certificate in namespace N gets only
// N's in-cluster DNS names, SPIFFE IDs under spiffe://<trust domain>/ns/N/,
// external DNS names, and the default usages; never a CA, an IP SAN, an
// email or a non-SPIFFE URI.
import type { IssuerPolicy } from '../api/types.ts';
import type { IssueRequest, NameConstraints } from '../pki/issue.ts';
import { formatDuration, parseDuration } from '../pki/renewal.ts';
import { DEFAULT_USAGES, EXTENDED_KEY_USAGE_OIDS } from '../pki/usages.ts';
import { identityNameDigest, SERVICE_ACCOUNT_NAME } from './identity.ts';
import {
  dnsNameOwner,
  dnsPatternMatches,
  ipInRanges,
  namespaceAllowed,
  namespaceListed,
  normalizeDnsName,
} from './names.ts';
import { hasSpiffeScheme, parseSpiffeId, spiffeIdProblem } from './spiffe.ts';

export { identityCertificateName, identityNameDigest, SERVICE_ACCOUNT_NAME } from './identity.ts';
export { dnsNameOwner, dnsPatternMatches, namespaceAllowed, normalizeDnsName } from './names.ts';
export { parseSpiffeId, spiffeIdProblem, workloadSpiffeId } from './spiffe.ts';

/** Why a request is refused; the Certificate's Ready message and the webhook's denial carry it. */
export const TenancyReason = {
  /** The issuer's policy.allowedNamespaces does not include the namespace. */
  NamespaceNotAllowed: 'NamespaceNotAllowed',
  /** isCA, cert sign or crl sign without policy.allowedCANamespaces naming the namespace. */
  CANotAllowed: 'CANotAllowed',
  /** A usage beyond the defaults that policy.allowedUsages does not list. */
  UsageNotAllowed: 'UsageNotAllowed',
  /** A URI with the spiffe scheme that is not a canonical SPIFFE ID. */
  SpiffeIdNotCanonical: 'SpiffeIdNotCanonical',
  /** A SPIFFE ID of another trust domain or another namespace. */
  SpiffeIdNotOwned: 'SpiffeIdNotOwned',
  /** A non-SPIFFE URI that policy.allowedURIs does not list. */
  URINotAllowed: 'URINotAllowed',
  /** A DNS name (or DNS-like commonName) of another namespace or the cluster, or outside policy.allowedDNSNames. */
  DNSNameNotAllowed: 'DNSNameNotAllowed',
  /** A subject organization or unit outside policy.allowedOrganizations. */
  SubjectNotAllowed: 'SubjectNotAllowed',
  /** A secretName of the form the webhook gives identity Certificates, on a Certificate of another name. */
  SecretNameReserved: 'SecretNameReserved',
  /** An IP SAN outside policy.allowedIPRanges. */
  IPAddressNotAllowed: 'IPAddressNotAllowed',
  /** An email SAN outside policy.allowedEmailAddresses. */
  EmailNotAllowed: 'EmailNotAllowed',
  /** Longer than policy.maxDuration. */
  DurationTooLong: 'DurationTooLong',
  /** A key algorithm or size outside policy.allowedKeyAlgorithms or allowedKeySizes. */
  KeyNotAllowed: 'KeyNotAllowed',
} as const;
export type TenancyReason = (typeof TenancyReason)[keyof typeof TenancyReason];

export interface Violation {
  reason: TenancyReason;
  /** A sentence saying what is refused and how to get it allowed. */
  message: string;
}

export interface TenancyContext {
  /** The requesting namespace: the tenant. */
  namespace: string;
  /** The issuer's SPIFFE trust domain. */
  trustDomain: string;
  /** The cluster's DNS domain (cluster.local). */
  clusterDomain: string;
  policy: IssuerPolicy | undefined;
  /** How to name the issuer in messages: "ClusterIssuer sigil-ca". */
  issuer: string;
}

/** Usages every namespace may have. */
export const BASE_USAGES: readonly string[] = [
  'digital signature',
  'signing',
  'content commitment',
  'key encipherment',
  'data encipherment',
  'key agreement',
  'server auth',
  'client auth',
];
const EXTENDED_USAGES: readonly string[] = Object.keys(EXTENDED_KEY_USAGE_OIDS);
/** Usages that make a CA; only with policy.allowedCANamespaces. */
export const CA_USAGES: readonly string[] = ['cert sign', 'crl sign'];

const list = (values: readonly string[] | undefined) => (values ?? []).join(', ');

function violation(reason: TenancyReason, message: string): Violation {
  return { reason, message };
}

/**
 * Whether a DNS name may be signed for the namespace; the same rule for
 * dnsNames, commonName and the webhook's annotations. The namespace's own
 * names are always allowed; any other name only when the issuer's
 * policy.allowedDNSNames lists it.
 */
export function dnsNameViolation(
  ctx: TenancyContext,
  name: string,
  field = 'DNS name',
): Violation | undefined {
  const owner = dnsNameOwner(name, ctx.clusterDomain);
  if (owner.kind === 'namespace' && owner.namespace === ctx.namespace) return undefined;
  if ((ctx.policy?.allowedDNSNames ?? []).some((p) => dnsPatternMatches(p, name))) return undefined;
  const grant = `; ask for it to be listed in ${ctx.issuer}'s spec.policy.allowedDNSNames`;
  const own = `Certificates in ${ctx.namespace} get only names of their own namespace (such as x.${ctx.namespace}.svc) unless the issuer's policy lists more`;
  if (owner.kind === 'namespace') {
    return violation(
      TenancyReason.DNSNameNotAllowed,
      `${field} ${name} is a name of namespace ${owner.namespace} as the cluster resolves it; ${own}${grant}`,
    );
  }
  if (owner.kind === 'cluster') {
    const hint =
      normalizeDnsName(name).split('.').length === 1
        ? `; use ${normalizeDnsName(name)}.${ctx.namespace}.svc instead`
        : '';
    return violation(
      TenancyReason.DNSNameNotAllowed,
      `${field} ${name} is not a name of namespace ${ctx.namespace}: ${owner.why}${hint}${grant}`,
    );
  }
  return violation(TenancyReason.DNSNameNotAllowed, `${field} ${name} is an external name; ${own}${grant}`);
}

/**
 * A commonName a client could take for a host name is checked as one (some
 * clients fall back to it, some applications authorize on it), and one that
 * reads as a URI (spiffe:…) as a URI. Other text ("Shop API") is a label only.
 */
function commonNameViolation(ctx: TenancyContext, commonName: string): Violation | undefined {
  // A scheme followed by "//" (https://…, spiffe://…), or any spiffe: form; "Team: Payments" is text.
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(commonName.trim()) || hasSpiffeScheme(commonName)) {
    const v = uriViolation(ctx, commonName.trim());
    return v ? { reason: v.reason, message: `commonName: ${v.message}` } : undefined;
  }
  const asName = normalizeDnsName(commonName.trim());
  if (!/^(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(asName)) return undefined;
  return dnsNameViolation(ctx, commonName, 'commonName');
}

/** Subject organizations and units: many verifiers authorize on them (Kubernetes reads O as groups). */
function subjectViolation(ctx: TenancyContext, req: IssueRequest): Violation | undefined {
  const allowed = ctx.policy?.allowedOrganizations ?? [];
  const values = [...(req.subject?.organizations ?? []), ...(req.subject?.organizationalUnits ?? [])];
  for (const value of values) {
    const listed = allowed.some((p) => (p.endsWith('*') ? value.startsWith(p.slice(0, -1)) : value === p));
    if (!listed) {
      return violation(
        TenancyReason.SubjectNotAllowed,
        `subject organization or unit "${value}" is not allowed by ${ctx.issuer}: systems that authorize on it (Kubernetes groups, database and broker principals) would trust it; list it in spec.policy.allowedOrganizations or leave it out`,
      );
    }
  }
  return undefined;
}

/** Whether a URI SAN may be signed: canonical SPIFFE IDs of the namespace, or URIs the policy lists. */
export function uriViolation(ctx: TenancyContext, uri: string): Violation | undefined {
  if (hasSpiffeScheme(uri)) {
    const problem = spiffeIdProblem(uri);
    if (problem) {
      return violation(TenancyReason.SpiffeIdNotCanonical, `URI ${JSON.stringify(uri)} ${problem}`);
    }
    const id = parseSpiffeId(uri)!;
    if (id.trustDomain !== ctx.trustDomain) {
      return violation(
        TenancyReason.SpiffeIdNotOwned,
        `SPIFFE ID ${uri} is outside ${ctx.issuer}'s trust domain ${ctx.trustDomain}`,
      );
    }
    const [ns, namespace, sa, account, ...rest] = id.segments;
    if (ns !== 'ns' || namespace !== ctx.namespace) {
      return violation(
        TenancyReason.SpiffeIdNotOwned,
        `SPIFFE ID ${uri} does not name namespace ${ctx.namespace}; Certificates in ${ctx.namespace} may only claim spiffe://${ctx.trustDomain}/ns/${ctx.namespace}/sa/<service account>`,
      );
    }
    // Exactly ns/<ns>/sa/<account>: a longer path could end in another namespace's suffix
    // (…/ns/a/sa/x/ns/b/sa/y), which verifiers matching on suffixes would take for b's.
    if (sa !== 'sa' || account === undefined || !SERVICE_ACCOUNT_NAME.test(account) || rest.length > 0) {
      return violation(
        TenancyReason.SpiffeIdNotOwned,
        `SPIFFE ID ${uri} is not of the form spiffe://${ctx.trustDomain}/ns/${ctx.namespace}/sa/<service account> (a lower-case DNS name); workload IDs have exactly that shape`,
      );
    }
    return undefined;
  }
  const allowed = ctx.policy?.allowedURIs ?? [];
  const listed = allowed.some((p) => (p.endsWith('*') ? uri.startsWith(p.slice(0, -1)) : uri === p));
  return listed
    ? undefined
    : violation(
        TenancyReason.URINotAllowed,
        `URI ${JSON.stringify(uri)} is not a SPIFFE ID of namespace ${ctx.namespace}; other URIs must be listed in ${ctx.issuer}'s spec.policy.allowedURIs`,
      );
}

function emailAllowed(patterns: readonly string[], email: string): boolean {
  const lower = email.toLowerCase();
  const domain = lower.slice(lower.lastIndexOf('@') + 1);
  return patterns.some((p) => {
    const pattern = p.toLowerCase();
    return pattern.startsWith('*@') ? domain === pattern.slice(2) : lower === pattern;
  });
}

/** Whether the usages and isCA are allowed; a CA needs the namespace in policy.allowedCANamespaces. */
export function usageViolation(
  ctx: TenancyContext,
  usages: readonly string[],
  isCA: boolean,
): Violation | undefined {
  const caUsages = usages.filter((u) => CA_USAGES.includes(u));
  if ((isCA || caUsages.length > 0) && !namespaceListed(ctx.policy?.allowedCANamespaces, ctx.namespace)) {
    const what = isCA ? 'isCA' : `usage ${caUsages.map((u) => `"${u}"`).join(', ')}`;
    return violation(
      TenancyReason.CANotAllowed,
      `${what} would make this certificate a CA able to sign any identity; ${ctx.issuer} signs CAs only for namespaces in spec.policy.allowedCANamespaces (${ctx.namespace} is not). Remove it, or ask an administrator to allow CAs for ${ctx.namespace}`,
    );
  }
  if (!usages.some((u) => EXTENDED_USAGES.includes(u))) {
    return violation(
      TenancyReason.UsageNotAllowed,
      `usages ${usages.map((u) => `"${u}"`).join(', ')} name no extended usage, and a certificate without one is valid for every purpose (code and email signing among them); add "server auth" and/or "client auth"`,
    );
  }
  const allowed = ctx.policy?.allowedUsages ?? [];
  const extra = usages.filter(
    (u) => !BASE_USAGES.includes(u) && !CA_USAGES.includes(u) && !allowed.includes(u),
  );
  if (extra.length > 0) {
    return violation(
      TenancyReason.UsageNotAllowed,
      `usage ${extra.map((u) => `"${u}"`).join(', ')} is not allowed by ${ctx.issuer}: without spec.policy.allowedUsages only ${BASE_USAGES.join(', ')} are signed`,
    );
  }
  return undefined;
}

/**
 * The first rule the request breaks, or undefined when the issuer may sign
 * it for this namespace. Checks run on the values exactly as they will be
 * written into the certificate.
 */
export function tenancyViolation(ctx: TenancyContext, req: IssueRequest): Violation | undefined {
  const policy = ctx.policy;
  if (!namespaceAllowed(policy?.allowedNamespaces, ctx.namespace)) {
    return violation(
      TenancyReason.NamespaceNotAllowed,
      `namespace ${ctx.namespace} may not use ${ctx.issuer} (spec.policy.allowedNamespaces: ${list(policy?.allowedNamespaces)})`,
    );
  }
  const usages = req.usages && req.usages.length > 0 ? req.usages : DEFAULT_USAGES;
  const usage = usageViolation(ctx, usages, req.isCA ?? false);
  if (usage) return usage;
  for (const uri of req.uris ?? []) {
    const v = uriViolation(ctx, uri);
    if (v) return v;
  }
  for (const name of req.dnsNames ?? []) {
    const v = dnsNameViolation(ctx, name);
    if (v) return v;
  }
  if (req.commonName !== undefined) {
    const v = commonNameViolation(ctx, req.commonName);
    if (v) return v;
  }
  const subject = subjectViolation(ctx, req);
  if (subject) return subject;
  for (const ip of req.ipAddresses ?? []) {
    if (!ipInRanges(ip, policy?.allowedIPRanges ?? [])) {
      return violation(
        TenancyReason.IPAddressNotAllowed,
        policy?.allowedIPRanges?.length
          ? `IP address ${ip} is outside ${ctx.issuer}'s spec.policy.allowedIPRanges (${list(policy.allowedIPRanges)})`
          : `IP address ${ip} cannot be signed: ${ctx.issuer} has no spec.policy.allowedIPRanges, so it signs no IP SANs (pod and service IPs are reused across namespaces); use a DNS name, or ask an administrator to list the range`,
      );
    }
  }
  for (const email of req.emailAddresses ?? []) {
    if (!emailAllowed(policy?.allowedEmailAddresses ?? [], email)) {
      return violation(
        TenancyReason.EmailNotAllowed,
        `email address ${email} is not allowed by ${ctx.issuer}; emails must be listed in spec.policy.allowedEmailAddresses (exact or *@domain)`,
      );
    }
  }
  if (policy?.maxDuration) {
    const max = parseDuration(policy.maxDuration);
    if (max !== undefined && req.durationMs > max) {
      return violation(
        TenancyReason.DurationTooLong,
        `duration ${formatDuration(req.durationMs)} is longer than ${ctx.issuer}'s maximum ${policy.maxDuration} (spec.policy.maxDuration)`,
      );
    }
  }
  const algorithm = req.key?.algorithm ?? 'ECDSA';
  if (policy?.allowedKeyAlgorithms?.length && !policy.allowedKeyAlgorithms.includes(algorithm)) {
    return violation(
      TenancyReason.KeyNotAllowed,
      `key algorithm ${algorithm} is not allowed by ${ctx.issuer} (spec.policy.allowedKeyAlgorithms: ${list(policy.allowedKeyAlgorithms)})`,
    );
  }
  const size = algorithm === 'Ed25519' ? undefined : (req.key?.size ?? (algorithm === 'RSA' ? 2048 : 256));
  if (size !== undefined && policy?.allowedKeySizes?.length && !policy.allowedKeySizes.includes(size)) {
    return violation(
      TenancyReason.KeyNotAllowed,
      `${algorithm} key size ${size} is not allowed by ${ctx.issuer} (spec.policy.allowedKeySizes: ${policy.allowedKeySizes.join(', ')})`,
    );
  }
  return undefined;
}

/**
 * Name constraints for a subordinate CA in the namespace: it may sign only
 * what the namespace could obtain itself. DNS: the namespace's service and
 * pod names, plus the policy's DNS patterns as subtrees ("*.example.com" and
 * "**.example.com" both become the subtree .example.com; X.509 cannot say
 * "exactly one label"). IP: the policy's ranges, or none. URIs and emails:
 * none; X.509 URI constraints see only the host, so they cannot confine a
 * SPIFFE path to /ns/<namespace>/, and a sub-CA signs no SPIFFE IDs at all.
 */
export function subordinateCaConstraints(ctx: TenancyContext): NameConstraints {
  const ns = ctx.namespace;
  const domain = normalizeDnsName(ctx.clusterDomain);
  const dns = new Set([`${ns}.svc.${domain}`, `${ns}.svc`, `${ns}.pod.${domain}`, `${ns}.pod`]);
  for (const pattern of ctx.policy?.allowedDNSNames ?? []) {
    const p = normalizeDnsName(pattern);
    // Exact names are left out: a subtree "api.example.com" would also permit evil.api.example.com.
    const base = p.replace(/^\*\*?\./, '');
    if (p === base || base.includes('*')) continue;
    dns.add(`.${base}`);
  }
  return {
    permittedDNS: [...dns],
    permittedIPRanges: ctx.policy?.allowedIPRanges?.length
      ? [...ctx.policy.allowedIPRanges]
      : ['0.0.0.0/32', '::/128'],
    permittedURIHosts: ['.invalid'],
    permittedEmailDomains: ['.invalid'],
  };
}

/**
 * A Secret named like a webhook identity's belongs to the Certificate of the
 * same name (which the webhook verifies is its own): another Certificate
 * writing it first would decide what every pod of that identity mounts.
 */
export function secretNameViolation(certificateName: string, secretName: string): Violation | undefined {
  if (identityNameDigest(secretName) === undefined || secretName === certificateName) return undefined;
  return violation(
    TenancyReason.SecretNameReserved,
    `spec.secretName ${secretName} has the form of a Sigil identity Secret (<name>-sigil-<10 hex digits>), which only the identity Certificate of that name may write; choose another secretName`,
  );
}
