#!/usr/bin/env bash
# Installs what building and testing Berth needs on Debian 12, skipping what is already there.
# Used by scripts/quickstart.sh and scripts/test.sh; safe to run again.
set -euo pipefail

# Packages: build deps, the peers the tests interoperate with (docker.io: a private dockerd for
# `docker load`/`docker save` interop; the tests start their own, the host service is not used),
# small root filesystems, nftables (the firewall rules of bridge networks) and iperf3 (the
# network benchmark).
PKGS=(pkg-config libseccomp-dev gcc busybox-static runc crun podman skopeo umoci docker-registry docker.io openssl procps iproute2 uidmap util-linux nftables iperf3)
if [ "${1:-}" = "--minimal" ]; then
  # nftables: bridge networks (the default for containers) need `nft`.
  PKGS=(pkg-config libseccomp-dev gcc busybox-static procps nftables)
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo (Rust toolchain) is required" >&2; exit 1; }
