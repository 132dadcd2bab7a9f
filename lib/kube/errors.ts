import { KubeApiError } from './client.ts';

/**
 * An error that carries the API server's answer: Sigil's own KubeApiError, or
 * client-node's ApiException (the CLI's calls), recognised by its shape so
 * that nothing here loads client-node.
 */
function apiError(err: unknown): { code: number; body: unknown } | undefined {
  if (err instanceof KubeApiError) return err;
  if (err instanceof Error && typeof (err as { code?: unknown }).code === 'number' && 'body' in err)
    return err as unknown as { code: number; body: unknown };
  return undefined;
}

/** The HTTP status of a failed API call, or undefined for network and other errors. */
export function statusCode(err: unknown): number | undefined {
  return apiError(err)?.code;
}

export const isNotFound = (err: unknown) => statusCode(err) === 404;
export const isConflict = (err: unknown) => statusCode(err) === 409;
export const isForbidden = (err: unknown) => statusCode(err) === 403;

/** A one-line description of an API error: the server's Status message when there is one. */
export function describeApiError(err: unknown): string {
  const api = apiError(err);
  if (api) {
    try {
      const body = typeof api.body === 'string' ? JSON.parse(api.body) : api.body;
      if (body && typeof body.message === 'string') return `${api.code}: ${body.message}`;
    } catch {}
    return `HTTP ${api.code}`;
  }
  return err instanceof Error ? err.message : String(err);
}
