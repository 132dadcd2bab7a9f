#!/usr/bin/env bash
# make test: typecheck, lint, unit, integration and fault tests, then e2e on a real node.
#
# One e2e test waits for a kubelet to refresh a pod certificate on its own: Kubernetes puts the
# refresh at least 10 minutes after issuance and the kubelet adds up to 5 minutes of jitter, with
# no way to force it. That test file starts first, in the background (its node is idle while it
# waits), beside the other suites, which use control planes of their own; the remaining e2e files,
# which need the machine's one node, run once it is done. Its output is printed when it ends.
set -uo pipefail
cd "$(dirname "$0")/.."

E2E=(node --experimental-vm-modules --no-warnings=ExperimentalWarning node_modules/jest/bin/jest.js --selectProjects e2e --runInBand)
LONG=test/e2e/podcertificates.test.ts
log="$(mktemp -t sigil-e2e-refresh.XXXXXX)"

"${E2E[@]}" --testPathPatterns "$LONG" >"$log" 2>&1 &
long=$!
# Interrupted: stop the background run too (its process only). Jest skips afterAll on an interrupt, so
# its node may be left running under /tmp/sigil-e2e-podcerts-*: lib/testing/node/cluster.ts stopCluster stops it.
trap 'kill -INT "$long" 2>/dev/null; wait "$long"; rm -f "$log"; exit 130' INT TERM
echo "[test] $LONG runs in the background (pid $long; about 15 minutes, mostly waiting for a kubelet refresh)"

status=0
npm run typecheck && npm run lint && npm run test:unit && npm run test:integration && npm run test:faults || status=$?

echo "[test] waiting for $LONG"
wait "$long"
long_status=$?
trap - INT TERM
cat "$log"
rm -f "$log"
if [ "$status" -ne 0 ]; then
  echo "[test] FAILED: typecheck, lint, unit, integration or fault tests (exit $status)"
  exit "$status"
fi
if [ "$long_status" -ne 0 ]; then
  echo "[test] FAILED: $LONG (exit $long_status)"
  exit "$long_status"
fi
"${E2E[@]}" --testPathIgnorePatterns "$LONG"
