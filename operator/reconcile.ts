import type { Logger } from 'winston';
import { describeApiError } from '../lib/kube/errors.ts';
import type { WorkQueue } from '../lib/kube/queue.ts';
import type { OperatorMetrics } from './metrics.ts';

/**
 * Runs one key through a controller: counts the result, and on an error logs it
 * and hands the key back to the queue with its backoff.
 */
export async function reconcileKey(
  controller: string,
  key: string,
  process: (key: string) => Promise<void>,
  queue: WorkQueue,
  metrics: OperatorMetrics,
  logger: Logger,
): Promise<void> {
  try {
    await process(key);
    metrics.reconcile.inc({ controller, result: 'success' });
  } catch (err) {
    metrics.reconcile.inc({ controller, result: 'error' });
    const delay = queue.retry(key);
    logger.error('reconcile failed; retrying', {
      controller,
      key,
      retryInMs: delay,
      error: describeApiError(err),
    });
  }
}
