#!/usr/bin/env bash
# The cgroup and runtime tests on a pure cgroup v2 host. This machine is hybrid (v1 controllers,
# an empty cgroup2 at /sys/fs/cgroup/unified), so they run in a guest that
# scripts/cgroup-v2-vm.sh boots with only cgroup2 mounted (cpuset cpu io memory hugetlb pids):
# berth-cgroups' unit tests and every berth-runtime integration test, against a release build of
# berth-runtime, then the engine's limits and OOM report through `berth run`. Called by scripts/test.sh; set BERTH_SKIP_CGROUP_V2_VM=1 to skip it.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -q -p berth-runtime-cli
bins=$(cargo test --locked -q -p berth-cgroups -p berth-runtime-tests --no-run --message-format=json |
  grep -o '"executable":"[^"]*"' | cut -d'"' -f4)
[ -n "$bins" ] || { echo "test-cgroup-v2: no test binaries were built" >&2; exit 1; }

# The engine too (the debug build scripts/test.sh made): a busybox image, imported in the guest.
[ -x target/debug/berth ] && [ -x target/debug/berth-monitor ] ||
  cargo build --locked -q -p berth-cli -p berth-monitor -p berth-init
img=target/cgroup-v2
rm -rf "$img" && mkdir -p "$img/rootfs/bin"
cp /bin/busybox "$img/rootfs/bin/busybox"
for a in sh cat dd echo true; do ln -s busybox "$img/rootfs/bin/$a"; done
tar -C "$img/rootfs" -cf "$img/bb.tar" .

# shellcheck disable=SC2016 # expanded in the guest
BERTH_RUNTIME=$PWD/target/release/berth-runtime ./scripts/cgroup-v2-vm.sh -- bash -c '
  rc=0
  for t in "$@"; do
    echo "--- cgroup v2 guest: ${t##*/}"
    "$t" -q --color never --test-threads=2 || rc=1
  done

  echo "--- cgroup v2 guest: the engine (berth run: limits in a private cgroup namespace, OOMKilled)"
  b=(target/debug/berth --root /tmp/engine/root --runroot /tmp/engine/run)
  check() { # what got expected
    if [ "$2" = "$3" ]; then echo "ok: $1"; else echo "FAILED: $1: got [$2], expected [$3]"; rc=1; fi
  }
  "${b[@]}" import target/cgroup-v2/bb.tar bb >/dev/null || rc=1
  out=$("${b[@]}" run --rm --network none --memory 64m --pids-limit 64 --cpus 0.5 bb \
    sh -c "cat /proc/self/cgroup /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max" 2>&1)
  check "run --memory 64m --pids-limit 64 --cpus 0.5" "$out" "0::/
67108864
64
50000 100000"
  out=$("${b[@]}" run --name oom --network none --memory 16m bb \
    sh -c "dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; echo rc=\$?" 2>&1)
  check "a process over --memory 16m is killed" "$out" "rc=137"
  check "inspect reports OOMKilled" "$("${b[@]}" inspect -f "{{.State.OOMKilled}}" oom 2>&1)" "true"
  "${b[@]}" rm oom >/dev/null || rc=1
  check "no container cgroup left under /sys/fs/cgroup/berth" \
    "$(find /sys/fs/cgroup/berth -mindepth 1 -type d 2>/dev/null | wc -l)" "0"
  exit $rc' bash $bins

