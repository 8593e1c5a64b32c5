#!/usr/bin/env bash
# Berth quickstart: build berth-runtime and run a demo container.
#
#   sudo ./scripts/quickstart.sh
#
# On a fresh Debian 12 (or any Debian/Ubuntu) machine this:
#   1. installs what is missing with apt-get (checked with dpkg-query first;
#      `apt-get update` runs once, only if something has to be installed):
#      busybox-static, python3, nftables (NAT for the default bridge network),
#      and the build deps gcc, pkg-config, libseccomp-dev (plus cargo-web,
#      Debian 12's current Rust toolchain, if no cargo is found);
#   2. runs `cargo build --release` of berth-runtime, berth, berth-monitor and
#      berth-init (as the sudo user, so target/ stays theirs);
#   3. makes a bundle in ./demo/ (busybox-static rootfs, config.json written by
#      `berth-runtime spec`, then edited: hostname "berth-demo", memory limit
#      64 MiB, pids limit 64, a process that prints what it sees);
#   4. runs it: `berth-runtime --root <tmp> run --bundle demo berth-demo-<pid>`,
#      and removes the state dir afterwards;
#   5. the engine: `berth import` makes the embedded default image `berth-demo`
#      from the same busybox rootfs (offline), and `berth run --rm` runs it with
#      a memory and a pids limit, watched by a berth-monitor (temp store, removed
#      afterwards).
# Running it again is safe: it rebuilds nothing that is up to date and remakes
# the bundle.
#
# Environment:
#   RUNTIME=/path/to/runtime  run the demo with another runc-compatible runtime
#                             (e.g. RUNTIME=/usr/sbin/runc); skips the cargo build.
set -euo pipefail

die() {
    echo "quickstart: $*" >&2
    exit 1
}
say() { echo "==> $*"; }

[ "$(id -u)" -eq 0 ] || die "containers need root: run it as 'sudo $0'"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
if [ ! -f Cargo.toml ] || [ ! -d crates/runtime-cli ]; then
    die "cannot find the Berth repository at $REPO"
fi

# The user who ran sudo (builds run as them); root when run as root directly.
BUILD_USER=${SUDO_USER:-root}
BUILD_HOME=$(getent passwd "$BUILD_USER" | cut -d: -f6)
[ -n "$BUILD_HOME" ] || BUILD_HOME=/root

# --- 1. packages ----------------------------------------------------------
APT_UPDATED=0
pkg_installed() {
    # dpkg-query, not `dpkg -s | grep -q`: with pipefail, grep's early exit fails the pipe.
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}
ensure_pkgs() {
    local missing=()
    for p in "$@"; do
        pkg_installed "$p" || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get to install them"
    if [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        apt-get update -qq
        APT_UPDATED=1
    fi
    say "installing: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Finds a cargo for BUILD_USER: PATH (sudo resets it), then ~/.cargo/bin.
find_cargo() {
    local c
    for c in "$(command -v cargo 2>/dev/null || true)" "$BUILD_HOME/.cargo/bin/cargo" /root/.cargo/bin/cargo /usr/bin/cargo; do
        if [ -n "$c" ] && [ -x "$c" ]; then
            echo "$c"
            return 0
        fi
    done
    return 1
}

ensure_pkgs busybox-static python3 nftables

if [ -n "${RUNTIME:-}" ]; then
    [ -x "$RUNTIME" ] || die "RUNTIME=$RUNTIME is not an executable"
    say "using RUNTIME=$RUNTIME (no build)"
else
    ensure_pkgs gcc libc6-dev pkg-config libseccomp-dev ca-certificates
    if ! CARGO=$(find_cargo); then
        # Debian 12's own `cargo` (1.65) is too old; cargo-web is the current one.
        ensure_pkgs cargo-web
        CARGO=$(find_cargo) || die "cargo still not found after installing cargo-web"
    fi
    # root's own toolchain is not readable by the sudo user: then build as root.
    case "$CARGO" in /root/*) BUILD_USER=root ;; esac
    # rust-version in Cargo.toml is the floor.
    need=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml | head -n1)
    have=$("$CARGO" --version | awk '{print $2}')
    if [ -n "$need" ] && [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
        die "$CARGO is $have, Berth needs Rust >= $need (on Debian 12: apt-get install cargo-web, or use rustup)"
    fi

    # --- 2. build ---------------------------------------------------------
    PKGS=(-p berth-runtime-cli -p berth-cli -p berth-monitor -p berth-init)
    say "cargo build --release ${PKGS[*]} ($CARGO $have, as $BUILD_USER)"
    if [ "$BUILD_USER" != root ]; then
        sudo -u "$BUILD_USER" -H env PATH="$(dirname "$CARGO"):$PATH" \
            "$CARGO" build --release "${PKGS[@]}"
    else
        env PATH="$(dirname "$CARGO"):$PATH" "$CARGO" build --release "${PKGS[@]}"
    fi
    RUNTIME="$REPO/target/release/berth-runtime"
    [ -x "$RUNTIME" ] || die "build finished but $RUNTIME is missing"
fi

# --- 3. demo bundle --------------------------------------------------------
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || BUSYBOX=/usr/bin/busybox
[ -x "$BUSYBOX" ] || die "busybox-static is installed but no busybox binary was found"

say "making bundle $REPO/demo"
BUNDLE="$REPO/demo"
ROOTFS="$BUNDLE/rootfs"
mkdir -p "$ROOTFS"/{bin,dev,etc,proc,sys,tmp,root}
install -m 0755 "$BUSYBOX" "$ROOTFS/bin/busybox"
for applet in $("$ROOTFS/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sfn busybox "$ROOTFS/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$ROOTFS/etc/passwd"
echo 'root:x:0:' >"$ROOTFS/etc/group"

# The process: what the container sees of itself (expanded in the container, not here).
# shellcheck disable=SC2016
DEMO_SCRIPT='
echo "hostname: $(hostname)"
echo PID=$$
if [ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then
    echo "memory limit: $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes) (/sys/fs/cgroup/memory/memory.limit_in_bytes)"
elif [ -f /sys/fs/cgroup/memory.max ]; then
    echo "memory limit: $(cat /sys/fs/cgroup/memory.max) (/sys/fs/cgroup/memory.max)"
else
    echo "memory limit: not visible"
fi
if [ -f /sys/fs/cgroup/pids/pids.max ]; then
    echo "pids.max: $(cat /sys/fs/cgroup/pids/pids.max)"
elif [ -f /sys/fs/cgroup/pids.max ]; then
    echo "pids.max: $(cat /sys/fs/cgroup/pids.max)"
else
    echo "pids.max: not visible"
fi
echo "uid: $(id)"
grep "^CapEff" /proc/self/status
echo "mounts:"
cat /proc/self/mounts
'

rm -f "$BUNDLE/config.json"
(cd "$BUNDLE" && "$RUNTIME" spec)
[ -f "$BUNDLE/config.json" ] || die "'$RUNTIME spec' wrote no config.json"
python3 - "$BUNDLE/config.json" "$DEMO_SCRIPT" <<'PY'
import json, sys
path, script = sys.argv[1], sys.argv[2]
with open(path) as f:
    c = json.load(f)
c["process"]["terminal"] = False
c["process"]["args"] = ["sh", "-c", script]
c["hostname"] = "berth-demo"
res = c.setdefault("linux", {}).setdefault("resources", {})
res["memory"] = {"limit": 64 * 1024 * 1024}
res["pids"] = {"limit": 64}
with open(path, "w") as f:
    json.dump(c, f, indent=2)
    f.write("\n")
PY

# --- 4. run ------------------------------------------------------------------
STATE=$(mktemp -d /tmp/berth-quickstart.XXXXXX)
ID="berth-demo-$$"
BERTH="$REPO/target/release/berth"
STORE="$STATE/store"
cleanup() {
    "$RUNTIME" --root "$STATE" delete --force "$ID" >/dev/null 2>&1 || true
    if [ -x "$BERTH" ] && [ -d "$STORE" ]; then
        for c in $("$BERTH" --root "$STORE" --runroot "$STATE/run" ps -aq 2>/dev/null); do
            "$BERTH" --root "$STORE" --runroot "$STATE/run" rm -f "$c" >/dev/null 2>&1 || true
        done
        # The default network's bridge (berth0) and nftables table go with the network.
        "$BERTH" --root "$STORE" --runroot "$STATE/run" network rm bridge >/dev/null 2>&1 || true
    fi
    rm -rf "$STATE"
}
trap cleanup EXIT

say "$RUNTIME --root $STATE run --bundle demo $ID"
"$RUNTIME" --root "$STATE" run --bundle demo "$ID"
say "done: the container ran, printed the above and was deleted"

# --- 5. the engine: berth run of the embedded default image --------------------
if [ -x "$BERTH" ] && [ -x "$REPO/target/release/berth-monitor" ]; then
    B=("$BERTH" --root "$STORE" --runroot "$STATE/run")
    say "berth import: the embedded default image berth-demo:latest, from busybox-static (offline)"
    tar -C "$ROOTFS" -cf "$STATE/rootfs.tar" .
    "${B[@]}" import "$STATE/rootfs.tar" berth-demo:latest
    "${B[@]}" images
    say "berth run --rm --memory 64m --pids-limit 64 --hostname berth-demo berth-demo sh -c ..."
    "${B[@]}" run --rm --memory 64m --pids-limit 64 --hostname berth-demo berth-demo sh -c "$DEMO_SCRIPT"
    say "done: berth ran the image in a container (monitor, log, limits) and removed it"
fi
