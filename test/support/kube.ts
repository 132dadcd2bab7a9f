// Helpers for integration tests: clients for the run's control plane and
// namespaces of their own.
import { randomBytes } from 'node:crypto';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { loadKubeConfig } from '../../lib/kube/config.ts';

export function testKubeConfig(): KubeConfig {
  const path = process.env.SIGIL_TEST_KUBECONFIG;
  if (!path)
    throw new Error(
      'SIGIL_TEST_KUBECONFIG is not set: run integration tests through jest (npm run test:integration)',
    );
  const kc = loadKubeConfig(path);
  return kc;
}

export function kubeconfigPath(): string {
  return process.env.SIGIL_TEST_KUBECONFIG!;
}

/** Creates a namespace with a unique name starting with `prefix`. */
export async function createTestNamespace(
  kc: KubeConfig,
  prefix: string,
  labels: Record<string, string> = {},
) {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name, labels } } });
  return name;
}

/** Polls `check` until it returns a value that is not undefined, or fails with `what` after the timeout. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`,
  );
}
