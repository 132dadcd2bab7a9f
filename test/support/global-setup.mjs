// One real control plane per test run; tests find it through SIGIL_TEST_KUBECONFIG.
// Setting SIGIL_TEST_KUBECONFIG yourself (for example to .cluster/kubeconfig after
// `make cluster-up`) reuses that control plane instead of starting one.
// Plain JavaScript: jest loads global setup natively, and Node runs the .ts it imports.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startControlPlane } from '../../lib/testing/controlplane.ts';

export default async function globalSetup() {
  if (process.env.SIGIL_TEST_KUBECONFIG) return;
  const dir = mkdtempSync(join(tmpdir(), 'sigil-test-cp-'));
  const started = Date.now();
  const state = await startControlPlane({ dir, persistent: false });
  globalThis.__SIGIL_CONTROL_PLANE__ = state;
  process.env.SIGIL_TEST_KUBECONFIG = state.kubeconfig;
  process.env.SIGIL_TEST_CONTROL_PLANE_DIR = dir;
  console.log(`\ncontrol plane ready at ${state.server} in ${Date.now() - started} ms`);
}
