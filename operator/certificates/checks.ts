// The reasons a Certificate needs a new certificate, as data: each check looks
// at what the controller gathered and returns a verdict or nothing. The first
// verdict wins. Checks never call the API.

import { createHash } from 'node:crypto';
import type { V1Secret } from '@kubernetes/client-node';
import type { ResolvedSpec } from '../../lib/api/request.ts';
import { Annotation, type Certificate } from '../../lib/api/types.ts';
import type { CertificateAuthority } from '../../lib/pki/ca.ts';
import { isSignedBy } from '../../lib/pki/certificate.ts';
import { type ReadBack, requestMismatches } from '../../lib/pki/inspect.ts';
import { formatDuration, type RenewalPolicy, renewalTime, withJitter } from '../../lib/pki/renewal.ts';
import { isoString } from '../../lib/time.ts';
import { hasPrivateKey } from './secret.ts';

/** Why a certificate is (re-)issued. Used as the Issuing condition's reason and in Events. */
export const IssueReason = {
  /** The Secret named by spec.secretName does not exist. */
  SecretMissing: 'SecretMissing',
  /** The Secret lacks tls.crt, tls.key or ca.crt. */
  SecretMissingData: 'SecretMissingData',
  /** tls.crt or tls.key does not parse. */
  SecretInvalidData: 'SecretInvalidData',
  /** tls.key does not belong to the certificate in tls.crt. */
  SecretKeyMismatch: 'SecretKeyMismatch',
  /** The certificate no longer matches the spec (names, usages, key, subject). */
  SecretSpecMismatch: 'SecretSpecMismatch',
  /** The certificate's lifetime is not the spec's duration (spec.duration changed). */
  DurationChanged: 'DurationChanged',
  /** The certificate was not signed by the issuer's current CA. */
  IssuerChanged: 'IssuerChanged',
  /** The issuer's CA is rotating: the certificate, signed by the other CA of the rotation, moves to the one that signs now. */
  CARotation: 'CARotation',
  /** The certificate has expired. */
  Expired: 'Expired',
  /** The renewal time has come. */
  Renewing: 'Renewing',
  /** A person asked for renewal with the sigil.dev/renew-requested-at annotation. */
  ManualRenewal: 'ManualRenewal',
} as const;

export interface CheckInput {
  certificate: Certificate;
  resolved: ResolvedSpec;
  secret: V1Secret | undefined;
  /** The Secret's certificate and whether its key belongs to it, when both parsed. */
  pair: ReadBack | undefined;
  /** Why the Secret's data did not parse. */
  parseError: string | undefined;
  ca: CertificateAuthority;
  /**
   * Which CA signed the leaf: the one that signs now, the other CA of a rotation in progress (still in
   * the bundle unless `otherTrusted` is false), or neither. Undefined: not known, checked here.
   */
  signedBy?: 'current' | 'other' | 'none' | undefined;
  /** The rotation's other CA is still in the issuer's bundle (Prepare, Activate). */
  otherTrusted?: boolean | undefined;
  now: Date;
}

export interface Verdict {
  reason: string;
  message: string;
}

export type Check = (input: CheckInput) => Verdict | undefined;

const secretMissing: Check = ({ secret, certificate }) =>
  secret
    ? undefined
    : {
        reason: IssueReason.SecretMissing,
        message: `Issuing certificate as Secret ${certificate.spec.secretName} does not exist`,
      };

const secretMissingData: Check = ({ secret }) => {
  const missing = ['tls.crt', 'tls.key', 'ca.crt'].filter((k) =>
    k === 'tls.key' ? !hasPrivateKey(secret) : !secret?.data?.[k],
  );
  return missing.length === 0
    ? undefined
    : {
        reason: IssueReason.SecretMissingData,
        message: `Issuing certificate as Secret does not contain ${missing.join(', ')}`,
      };
};

const secretInvalid: Check = ({ parseError }) =>
  parseError === undefined
    ? undefined
    : {
        reason: IssueReason.SecretInvalidData,
        message: `Issuing certificate as Secret contains invalid data: ${parseError}`,
      };

const keyMismatch: Check = ({ pair }) =>
  pair && !pair.keyMatches
    ? {
        reason: IssueReason.SecretKeyMismatch,
        message: "Issuing certificate as Secret's private key does not match its certificate",
      }
    : undefined;

const specMismatch: Check = ({ pair, resolved }) => {
  if (!pair) return undefined;
  const diffs = requestMismatches(resolved.request, pair.leaf);
  return diffs.length === 0
    ? undefined
    : {
        reason: IssueReason.SecretSpecMismatch,
        message: `Issuing certificate as the certificate in the Secret no longer matches the spec: ${diffs.join('; ')}`,
      };
};

export const issuerChanged: Check = ({ pair, ca, signedBy, otherTrusted }) => {
  if (!pair) return undefined;
  const by = signedBy ?? (isSignedBy(pair.leaf, ca.certificate) ? 'current' : 'none');
  if (by === 'current') return undefined;
  if (by === 'other' && otherTrusted)
    return {
      reason: IssueReason.CARotation,
      message: `Re-issuing certificate early as the issuer's CA is rotating to ${ca.facts.subject.commonName ?? 'a new CA'} (${ca.facts.fingerprint.slice(0, 16)})`,
    };
  return {
    reason: IssueReason.IssuerChanged,
    message: `Issuing certificate as it was not signed by the issuer's current CA (${ca.facts.subject.commonName ?? ca.facts.fingerprint.slice(0, 16)})`,
  };
};

/**
 * The notAfter a certificate issued at `notBefore` gets for `durationMs` from this CA: the spec's
 * duration, cut to end with the CA when the CA expires sooner (whole seconds, as issued).
 */
export function expectedNotAfter(
  notBefore: Date,
  durationMs: number,
  caNotAfter: Date,
): { notAfter: Date; shortened: boolean } {
  const wanted = notBefore.getTime() + durationMs;
  const shortened = caNotAfter.getTime() < wanted;
  return {
    notAfter: new Date(Math.floor(Math.min(wanted, caNotAfter.getTime()) / 1000) * 1000),
    shortened,
  };
}

/**
 * What the Ready message adds when the CA cut the certificate short: how much, why, and the fix.
 * Undefined when the certificate has its full duration.
 */
export function shortenedNote(
  notBefore: Date,
  notAfter: Date,
  durationMs: number,
  caNotAfter: Date,
): string | undefined {
  const expected = expectedNotAfter(notBefore, durationMs, caNotAfter);
  if (!expected.shortened || notAfter.getTime() !== expected.notAfter.getTime()) return undefined;
  const lifetime = notAfter.getTime() - notBefore.getTime();
  return `Shortened to ${formatDuration(lifetime)} of the ${formatDuration(durationMs)} asked: the issuer's CA expires at ${isoString(caNotAfter)} and no certificate outlives its CA. Rotate the issuer's CA to get the full duration`;
}

/** spec.duration changed since issuance: the certificate is re-issued with the lifetime asked. */
const durationChanged: Check = ({ pair, resolved, ca }) => {
  if (!pair) return undefined;
  const f = pair.leaf.facts;
  const expected = expectedNotAfter(f.notBefore, resolved.request.durationMs, ca.facts.notAfter);
  // Issuance writes whole seconds; anything else is a different duration.
  if (Math.abs(f.notAfter.getTime() - expected.notAfter.getTime()) < 1000) return undefined;
  return {
    reason: IssueReason.DurationChanged,
    message: `Issuing certificate as its lifetime ${formatDuration(f.notAfter.getTime() - f.notBefore.getTime())} is not the ${formatDuration(resolved.request.durationMs)} the spec asks for`,
  };
};

const expired: Check = ({ pair, now }) =>
  pair && now >= pair.leaf.facts.notAfter
    ? {
        reason: IssueReason.Expired,
        message: `Issuing certificate as it expired at ${isoString(pair.leaf.facts.notAfter)}`,
      }
    : undefined;

const manualRenewal: Check = ({ certificate, secret }) => {
  const asked = certificate.metadata.annotations?.[Annotation.RenewRequestedAt];
  if (!asked || secret?.metadata?.annotations?.[Annotation.RenewHandled] === asked) return undefined;
  return {
    reason: IssueReason.ManualRenewal,
    message: `Renewing certificate as renewal was requested at ${asked}`,
  };
};

/** A number in [0, 1) derived from the serial, so every replica computes the same jitter. */
function jitterFraction(serial: string): number {
  return createHash('sha256').update(serial).digest().readUInt32BE(0) / 2 ** 32;
}

/** When the operator renews a certificate: its renewal time, moved earlier by a small per-certificate jitter. */
export function scheduledRenewal(
  notBefore: Date,
  notAfter: Date,
  serial: string,
  policy: RenewalPolicy,
): Date {
  const base = renewalTime(notBefore, notAfter, policy);
  return withJitter(base, notAfter.getTime() - notBefore.getTime(), () => jitterFraction(serial));
}

/**
 * The shortest time between two issuances of one Certificate that nobody
 * asked for: max(1 minute, 1% of the lifetime), at most a third of the
 * lifetime. renewBefore close to duration is a valid spec, and without a floor
 * it re-issues the moment it has issued, hundreds of times a second. One
 * minute bounds that to 60 issuances an hour for the shortest (1 h)
 * certificates; 1% keeps a 24 h certificate to one every 14.4 minutes; the
 * third keeps the floor well inside the lifetime, so holding a renewal never
 * lets a certificate expire.
 */
export function minimumIssuanceInterval(lifetimeMs: number): number {
  return Math.min(Math.max(60_000, lifetimeMs / 100), lifetimeMs / 3);
}

export interface PlannedRenewal {
  /** When the operator renews. */
  at: Date;
  /** When the spec alone would renew, if that is earlier than the floor allows. */
  held?: { wanted: Date; floorMs: number };
}

/** The renewal time, never sooner after issuance (notBefore) than the minimum issuance interval. */
export function plannedRenewal(
  notBefore: Date,
  notAfter: Date,
  serial: string,
  policy: RenewalPolicy,
): PlannedRenewal {
  const wanted = scheduledRenewal(notBefore, notAfter, serial, policy);
  const floorMs = minimumIssuanceInterval(notAfter.getTime() - notBefore.getTime());
  const earliest = notBefore.getTime() + floorMs;
  if (wanted.getTime() >= earliest) return { at: wanted };
  return { at: new Date(earliest), held: { wanted, floorMs } };
}

/**
 * The Ready message for an up-to-date certificate, saying when the floor moved its renewal and
 * when the CA's expiry cut its lifetime short (`shortened`, from shortenedNote).
 */
export function upToDateMessage(plan: PlannedRenewal, shortened?: string): string {
  const notes = [
    ...(plan.held
      ? [
          `The spec asks to renew at ${isoString(plan.held.wanted)}, sooner after issuance than the minimum of ${Math.round(plan.held.floorMs / 1000)}s between issuances; it renews at ${isoString(plan.at)} instead (lower renewBefore to renew later)`,
        ]
      : []),
    ...(shortened ? [shortened] : []),
  ];
  return ['Certificate is up to date and has not expired', ...notes].join('. ');
}

const renewalDue: Check = ({ pair, resolved, now }) => {
  if (!pair) return undefined;
  const f = pair.leaf.facts;
  const at = plannedRenewal(f.notBefore, f.notAfter, f.serialNumber, resolved.renewal).at;
  return now >= at
    ? {
        reason: IssueReason.Renewing,
        message: `Renewing certificate as its renewal time ${isoString(at)} has passed`,
      }
    : undefined;
};

/** Evaluated in order; the first verdict decides. */
export const issuanceChecks: readonly Check[] = [
  secretMissing,
  secretMissingData,
  secretInvalid,
  keyMismatch,
  specMismatch,
  issuerChanged,
  durationChanged,
  expired,
  manualRenewal,
  renewalDue,
];

export function firstVerdict(checks: readonly Check[], input: CheckInput): Verdict | undefined {
  for (const check of checks) {
    const verdict = check(input);
    if (verdict) return verdict;
  }
  return undefined;
}
