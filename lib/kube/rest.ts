import { request } from 'node:https';
import { ApiException, type KubeConfig } from '@kubernetes/client-node';
import type { ListResult, PageRequest } from './informer.ts';

/**
 * A plain JSON request to the API server with the kubeconfig's credentials.
 * For bodies the generated clients would re-serialize lossily (a CRD's schema
 * keys `default`, `enum` and `x-kubernetes-validations` do not survive the
 * typed V1JSONSchemaProps model). Errors are ApiExceptions, like the clients'.
 */
export async function rawRequest<T = unknown>(
  kc: KubeConfig,
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE',
  path: string,
  body?: unknown,
  contentType = 'application/json',
  accept = 'application/json',
): Promise<T> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('no current cluster in kubeconfig');
  const url = new URL(cluster.server + path);
  const opts: import('node:https').RequestOptions = {
    method,
    hostname: url.hostname,
    port: url.port,
    path: url.pathname + url.search,
    headers: { accept, ...(body !== undefined ? { 'content-type': contentType } : {}) },
  };
  await kc.applyToHTTPSOptions(opts);
  const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise<T>((resolve, reject) => {
    const req = request(opts, (res) => {
      let chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        // The whole body is buffered: callers that list large objects ask for pages (see listPage).
        const text = Buffer.concat(chunks).toString('utf8');
        chunks = [];
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) {
          resolve((text ? JSON.parse(text) : undefined) as T);
        } else {
          reject(
            new ApiException(status, `${method} ${path} failed`, text, res.headers as Record<string, string>),
          );
        }
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${path} timed out`)));
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

/**
 * One page of a list at `path` (e.g. /api/v1/secrets) with the given
 * selectors, as plain JSON (no conversion through the typed models, which
 * costs more than the list itself over thousands of objects). For an
 * Informer's `list`: the informer asks for pages, so the response, buffered
 * and parsed whole, is one page, never the whole list.
 */
export function listPage<T>(
  kc: KubeConfig,
  path: string,
  selectors: { labelSelector?: string | undefined; fieldSelector?: string | undefined },
  page: PageRequest,
): Promise<ListResult<T>> {
  const query = new URLSearchParams();
  if (selectors.labelSelector) query.set('labelSelector', selectors.labelSelector);
  if (selectors.fieldSelector) query.set('fieldSelector', selectors.fieldSelector);
  query.set('limit', String(page.limit));
  if (page.continue) query.set('continue', page.continue);
  return rawRequest<ListResult<T>>(kc, 'GET', `${path}?${query}`);
}
