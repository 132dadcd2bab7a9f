// Events on Certificates: best effort, Normal ones within a budget (under a
// burst of issuance they would add a third write per certificate for what the
// status already says), Warnings always.
import type { CoreV1Api } from '@kubernetes/client-node';
import type { Logger } from 'winston';
import { API_VERSION, type Certificate } from '../../lib/api/types.ts';
import { describeApiError } from '../../lib/kube/errors.ts';
import { TokenBucket } from '../../lib/kube/ratelimit.ts';
import type { OperatorMetrics } from '../metrics.ts';

export class CertificateEvents {
  private readonly normal: TokenBucket;
  private errorLogged = false;
  private readonly core: CoreV1Api;
  private readonly metrics: OperatorMetrics;
  private readonly logger: Logger;

  /** `normalPerSecond` Normal Events a second at most, bursting to ten times that; 0: no limit. */
  constructor(core: CoreV1Api, normalPerSecond: number, metrics: OperatorMetrics, logger: Logger) {
    this.core = core;
    this.metrics = metrics;
    this.logger = logger;
    this.normal = new TokenBucket(normalPerSecond, 10 * normalPerSecond);
  }

  record(certificate: Certificate, type: 'Normal' | 'Warning', reason: string, message: string): void {
    if (type === 'Normal' && !this.normal.take()) {
      this.metrics.eventsDropped.inc({ type, reason });
      return;
    }
    const now = new Date();
    this.core
      .createNamespacedEvent({
        namespace: certificate.metadata.namespace!,
        body: {
          metadata: {
            generateName: `${certificate.metadata.name}.`,
            namespace: certificate.metadata.namespace,
          },
          involvedObject: {
            apiVersion: API_VERSION,
            kind: 'Certificate',
            name: certificate.metadata.name,
            namespace: certificate.metadata.namespace,
            uid: certificate.metadata.uid,
          },
          type,
          reason,
          message: message.slice(0, 1024),
          source: { component: 'sigil-operator' },
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      })
      .then(() => this.metrics.apiRequests.inc({ verb: 'create', resource: 'events' }))
      .catch((err) => {
        // Events are best effort, but a missing permission must be visible.
        if (!this.errorLogged)
          this.logger.warn('could not record an Event', {
            controller: 'certificates',
            error: describeApiError(err),
          });
        this.errorLogged = true;
      });
  }
}
