# Every recipe runs with the project's own Node 24 (the `node` devDependency)
# first on PATH, whatever Node the machine has.
SHELL := /bin/bash
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

NODE_STAMP := node_modules/.package-lock.json
# The node's packages and binaries, and helm, only where a node can run (root, cgroups); elsewhere the
# e2e suite says why it skips and the demo why it runs on the API server alone.
NODE_TOOLS_WHERE_A_NODE_RUNS := if [ "$$(id -u)" = 0 ] && [ -d /sys/fs/cgroup ] && [ "$$SIGIL_NODE" != 0 ]; then \
	hack/node-packages.sh && hack/build-tools.sh node && hack/build-tools.sh helm; fi

.PHONY: install tools node-tools build image typecheck lint format test-unit test-integration test test-e2e test-faults cluster-up cluster-down dev demo demo-down docs chart-lint bench bench-compare bench-profile bench-injection clean

## install: npm ci and the control-plane binaries (built once per machine into ~/.cache/sigil)
install: $(NODE_STAMP) tools

$(NODE_STAMP): package.json package-lock.json
	@# The first install runs under the machine's Node; what it installs (the npm package node) is the
	@# Node 24 every target then uses. Engine warnings for Node 24 packages are expected then: one line instead.
	@if [ "$$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)" -lt 24 ]; then \
	  echo "npm ci under this machine's Node $$(node -v 2>/dev/null): it installs the project's Node 24, which every target uses; Node 24 engine warnings are expected and not shown"; \
	  npm ci --no-audit --no-fund --loglevel=error; \
	else npm ci --no-audit --no-fund; fi
	@touch $(NODE_STAMP)

tools:
	hack/build-tools.sh all

## node-tools: what a real node needs: containerd, runc, CNI plugins, iptables, conntrack (apt, as root) and
## kubelet, kube-controller-manager, kube-scheduler, kube-proxy, kubectl, CoreDNS (built once per machine)
node-tools:
	hack/node-packages.sh
	hack/build-tools.sh node

## build: compile TypeScript to dist/ and link the `sigil` command for npx
build: $(NODE_STAMP)
	npm run build
	chmod +x dist/cli/main.js
	ln -sf ../../dist/cli/main.js node_modules/.bin/sigil

## image: the Sigil image (and the node's pause image) as OCI archives in dist/images/, without Docker;
## loaded into the node when one is running
image: build
	node hack/image.ts

typecheck: $(NODE_STAMP)
	npm run typecheck

lint: $(NODE_STAMP)
	npm run lint

format: $(NODE_STAMP)
	npm run format

test-unit: $(NODE_STAMP)
	npm run test:unit

test-integration: $(NODE_STAMP)
	hack/build-tools.sh control-plane
	npm run test:integration

## test: what CI runs: typecheck, lint, unit, integration and fault tests against real control planes, and e2e on a
## real node (the e2e test that waits for a kubelet's refresh runs beside the others: hack/test-all.sh)
test: image
	hack/build-tools.sh all
	$(NODE_TOOLS_WHERE_A_NODE_RUNS)
	hack/test-all.sh

## test-faults: break things on purpose: component restarts, operator kills, bad input, fuzzing (also run by make test)
test-faults: $(NODE_STAMP)
	hack/build-tools.sh control-plane
	npm run test:faults

## test-e2e: a real one-node cluster: pods from the built image, a Deployment, a Service by ClusterIP and DNS,
## and the chart installed with helm injecting identities into an opted-in Deployment
test-e2e: image
	hack/build-tools.sh control-plane
	$(NODE_TOOLS_WHERE_A_NODE_RUNS)
	node --experimental-vm-modules --no-warnings=ExperimentalWarning node_modules/jest/bin/jest.js --selectProjects e2e --runInBand

## cluster-up: a local cluster in the background; admin kubeconfig in .cluster/kubeconfig. With a real node
## (kubelet, containerd, kube-proxy, DNS) when the machine can run one (root, cgroups, overlayfs), else
## kube-apiserver + etcd only (SIGIL_NODE=0 forces that)
cluster-up: $(NODE_STAMP)
	hack/build-tools.sh control-plane
	node hack/cluster.ts up

## cluster-down: stop it, remove what its node created on the host, and remove .cluster/
cluster-down: $(NODE_STAMP)
	node hack/cluster.ts down

## dev: cluster-up, CRDs, a dev CA and ClusterIssuer, then the operator and the webhook in the foreground until Ctrl-C
dev: $(NODE_STAMP)
	hack/build-tools.sh control-plane
	node hack/dev.ts

## demo: Sigil's whole job on a real one-node cluster (the API server alone where no node can run,
## or with SIGIL_NODE=0); KEEP=1 leaves it running
demo: image
	hack/build-tools.sh control-plane
	$(NODE_TOOLS_WHERE_A_NODE_RUNS)
	KEEP=$(KEEP) node hack/demo.ts

## demo-down: stop what `make demo KEEP=1` left running
demo-down: $(NODE_STAMP)
	@# Only the processes make demo KEEP=1 recorded, and only while each is still this checkout's sigil.
	-@if [ -f .demo/pids ]; then for p in $$(cat .demo/pids); do \
	  if tr '\0' ' ' < /proc/$$p/cmdline 2>/dev/null | grep -qF '$(CURDIR)/cli/main.ts'; then kill $$p; fi; \
	done; rm -f .demo/pids; fi
	SIGIL_CLUSTER_DIR=.demo node hack/cluster.ts down

## chart-lint: helm lint, and helm template with default values, with every option on, and namespace-scoped
chart-lint:
	hack/build-tools.sh helm
	$$(hack/build-tools.sh --print-dir)/helm lint charts/sigil
	@# No --kube-version: helm assumes the version its build was stamped with, as a user's helm does.
	$$(hack/build-tools.sh --print-dir)/helm template sigil charts/sigil -n sigil-system >/dev/null
	$$(hack/build-tools.sh --print-dir)/helm template sigil charts/sigil -n sigil-system --kube-version 1.37.2 \
	  --set prometheus.serviceMonitor.enabled=true --set prometheus.prometheusRule.enabled=true \
	  --set networkPolicy.enabled=true --set operator.ownerReferences=true --set ca.existingSecret=my-ca --set podCertificates.enabled=true \
	  --set-json 'issuer.policy={"maxDuration":"720h","allowedDNSNames":["*.example.com"]}' \
	  --set webhook.clientAuth.enabled=true --set webhook.clientAuth.existingConfigMap=apiserver-webhook-client-ca \
	  --set 'webhook.clientAuth.allowedNames={kube-apiserver-webhook-client}' \
	  --set-json 'networkPolicy.metricsPodSelector={"matchLabels":{"app.kubernetes.io/name":"prometheus"}}' >/dev/null
	$$(hack/build-tools.sh --print-dir)/helm template sigil charts/sigil -n sigil-system --kube-version 1.37.2 \
	  --set scope.mode=Namespace --set scope.namespace=apps --set networkPolicy.enabled=true >/dev/null
	@echo "chart renders with default values, with every option on, and namespace-scoped"

## docs: regenerate docs/api.md from the CRD schemas and copy the CRDs into the chart
docs: $(NODE_STAMP)
	cp crds/*.yaml charts/sigil/files/crds/
	node hack/gen-api-docs.ts

## bench: issuance, ceiling, webhook, memory, restart and renewal-storm figures, and on a real node pod start,
## Secret to file and RSS as pods (not part of make test). SECTIONS=ttr,bulk,ceiling,restart,memory,webhook,flood,storm,node
## Counts: SEQUENTIAL=200 BULK=1000,10000 UNRELATED=30000 LARGE=300 STORM=1000 WEBHOOK_REQUESTS=3000 PODS=500
## NODE_PODS=10 NODE_RENEWALS=5
bench: image
	hack/build-tools.sh control-plane
	$(NODE_TOOLS_WHERE_A_NODE_RUNS)
	node bench/run.ts

## bench-compare: Sigil and cert-manager side by side on the same kind of local API server, alternating, medians
## and ratios, a restart included. CERT_MANAGER_BIN=<cert-manager controller> (or CERT_MANAGER_GZ);
## ROUNDS=3 SEQUENTIAL=100 COUNT=1000 UNRELATED=10000 RESTART_WATCH_SECONDS=30 BULK_TIMEOUT_SECONDS=max(1800, COUNT*0.4)
bench-compare: build
	hack/build-tools.sh control-plane
	node bench/compare.ts

## bench-profile: CPU profile of the operator issuing COUNT (default 2000) Certificates at once, summarised;
## CPU_PROFILE=0 HEAP_SNAPSHOT=1 for heap snapshots at rest, mid-burst and holding COUNT, by what holds the memory
bench-profile: build
	node bench/profile.ts

## bench-injection: how long a new pod waits for its certificate (prints figures, asserts nothing)
bench-injection: $(NODE_STAMP)
	hack/build-tools.sh control-plane
	node bench/injection.ts

clean:
	rm -rf dist coverage
