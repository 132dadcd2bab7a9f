// Reads a review's body, counting its bytes as they arrive and cutting a body
// that trickles. The API server writes a review in one go, right after its
// headers; a body still incomplete a moment later comes from someone holding
// the connection open to take the webhook's budget.
import type { IncomingMessage } from 'node:http';
import { ReviewError, ReviewErrorCode } from './errors.ts';

export interface BodyLimits {
  /** Largest body read; beyond it the request is refused. */
  maxBytes: number;
  /** Time from the headers to the body's last byte. */
  deadlineMs: number;
  /** Counts arriving bytes against the webhook's budget; a reason when they would pass it. */
  receive: (bytes: number) => string | undefined;
}

/**
 * The whole body, or a ReviewError (413 too large, 429 over the budget, 408
 * too slow). On an error the caller answers and closes the connection: the
 * rest of the body is never read.
 */
export function readBody(req: IncomingMessage, o: BodyLimits): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const finish = (err?: Error) => {
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('aborted', onAborted);
      req.off('error', onError);
      if (err) {
        req.pause();
        reject(err);
      } else resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length));
    };
    const onData = (chunk: Buffer) => {
      if (length + chunk.length > o.maxBytes)
        return finish(
          new ReviewError(
            ReviewErrorCode.MalformedReview,
            `the body is larger than ${o.maxBytes} bytes`,
            413,
          ),
        );
      const refused = o.receive(chunk.length);
      if (refused) return finish(new ReviewError(ReviewErrorCode.Overloaded, refused));
      chunks.push(chunk);
      length += chunk.length;
    };
    const onEnd = () => finish();
    const onAborted = () => finish(new ReviewError(ReviewErrorCode.MalformedReview, 'the client went away'));
    const onError = (err: Error) => finish(err);
    const timer = setTimeout(
      () =>
        finish(
          new ReviewError(
            ReviewErrorCode.SlowRequest,
            `the body did not arrive within ${o.deadlineMs} ms of its headers (${length} bytes came); the API server sends a review at once`,
          ),
        ),
      o.deadlineMs,
    );
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('aborted', onAborted);
    req.on('error', onError);
  });
}
