import { request } from 'node:https';
import { ApiException, type KubeConfig } from '@kubernetes/client-node';

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
): Promise<T> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('no current cluster in kubeconfig');
  const url = new URL(cluster.server + path);
  const opts: import('node:https').RequestOptions = {
    method,
    hostname: url.hostname,
    port: url.port,
    path: url.pathname + url.search,
    headers: { accept: 'application/json', ...(body !== undefined ? { 'content-type': contentType } : {}) },
  };
  await kc.applyToHTTPSOptions(opts);
  const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise<T>((resolve, reject) => {
    const req = request(opts, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
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
