// Every failure of a sigil command as one line saying what failed and what to do; the exit code
// is 2 (usage or API error), never 1, which means "something is not ready".
import type { CommanderError } from 'commander';
import { GROUP } from '../lib/api/types.ts';
import { statusCode } from '../lib/kube/errors.ts';

/** Exit codes: 0 all good, 1 something is not ready or invalid, 2 usage or API error. */
export const Exit = { Ok: 0, NotReady: 1, Error: 2 } as const;

/** A failure the command already put into words. */
export class CliError extends Error {}

/** The network error code under a fetch or https failure (ECONNREFUSED, ENOTFOUND, ...). */
function networkCode(err: unknown): string | undefined {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 5; depth++) {
    if (typeof e.code === 'string' && /^E[A-Z]+/.test(e.code)) return e.code;
    e = e.cause as typeof e;
  }
  return undefined;
}

let lastKube: { server?: string; kubeconfig?: string } = {};

/** Which kubeconfig (and server) the command loaded, for describing its errors. */
export function rememberKubeConfig(context: { server?: string; kubeconfig?: string }): void {
  lastKube = context;
}

/** The kubeconfig the command loaded, for describing its errors. */
export function lastKubeConfig(): { server?: string; kubeconfig?: string } {
  return lastKube;
}

function apiMessage(err: unknown): string | undefined {
  try {
    const raw = (err as { body?: unknown }).body;
    const body = typeof raw === 'string' ? JSON.parse(raw) : raw;
    return typeof body?.message === 'string' ? body.message : undefined;
  } catch {
    return undefined;
  }
}

/**
 * One line for any error a command can end with. `server` is the API server the kubeconfig
 * names, and `kubeconfig` where it came from, when known.
 */
export function describeCliError(
  err: unknown,
  context: { server?: string; kubeconfig?: string } = {},
): string {
  const where = context.server ? ` at ${context.server}` : '';
  const from = context.kubeconfig ? ` (from ${context.kubeconfig})` : '';
  if (err instanceof CliError) return err.message;
  const code = statusCode(err);
  if (code !== undefined) {
    const message = apiMessage(err);
    switch (code) {
      case 401:
        return `the API server${where} refused the credentials in the kubeconfig${from} (401 Unauthorized): log in again, or use another kubeconfig`;
      case 403:
        return `not allowed: ${message ?? '403 Forbidden'}; ask for the rights, or use another kubeconfig`;
      case 404:
        if (!message || message.includes('the server could not find the requested resource'))
          return `Sigil's resources (${GROUP}) are not installed in the cluster${where}: install the chart (helm install sigil charts/sigil) or the CRDs (kubectl apply -f crds/)`;
        return `${message}`;
      case 429:
        return `the API server${where} is too busy to answer (429 Too Many Requests; right after an install it may still be starting): retry in a few seconds`;
      default:
        return `the API server${where} answered ${code}${message ? `: ${message}` : ''}`;
    }
  }
  const network = networkCode(err);
  const text = err instanceof Error ? err.message : String(err);
  if (network === 'ENOENT' && /kubeconfig|config/i.test(text))
    return `${text}: pass --kubeconfig with the path of an existing kubeconfig, or set KUBECONFIG`;
  if (network === 'ENOENT') return `${text}`;
  if (network === 'ECONNREFUSED')
    return `cannot reach the API server${where}${from}: connection refused. Is the cluster running, and is this the kubeconfig you meant (--kubeconfig, KUBECONFIG)?`;
  if (network === 'ENOTFOUND' || network === 'EAI_AGAIN')
    return `cannot reach the API server${where}${from}: its host name does not resolve. Check the kubeconfig's server address`;
  if (network === 'ETIMEDOUT' || network === 'ECONNRESET' || network === 'EHOSTUNREACH')
    return `cannot reach the API server${where}${from} (${network}): check the network and the kubeconfig's server address`;
  if (network?.startsWith('ERR_TLS') || /certificate|self[- ]signed/i.test(text))
    return `the API server${where} did not pass TLS verification (${text}): check the kubeconfig's certificate-authority-data`;
  if (network) return `${text} (${network})`;
  return text;
}

/** Commander's own errors (unknown command or option, missing argument) as usage errors: exit 2. */
export function commanderExit(err: CommanderError): number {
  // Help asked for (--help, help) or the version: fine. Anything else, including help shown because
  // no command was given, is a usage error.
  return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? Exit.Ok : Exit.Error;
}
