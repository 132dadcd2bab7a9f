import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { KubeConfig, V1CustomResourceDefinition } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { isConflict, isNotFound } from './errors.ts';
import { rawRequest } from './rest.ts';

const CRD_PATH = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions';

/** crds/ at the repository root, from source (lib/kube) or from dist (dist/lib/kube). */
export function crdDirectory(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const up of ['../..', '../../..']) {
    const dir = resolve(here, up, 'crds');
    try {
      if (readdirSync(dir).some((f) => f.endsWith('.yaml'))) return dir;
    } catch {}
  }
  throw new Error('crds/ directory not found next to the package');
}

export function loadCrds(dir = crdDirectory()): V1CustomResourceDefinition[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .flatMap((f) =>
      parseAllDocuments(readFileSync(join(dir, f), 'utf8')).map(
        (d) => d.toJS() as V1CustomResourceDefinition,
      ),
    );
}

/** Creates or updates Sigil's CRDs and waits until the API server serves them. */
export async function installCrds(kc: KubeConfig, timeoutMs = 30_000): Promise<void> {
  const crds = loadCrds();
  for (const crd of crds) {
    const name = crd.metadata!.name!;
    for (let attempt = 0; ; attempt++) {
      try {
        const existing = await rawRequest<V1CustomResourceDefinition>(kc, 'GET', `${CRD_PATH}/${name}`);
        crd.metadata!.resourceVersion = existing.metadata!.resourceVersion;
        await rawRequest(kc, 'PUT', `${CRD_PATH}/${name}`, crd);
        break;
      } catch (err) {
        if (isNotFound(err)) {
          await rawRequest(kc, 'POST', CRD_PATH, crd);
          break;
        }
        if (isConflict(err) && attempt < 5) continue;
        throw err;
      }
    }
  }
  const deadline = Date.now() + timeoutMs;
  for (const crd of crds) {
    for (;;) {
      const current = await rawRequest<V1CustomResourceDefinition>(
        kc,
        'GET',
        `${CRD_PATH}/${crd.metadata!.name}`,
      );
      if (current.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) break;
      if (Date.now() > deadline) throw new Error(`CRD ${crd.metadata!.name} was not established in time`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
