# Every recipe runs with the project's own Node 24 (the `node` devDependency)
# first on PATH, whatever Node the machine has.
SHELL := /bin/bash
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

NODE_STAMP := node_modules/.package-lock.json

.PHONY: install tools build typecheck lint format test-unit test-integration test test-faults cluster-up cluster-down dev demo demo-down docs chart-lint bench bench-profile bench-injection clean

## install: npm ci and the control-plane binaries (built once per machine into ~/.cache/sigil)
install: $(NODE_STAMP) tools

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $(NODE_STAMP)

tools:
	hack/build-tools.sh all

## build: compile TypeScript to dist/ and link the `sigil` command for npx
build: $(NODE_STAMP)
	npm run build
	chmod +x dist/cli/main.js
	ln -sf ../../dist/cli/main.js node_modules/.bin/sigil

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

## test: what CI runs: typecheck, lint, unit, integration and fault tests against real control planes
test: $(NODE_STAMP)
	hack/build-tools.sh all
	npm run typecheck
	npm run lint
	npm run test:unit
	npm run test:integration
	npm run test:faults

## test-faults: break things on purpose: component restarts, operator kills, bad input, fuzzing (also run by make test)
test-faults: $(NODE_STAMP)
	hack/build-tools.sh control-plane
	npm run test:faults

## cluster-up: a local kube-apiserver + etcd in the background; admin kubeconfig in .cluster/kubeconfig
cluster-up: $(NODE_STAMP)
	hack/build-tools.sh control-plane
	node hack/cluster.ts up

## cluster-down: stop it and remove .cluster/
cluster-down: $(NODE_STAMP)
	node hack/cluster.ts down

## dev: cluster-up, CRDs, a dev CA and ClusterIssuer, then the operator and the webhook in the foreground until Ctrl-C
dev: $(NODE_STAMP)
	hack/build-tools.sh control-plane
	node hack/dev.ts

## demo: Sigil's whole job on a local control plane; KEEP=1 leaves it running
demo: $(NODE_STAMP)
	hack/build-tools.sh control-plane
	KEEP=$(KEEP) node hack/demo.ts

## demo-down: stop what `make demo KEEP=1` left running
demo-down: $(NODE_STAMP)
	-pkill -f 'cli/main.ts (operator|webhook) .*\.demo/kubeconfig'
	SIGIL_CLUSTER_DIR=.demo node hack/cluster.ts down

## chart-lint: helm lint, and helm template with default values, with every option on, and namespace-scoped
chart-lint:
	hack/build-tools.sh helm
	$$(hack/build-tools.sh --print-dir)/helm lint charts/sigil
	$$(hack/build-tools.sh --print-dir)/helm template sigil charts/sigil -n sigil-system --kube-version 1.34.4 >/dev/null
	$$(hack/build-tools.sh --print-dir)/helm template sigil charts/sigil -n sigil-system --kube-version 1.34.4 \
	  --set prometheus.serviceMonitor.enabled=true --set prometheus.prometheusRule.enabled=true \
	  --set networkPolicy.enabled=true --set operator.ownerReferences=true --set ca.existingSecret=my-ca \
	  --set-json 'issuer.policy={"maxDuration":"720h","allowedDNSNames":["*.example.com"]}' \
	  --set webhook.clientAuth.enabled=true --set webhook.clientAuth.existingConfigMap=apiserver-webhook-client-ca \
	  --set 'webhook.clientAuth.allowedNames={kube-apiserver-webhook-client}' \
	  --set-json 'networkPolicy.metricsPodSelector={"matchLabels":{"app.kubernetes.io/name":"prometheus"}}' >/dev/null
	$$(hack/build-tools.sh --print-dir)/helm template sigil charts/sigil -n sigil-system --kube-version 1.34.4 \
	  --set scope.mode=Namespace --set scope.namespace=apps --set networkPolicy.enabled=true >/dev/null
	@echo "chart renders with default values, with every option on, and namespace-scoped"

## docs: regenerate docs/api.md from the CRD schemas and copy the CRDs into the chart
docs: $(NODE_STAMP)
	cp crds/*.yaml charts/sigil/files/crds/
	node hack/gen-api-docs.ts

## bench: issuance, ceiling, webhook, memory, restart and renewal-storm figures (not part of make test)
## Counts: SEQUENTIAL=200 BULK=1000,10000 UNRELATED=30000 LARGE=300 STORM=1000 WEBHOOK_REQUESTS=3000 PODS=500
bench: build
	hack/build-tools.sh control-plane
	node bench/run.ts

## bench-profile: CPU profile of the operator issuing COUNT (default 2000) Certificates at once, summarised
bench-profile: build
	node bench/profile.ts

## bench-injection: how long a new pod waits for its certificate (prints figures, asserts nothing)
bench-injection: $(NODE_STAMP)
	hack/build-tools.sh control-plane
	node bench/injection.ts

clean:
	rm -rf dist coverage
