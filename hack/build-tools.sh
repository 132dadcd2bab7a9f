#!/usr/bin/env bash
# Builds (once per machine) the binaries the local control plane and the chart
# tests need: kube-apiserver, etcd and helm, from Go modules, into a cache
# outside the checkout; `node` adds what a real one-node cluster runs: kubelet,
# kube-controller-manager, kube-scheduler, kube-proxy, kubectl and CoreDNS. Binaries the user already has are preferred:
# KUBEBUILDER_ASSETS (setup-envtest) or a matching version on PATH.
#
# Prints nothing but progress on stderr; `hack/build-tools.sh --print-dir`
# prints the directory holding the binaries.
set -euo pipefail

KUBE_VERSION="${SIGIL_KUBE_VERSION:-v1.37.2}"
ETCD_VERSION="${SIGIL_ETCD_VERSION:-v3.6.16}"
HELM_VERSION="${SIGIL_HELM_VERSION:-v3.19.5}"
COREDNS_VERSION="${SIGIL_COREDNS_VERSION:-v1.14.7}"
# cert-manager's CRDs, installed beside Sigil's in a test: its kinds have the same names.
CERT_MANAGER_VERSION="${SIGIL_CERT_MANAGER_VERSION:-v1.21.2}"
CACHE_ROOT="${SIGIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sigil}"
BIN_DIR="$CACHE_ROOT/bin-kube${KUBE_VERSION}-etcd${ETCD_VERSION}-helm${HELM_VERSION}"

log() { echo "[build-tools] $*" >&2; }
fail() {
  echo "[build-tools] FAILED at step: $1" >&2
  echo "[build-tools] what to try: $2" >&2
  exit 1
}

have_go() { command -v go >/dev/null 2>&1; }

# Links a binary found elsewhere into BIN_DIR when its version matches.
adopt() {
  local name="$1" candidate="$2" want="$3" got
  [ -x "$candidate" ] || return 1
  case "$name" in
    kube-apiserver | kubelet | kube-controller-manager | kube-scheduler | kube-proxy) got="$("$candidate" --version 2>/dev/null | awk '{print $2}')" ;;
    kubectl) got="$("$candidate" version --client 2>/dev/null | awk '/Client Version/ {print $3}')" ;;
    coredns) got="v$("$candidate" -version 2>/dev/null | awk -F- '/CoreDNS-/ {print $2; exit}')" ;;
    etcd) got="v$("$candidate" --version 2>/dev/null | awk '/etcd Version/ {print $3}')" ;;
    helm) got="$("$candidate" version --template '{{.Version}}' 2>/dev/null)" ;;
  esac
  if [ "$got" = "$want" ] || [ "$name" != "helm" -a "${got%.*}" = "${want%.*}" ]; then
    ln -sf "$candidate" "$BIN_DIR/$name"
    log "using $name $got from $candidate"
    return 0
  fi
  return 1
}

# Writes a consumer module of k8s.io/kubernetes in $1 that imports the
# commands given after it (k8s.io/kubernetes/cmd/<name>), and tidies it.
write_kube_module() {
  local work="$1"; shift
  mkdir -p "$work"
  local modjson moddir minor
  modjson="$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBE_VERSION")" \
    || fail "download k8s.io/kubernetes@$KUBE_VERSION" "check that the Go module proxy is reachable (go env GOPROXY), or set KUBEBUILDER_ASSETS to a directory holding kube-apiserver and etcd"
  moddir="$(printf '%s' "$modjson" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
  [ -f "$moddir" ] || fail "locate the go.mod of k8s.io/kubernetes" "run: go mod download -json k8s.io/kubernetes@$KUBE_VERSION and check its GoMod field"
  minor="$(echo "$KUBE_VERSION" | cut -d. -f2)"
  # Keep an already tidied go.mod: re-tidying costs a minute for nothing.
  if [ ! -f "$work/go.mod" ] || ! grep -q "^// commands: $*\$" "$work/go.mod"; then
    {
      echo "module sigil.local/$(basename "$work")"
      echo
      echo "// commands: $*"
      echo
      echo "go 1.24"
      echo
      echo "require k8s.io/kubernetes $KUBE_VERSION"
      echo
      # Every staging module k8s.io/kubernetes requires at v0.0.0 is published
      # as k8s.io/<name> v0.<minor>.<patch>.
      grep -E '^[[:space:]]*k8s.io/[a-z0-9-]+ v0\.0\.0$' "$moddir" | awk '{print $1}' | sort -u | while read -r m; do
        echo "replace $m => $m v0.${minor}.$(echo "$KUBE_VERSION" | cut -d. -f3)"
      done
    } >"$work/go.mod"
    {
      echo "//go:build tools"
      echo
      echo "package tools"
      echo
      echo "import ("
      local cmd
      for cmd in "$@"; do echo "	_ \"k8s.io/kubernetes/cmd/$cmd\""; done
      echo ")"
    } >"$work/tools.go"
    (cd "$work" && GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>"$work/tidy.log" || true)
  fi
}

kube_ldflags() {
  local minor pkg=k8s.io/component-base/version
  minor="$(echo "$KUBE_VERSION" | cut -d. -f2)"
  echo "-s -w -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
}

build_kube_apiserver() {
  local work="$CACHE_ROOT/src/kube-apiserver-$KUBE_VERSION"
  log "building kube-apiserver $KUBE_VERSION from Go modules (several minutes, once per machine)"
  write_kube_module "$work" kube-apiserver
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod nice go build -trimpath -ldflags "$(kube_ldflags)" -o "$BIN_DIR/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver) \
    || fail "go build k8s.io/kubernetes/cmd/kube-apiserver" "read the Go error above; a wrong staging version shows as a missing package: check $work/go.mod. Or set KUBEBUILDER_ASSETS"
}

# The node's binaries, in one go build: packages shared between them compile once.
NODE_COMMANDS="kubelet kube-controller-manager kube-scheduler kube-proxy kubectl"

build_node() {
  local work="$CACHE_ROOT/src/kube-node-$KUBE_VERSION" missing=() cmd
  for cmd in $NODE_COMMANDS; do
    [ -x "$BIN_DIR/$cmd" ] || missing+=("$cmd")
  done
  [ "${#missing[@]}" -gt 0 ] || return 0
  log "building ${missing[*]} $KUBE_VERSION from Go modules (about 6 minutes on 2 cores after kube-apiserver, once per machine)"
  # shellcheck disable=SC2086
  write_kube_module "$work" $NODE_COMMANDS
  local pkgs=() out="$work/out"
  for cmd in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$cmd"); done
  mkdir -p "$out"
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod nice go build -trimpath -ldflags "$(kube_ldflags)" -o "$out/" "${pkgs[@]}") \
    || fail "go build ${pkgs[*]}" "read the Go error above; check $work/go.mod"
  for cmd in "${missing[@]}"; do mv "$out/$cmd" "$BIN_DIR/$cmd"; done
}

# CoreDNS for the node's cluster DNS, from its Go module: a main with only the
# plugins the node's Corefile uses (all of CoreDNS's plugins would pull in every
# cloud provider's SDK and take several times longer to build).
build_coredns() {
  local work="$CACHE_ROOT/src/coredns-$COREDNS_VERSION"
  mkdir -p "$work"
  log "building coredns $COREDNS_VERSION (bind, errors, cache, kubernetes) from Go modules"
  cat >"$work/go.mod" <<MOD
module sigil.local/coredns

go 1.24

require github.com/coredns/coredns $COREDNS_VERSION
MOD
  rm -f "$work/tools.go"
  cat >"$work/main.go" <<'GO'
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
)

func init() {
	// The order plugins run in, as in CoreDNS's plugin.cfg.
	dnsserver.Directives = []string{"bind", "errors", "cache", "kubernetes"}
}

func main() { coremain.Run() }
GO
  (cd "$work" && GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>"$work/tidy.log" || true)
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod nice go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/coredns" .) \
    || fail "go build github.com/coredns/coredns@$COREDNS_VERSION" "read the Go error above; check $work/main.go"
}

build_etcd() {
  local work="$CACHE_ROOT/src/etcd-$ETCD_VERSION"
  mkdir -p "$work"
  log "building etcd $ETCD_VERSION from Go modules"
  cat >"$work/go.mod" <<MOD
module sigil.local/etcd

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  (cd "$work" && GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>"$work/tidy.log" || true)
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/etcd" go.etcd.io/etcd/server/v3) \
    || fail "go build go.etcd.io/etcd/server/v3@$ETCD_VERSION" "read the Go error above; or set KUBEBUILDER_ASSETS to a directory holding etcd"
}

build_helm() {
  local work="$CACHE_ROOT/src/helm-$HELM_VERSION"
  mkdir -p "$work"
  log "building helm $HELM_VERSION from Go modules"
  cat >"$work/go.mod" <<MOD
module sigil.local/helm

go 1.24

require helm.sh/helm/v3 $HELM_VERSION
MOD
  cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import _ "helm.sh/helm/v3/cmd/helm"
GO
  (cd "$work" && GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>"$work/tidy.log" || true)
  # Stamped as helm's own release builds are (its Makefile): the Kubernetes version helm assumes
  # without a cluster (helm template, helm lint) comes from the client-go it is built with, v0.X.Y
  # meaning Kubernetes 1.X. Unstamped, helm assumes v1.20.0 and the chart's kubeVersion refuses it.
  local client_go major minor
  client_go="$(cd "$work" && GOFLAGS=-mod=mod go list -f '{{.Version}}' -m k8s.io/client-go)" \
    || fail "find the client-go version helm $HELM_VERSION uses" "read the Go error above"
  client_go="${client_go#v}"
  major=$(( ${client_go%%.*} + 1 ))
  minor="$(echo "$client_go" | cut -d. -f2)"
  local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$major -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
  ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$major -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$BIN_DIR/helm" helm.sh/helm/v3/cmd/helm) \
    || fail "go build helm.sh/helm/v3/cmd/helm@$HELM_VERSION" "read the Go error above; or put helm $HELM_VERSION on PATH"
  echo "$HELM_STAMP" >"$BIN_DIR/helm.stamp"
}

# What build_helm writes into helm.stamp; a helm built here without it (an older, unstamped build) is built again.
HELM_STAMP="kube-version-from-client-go"
drop_unstamped_helm() {
  if [ -x "$BIN_DIR/helm" ] && [ ! -L "$BIN_DIR/helm" ] && [ "$(cat "$BIN_DIR/helm.stamp" 2>/dev/null)" != "$HELM_STAMP" ]; then
    log "helm in $BIN_DIR was built without its Kubernetes version stamped: building it again"
    rm -f "$BIN_DIR/helm"
  fi
}

ensure() {
  local name="$1" want="$2" builder="$3"
  if [ -x "$BIN_DIR/$name" ]; then return 0; fi
  if [ -n "${KUBEBUILDER_ASSETS:-}" ] && adopt "$name" "$KUBEBUILDER_ASSETS/$name" "$want"; then return 0; fi
  if command -v "$name" >/dev/null 2>&1 && adopt "$name" "$(command -v "$name")" "$want"; then return 0; fi
  have_go || fail "find the Go toolchain to build $name" "install Go 1.24+ (or set KUBEBUILDER_ASSETS to a directory with kube-apiserver and etcd)"
  "$builder"
}

# Links binaries found elsewhere (KUBEBUILDER_ASSETS or PATH) for the node.
adopt_node() {
  local cmd
  for cmd in $NODE_COMMANDS; do
    [ -x "$BIN_DIR/$cmd" ] && continue
    if [ -n "${KUBEBUILDER_ASSETS:-}" ] && adopt "$cmd" "$KUBEBUILDER_ASSETS/$cmd" "$KUBE_VERSION"; then continue; fi
    if command -v "$cmd" >/dev/null 2>&1; then adopt "$cmd" "$(command -v "$cmd")" "$KUBE_VERSION" || true; fi
  done
}

ensure_node() {
  adopt_node
  have_go || { build_node_needed && fail "find the Go toolchain to build the node's binaries" "install Go 1.24+"; }
  build_node
  ensure coredns "$COREDNS_VERSION" build_coredns
}

build_node_needed() {
  local cmd
  for cmd in $NODE_COMMANDS; do [ -x "$BIN_DIR/$cmd" ] || return 0; done
  return 1
}

# cert-manager's CRDs from its Go module (deploy/crds), into the cache; prints their directory.
cert_manager_crds() {
  local out="$CACHE_ROOT/cert-manager-crds-$CERT_MANAGER_VERSION" dir
  if ! ls "$out"/cert-manager.io_certificates.yaml >/dev/null 2>&1; then
    have_go || fail "find the Go toolchain to download cert-manager's CRDs" "install Go 1.24+"
    log "downloading cert-manager $CERT_MANAGER_VERSION's CRDs from its Go module"
    dir="$(cd "$CACHE_ROOT" && GOFLAGS=-mod=mod go mod download -json "github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
    [ -n "$dir" ] && [ -d "$dir/deploy/crds" ] \
      || fail "go mod download github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION" "read the Go error above"
    mkdir -p "$out"
    cp "$dir"/deploy/crds/cert-manager.io_*.yaml "$out/"
  fi
  echo "$out"
}

main() {
  mkdir -p "$BIN_DIR"
  local only="${1:-all}"
  case "$only" in
    --print-dir) echo "$BIN_DIR"; return 0 ;;
    cert-manager-crds) cert_manager_crds; return 0 ;;
    control-plane) ensure etcd "$ETCD_VERSION" build_etcd; ensure kube-apiserver "$KUBE_VERSION" build_kube_apiserver ;;
    helm) drop_unstamped_helm; ensure helm "$HELM_VERSION" build_helm ;;
    node) ensure etcd "$ETCD_VERSION" build_etcd; ensure kube-apiserver "$KUBE_VERSION" build_kube_apiserver; ensure_node ;;
    all) ensure etcd "$ETCD_VERSION" build_etcd; ensure kube-apiserver "$KUBE_VERSION" build_kube_apiserver; drop_unstamped_helm; ensure helm "$HELM_VERSION" build_helm ;;
    *) fail "parse arguments" "usage: hack/build-tools.sh [all|control-plane|helm|node|cert-manager-crds|--print-dir]" ;;
  esac
  log "binaries in $BIN_DIR"
}

main "$@"
