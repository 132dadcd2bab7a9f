import type { Server } from 'node:http';
import type { Registry } from 'prom-client';
import { http } from '../lib/builtins.ts';
import { type Probes, sendText, serveProbes } from '../lib/http.ts';

/** Liveness and readiness, as the probes answer them. */
export type HealthSource = Omit<Probes, 'registry'>;

/** /healthz, /readyz and /metrics over plain HTTP on the metrics address. */
export function startHealthServer(
  address: string,
  registry: Registry,
  health: HealthSource,
): Promise<Server> {
  const server = http.createServer((req, res) => {
    if (!serveProbes(req, res, { ...health, registry }))
      sendText(res, 404, 'the operator serves GET /healthz, /readyz and /metrics\n');
  });
  // Prometheus scrapes every 30 s or so over one kept-alive connection: Node's 5 s keep-alive
  // closed it between scrapes, and a scrape sent as it closed failed with ECONNRESET.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  const [host, port] = splitAddress(address);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

export function splitAddress(address: string): [string, number] {
  const i = address.lastIndexOf(':');
  const host = i <= 0 ? '0.0.0.0' : address.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(address.slice(i + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`invalid address "${address}": expected host:port`);
  return [host, port];
}
