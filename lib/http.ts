// The few HTTP answers the operator and the webhook give, on node:http
// directly. express was the server here; four fixed routes need none of it,
// and loaded it kept 8 MiB resident in each process (Node 24: 69.8 MiB for
// x509 + prom-client + https, 79.7 MiB with express and winston added).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { httpDate } from './time.ts';

export function sendText(
  res: ServerResponse,
  status: number,
  text: string,
  contentType = 'text/plain; charset=utf-8',
) {
  const body = Buffer.from(text);
  // The Date header from lib/time.ts: Node's own is Date's toUTCString (see there).
  res.sendDate = false;
  res.writeHead(status, {
    date: httpDate(Date.now()),
    'content-type': contentType,
    'content-length': body.length,
  });
  res.end(body);
}

export function sendJson(res: ServerResponse, status: number, value: unknown) {
  sendText(res, status, JSON.stringify(value), 'application/json; charset=utf-8');
}

export interface Probes {
  /** Liveness: the process can serve. */
  live: () => boolean;
  /** Readiness: a message saying what is missing, or undefined when ready. */
  notReady: () => string | undefined;
  registry: Registry;
}

/** The request's path without its query. */
export function pathOf(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

/**
 * Answers GET (or HEAD) /healthz, /readyz and /metrics; returns false for any
 * other request, which the caller answers.
 */
export function serveProbes(req: IncomingMessage, res: ServerResponse, p: Probes): boolean {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  switch (pathOf(req)) {
    case '/healthz': {
      const live = p.live();
      sendText(res, live ? 200 : 500, live ? 'ok\n' : 'not live\n');
      return true;
    }
    case '/readyz': {
      const problem = p.notReady();
      sendText(res, problem ? 503 : 200, problem ? `${problem}\n` : 'ok\n');
      return true;
    }
    case '/metrics':
      p.registry.metrics().then(
        (text) => sendText(res, 200, text, p.registry.contentType),
        (err: unknown) => sendText(res, 500, `metrics failed: ${(err as Error).message}\n`),
      );
      return true;
    default:
      return false;
  }
}
