import { removeDir, stopControlPlane } from '../../lib/testing/controlplane.ts';

export default async function globalTeardown() {
  const state = globalThis.__SIGIL_CONTROL_PLANE__;
  if (!state) return;
  await stopControlPlane(state);
  removeDir(state.dir);
}
