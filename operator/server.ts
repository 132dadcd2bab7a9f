import type { Server } from 'node:http';
import express from 'express';
import type { Registry } from 'prom-client';

export interface HealthSource {
  /** Liveness: the process can serve. */
  live: () => boolean;
  /** Readiness: a message saying what is missing, or undefined when ready. */
  notReady: () => string | undefined;
}

/** /healthz, /readyz and /metrics over plain HTTP on the metrics address. */
export function startHealthServer(
  address: string,
  registry: Registry,
  health: HealthSource,
): Promise<Server> {
  const app = express();
  app.disable('x-powered-by');
  app.get('/healthz', (_req, res) => {
    res
      .status(health.live() ? 200 : 500)
      .type('text/plain')
      .send(health.live() ? 'ok\n' : 'not live\n');
  });
  app.get('/readyz', (_req, res) => {
    const problem = health.notReady();
    res
      .status(problem ? 503 : 200)
      .type('text/plain')
      .send(problem ? `${problem}\n` : 'ok\n');
  });
  app.get('/metrics', async (_req, res) => {
    res.type(registry.contentType).send(await registry.metrics());
  });
  const [host, port] = splitAddress(address);
  return new Promise((resolve, reject) => {
    const server = app.listen(port, host, () => resolve(server));
    server.on('error', reject);
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
