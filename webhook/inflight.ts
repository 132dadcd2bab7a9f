// Bounds on the reviews the webhook holds at once, so a flood cannot take it
// past its memory limit or make every other namespace's pods wait behind it.
// - While a body arrives, the bytes that have actually arrived count against a
//   budget for all reviews together (never the size a header declares: a
//   caller that declares 7 MiB and sends one byte holds one byte). The server
//   cuts a body that is not complete soon after its headers, so an unfinished
//   request holds nothing for long and never holds a review slot.
// - Once a body is complete, the review takes a slot: one of a count for all
//   reviews, and one of a namespace's share (a count and bytes), so one
//   namespace's flood cannot hold what another's pods need.
// - A complete review whose namespace's share is full may wait a short,
//   bounded time for one of that namespace's slots (a Deployment scaled up
//   sends its replicas at once); waiting costs no CPU, the waiters per
//   namespace are capped, and their bytes stay in the budget above.
// Beyond that, the answer is fast and says so; nothing queues unboundedly.

export interface InFlightLimits {
  /** Complete reviews held at once, from all namespaces. */
  maxReviews: number;
  /** Bytes of review bodies held at once, arrived so far or complete. */
  maxBytes: number;
  /** Complete reviews held at once from one namespace. */
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

/** One request's place in the budget; release it exactly once, when the connection is done with it. */
export interface Ticket {
  /** Bytes of its body that have arrived. */
  bytes: number;
  /** Whether its bytes count against the part of the budget large reviews may use. */
  large: boolean;
  /** Set once the complete review holds a slot in this namespace's share. */
  namespace?: string;
  released: boolean;
}

export class InFlight {
  private reviews = 0;
  private bytes = 0;
  private largeBytes = 0;
  private readonly perNamespace = new Map<string, { reviews: number; bytes: number }>();
  /** Reviews waiting for a slot in their namespace's share, oldest first. */
  private readonly waiting = new Map<string, (() => void)[]>();

  readonly limits: InFlightLimits;

  constructor(limits: InFlightLimits) {
    this.limits = limits;
  }

  /** A request whose body is about to arrive; it holds nothing until bytes do. */
  start(): Ticket {
    return { bytes: 0, large: false, released: false };
  }

  /** Counts `n` more bytes of a body as they arrive; a reason when they would pass the budget. */
  receive(ticket: Ticket, n: number): string | undefined {
    const after = ticket.bytes + n;
    if (this.bytes + n > this.limits.maxBytes)
      return `the webhook holds ${mib(this.bytes)} of reviews and this one would pass its ${mib(this.limits.maxBytes)} budget; retry shortly`;
    const large = after > SMALL_REVIEW_BYTES;
    const largeAdded = large ? (ticket.large ? n : after) : 0;
    const largeBudget = this.limits.maxBytes - this.limits.reservedForSmallBytes;
    if (large && this.largeBytes + largeAdded > largeBudget)
      return `the webhook holds ${mib(this.largeBytes)} of reviews larger than ${SMALL_REVIEW_BYTES / 1024} KiB and this one would pass the ${mib(largeBudget)} they may use; retry shortly`;
    this.bytes += n;
    ticket.bytes = after;
    if (large) {
      this.largeBytes += largeAdded;
      ticket.large = true;
    }
    return undefined;
  }

  /**
   * Gives a complete review a slot in the total and in its namespace's share
   * (moving it when it already holds one elsewhere); a reason when there is none.
   */
  admit(ticket: Ticket, namespace: string): string | undefined {
    if (ticket.namespace === namespace) return undefined;
    const moving = ticket.namespace !== undefined;
    if (!moving && this.reviews >= this.limits.maxReviews)
      return `the webhook holds ${this.reviews} reviews, its limit`;
    const held = this.perNamespace.get(namespace) ?? { reviews: 0, bytes: 0 };
    if (held.reviews >= this.limits.maxReviewsPerNamespace)
      return `namespace ${namespace} has ${held.reviews} pod admissions in flight at the webhook, the most one namespace may have`;
    if (held.reviews > 0 && held.bytes + ticket.bytes > this.limits.maxBytesPerNamespace)
      return `namespace ${namespace} has ${mib(held.bytes)} of pod admissions in flight at the webhook, the most one namespace may have`;
    if (moving) this.leaveNamespace(ticket);
    else this.reviews++;
    held.reviews++;
    held.bytes += ticket.bytes;
    this.perNamespace.set(namespace, held);
    ticket.namespace = namespace;
    return undefined;
  }

  /**
   * Like admit, but when only the namespace's share is full, waits up to
   * `maxWaitMs` for one of its slots, behind at most `maxWaiters` others of
   * that namespace. The reason when there is still none.
   */
  async admitOrWait(
    ticket: Ticket,
    namespace: string,
    maxWaitMs: number,
    maxWaiters: number,
  ): Promise<string | undefined> {
    const deadline = Date.now() + maxWaitMs;
    let reason = this.admit(ticket, namespace);
    while (reason !== undefined && ticket.namespace === undefined && this.namespaceFull(namespace)) {
      const queue = this.waiting.get(namespace) ?? [];
      const left = deadline - Date.now();
      if (left <= 0 || queue.length >= maxWaiters || ticket.released) return reason;
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          const at = queue.indexOf(wake);
          if (at >= 0) queue.splice(at, 1);
          if (queue.length === 0 && this.waiting.get(namespace) === queue) this.waiting.delete(namespace);
          resolve();
        }, left);
        queue.push(wake);
        this.waiting.set(namespace, queue);
      });
      if (ticket.released) return 'the request ended while it waited';
      reason = this.admit(ticket, namespace);
    }
    return reason;
  }

  private namespaceFull(namespace: string): boolean {
    const held = this.perNamespace.get(namespace);
    return held !== undefined && held.reviews >= this.limits.maxReviewsPerNamespace;
  }

  /** For metrics and tests: reviews waiting for a slot of their namespace. */
  get waitingReviews(): number {
    let n = 0;
    for (const q of this.waiting.values()) n += q.length;
    return n;
  }

  release(ticket: Ticket): void {
    if (ticket.released) return;
    ticket.released = true;
    this.bytes -= ticket.bytes;
    if (ticket.large) this.largeBytes -= ticket.bytes;
    if (ticket.namespace === undefined) return;
    this.reviews--;
    this.leaveNamespace(ticket);
  }

  private leaveNamespace(ticket: Ticket): void {
    const held = this.perNamespace.get(ticket.namespace!)!;
    const namespace = ticket.namespace!;
    held.reviews--;
    held.bytes -= ticket.bytes;
    if (held.reviews === 0) this.perNamespace.delete(namespace);
    delete ticket.namespace;
    // A freed slot goes to the namespace's oldest waiter.
    const queue = this.waiting.get(namespace);
    const next = queue?.shift();
    if (queue && queue.length === 0) this.waiting.delete(namespace);
    next?.();
  }

  /** For metrics and tests. */
  get held(): { reviews: number; bytes: number; namespaces: number } {
    return { reviews: this.reviews, bytes: this.bytes, namespaces: this.perNamespace.size };
  }
}

const mib = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MiB`;
