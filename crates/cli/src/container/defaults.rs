//! Docker's security defaults for containers: the default capability set and `--cap-add` /
//! `--cap-drop`, the default seccomp profile, the masked and read-only `/proc` and `/sys` paths, and
//! docker-format seccomp profile files (`--security-opt seccomp=FILE`).
//!
//! Written from docker's documented behaviour (moby's `oci/caps` and `profiles/seccomp`):
//! - capabilities are named `CAP_X`; `--cap-add`/`--cap-drop` take names with or without the prefix,
//!   in any case, or `ALL`; `--cap-add ALL` grants every capability except the dropped ones,
//!   `--cap-drop ALL` keeps only the added ones; a privileged container gets every capability the
//!   kernel knows;
//! - the default seccomp profile returns EPERM for every syscall it does not allow; its rules may be
//!   conditional on the container's capabilities (`includes.caps`: all of them held; `excludes.caps`:
//!   none of them held), on the host architecture (Go's names: `amd64`, `arm64`...) and on the
//!   kernel version (`minKernel`). Those conditions are resolved here, so the result is a plain
//!   OCI `linux.seccomp` object. Syscall names the host's libseccomp does not know are left in:
//!   berth-seccomp (like runc) skips them when it compiles the profile.
//!
//! The allow list follows docker 25+: `io_uring_*` are not allowed (moby#46762), and the newer
//! `cachestat`, `fchmodat2`, `map_shadow_stack`, `futex_wait`/`futex_wake`/`futex_requeue` are.
//! Docker's profile has no rule conditional on CAP_SYS_RESOURCE (nor CAP_NET_ADMIN...): those
//! capabilities change nothing here.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};
use serde::Deserialize;

/// Docker's default capabilities for a container that is not privileged.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Docker's masked paths: an empty read-only file or tmpfs is mounted over each.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths: bind-mounted read-only onto themselves.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Every capability by number (linux/capability.h), up to CAP_CHECKPOINT_RESTORE (Linux 5.9).
const CAPABILITY_NAMES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The highest capability number the running kernel knows (`/proc/sys/kernel/cap_last_cap`),
/// capped to the names above; all of them when the file cannot be read.
fn last_capability() -> usize {
    let max = CAPABILITY_NAMES.len() - 1;
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .map_or(max, |last| last.min(max))
}

/// Every capability the running kernel knows, in kernel order: a privileged container's set.
pub fn all_capabilities() -> Vec<String> {
    CAPABILITY_NAMES[..=last_capability()]
        .iter()
        .map(|c| c.to_string())
        .collect()
}

/// `ALL` in `--cap-add` or `--cap-drop`.
const ALL: &str = "ALL";

/// A `--cap-add`/`--cap-drop` value as `CAP_X` (or `ALL`); unknown names are an error.
fn normalize_capability(name: &str) -> Result<String> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == ALL {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    let Some(number) = CAPABILITY_NAMES.iter().position(|c| *c == full) else {
        bail!("unknown capability: {name:?} (expected a name such as CAP_NET_ADMIN or NET_ADMIN, or ALL)");
    };
    let last = last_capability();
    if number > last {
        bail!("capability {full} is not supported by this kernel (its last capability is {last})");
    }
    Ok(full)
}

/// A container's capabilities under docker's rules: the defaults minus `drop` plus `add`; `ALL` in
/// `add` means every capability the kernel knows except those in `drop`, `ALL` in `drop` means only
/// those in `add`. A privileged container gets every capability the kernel knows (the names in
/// `add` and `drop` are still checked). Names are `CAP_X`, without duplicates.
pub fn capabilities(add: &[String], drop: &[String], privileged: bool) -> Result<Vec<String>> {
    let add = add
        .iter()
        .map(|c| normalize_capability(c))
        .collect::<Result<Vec<_>>>()?;
    let drop = drop
        .iter()
        .map(|c| normalize_capability(c))
        .collect::<Result<Vec<_>>>()?;
    let caps: Vec<String> = if privileged {
        all_capabilities()
    } else if add.iter().any(|c| c == ALL) {
        all_capabilities()
            .into_iter()
            .filter(|c| !drop.contains(c))
            .collect()
    } else if drop.iter().any(|c| c == ALL) {
        add
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .chain(add)
            .collect()
    };
    let mut seen = HashSet::new();
    Ok(caps
        .into_iter()
        .filter(|c| seen.insert(c.clone()))
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Seccomp

/// A kernel version, `major.minor.patch`, compared as a tuple.
type KernelVersion = (u32, u32, u32);

/// When a profile rule applies (docker's `includes` / `excludes`).
#[derive(Debug, Clone, Default)]
struct Conditions {
    /// Every one of them must be held.
    caps: Vec<String>,
    /// The host's Go architecture name must be one of them (if any).
    arches: Vec<String>,
    /// The running kernel must be at least this version.
    min_kernel: Option<KernelVersion>,
    /// Not if any of them is held.
    not_caps: Vec<String>,
    /// Not on these architectures.
    not_arches: Vec<String>,
    /// Not on a kernel of at least this version.
    not_min_kernel: Option<KernelVersion>,
}

/// A profile rule: an OCI syscall rule and when it applies.
#[derive(Debug, Clone)]
struct Rule {
    syscall: LinuxSyscall,
    when: Conditions,
}

/// A seccomp profile before its conditions are resolved for a container.
#[derive(Debug, Clone)]
struct Profile {
    default_action: LinuxSeccompAction,
    default_errno_ret: Option<u32>,
    /// `architectures`: used as given.
    architectures: Vec<Arch>,
    /// `archMap`: the host's entry gives the architectures.
    arch_map: Vec<(Arch, Vec<Arch>)>,
    flags: Option<Vec<LinuxSeccompFilterFlag>>,
    listener_path: Option<PathBuf>,
    listener_metadata: Option<String>,
    rules: Vec<Rule>,
}

/// What a profile's conditions are checked against.
struct Host {
    /// Go's name for the host architecture (`amd64`, `arm64`...), as docker's profiles use.
    goarch: &'static str,
    /// The host architecture as libseccomp names it, when docker's profiles know it.
    arch: Option<Arch>,
    kernel: Option<KernelVersion>,
}

impl Host {
    fn current() -> Host {
        let (goarch, arch) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", Some(Arch::ScmpArchX86_64)),
            "x86" => ("386", Some(Arch::ScmpArchX86)),
            "aarch64" => ("arm64", Some(Arch::ScmpArchAarch64)),
            "arm" => ("arm", Some(Arch::ScmpArchArm)),
            "s390x" => ("s390x", Some(Arch::ScmpArchS390x)),
            "riscv64" => ("riscv64", Some(Arch::ScmpArchRiscv64)),
            "powerpc64" if cfg!(target_endian = "little") => {
                ("ppc64le", Some(Arch::ScmpArchPpc64le))
            }
            "powerpc64" => ("ppc64", Some(Arch::ScmpArchPpc64)),
            "mips64" if cfg!(target_endian = "little") => {
                ("mips64le", Some(Arch::ScmpArchMipsel64))
            }
            "mips64" => ("mips64", Some(Arch::ScmpArchMips64)),
            other => (other, None),
        };
        Host {
            goarch,
            arch,
            kernel: kernel_version(),
        }
    }
}

/// The running kernel's version from uname(2).
fn kernel_version() -> Option<KernelVersion> {
    let uts = nix::sys::utsname::uname().ok()?;
    parse_kernel_version(uts.release().to_str()?)
}

/// `5.15.0-91-generic` -> (5, 15, 0); `4.8` -> (4, 8, 0).
fn parse_kernel_version(s: &str) -> Option<KernelVersion> {
    let mut parts = s.split('.').map(|p| {
        let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    let major = parts.next()??;
    let minor = parts.next()??;
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

impl Conditions {
    /// Whether a rule with these conditions applies to a container holding `caps` on `host`
    /// (docker checks the exclusions first, then the inclusions). An unknown kernel version counts
    /// as new enough.
    fn hold(&self, caps: &HashSet<String>, host: &Host) -> bool {
        let kernel_at_least = |min: &KernelVersion| host.kernel.map_or(true, |k| k >= *min);
        let excluded = self.not_arches.iter().any(|a| a == host.goarch)
            || self.not_caps.iter().any(|c| caps.contains(c))
            || self.not_min_kernel.as_ref().is_some_and(kernel_at_least);
        let included = (self.arches.is_empty() || self.arches.iter().any(|a| a == host.goarch))
            && self.caps.iter().all(|c| caps.contains(c))
            && self.min_kernel.as_ref().map_or(true, kernel_at_least);
        !excluded && included
    }
}

impl Profile {
    /// The OCI `linux.seccomp` object for a container holding `caps` on `host`.
    fn resolve(&self, caps: &[String], host: &Host) -> LinuxSeccomp {
        let caps: HashSet<String> = caps.iter().map(|c| capability_key(c)).collect();
        let architectures: Vec<Arch> = if self.arch_map.is_empty() {
            self.architectures.clone()
        } else {
            self.arch_map
                .iter()
                .find(|(arch, _)| Some(*arch) == host.arch)
                .map(|(arch, subs)| std::iter::once(*arch).chain(subs.iter().copied()).collect())
                .unwrap_or_default()
        };
        let syscalls: Vec<LinuxSyscall> = self
            .rules
            .iter()
            .filter(|rule| rule.when.hold(&caps, host))
            .map(|rule| rule.syscall.clone())
            .collect();
        let mut seccomp = LinuxSeccomp::default();
        seccomp
            .set_default_action(self.default_action)
            .set_default_errno_ret(self.default_errno_ret)
            .set_architectures((!architectures.is_empty()).then_some(architectures))
            .set_flags(self.flags.clone())
            .set_listener_path(self.listener_path.clone())
            .set_listener_metadata(self.listener_metadata.clone())
            .set_syscalls(Some(syscalls));
        seccomp
    }
}

/// A capability name as profiles compare them: upper case, with the `CAP_` prefix.
fn capability_key(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// One rule of the built-in default profile.
struct DefaultRule {
    names: &'static [&'static str],
    /// None: allow; Some(errno): fail with that errno.
    errno: Option<u32>,
    args: &'static [(usize, u64, LinuxSeccompOperator)],
    caps: &'static [&'static str],
    not_caps: &'static [&'static str],
    arches: &'static [&'static str],
    not_arches: &'static [&'static str],
    min_kernel: Option<KernelVersion>,
}

/// An unconditional allow rule, the base the table below fills in.
const ALLOW: DefaultRule = DefaultRule {
    names: &[],
    errno: None,
    args: &[],
    caps: &[],
    not_caps: &[],
    arches: &[],
    not_arches: &[],
    min_kernel: None,
};

/// personality(2) values a container may set: PER_LINUX, UNAME26, PER_LINUX32, PER_LINUX32|UNAME26,
/// and 0xffffffff (a query).
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
/// CLONE_NEWNET: without CAP_SYS_ADMIN, clone(2) is allowed only with none of these flags.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7e02_0000;

/// AF_VSOCK: socket(2) is allowed for every other address family.
const AF_VSOCK: u64 = 40;

/// ENOSYS for clone3(2): its flags are in memory where seccomp cannot check them, so without
/// CAP_SYS_ADMIN it "does not exist" and glibc falls back to clone(2).
const ENOSYS: u32 = 38;

/// Everything a container may always call.
const DEFAULT_ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// The default profile's rules, in docker's order.
const DEFAULT_RULES: &[DefaultRule] = &[
    DefaultRule {
        names: DEFAULT_ALLOWED,
        ..ALLOW
    },
    // Tracing one's own children: allowed without CAP_SYS_PTRACE since Linux 4.8 (before, ptrace
    // could bypass seccomp).
    DefaultRule {
        names: &["process_vm_readv", "process_vm_writev", "ptrace"],
        min_kernel: Some((4, 8, 0)),
        ..ALLOW
    },
    DefaultRule {
        names: &["socket"],
        args: &[(0, AF_VSOCK, LinuxSeccompOperator::ScmpCmpNe)],
        ..ALLOW
    },
    DefaultRule {
        names: &["personality"],
        args: &[(0, PERSONALITIES[0], LinuxSeccompOperator::ScmpCmpEq)],
        ..ALLOW
    },
    DefaultRule {
        names: &["personality"],
        args: &[(0, PERSONALITIES[1], LinuxSeccompOperator::ScmpCmpEq)],
        ..ALLOW
    },
    DefaultRule {
        names: &["personality"],
        args: &[(0, PERSONALITIES[2], LinuxSeccompOperator::ScmpCmpEq)],
        ..ALLOW
    },
    DefaultRule {
        names: &["personality"],
        args: &[(0, PERSONALITIES[3], LinuxSeccompOperator::ScmpCmpEq)],
        ..ALLOW
    },
    DefaultRule {
        names: &["personality"],
        args: &[(0, PERSONALITIES[4], LinuxSeccompOperator::ScmpCmpEq)],
        ..ALLOW
    },
    // Architecture-specific calls.
    DefaultRule {
        names: &["sync_file_range2", "swapcontext"],
        arches: &["ppc64le"],
        ..ALLOW
    },
    DefaultRule {
        names: &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
        arches: &["arm", "arm64"],
        ..ALLOW
    },
    DefaultRule {
        names: &["arch_prctl"],
        arches: &["amd64", "x32"],
        ..ALLOW
    },
    DefaultRule {
        names: &["modify_ldt"],
        arches: &["amd64", "x32", "x86"],
        ..ALLOW
    },
    DefaultRule {
        names: &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ],
        arches: &["s390", "s390x"],
        ..ALLOW
    },
    DefaultRule {
        names: &["riscv_flush_icache"],
        arches: &["riscv64"],
        ..ALLOW
    },
    // Capability-conditional groups.
    DefaultRule {
        names: &["open_by_handle_at"],
        caps: &["CAP_DAC_READ_SEARCH"],
        ..ALLOW
    },
    DefaultRule {
        names: &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
        caps: &["CAP_SYS_ADMIN"],
        ..ALLOW
    },
    DefaultRule {
        names: &["clone"],
        args: &[(
            0,
            CLONE_NAMESPACE_FLAGS,
            LinuxSeccompOperator::ScmpCmpMaskedEq,
        )],
        not_caps: &["CAP_SYS_ADMIN"],
        not_arches: &["s390", "s390x"],
        ..ALLOW
    },
    // s390 passes clone's flags as the second argument.
    DefaultRule {
        names: &["clone"],
        args: &[(
            1,
            CLONE_NAMESPACE_FLAGS,
            LinuxSeccompOperator::ScmpCmpMaskedEq,
        )],
        arches: &["s390", "s390x"],
        not_caps: &["CAP_SYS_ADMIN"],
        ..ALLOW
    },
    DefaultRule {
        names: &["clone3"],
        errno: Some(ENOSYS),
        not_caps: &["CAP_SYS_ADMIN"],
        ..ALLOW
    },
    DefaultRule {
        names: &["reboot"],
        caps: &["CAP_SYS_BOOT"],
        ..ALLOW
    },
    DefaultRule {
        names: &["chroot"],
        caps: &["CAP_SYS_CHROOT"],
        ..ALLOW
    },
    DefaultRule {
        names: &["delete_module", "init_module", "finit_module"],
        caps: &["CAP_SYS_MODULE"],
        ..ALLOW
    },
    DefaultRule {
        names: &["acct"],
        caps: &["CAP_SYS_PACCT"],
        ..ALLOW
    },
    DefaultRule {
        names: &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
        caps: &["CAP_SYS_PTRACE"],
        ..ALLOW
    },
    DefaultRule {
        names: &["iopl", "ioperm"],
        caps: &["CAP_SYS_RAWIO"],
        ..ALLOW
    },
    DefaultRule {
        names: &["settimeofday", "stime", "clock_settime", "clock_settime64"],
        caps: &["CAP_SYS_TIME"],
        ..ALLOW
    },
    DefaultRule {
        names: &["vhangup"],
        caps: &["CAP_SYS_TTY_CONFIG"],
        ..ALLOW
    },
    DefaultRule {
        names: &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
        caps: &["CAP_SYS_NICE"],
        ..ALLOW
    },
    DefaultRule {
        names: &["syslog"],
        caps: &["CAP_SYSLOG"],
        ..ALLOW
    },
    DefaultRule {
        names: &["bpf"],
        caps: &["CAP_BPF"],
        ..ALLOW
    },
    DefaultRule {
        names: &["perf_event_open"],
        caps: &["CAP_PERFMON"],
        ..ALLOW
    },
];

/// Docker's architecture map: the host's architecture with the ones its kernel also runs.
const DEFAULT_ARCH_MAP: &[(Arch, &[Arch])] = &[
    (
        Arch::ScmpArchX86_64,
        &[Arch::ScmpArchX86, Arch::ScmpArchX32],
    ),
    (Arch::ScmpArchAarch64, &[Arch::ScmpArchArm]),
    (
        Arch::ScmpArchMips64,
        &[Arch::ScmpArchMips, Arch::ScmpArchMips64n32],
    ),
    (
        Arch::ScmpArchMips64n32,
        &[Arch::ScmpArchMips, Arch::ScmpArchMips64],
    ),
    (
        Arch::ScmpArchMipsel64,
        &[Arch::ScmpArchMipsel, Arch::ScmpArchMipsel64n32],
    ),
    (
        Arch::ScmpArchMipsel64n32,
        &[Arch::ScmpArchMipsel, Arch::ScmpArchMipsel64],
    ),
    (Arch::ScmpArchPpc64le, &[]),
    (Arch::ScmpArchS390x, &[Arch::ScmpArchS390]),
    (Arch::ScmpArchRiscv64, &[]),
];

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn seccomp_arg(index: usize, value: u64, op: LinuxSeccompOperator) -> LinuxSeccompArg {
    LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op)
        .build()
        .expect("LinuxSeccompArgBuilder has a default for every field, so build cannot fail")
}

fn syscall_rule(
    names: Vec<String>,
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    args: Option<Vec<LinuxSeccompArg>>,
) -> LinuxSyscall {
    let mut rule = LinuxSyscall::default();
    rule.set_names(names)
        .set_action(action)
        .set_errno_ret(errno_ret)
        .set_args(args);
    rule
}

/// The built-in default profile, conditions unresolved.
fn default_profile() -> Profile {
    let rules = DEFAULT_RULES
        .iter()
        .map(|r| {
            let (action, errno) = match r.errno {
                None => (LinuxSeccompAction::ScmpActAllow, None),
                Some(errno) => (LinuxSeccompAction::ScmpActErrno, Some(errno)),
            };
            let args = (!r.args.is_empty()).then(|| {
                r.args
                    .iter()
                    .map(|&(index, value, op)| seccomp_arg(index, value, op))
                    .collect()
            });
            Rule {
                syscall: syscall_rule(strings(r.names), action, errno, args),
                when: Conditions {
                    caps: strings(r.caps),
                    arches: strings(r.arches),
                    min_kernel: r.min_kernel,
                    not_caps: strings(r.not_caps),
                    not_arches: strings(r.not_arches),
                    not_min_kernel: None,
                },
            }
        })
        .collect();
    Profile {
        default_action: LinuxSeccompAction::ScmpActErrno,
        default_errno_ret: Some(libc::EPERM as u32),
        architectures: Vec::new(),
        arch_map: DEFAULT_ARCH_MAP
            .iter()
            .map(|(arch, subs)| (*arch, subs.to_vec()))
            .collect(),
        flags: None,
        listener_path: None,
        listener_metadata: None,
        rules,
    }
}

/// Docker's default seccomp profile for a container holding `caps` (its bounding set, `CAP_X` names;
/// the prefix and case do not matter): EPERM for every syscall not allowed, the architectures of the
/// host (x86_64 with x86 and x32, aarch64 with arm...), and the rules whose conditions hold.
pub fn default_seccomp(caps: &[String]) -> LinuxSeccomp {
    default_profile().resolve(caps, &Host::current())
}

// Docker's profile file format: OCI's `linux.seccomp` plus `archMap`, `name` (older profiles), and
// `includes`/`excludes` on each rule. Unknown fields (`comment`...) are ignored.

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerProfile {
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<Arch>>,
    #[serde(default)]
    arch_map: Option<Vec<DockerArchMap>>,
    #[serde(default)]
    flags: Option<Vec<LinuxSeccompFilterFlag>>,
    #[serde(default)]
    listener_path: Option<PathBuf>,
    #[serde(default)]
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Option<Vec<DockerSyscall>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerSyscall {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Option<Vec<String>>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    includes: Option<DockerFilter>,
    #[serde(default)]
    excludes: Option<DockerFilter>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerFilter {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

impl DockerFilter {
    /// (caps, arches, minKernel) with the names normalized and the version parsed.
    fn parts(self, what: &str) -> Result<(Vec<String>, Vec<String>, Option<KernelVersion>)> {
        let min_kernel = match self.min_kernel.as_deref() {
            None | Some("") => None,
            Some(v) => Some(
                parse_kernel_version(v)
                    .with_context(|| format!("{what}.minKernel {v:?} is not a kernel version"))?,
            ),
        };
        let caps = self
            .caps
            .unwrap_or_default()
            .iter()
            .map(|c| capability_key(c))
            .collect();
        Ok((caps, self.arches.unwrap_or_default(), min_kernel))
    }
}

impl DockerProfile {
    fn into_profile(self) -> Result<Profile> {
        let architectures = self.architectures.unwrap_or_default();
        let arch_map: Vec<(Arch, Vec<Arch>)> = self
            .arch_map
            .unwrap_or_default()
            .into_iter()
            .map(|m| (m.architecture, m.sub_architectures.unwrap_or_default()))
            .collect();
        if !architectures.is_empty() && !arch_map.is_empty() {
            bail!("the profile has both 'architectures' and 'archMap': use one of them");
        }
        let mut rules = Vec::new();
        for (i, call) in self.syscalls.unwrap_or_default().into_iter().enumerate() {
            let names = match (call.name, call.names) {
                (Some(_), Some(_)) => {
                    bail!("syscall rule {i} has both 'name' and 'names': use one of them")
                }
                (Some(name), None) => vec![name],
                (None, Some(names)) => names,
                (None, None) => bail!("syscall rule {i} has no 'names'"),
            };
            if names.is_empty() || names.iter().any(|n| n.is_empty()) {
                bail!("syscall rule {i} has an empty syscall name");
            }
            let (caps, arches, min_kernel) = call
                .includes
                .unwrap_or_default()
                .parts(&format!("syscall rule {i}: includes"))?;
            let (not_caps, not_arches, not_min_kernel) = call
                .excludes
                .unwrap_or_default()
                .parts(&format!("syscall rule {i}: excludes"))?;
            rules.push(Rule {
                syscall: syscall_rule(names, call.action, call.errno_ret, call.args),
                when: Conditions {
                    caps,
                    arches,
                    min_kernel,
                    not_caps,
                    not_arches,
                    not_min_kernel,
                },
            });
        }
        Ok(Profile {
            default_action: self.default_action,
            default_errno_ret: self.default_errno_ret,
            architectures,
            arch_map,
            flags: self.flags,
            listener_path: self.listener_path,
            listener_metadata: self.listener_metadata,
            rules,
        })
    }
}

/// Reads a seccomp profile file in docker's format (or a plain OCI `linux.seccomp` object, which is
/// a subset of it) and resolves it for a container holding `caps` (as [`default_seccomp`]): rules
/// whose `includes`/`excludes` conditions do not hold are left out, and `archMap` becomes the
/// host's architectures. `unconfined` is the caller's business.
pub fn parse_seccomp_profile(path: &Path, caps: &[String]) -> Result<LinuxSeccomp> {
    let text = std::fs::read(path)
        .with_context(|| format!("reading the seccomp profile {}", path.display()))?;
    let docker: DockerProfile = serde_json::from_slice(&text)
        .with_context(|| format!("parsing the seccomp profile {}", path.display()))?;
    let profile = docker
        .into_profile()
        .with_context(|| format!("in the seccomp profile {}", path.display()))?;
    Ok(profile.resolve(caps, &Host::current()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(names: &[&str]) -> Vec<String> {
        strings(names)
    }

    fn default_caps() -> Vec<String> {
        owned(DEFAULT_CAPABILITIES)
    }

    /// The rules that name `syscall`.
    fn rules_for<'a>(seccomp: &'a LinuxSeccomp, syscall: &str) -> Vec<&'a LinuxSyscall> {
        seccomp
            .syscalls()
            .iter()
            .flatten()
            .filter(|r| r.names().iter().any(|n| n == syscall))
            .collect()
    }

    /// Whether some rule allows `syscall` whatever its arguments.
    fn allowed(seccomp: &LinuxSeccomp, syscall: &str) -> bool {
        rules_for(seccomp, syscall).iter().any(|r| {
            r.action() == LinuxSeccompAction::ScmpActAllow
                && r.args().as_ref().map_or(true, |a| a.is_empty())
        })
    }

    #[test]
    fn default_capabilities_without_add_or_drop() {
        assert_eq!(capabilities(&[], &[], false).unwrap(), default_caps());
    }

    #[test]
    fn cap_add_and_drop_accept_any_case_and_prefix() {
        let caps = capabilities(
            &owned(&["sys_admin", "CAP_NET_ADMIN", "chown"]),
            &owned(&["Cap_Chown", "kill", "MKNOD"]),
            false,
        )
        .unwrap();
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        // Added back after the drop, as docker does (drop first, then add).
        assert!(caps.contains(&"CAP_CHOWN".to_string()));
        assert!(!caps.contains(&"CAP_KILL".to_string()));
        assert!(!caps.contains(&"CAP_MKNOD".to_string()));
        assert_eq!(caps.len(), DEFAULT_CAPABILITIES.len() - 2 + 2);
        let unique: HashSet<_> = caps.iter().collect();
        assert_eq!(unique.len(), caps.len(), "no duplicates: {caps:?}");
    }

    #[test]
    fn cap_add_all_and_cap_drop_all() {
        let all = all_capabilities();
        let caps = capabilities(&owned(&["all"]), &owned(&["NET_RAW"]), false).unwrap();
        assert_eq!(caps.len(), all.len() - 1);
        assert!(!caps.contains(&"CAP_NET_RAW".to_string()));
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));

        let caps = capabilities(&owned(&["NET_BIND_SERVICE"]), &owned(&["ALL"]), false).unwrap();
        assert_eq!(caps, owned(&["CAP_NET_BIND_SERVICE"]));
        assert!(capabilities(&[], &owned(&["ALL"]), false)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn privileged_gets_every_capability_of_the_kernel() {
        let caps = capabilities(&[], &owned(&["ALL"]), true).unwrap();
        assert_eq!(caps, all_capabilities());
        assert_eq!(caps.len(), last_capability() + 1);
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert_eq!(caps[0], "CAP_CHOWN");
    }

    #[test]
    fn unknown_capability_is_an_error() {
        let err = capabilities(&owned(&["NET_FLY"]), &[], false).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("unknown capability") && msg.contains("NET_FLY"),
            "{msg}"
        );
        assert!(capabilities(&[], &owned(&["CAP_"]), false).is_err());
        assert!(capabilities(&owned(&[""]), &[], true).is_err());
    }

    #[test]
    fn default_profile_shape() {
        let seccomp = default_seccomp(&default_caps());
        assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(seccomp.default_errno_ret(), Some(libc::EPERM as u32));
        let arches = seccomp.architectures().clone().unwrap_or_default();
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                arches,
                [Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
            );
            assert!(allowed(&seccomp, "arch_prctl"));
            assert!(!allowed(&seccomp, "set_tls"));
        }
        if cfg!(target_arch = "aarch64") {
            assert_eq!(arches, [Arch::ScmpArchAarch64, Arch::ScmpArchArm]);
            assert!(allowed(&seccomp, "set_tls"));
            assert!(!allowed(&seccomp, "arch_prctl"));
        }
        for name in [
            "read",
            "write",
            "execve",
            "openat",
            "futex",
            "getpid",
            "exit_group",
        ] {
            assert!(allowed(&seccomp, name), "{name}");
        }
        // Personality: only the listed values.
        let personality = rules_for(&seccomp, "personality");
        let values: Vec<u64> = personality
            .iter()
            .flat_map(|r| r.args().iter().flatten().map(|a| a.value()))
            .collect();
        assert_eq!(values, PERSONALITIES);
        // socket: every family but AF_VSOCK.
        let socket = rules_for(&seccomp, "socket");
        assert_eq!(socket.len(), 1);
        let args = socket[0].args().clone().unwrap_or_default();
        assert_eq!(args[0].op(), LinuxSeccompOperator::ScmpCmpNe);
        assert_eq!(args[0].value(), AF_VSOCK);
    }

    #[test]
    fn without_cap_sys_admin_namespaces_and_mounts_are_denied() {
        let seccomp = default_seccomp(&default_caps());
        for name in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "bpf",
            "perf_event_open",
            "ptrace",
        ] {
            if name == "ptrace" {
                // Allowed on 4.8+ kernels even without CAP_SYS_PTRACE.
                continue;
            }
            assert!(!allowed(&seccomp, name), "{name} allowed");
        }
        for name in [
            "reboot",
            "init_module",
            "acct",
            "settimeofday",
            "kcmp",
            "mbind",
        ] {
            assert!(!allowed(&seccomp, name), "{name} allowed");
        }
        let clone = rules_for(&seccomp, "clone");
        assert_eq!(clone.len(), 1, "{clone:?}");
        let args = clone[0].args().clone().unwrap_or_default();
        assert_eq!(args.len(), 1);
        assert_eq!(args[0].op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(args[0].value(), CLONE_NAMESPACE_FLAGS);
        assert_eq!(args[0].value_two().unwrap_or(0), 0);
        let clone3 = rules_for(&seccomp, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3[0].errno_ret(), Some(ENOSYS));
        // chroot comes with CAP_SYS_CHROOT, one of the defaults.
        assert!(allowed(&seccomp, "chroot"));
    }

    #[test]
    fn cap_sys_admin_enables_mount_unshare_and_clone() {
        let mut caps = default_caps();
        caps.push("CAP_SYS_ADMIN".to_string());
        let seccomp = default_seccomp(&caps);
        for name in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "clone",
            "clone3",
            "sethostname",
        ] {
            assert!(allowed(&seccomp, name), "{name} not allowed");
        }
        assert!(rules_for(&seccomp, "clone3")
            .iter()
            .all(|r| r.action() == LinuxSeccompAction::ScmpActAllow));
        assert!(rules_for(&seccomp, "clone")
            .iter()
            .all(|r| r.args().is_none()));
    }

    #[test]
    fn capability_groups_follow_the_capabilities() {
        let groups: &[(&str, &[&str])] = &[
            ("sys_boot", &["reboot"]),
            (
                "SYS_MODULE",
                &["init_module", "finit_module", "delete_module"],
            ),
            ("CAP_SYS_PACCT", &["acct"]),
            (
                "CAP_SYS_PTRACE",
                &["kcmp", "pidfd_getfd", "process_madvise"],
            ),
            ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
            ("CAP_SYS_TIME", &["settimeofday", "clock_settime"]),
            ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
            ("CAP_SYS_NICE", &["mbind", "set_mempolicy"]),
            ("CAP_SYSLOG", &["syslog"]),
            ("CAP_BPF", &["bpf"]),
            ("CAP_PERFMON", &["perf_event_open"]),
            ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
        ];
        let without = default_seccomp(&[]);
        for (cap, names) in groups {
            let with = default_seccomp(&[cap.to_string()]);
            for name in *names {
                assert!(allowed(&with, name), "{name} with {cap}");
                assert!(!allowed(&without, name), "{name} without {cap}");
            }
        }
    }

    #[test]
    fn default_profile_compiles_with_berth_seccomp() {
        for caps in [Vec::new(), default_caps(), all_capabilities()] {
            let seccomp = default_seccomp(&caps);
            let filter = berth_seccomp::compile(&seccomp)
                .unwrap_or_else(|e| panic!("compiling for {caps:?}: {e}"));
            assert!(filter.instruction_count() > 100, "{filter:?}");
            assert!(!filter.uses_notify());
        }
    }

    /// Runs `probe` in a forked child under the default filter for `caps`; returns its exit code.
    fn under_default_filter(caps: &[String], probe: fn() -> i32) -> i32 {
        let filter = berth_seccomp::compile(&default_seccomp(caps)).unwrap();
        // SAFETY: the child only makes raw syscalls (loading the filter allocates nothing) and
        // leaves with _exit, so fork from the multi-threaded test harness is sound.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: prctl with integer arguments; _exit ends the child.
            unsafe {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || filter.load().is_err()
                {
                    libc::_exit(100);
                }
                libc::_exit(probe());
            }
        }
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(rc, pid);
        assert!(libc::WIFEXITED(status), "status {status:#x}");
        libc::WEXITSTATUS(status)
    }

    /// The errno of a failed syscall, 0 on success.
    fn errno_of(rc: libc::c_long) -> i32 {
        if rc < 0 {
            std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
        } else {
            0
        }
    }

    #[test]
    fn the_loaded_default_filter_denies_and_allows() {
        fn probe() -> i32 {
            // SAFETY: raw syscalls with integer or null arguments that fail or do nothing harmful.
            unsafe {
                if errno_of(libc::syscall(libc::SYS_getppid)) != 0 {
                    return 1;
                }
                if errno_of(libc::syscall(
                    libc::SYS_unshare,
                    libc::CLONE_NEWUTS as libc::c_ulong,
                )) != libc::EPERM
                {
                    return 2;
                }
                if errno_of(libc::syscall(libc::SYS_clone3, 0usize, 0usize)) != libc::ENOSYS {
                    return 3;
                }
                let none: *const libc::c_char = std::ptr::null();
                if errno_of(libc::syscall(
                    libc::SYS_mount,
                    none,
                    none,
                    none,
                    0 as libc::c_ulong,
                    none,
                )) != libc::EPERM
                {
                    return 4;
                }
                // A personality query is allowed; PER_BSD (6) is not.
                if errno_of(libc::syscall(
                    libc::SYS_personality,
                    0xffff_ffff as libc::c_ulong,
                )) != 0
                {
                    return 5;
                }
                if errno_of(libc::syscall(libc::SYS_personality, 6 as libc::c_ulong)) != libc::EPERM
                {
                    return 6;
                }
                0
            }
        }
        assert_eq!(under_default_filter(&default_caps(), probe), 0);

        fn admin_probe() -> i32 {
            // SAFETY: clone3 with a null argument fails with EFAULT/EINVAL once the filter lets it
            // through to the kernel.
            let rc = unsafe { libc::syscall(libc::SYS_clone3, 0usize, 0usize) };
            if errno_of(rc) == libc::ENOSYS {
                1
            } else {
                0
            }
        }
        let mut caps = default_caps();
        caps.push("CAP_SYS_ADMIN".to_string());
        assert_eq!(under_default_filter(&caps, admin_probe), 0);
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_version("5.15.0-91-generic"), Some((5, 15, 0)));
        assert_eq!(parse_kernel_version("6.1.76+"), Some((6, 1, 76)));
        assert_eq!(parse_kernel_version("4.8"), Some((4, 8, 0)));
        assert_eq!(parse_kernel_version("4"), None);
        assert_eq!(parse_kernel_version("x.y"), None);
    }

    fn write_profile(json: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), json).unwrap();
        file
    }

    #[test]
    fn parses_a_docker_format_profile() {
        let file = write_profile(
            r#"{
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 1,
                "archMap": [
                    {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
                    {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": null}
                ],
                "syscalls": [
                    {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "basics",
                     "args": [], "includes": {}, "excludes": {}},
                    {"name": "getpid", "action": "SCMP_ACT_ALLOW"},
                    {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                    {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
                     "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                    {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
                    {"names": ["uselib"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "999.0"}},
                    {"names": ["modify_ldt"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
                    {"names": ["set_tls"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
                    {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "excludes": {"arches": ["s390x"]}}
                ]
            }"#,
        );
        let seccomp = parse_seccomp_profile(file.path(), &default_caps()).unwrap();
        assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(seccomp.default_errno_ret(), Some(1));
        let names: Vec<&str> = seccomp
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|r| r.names().iter().map(String::as_str))
            .collect();
        let arch_specific = if cfg!(target_arch = "x86_64") {
            "modify_ldt"
        } else {
            "set_tls"
        };
        assert_eq!(
            names,
            [
                "read",
                "write",
                "getpid",
                "clone",
                "ptrace",
                arch_specific,
                "kill"
            ]
        );
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                seccomp.architectures().clone().unwrap_or_default(),
                [Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
            );
        }
        let kill = rules_for(&seccomp, "kill");
        assert_eq!(kill[0].errno_ret(), Some(13));
        let clone = rules_for(&seccomp, "clone");
        let args = clone[0].args().clone().unwrap_or_default();
        assert_eq!(args[0].value(), 2114060288);
        assert_eq!(args[0].op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        berth_seccomp::compile(&seccomp).unwrap();

        // With CAP_SYS_ADMIN (any spelling): mount in, the restricted clone out.
        let seccomp = parse_seccomp_profile(file.path(), &owned(&["sys_admin"])).unwrap();
        assert!(allowed(&seccomp, "mount"));
        assert!(rules_for(&seccomp, "clone").is_empty());
    }

    #[test]
    fn parses_an_oci_seccomp_object() {
        let file = write_profile(
            r#"{
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
                "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                "syscalls": [
                    {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                     "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
                ]
            }"#,
        );
        let seccomp = parse_seccomp_profile(file.path(), &[]).unwrap();
        assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActAllow);
        assert_eq!(
            seccomp.architectures().clone().unwrap_or_default(),
            [Arch::ScmpArchX86_64, Arch::ScmpArchAarch64]
        );
        assert_eq!(
            seccomp.flags().clone().unwrap_or_default(),
            [LinuxSeccompFilterFlag::SeccompFilterFlagLog]
        );
        let rules = seccomp.syscalls().clone().unwrap_or_default();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].errno_ret(), Some(1));
    }

    #[test]
    fn bad_profiles_are_errors() {
        let cases = [
            (r#"{"defaultAction": "SCMP_ACT_NOPE"}"#, "parsing"),
            (r#"not json"#, "parsing"),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                    "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#,
                "archMap",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO",
                    "syscalls": [{"name": "read", "names": ["write"], "action": "SCMP_ACT_ALLOW"}]}"#,
                "both 'name' and 'names'",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO",
                    "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}"#,
                "no 'names'",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"],
                    "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "new"}}]}"#,
                "minKernel",
            ),
        ];
        for (json, expected) in cases {
            let file = write_profile(json);
            let err = parse_seccomp_profile(file.path(), &[]).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains(expected), "{json}: {msg}");
            assert!(msg.contains(&file.path().display().to_string()), "{msg}");
        }
        let missing = parse_seccomp_profile(Path::new("/nonexistent/profile.json"), &[]);
        assert!(format!("{:#}", missing.unwrap_err()).contains("/nonexistent/profile.json"));
    }

    #[test]
    fn masked_and_readonly_paths() {
        assert!(MASKED_PATHS.contains(&"/proc/kcore"));
        assert!(MASKED_PATHS.contains(&"/sys/firmware"));
        assert!(READONLY_PATHS.contains(&"/proc/sys"));
        assert!(MASKED_PATHS
            .iter()
            .chain(READONLY_PATHS)
            .all(|p| p.starts_with('/')));
    }
}
