#!/usr/bin/env bash
# The cgroup and runtime tests on a pure cgroup v2 host. This machine is hybrid (v1 controllers,
# an empty cgroup2 at /sys/fs/cgroup/unified), so they run in a guest that
# scripts/cgroup-v2-vm.sh boots with only cgroup2 mounted (cpuset cpu io memory hugetlb pids):
# berth-cgroups' unit tests and every berth-runtime integration test, against a release build of
# berth-runtime. Called by scripts/test.sh; set BERTH_SKIP_CGROUP_V2_VM=1 to skip it.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -q -p berth-runtime-cli
bins=$(cargo test --locked -q -p berth-cgroups -p berth-runtime-tests --no-run --message-format=json |
  grep -o '"executable":"[^"]*"' | cut -d'"' -f4)
[ -n "$bins" ] || { echo "test-cgroup-v2: no test binaries were built" >&2; exit 1; }

# shellcheck disable=SC2016 # expanded in the guest
BERTH_RUNTIME=$PWD/target/release/berth-runtime ./scripts/cgroup-v2-vm.sh -- bash -c '
  rc=0
  for t in "$@"; do
    echo "--- cgroup v2 guest: ${t##*/}"
    "$t" -q --color never --test-threads=2 || rc=1
  done
  exit $rc' bash $bins
