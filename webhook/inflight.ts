// Bounds on the reviews the webhook holds at once, so a flood cannot take it
// past its memory limit or make every other namespace's pods wait behind it.
// Two stages, because a review's namespace is known only once its body is read:
// - on arrival: a count and a byte budget (the declared body size) for all
//   reviews together; beyond them the webhook answers 429 at once, without
//   reading the body;
// - once parsed: a count and a byte share per namespace, so one namespace
//   holds at most a quarter of the budget while its reviews wait on the API.
// Beyond either, the answer is fast and says so; nothing queues unboundedly.

export interface InFlightLimits {
  /** Reviews held at once, from all namespaces. */
  maxReviews: number;
  /** Sum of the declared body sizes of the reviews held at once. */
  maxBytes: number;
  /** Reviews held at once from one namespace. */
  maxReviewsPerNamespace: number;
  /** Bytes held at once for one namespace (at least one review is always let in). */
  maxBytesPerNamespace: number;
  /**
   * Part of maxBytes only reviews up to SMALL_REVIEW_BYTES may use. Pods are
   * usually a few KiB: a flood of large ones (whose namespace is not known
   * until they are read) then cannot take the budget the usual pods need.
   */
  reservedForSmallBytes: number;
}

/** Reviews up to this size count as small (a pod of a few containers is 2 to 20 KiB). */
export const SMALL_REVIEW_BYTES = 64 * 1024;

/** A review's place in the budget; release it exactly once, when the answer is sent. */
export interface Ticket {
  readonly bytes: number;
  readonly large: boolean;
  namespace?: string;
  released: boolean;
}

/** The smallest a review is counted as, so thousands of tiny ones still add up. */
const MIN_COUNTED_BYTES = 2048;

export class InFlight {
  private reviews = 0;
  private bytes = 0;
  private largeBytes = 0;
  private readonly perNamespace = new Map<string, { reviews: number; bytes: number }>();

  readonly limits: InFlightLimits;

  constructor(limits: InFlightLimits) {
    this.limits = limits;
  }

  /** Takes a place for a review whose body declares `declaredBytes`; a reason when there is none. */
  arrive(declaredBytes: number): Ticket | string {
    const bytes = Math.max(MIN_COUNTED_BYTES, declaredBytes);
    if (this.reviews >= this.limits.maxReviews)
      return `the webhook holds ${this.reviews} reviews, its limit; retry shortly`;
    if (this.bytes + bytes > this.limits.maxBytes)
      return `the webhook holds ${mib(this.bytes)} of reviews and this one would pass its ${mib(this.limits.maxBytes)} budget; retry shortly`;
    const large = bytes > SMALL_REVIEW_BYTES;
    const largeBudget = this.limits.maxBytes - this.limits.reservedForSmallBytes;
    if (large && this.largeBytes + bytes > largeBudget)
      return `the webhook holds ${mib(this.largeBytes)} of reviews larger than ${SMALL_REVIEW_BYTES / 1024} KiB and this one would pass the ${mib(largeBudget)} they may use; retry shortly`;
    this.reviews++;
    this.bytes += bytes;
    if (large) this.largeBytes += bytes;
    return { bytes, large, released: false };
  }

  /** Counts a parsed review against its namespace; a reason when the namespace has its share. */
  admitNamespace(ticket: Ticket, namespace: string): string | undefined {
    const held = this.perNamespace.get(namespace) ?? { reviews: 0, bytes: 0 };
    if (held.reviews >= this.limits.maxReviewsPerNamespace)
      return `namespace ${namespace} has ${held.reviews} pod admissions in flight at the webhook, the most one namespace may have`;
    if (held.reviews > 0 && held.bytes + ticket.bytes > this.limits.maxBytesPerNamespace)
      return `namespace ${namespace} has ${mib(held.bytes)} of pod admissions in flight at the webhook, the most one namespace may have`;
    held.reviews++;
    held.bytes += ticket.bytes;
    this.perNamespace.set(namespace, held);
    ticket.namespace = namespace;
    return undefined;
  }

  release(ticket: Ticket): void {
    if (ticket.released) return;
    ticket.released = true;
    this.reviews--;
    this.bytes -= ticket.bytes;
    if (ticket.large) this.largeBytes -= ticket.bytes;
    if (ticket.namespace === undefined) return;
    const held = this.perNamespace.get(ticket.namespace)!;
    held.reviews--;
    held.bytes -= ticket.bytes;
    if (held.reviews === 0) this.perNamespace.delete(ticket.namespace);
  }

  /** For metrics and tests. */
  get held(): { reviews: number; bytes: number; namespaces: number } {
    return { reviews: this.reviews, bytes: this.bytes, namespaces: this.perNamespace.size };
  }
}

const mib = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MiB`;
