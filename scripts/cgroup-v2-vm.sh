#!/usr/bin/env bash
# Runs a command on a pure cgroup v2 host: a guest (qemu) booted from Debian's own kernel package,
# with only the cgroup2 hierarchy mounted at /sys/fs/cgroup (`cgroup_no_v1=all`, so no v1
# controller exists at all). The guest sees this machine's root file system read-only over
# virtio-9p (so it runs the binaries built here, with their libraries and peers), with its own
# tmpfs /tmp, /run, /var/tmp, /var/lib/containers and /root, and no network card (loopback only).
#
#   scripts/cgroup-v2-vm.sh [--cwd DIR] -- COMMAND [ARGS...]
#
# COMMAND runs as root in the guest, in DIR (default: the current directory) with this shell's
# PATH and the BERTH_* / RUST_* variables; the script exits with its exit code. Needs root and
# Debian's qemu-system-x86 plus busybox-static (installed when missing).
# The kernel package is downloaded once into $BERTH_VM_CACHE (default /var/cache/berth-vm).
set -euo pipefail

cwd=$PWD
while [ $# -gt 0 ]; do
  case "$1" in
    --cwd) cwd=$2; shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: $0 [--cwd DIR] -- COMMAND [ARGS...]" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "cgroup-v2-vm: must run as root" >&2; exit 2; }

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[ -x /bin/busybox ] || need+=(busybox-static)
if [ "${#need[@]}" -gt 0 ]; then
  echo "cgroup-v2-vm: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

cache=${BERTH_VM_CACHE:-/var/cache/berth-vm}
mkdir -p "$cache"

# --- the kernel: Debian's current linux-image for this release, unpacked, with modules.dep -----
if [ ! -f "$cache/kernel.ready" ]; then
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [ -n "$pkg" ] || { echo "cgroup-v2-vm: no linux-image package known to apt (run apt-get update)" >&2; exit 2; }
  rm -rf "$cache/kernel" && mkdir -p "$cache/kernel"
  (cd "$cache/kernel" && apt-get download "$pkg" >/dev/null 2>&1) || {
    apt-get update -qq
    (cd "$cache/kernel" && apt-get download "$pkg" >/dev/null)
  }
  dpkg-deb -x "$cache"/kernel/*.deb "$cache/kernel/root"
  rm -f "$cache"/kernel/*.deb
  kver=$(ls "$cache/kernel/root/lib/modules")
  /bin/busybox depmod -b "$cache/kernel/root" "$kver"
  echo "$kver" >"$cache/kernel.ready"
fi
kver=$(cat "$cache/kernel.ready")
kroot=$cache/kernel/root
moddir=$kroot/lib/modules/$kver

# --- the initramfs: busybox, the modules that reach the 9p root, and the guest's init -----------
work=$(mktemp -d /tmp/berth-vm.XXXXXX)
trap 'rm -rf "$work"' EXIT
ird=$work/initramfs
mkdir -p "$ird"/{bin,mods,proc,sys,dev,newroot}
cp /bin/busybox "$ird/bin/busybox"
# Load order follows modules.dep: each module after what it depends on.
# After them, what the runtime's tests use: overlay, veth, bridge.
mods=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p overlay veth llc stp bridge)
for m in "${mods[@]}"; do
  f=$(grep -oE "^[^:]*/$m\.ko(\.[a-z]+)?:" "$moddir/modules.dep" | tr -d :)
  [ -n "$f" ] || { echo "cgroup-v2-vm: module $m not in $moddir" >&2; exit 2; }
  cp "$moddir/$f" "$ird/mods/"
done

# The command, its directory and environment, as a script the guest runs after switch_root.
{
  echo "cd $(printf '%q' "$cwd") || exit 125"
  env | grep -E '^(PATH|BERTH_[A-Z0-9_]*|RUST_[A-Z0-9_]*|CARGO_[A-Z0-9_]*)=' | while IFS= read -r kv; do
    printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"
  done
  printf '%q ' "$@"
  echo
} >"$ird/cmd.sh"

cwd_q=$(printf '%q' "$cwd")
cat >"$ird/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in ${mods[*]}; do insmod /mods/\$m.ko* || echo "cgroup-v2-vm: insmod \$m failed"; done
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=loose hostroot /newroot || {
  echo "cgroup-v2-vm: cannot mount the host root over 9p"; echo "BERTH_VM_EXIT=125"; poweroff -f; }
n=/newroot
# A second view of the host root, for the command's directory should it lie under one of the
# tmpfs below (a checkout in /tmp). (9p cannot mount the same tag twice.)
mkdir -p /hostview
mount --bind \$n /hostview
mount -t proc proc \$n/proc
mount -t sysfs sys \$n/sys
mount -t cgroup2 cgroup2 \$n/sys/fs/cgroup
mount -t bpf bpf \$n/sys/fs/bpf 2>/dev/null
mount -t devtmpfs dev \$n/dev
mkdir -p \$n/dev/pts \$n/dev/shm \$n/dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666 devpts \$n/dev/pts
mount -t tmpfs shm \$n/dev/shm
mount -t mqueue mqueue \$n/dev/mqueue
for d in tmp run var/tmp var/lib/containers root; do mount -t tmpfs -o mode=1777 tmpfs \$n/\$d; done
mkdir -p \$n/run/berth-vm
cp /cmd.sh \$n/run/berth-vm/cmd.sh
mkdir -p \$n$cwd_q
mount --bind /hostview$cwd_q \$n$cwd_q
hostname berth-v2-guest
exec switch_root \$n /bin/busybox sh -c '
  /bin/busybox ip link set lo up
  export HOME=/root TMPDIR=/tmp
  echo "cgroup-v2-vm: kernel \$(/bin/busybox uname -r), /sys/fs/cgroup: \$(/bin/busybox stat -f -c %T /sys/fs/cgroup), controllers: \$(/bin/busybox cat /sys/fs/cgroup/cgroup.controllers)"
  sh /run/berth-vm/cmd.sh
  echo "BERTH_VM_EXIT=\$?"
  /bin/busybox poweroff -f'
EOF
chmod +x "$ird/init"
(cd "$ird" && find . | /bin/busybox cpio -o -H newc 2>/dev/null) >"$work/initrd"

# --- boot; the guest's console is this script's output ------------------------------------------
# TCG (software emulation) by default: it runs anywhere, and the test suites take about 80 s
# under it; KVM inside this kind of already-virtualised machine stalls at boot, so it is opt-in
# (BERTH_VM_ACCEL=kvm BERTH_VM_CPU_MODEL=host).
accel=${BERTH_VM_ACCEL:-tcg,thread=multi}
cpu_model=${BERTH_VM_CPU_MODEL:-max}
mem=${BERTH_VM_MEM:-6G}
cpus=${BERTH_VM_CPUS:-$(nproc)}
log=$work/console.log
timeout "${BERTH_VM_TIMEOUT:-1200}" qemu-system-x86_64 -accel "$accel" -cpu "$cpu_model" -m "$mem" -smp "$cpus" \
  -nographic -no-reboot -nic none \
  -kernel "$kroot/boot/vmlinuz-$kver" -initrd "$work/initrd" \
  -append "console=ttyS0 ${BERTH_VM_KERNEL_LOG:-quiet loglevel=3} panic=-1 cgroup_no_v1=all rdinit=/init" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap \
  </dev/null 2>&1 | tee "$log" | grep -v '^BERTH_VM_EXIT='
rc=$(grep -a -oE '^BERTH_VM_EXIT=[0-9]+' "$log" | tail -1 | cut -d= -f2)
if [ -z "$rc" ]; then
  echo "cgroup-v2-vm: the guest stopped without reporting an exit status" >&2
  exit 125
fi
exit "$rc"
