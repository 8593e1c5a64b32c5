#!/usr/bin/env bash
# Runs every check and test of Berth, as root (the tests start real containers). CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh must run as root: the tests create namespaces, cgroups and mounts" >&2
  exit 1
fi
./scripts/deps.sh
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== build (every binary: the tests drive berth, berth-runtime, berth-monitor, berth-init)"
cargo build --workspace --locked
export BERTH_RUNTIME="$PWD/target/debug/berth-runtime"
echo "== cargo test"
cargo test --workspace --locked -- --test-threads="${TEST_THREADS:-4}"
if [ "${BERTH_SKIP_CGROUP_V2_VM:-}" != 1 ]; then
  echo "== the cgroup and runtime tests again, on a pure cgroup v2 host (a qemu guest)"
  ./scripts/test-cgroup-v2.sh
fi
