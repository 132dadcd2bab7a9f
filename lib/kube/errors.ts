import { ApiException } from '@kubernetes/client-node';

/** The HTTP status of a failed API call, or undefined for network and other errors. */
export function statusCode(err: unknown): number | undefined {
  return err instanceof ApiException ? err.code : undefined;
}

export const isNotFound = (err: unknown) => statusCode(err) === 404;
export const isConflict = (err: unknown) => statusCode(err) === 409;
export const isForbidden = (err: unknown) => statusCode(err) === 403;

/** A one-line description of an API error: the server's Status message when there is one. */
export function describeApiError(err: unknown): string {
  if (err instanceof ApiException) {
    try {
      const body = typeof err.body === 'string' ? JSON.parse(err.body) : err.body;
      if (body && typeof body.message === 'string') return `${err.code}: ${body.message}`;
    } catch {}
    return `HTTP ${err.code}`;
  }
  return err instanceof Error ? err.message : String(err);
}
