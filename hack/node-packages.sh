#!/usr/bin/env bash
# Installs the Debian packages a real one-node cluster needs: containerd, runc,
# the CNI plugins, iptables and conntrack. Idempotent: does nothing when they are
# all installed. Needs root and apt-get; prints why not otherwise.
#
# The packages' services are not started here (the project starts its own
# containerd with its own config and state under the cluster directory).
set -euo pipefail

PACKAGES=(containerd runc containernetworking-plugins iptables conntrack)

log() { echo "[node-packages] $*" >&2; }

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  log "cannot install ${missing[*]}: not root (run: sudo apt-get install ${missing[*]})"
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  log "cannot install ${missing[*]}: no apt-get on this machine; install them with its package manager"
  exit 1
fi

log "installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
log "installed ${missing[*]}"
