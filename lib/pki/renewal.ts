// Duration parsing and the renewal arithmetic shared by the controller, the
// webhook and the CLI. Pure functions of their inputs; the caller passes `now`.

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const DURATION = /^(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/;

/** Parses a Go duration ("24h", "1h30m", "90m", "2.5h"). Returns milliseconds, or undefined if malformed. */
export function parseDuration(text: string): number | undefined {
  if (text.length === 0 || text.length > 64) return undefined;
  let rest = text;
  let total = 0;
  while (rest.length > 0) {
    const m = DURATION.exec(rest);
    if (!m) return undefined;
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  return Math.round(total);
}

/** Formats milliseconds as a Go duration, for messages ("2160h0m0s" style is avoided: "90d" is not Go). */
export function formatDuration(ms: number): string {
  const totalSeconds = Math.round(ms / 1000);
  const h = Math.floor(totalSeconds / 3600);
  const m = Math.floor((totalSeconds % 3600) / 60);
  const s = totalSeconds % 60;
  return `${h > 0 ? `${h}h` : ''}${m > 0 ? `${m}m` : ''}${s > 0 || totalSeconds === 0 ? `${s}s` : ''}`;
}

export const DEFAULT_DURATION_MS = 24 * 3_600_000;

export interface RenewalPolicy {
  /** Renew this long before notAfter. */
  renewBeforeMs?: number | undefined;
  /** Renew when this percentage of the lifetime remains (1–99). */
  renewBeforePercentage?: number | undefined;
}

/**
 * When a certificate valid from notBefore to notAfter should be renewed.
 * Default: at 2/3 of its lifetime. A renewBefore that does not fit in the
 * actual lifetime (for example because the CA expires sooner and cut the
 * certificate short) falls back to the default, so renewal never lands before
 * issuance.
 */
export function renewalTime(notBefore: Date, notAfter: Date, policy: RenewalPolicy = {}): Date {
  const lifetime = notAfter.getTime() - notBefore.getTime();
  let renewBefore: number;
  if (policy.renewBeforeMs !== undefined) renewBefore = policy.renewBeforeMs;
  else if (policy.renewBeforePercentage !== undefined)
    renewBefore = (lifetime * policy.renewBeforePercentage) / 100;
  else renewBefore = lifetime / 3;
  if (!(renewBefore > 0 && renewBefore < lifetime)) renewBefore = lifetime / 3;
  return new Date(notAfter.getTime() - Math.round(renewBefore));
}

/**
 * The validity window of a new certificate: it starts now and lasts the
 * requested duration, but never outlives the CA that signs it.
 */
export function validityWindow(
  now: Date,
  durationMs: number,
  caNotAfter: Date,
): { notBefore: Date; notAfter: Date } {
  // Whole seconds: X.509 times carry no fractions, and status fields compare exactly.
  const start = Math.floor(now.getTime() / 1000) * 1000;
  const end = Math.min(start + durationMs, caNotAfter.getTime());
  return { notBefore: new Date(start), notAfter: new Date(end) };
}

/**
 * Moves `at` earlier by up to `fraction` of `spanMs` (at most capMs), so that
 * certificates issued together do not all renew in the same instant. Earlier,
 * never later: jitter must not push a renewal towards expiry.
 */
export function withJitter(
  at: Date,
  spanMs: number,
  random: () => number,
  fraction = 0.02,
  capMs = 60_000,
): Date {
  const jitter = Math.min(spanMs * fraction, capMs) * random();
  return new Date(at.getTime() - Math.round(jitter));
}
