// Events on Certificates and issuers: best effort, Normal ones within a budget (under a burst of
// issuance they would add a third write per certificate for what the status already says),
// new Warnings within a larger one (WARNINGS_PER_SECOND), so thousands of objects failing at once
// do not flood the API server. A repeat of an Event (same object, type, reason and message) is not a new
// Event: like client-go's recorder, the first is updated, its count and lastTimestamp moving, at
// most once per `repeatIntervalMs` for each, so a failure retried for hours is one Event.
import type { Logger } from 'winston';
import { type Kube, paths } from '../lib/kube/client.ts';
import { describeApiError, isNotFound } from '../lib/kube/errors.ts';
import { TokenBucket } from '../lib/kube/ratelimit.ts';
import { isoString } from '../lib/time.ts';
import type { OperatorMetrics } from './metrics.ts';

/** The object an Event is about. Cluster-scoped ones (ClusterIssuers) get their Events in `eventNamespace`. */
export interface InvolvedObject {
  apiVersion: string;
  kind: string;
  name: string;
  namespace?: string | undefined;
  uid?: string | undefined;
}

interface Seen {
  namespace: string;
  /** The Event's name once created. */
  name?: string;
  /** Occurrences seen; written with the Event at most every repeatIntervalMs. */
  count: number;
  firstTimestamp: Date;
  lastTimestamp: Date;
  lastWrite: number;
  writing: boolean;
}

/** Repeats are remembered this long after the last one (the API server keeps Events an hour). */
const REMEMBER_MS = 30 * 60_000;
/** Events remembered at most; the oldest are forgotten first. */
const MAX_REMEMBERED = 4096;
/** New Warning Events a second, bursting to ten times that; repeats of remembered ones are not counted. */
const WARNINGS_PER_SECOND = 10;

export interface EventRecorderOptions {
  kube: Kube;
  /** Sets source.component and names the controller in logs. */
  component: string;
  /** Where Events about cluster-scoped objects are written (the operator's namespace). */
  eventNamespace: string;
  /** Normal Events a second at most, bursting to ten times that; 0: no limit. */
  normalPerSecond: number;
  /** A repeated Event's count is written at most this often (default 10 s). */
  repeatIntervalMs?: number | undefined;
  metrics: OperatorMetrics;
  logger: Logger;
  now?: () => Date;
}

export class EventRecorder {
  private readonly o: EventRecorderOptions;
  private readonly normal: TokenBucket;
  private readonly warnings = new TokenBucket(WARNINGS_PER_SECOND, 10 * WARNINGS_PER_SECOND);
  private readonly seen = new Map<string, Seen>();
  private errorLogged = false;

  constructor(o: EventRecorderOptions) {
    this.o = o;
    this.normal = new TokenBucket(o.normalPerSecond, 10 * o.normalPerSecond);
  }

  record(object: InvolvedObject, type: 'Normal' | 'Warning', reason: string, message: string): void {
    const text = message.slice(0, 1024);
    const now = (this.o.now ?? (() => new Date()))();
    const key = JSON.stringify([
      object.uid ?? `${object.kind}/${object.namespace}/${object.name}`,
      type,
      reason,
      text,
    ]);
    const previous = this.seen.get(key);
    if (previous && now.getTime() - previous.lastTimestamp.getTime() < REMEMBER_MS) {
      previous.count++;
      previous.lastTimestamp = now;
      this.seen.delete(key);
      this.seen.set(key, previous);
      if (
        !previous.writing &&
        previous.name &&
        now.getTime() - previous.lastWrite >= (this.o.repeatIntervalMs ?? 10_000)
      )
        this.update(key, previous, text);
      return;
    }
    if (!(type === 'Normal' ? this.normal : this.warnings).take()) {
      this.o.metrics.eventsDropped.inc({ type, reason });
      return;
    }
    const entry: Seen = {
      namespace: object.namespace ?? this.o.eventNamespace,
      count: 1,
      firstTimestamp: now,
      lastTimestamp: now,
      lastWrite: now.getTime(),
      writing: true,
    };
    this.seen.set(key, entry);
    if (this.seen.size > MAX_REMEMBERED) this.seen.delete(this.seen.keys().next().value!);
    this.o.kube
      .create<{ metadata?: { name?: string } }>(
        paths.events(entry.namespace),
        this.body(entry, object, type, reason, text),
      )
      .then((created) => {
        this.o.metrics.apiRequests.inc({ verb: 'create', resource: 'events' });
        entry.name = created.metadata?.name;
        entry.writing = false;
      })
      .catch((err) => {
        if (this.seen.get(key) === entry) this.seen.delete(key);
        this.failed(err);
      });
  }

  /** The remembered Event, its count and lastTimestamp moved to now; created again if it expired. */
  private update(key: string, entry: Seen, message: string) {
    entry.writing = true;
    entry.lastWrite = entry.lastTimestamp.getTime();
    const count = entry.count;
    this.o.kube
      .mergePatch(paths.events(entry.namespace, entry.name!), {
        count,
        lastTimestamp: isoString(entry.lastTimestamp),
        message,
      })
      .then(() => {
        this.o.metrics.apiRequests.inc({ verb: 'patch', resource: 'events' });
        entry.writing = false;
      })
      .catch((err) => {
        if (this.seen.get(key) === entry) this.seen.delete(key);
        // The API server dropped it (Events live an hour): the next repeat creates a new one.
        if (!isNotFound(err)) this.failed(err);
      });
  }

  private body(entry: Seen, object: InvolvedObject, type: string, reason: string, message: string) {
    return {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { generateName: `${object.name}.`, namespace: entry.namespace },
      involvedObject: {
        apiVersion: object.apiVersion,
        kind: object.kind,
        name: object.name,
        ...(object.namespace ? { namespace: object.namespace } : {}),
        ...(object.uid ? { uid: object.uid } : {}),
      },
      type,
      reason,
      message,
      source: { component: this.o.component },
      firstTimestamp: isoString(entry.firstTimestamp),
      lastTimestamp: isoString(entry.lastTimestamp),
      count: entry.count,
    };
  }

  private failed(err: unknown) {
    // Events are best effort, but a missing permission must be visible.
    if (!this.errorLogged)
      this.o.logger.warn('could not record an Event', {
        component: this.o.component,
        error: describeApiError(err),
      });
    this.errorLogged = true;
  }
}
