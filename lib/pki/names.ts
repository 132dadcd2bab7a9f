import { isIP } from 'node:net';
import { hasSpiffeScheme, spiffeIdProblem } from '../tenancy/spiffe.ts';

// Validation of the names a certificate may carry. Kept strict: anything the
// API server's schema lets through but a TLS stack would choke on stops here.

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** RFC 1123 host name, lower case, optionally with one leading `*.` wildcard label. */
export function dnsNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'is empty';
  if (name.length > 253) return 'is longer than 253 characters';
  if (name !== name.toLowerCase()) return 'must be lower case';
  const labels = name.split('.');
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i]!;
    if (i === 0 && label === '*' && labels.length > 1) continue;
    if (!DNS_LABEL.test(label)) return `has an invalid label "${label}"`;
  }
  return undefined;
}

export function ipAddressProblem(ip: string): string | undefined {
  return isIP(ip) === 0 ? 'is not an IPv4 or IPv6 address' : undefined;
}

/** Canonical text of an IP address, so that "::0:1" and "::1" compare equal. */
export function canonicalIp(ip: string): string {
  if (isIP(ip) === 6) return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  return ip;
}

/** URIs are written into certificates as IA5String: printable ASCII only, checked as written. */
const PRINTABLE_ASCII = /^[\x21-\x7e]+$/;

export function uriProblem(uri: string): string | undefined {
  if (!PRINTABLE_ASCII.test(uri)) {
    return 'contains spaces, control or non-ASCII characters (percent-encode them, or for SPIFFE IDs leave them out)';
  }
  if (hasSpiffeScheme(uri)) {
    const problem = spiffeIdProblem(uri);
    return problem ? `is not a canonical SPIFFE ID: it ${problem}` : undefined;
  }
  try {
    new URL(uri);
  } catch {
    return 'is not an absolute URI';
  }
  return undefined;
}

const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,255}$/;

export function emailProblem(email: string): string | undefined {
  if (!PRINTABLE_ASCII.test(email)) return 'contains spaces, control or non-ASCII characters';
  if (!EMAIL.test(email)) return 'is not an email address (local@domain)';
  const domain = email.slice(email.indexOf('@') + 1);
  const problem = dnsNameProblem(domain.toLowerCase());
  return problem ? `has a domain that ${problem}` : undefined;
}
