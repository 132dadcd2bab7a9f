// Turns a Certificate's spec into an issuance request, or a sentence saying
// what is wrong with it. Pure.

import { type IssueRequest, requestProblems } from '../pki/issue.ts';
import { DEFAULT_DURATION_MS, formatDuration, parseDuration, type RenewalPolicy } from '../pki/renewal.ts';
import { DEFAULT_USAGES } from '../pki/usages.ts';
import type { CertificateSpec } from './types.ts';

export interface ResolvedSpec {
  request: IssueRequest;
  renewal: RenewalPolicy;
  rotateKey: boolean;
}

export function resolveSpec(
  spec: CertificateSpec,
  minDurationMs: number,
): ResolvedSpec | { problem: string } {
  const durationMs = spec.duration ? parseDuration(spec.duration) : DEFAULT_DURATION_MS;
  if (durationMs === undefined)
    return { problem: `duration "${spec.duration}" is not a Go duration such as 24h or 90m` };
  if (durationMs < minDurationMs) {
    return {
      problem: `duration ${spec.duration ?? formatDuration(durationMs)} is shorter than the minimum ${formatDuration(minDurationMs)}`,
    };
  }
  let renewBeforeMs: number | undefined;
  if (spec.renewBefore !== undefined) {
    renewBeforeMs = parseDuration(spec.renewBefore);
    if (renewBeforeMs === undefined)
      return { problem: `renewBefore "${spec.renewBefore}" is not a Go duration` };
    if (renewBeforeMs >= durationMs) {
      return {
        problem: `renewBefore ${spec.renewBefore} must be shorter than duration ${spec.duration ?? '24h'}`,
      };
    }
  }
  const request: IssueRequest = {
    commonName: spec.commonName,
    dnsNames: spec.dnsNames,
    ipAddresses: spec.ipAddresses,
    uris: spec.uris,
    emailAddresses: spec.emailAddresses,
    subject: spec.subject,
    usages: spec.usages && spec.usages.length > 0 ? spec.usages : DEFAULT_USAGES,
    isCA: spec.isCA ?? false,
    durationMs,
    key: {
      algorithm: spec.privateKey?.algorithm ?? 'ECDSA',
      size: spec.privateKey?.size,
      encoding: spec.privateKey?.encoding ?? 'PKCS8',
    },
  };
  const problems = [...requestProblems(request), ...unmatchableProblems(spec)];
  if (problems.length > 0) return { problem: problems.join('; ') };
  return {
    request,
    renewal: { renewBeforeMs, renewBeforePercentage: spec.renewBeforePercentage },
    rotateKey: (spec.privateKey?.rotationPolicy ?? 'Always') === 'Always',
  };
}

/**
 * Specs Sigil would issue but could never read back as matching, so every
 * look at the Certificate would re-issue it. A subject list naming a value
 * twice is written as two attributes but compared as a set; a name with
 * characters outside ASCII is written as other bytes than the spec holds.
 * Anything else that does not read back is caught after issuing, before the
 * Secret is written (see the controller's read-back).
 */
export function unmatchableProblems(spec: CertificateSpec): string[] {
  const problems: string[] = [];
  for (const [field, values] of Object.entries(spec.subject ?? {})) {
    const seen = new Set<string>();
    for (const v of (values as string[] | undefined) ?? []) {
      if (seen.has(v)) problems.push(`subject.${field} lists "${v}" twice; list each value once`);
      seen.add(v);
    }
  }
  const lists: [string, string[] | undefined][] = [
    ['dnsNames', spec.dnsNames],
    ['uris', spec.uris],
    ['emailAddresses', spec.emailAddresses],
  ];
  for (const [field, values] of lists) {
    for (const v of values ?? []) {
      if (/[^\x20-\x7e]/.test(v))
        problems.push(
          `${field} entry "${v}" has characters outside printable ASCII; write it in ASCII (punycode or percent-encoding)`,
        );
    }
  }
  return problems;
}
