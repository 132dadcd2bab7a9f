// Which namespace a DNS name belongs to, in every form the cluster's DNS
// resolves. One implementation for Certificates, the webhook's annotations
// and sub-CA name constraints.
import { BlockList, isIP } from 'node:net';

export type NameOwner =
  /** An in-cluster name of one namespace: x.ns, h.x.ns, x.ns.svc[.domain], h.x.ns.svc[.domain], ip.ns.pod[.domain], wildcards of those. */
  | { kind: 'namespace'; namespace: string }
  /** A name every namespace resolves, or the cluster's own: a bare "x", "*.svc", "<domain>", "*.<domain>", "x.<domain>". */
  | { kind: 'cluster'; why: string }
  /** Outside the cluster's DNS. */
  | { kind: 'external' };

/** Lower case, one trailing dot removed: the form DNS compares. */
export function normalizeDnsName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

function ownerOfServiceOrPod(labels: string[], form: string): NameOwner {
  // labels ends with "svc" or "pod"; the label before it is the namespace.
  const namespace = labels[labels.length - 2];
  if (namespace === undefined || namespace === '*') {
    return { kind: 'cluster', why: `it covers the ${form} names of every namespace` };
  }
  return { kind: 'namespace', namespace };
}

/**
 * The owner of a DNS name. Kubernetes DNS serves <svc>.<ns>.svc.<domain>,
 * <hostname>.<svc>.<ns>.svc.<domain> and <ip>.<ns>.pod.<domain>; a pod's
 * search path adds <svc>.<ns>, <svc>.<ns>.svc and a bare <svc> (which every
 * namespace resolves to its own service), and with ndots:5 a name of two or
 * three labels is tried under svc.<domain> first, so it belongs to the
 * namespace its last label names. Names of four labels or more outside the
 * cluster domain are external.
 */
export function dnsNameOwner(name: string, clusterDomain: string): NameOwner {
  const labels = normalizeDnsName(name).split('.');
  const domain = normalizeDnsName(clusterDomain).split('.');
  const underDomain =
    labels.length >= domain.length && domain.every((l, i) => labels[labels.length - domain.length + i] === l);
  if (underDomain) {
    const inner = labels.slice(0, labels.length - domain.length);
    const last = inner[inner.length - 1];
    if (last === 'svc') return ownerOfServiceOrPod(inner, 'service');
    if (last === 'pod') return ownerOfServiceOrPod(inner, 'pod');
    return { kind: 'cluster', why: `it is under the cluster domain ${clusterDomain} but names no namespace` };
  }
  const last = labels[labels.length - 1];
  if (last === 'svc') return ownerOfServiceOrPod(labels, 'service');
  if (last === 'pod') return ownerOfServiceOrPod(labels, 'pod');
  if (labels.length === 1) {
    return {
      kind: 'cluster',
      why: 'a single-label name resolves to a service of whichever namespace the client is in',
    };
  }
  // Through the search path <x>.<ns> is a service and <h>.<x>.<ns> an endpoint of namespace <ns>
  // (api.example.com resolves to pod "api" of service "example" in a namespace "com", if there is one).
  if (labels.length <= 3) return { kind: 'namespace', namespace: labels[labels.length - 1]! };
  return { kind: 'external' };
}

/** "*" matches exactly one DNS label, "**" one or more leading labels; anything else matches itself. Case-insensitive. */
export function dnsPatternMatches(pattern: string, name: string): boolean {
  const p = normalizeDnsName(pattern).split('.');
  const n = normalizeDnsName(name).split('.');
  if (p[0] === '**') {
    const rest = p.slice(1);
    if (n.length <= rest.length) return false;
    return rest.every((label, i) => label === n[n.length - rest.length + i]);
  }
  if (p.length !== n.length) return false;
  return p.every((label, i) => label === '*' || label === n[i]);
}

/** Namespace patterns: exact, or a prefix ending in "*". Empty or undefined allows every namespace. */
export function namespaceAllowed(allowed: readonly string[] | undefined, namespace: string): boolean {
  if (!allowed || allowed.length === 0) return true;
  return namespaceListed(allowed, namespace);
}

/** Like namespaceAllowed, but an empty list allows none. */
export function namespaceListed(allowed: readonly string[] | undefined, namespace: string): boolean {
  return (allowed ?? []).some((a) =>
    a.endsWith('*') ? namespace.startsWith(a.slice(0, -1)) : a === namespace,
  );
}

/** An IPv4-mapped IPv6 address (::ffff:10.0.0.1) is checked as the IPv4 address it carries. */
function unmapped(ip: string): { address: string; family: 'ipv4' | 'ipv6' } {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return { address: mapped[1]!, family: 'ipv4' };
  return { address: ip, family: isIP(ip) === 6 ? 'ipv6' : 'ipv4' };
}

/** Why a CIDR is not one ("10.0.0.0/8", "fd00::/8"); undefined when it is. */
export function cidrProblem(cidr: string): string | undefined {
  const [address, prefixText, extra] = cidr.split('/');
  const family = isIP(address ?? '');
  const prefix = Number(prefixText);
  if (
    extra !== undefined ||
    family === 0 ||
    !/^\d{1,3}$/.test(prefixText ?? '') ||
    prefix > (family === 4 ? 32 : 128)
  )
    return `"${cidr}" is not a CIDR range such as 10.0.0.0/8 or fd00::/8`;
  return undefined;
}

/** True when `ip` lies in one of the CIDR ranges (invalid ranges are ignored; the CRD rejects them). */
export function ipInRanges(ip: string, ranges: readonly string[]): boolean {
  const list = new BlockList();
  for (const range of ranges) {
    if (cidrProblem(range)) continue;
    const [address, prefix] = range.split('/') as [string, string];
    const net = unmapped(address);
    list.addSubnet(net.address, Number(prefix), net.family);
  }
  const target = unmapped(ip);
  return list.check(target.address, target.family);
}
