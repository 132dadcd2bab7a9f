import { type KubeAccess, kubeFor } from './client.ts';
import type { ListResult, PageRequest } from './informer.ts';

/**
 * A plain JSON request to the API server with the kubeconfig's credentials,
 * over the connections of its shared client (see ./client.ts). For bodies the
 * generated clients would re-serialize lossily (a CRD's schema keys `default`,
 * `enum` and `x-kubernetes-validations` do not survive the typed
 * V1JSONSchemaProps model). Errors are KubeApiErrors.
 */
export function rawRequest<T = unknown>(
  kc: KubeAccess,
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE',
  path: string,
  body?: unknown,
  contentType = 'application/json',
  accept = 'application/json',
): Promise<T> {
  return kubeFor(kc).request<T>(method, path, body, { contentType, accept });
}

/**
 * One page of a list at `path` (e.g. /api/v1/secrets) with the given
 * selectors, as plain JSON (no conversion through the typed models, which
 * costs more than the list itself over thousands of objects). For an
 * Informer's `list`: the informer asks for pages, so the response, buffered
 * and parsed whole, is one page, never the whole list.
 */
export function listPage<T>(
  kc: KubeAccess,
  path: string,
  selectors: { labelSelector?: string | undefined; fieldSelector?: string | undefined },
  page: PageRequest,
): Promise<ListResult<T>> {
  return kubeFor(kc).list<ListResult<T>>(path, {
    labelSelector: selectors.labelSelector,
    fieldSelector: selectors.fieldSelector,
    limit: page.limit,
    continue: page.continue,
  });
}
