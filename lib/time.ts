// Timestamps written from the epoch by arithmetic, for the long-running processes.
//
// V8 answers Date.prototype.toISOString and toUTCString (and JSON.stringify of a Date, through
// toJSON) with its date cache, and the first call builds it with ICU's time zone, which stays for
// the rest of the process: the operator at rest was 60.0-60.1 MiB with it and 59.1-59.3 without
// (ICU's resident data pages 0.86 against 0.39 MiB, a bare Node process's). getTime, Date.now,
// Date.parse of an RFC 3339 string and the getUTC* methods do not build it. Nothing in the
// operator or the webhook needs a local time zone, so they write times with these instead, and
// lib/time.test.ts fails on any toISOString or toUTCString left in their code.

const pad2 = (n: number) => (n < 10 ? `0${n}` : String(n));

const DAY_MS = 86_400_000;
const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'] as const;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'] as const;

interface Civil {
  year: number;
  /** 1 to 12. */
  month: number;
  day: number;
  /** Milliseconds into the day. */
  ms: number;
  /** 0 is Sunday. */
  weekday: number;
}

/** The proleptic Gregorian date of a time in ms since the epoch (days-to-civil, era by era). */
function civil(t: number): Civil {
  if (!Number.isFinite(t)) throw new RangeError('Invalid time value');
  const days = Math.floor(t / DAY_MS);
  const ms = t - days * DAY_MS;
  const z = days + 719_468; // days since 0000-03-01
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097; // day of the 400-year era, 0 to 146096
  const yoe = Math.floor(
    (doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365,
  );
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100)); // from March 1st
  const mp = Math.floor((5 * doy + 2) / 153); // March is 0
  const month = mp < 10 ? mp + 3 : mp - 9;
  return {
    year: yoe + era * 400 + (month <= 2 ? 1 : 0),
    month,
    day: doy - Math.floor((153 * mp + 2) / 5) + 1,
    ms,
    weekday: (((days + 4) % 7) + 7) % 7, // 1970-01-01 was a Thursday
  };
}

const clock = (ms: number) =>
  `${pad2(Math.floor(ms / 3_600_000))}:${pad2(Math.floor(ms / 60_000) % 60)}:${pad2(Math.floor(ms / 1000) % 60)}`;

/** As Date takes a time: whole milliseconds, the fraction dropped toward zero. */
const epochMs = (t: number | Date) => Math.trunc(typeof t === 'number' ? t : t.getTime());

/**
 * What `new Date(t).toISOString()` gives (YYYY-MM-DDTHH:MM:SS.sssZ) for years 0 to 9999, and a
 * RangeError for an invalid time. Outside those years, Date's own (a six-digit signed year).
 */
export function isoString(t: number | Date): string {
  const ms = epochMs(t);
  const c = civil(ms);
  if (c.year < 0 || c.year > 9999) return new Date(ms).toISOString();
  const frac = c.ms % 1000;
  return `${String(c.year).padStart(4, '0')}-${pad2(c.month)}-${pad2(c.day)}T${clock(c.ms)}.${frac < 10 ? '00' : frac < 100 ? '0' : ''}${frac}Z`;
}

/** RFC 3339 in whole seconds (2026-12-07T20:15:41Z), as the API server writes metav1.Time. */
export function rfc3339(t: number | Date): string {
  return `${isoString(t).slice(0, -5)}Z`;
}

/** RFC 3339 with six fractional digits, as the API server writes metav1.MicroTime. */
export function rfc3339Micro(t: number | Date): string {
  return `${isoString(t).slice(0, -1)}000Z`;
}

/**
 * The IMF-fixdate of an HTTP Date header (RFC 9110 §5.6.7: Sun, 06 Nov 1994 08:49:37 GMT), as
 * `toUTCString` writes it for years 0 to 9999.
 */
export function httpDate(t: number | Date): string {
  const ms = epochMs(t);
  const c = civil(ms);
  if (c.year < 0 || c.year > 9999) return new Date(ms).toUTCString();
  return `${WEEKDAYS[c.weekday]}, ${pad2(c.day)} ${MONTHS[c.month - 1]} ${String(c.year).padStart(4, '0')} ${clock(c.ms)} GMT`;
}

/**
 * The digits of an ASN.1 time (RFC 5280 §4.1.2.5): YYYYMMDDHHMMSS in UTC, whole seconds; the caller
 * drops the century for a UTCTime. A RangeError outside the years 0 to 9999, which it cannot write.
 */
export function asn1TimeDigits(t: number | Date): string {
  const ms = epochMs(t);
  const c = civil(ms);
  if (c.year < 0 || c.year > 9999)
    throw new RangeError(
      `${new Date(ms).toISOString()} is outside the years 0000 to 9999 an ASN.1 time can hold`,
    );
  return `${String(c.year).padStart(4, '0')}${pad2(c.month)}${pad2(c.day)}${clock(c.ms).replaceAll(':', '')}`;
}
