//! The error type of this crate. Every message names what was wrong: the syscall, architecture,
//! action, flag or path involved.

use std::path::PathBuf;

use nix::errno::Errno;

/// Errors from compiling, loading or handing over a seccomp filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The running kernel has no seccomp filter support (`CONFIG_SECCOMP_FILTER`).
    #[error("seccomp: this kernel does not support seccomp filters")]
    KernelUnsupported,

    /// `SCMP_ACT_NOTIFY` is used by a rule but `linux.seccomp.listenerPath` is missing or empty.
    #[error("seccomp: SCMP_ACT_NOTIFY is used (syscall {syscall}) but linux.seccomp.listenerPath is not set")]
    NotifyWithoutListener {
        /// The first syscall whose rule uses `SCMP_ACT_NOTIFY`.
        syscall: String,
    },

    /// `SCMP_ACT_NOTIFY` as the default action would deadlock the container's init (runc refuses
    /// it too): the init could not hand the notify fd over before its own syscalls block.
    #[error("seccomp: SCMP_ACT_NOTIFY cannot be used as the default action")]
    NotifyDefaultAction,

    /// `SCMP_ACT_NOTIFY` on a syscall the runtime needs to hand the notify fd over.
    #[error("seccomp: SCMP_ACT_NOTIFY cannot be used for the {syscall} syscall (the runtime needs it to hand the notify fd over)")]
    NotifyForbiddenSyscall {
        /// The offending syscall.
        syscall: String,
    },

    /// The kernel does not implement a seccomp action (`SECCOMP_GET_ACTION_AVAIL` said no).
    #[error("seccomp: action {action} is not supported by this kernel")]
    ActionUnsupported {
        /// The action, as spelled in the runtime spec.
        action: String,
    },

    /// An `errnoRet` or `defaultErrnoRet` does not fit the 16-bit seccomp return data.
    #[error("seccomp: errnoRet {value} for {target} with action {action} is out of range (at most 65535)")]
    ReturnValueOutOfRange {
        /// `syscall NAME` or `the default action`.
        target: String,
        /// The action, as spelled in the runtime spec.
        action: String,
        /// The value given.
        value: u32,
    },

    /// A syscall name is the empty string.
    #[error("seccomp: empty syscall name in linux.seccomp.syscalls")]
    EmptySyscallName,

    /// An argument condition names an index past the sixth syscall argument.
    #[error("seccomp: argument index {index} for syscall {syscall} is out of range (0 to 5)")]
    ArgIndexOutOfRange {
        /// The syscall of the rule.
        syscall: String,
        /// The index given.
        index: usize,
    },

    /// libseccomp refused to create the filter context.
    #[error("seccomp: creating the filter with default action {action}: {source}")]
    Init {
        /// The default action.
        action: String,
        /// libseccomp's error.
        #[source]
        source: libseccomp::error::SeccompError,
    },

    /// libseccomp refused an architecture.
    #[error("seccomp: architecture {arch} is not supported by libseccomp: {source}")]
    Arch {
        /// The architecture, as spelled in the runtime spec.
        arch: String,
        /// libseccomp's error.
        #[source]
        source: libseccomp::error::SeccompError,
    },

    /// A filter flag that this kernel does not accept.
    #[error("seccomp: flag {flag} is not supported by this kernel")]
    FlagUnsupported {
        /// The flag, as spelled in the runtime spec.
        flag: String,
    },

    /// A combination of filter flags that this kernel does not accept.
    #[error("seccomp: this kernel does not accept the filter flags {flags}")]
    FlagsUnsupported {
        /// The flags, `|`-separated.
        flags: String,
    },

    /// libseccomp refused a rule.
    #[error("seccomp: adding the rule for syscall {syscall} (action {action}): {source}")]
    Rule {
        /// The syscall of the rule.
        syscall: String,
        /// The action of the rule.
        action: String,
        /// libseccomp's error.
        #[source]
        source: libseccomp::error::SeccompError,
    },

    /// libseccomp could not export the BPF program.
    #[error("seccomp: exporting the BPF program: {0}")]
    Export(String),

    /// The generated program is longer than the kernel accepts.
    #[error("seccomp: the filter has {len} BPF instructions, the kernel accepts at most {max}")]
    TooLarge {
        /// Instructions generated.
        len: usize,
        /// The kernel's limit (`BPF_MAXINSNS`).
        max: usize,
    },

    /// The kernel refused the filter because the caller has neither `no_new_privs` nor
    /// `CAP_SYS_ADMIN`.
    #[error("seccomp: loading the filter: permission denied (set process.noNewPrivileges, or load the filter while CAP_SYS_ADMIN is still held)")]
    LoadDenied,

    /// The kernel refused the filter for another reason.
    #[error("seccomp: loading the filter: {0}")]
    Load(#[source] Errno),

    /// `SECCOMP_FILTER_FLAG_TSYNC` could not synchronize another thread of the process.
    #[error("seccomp: loading the filter: thread {tid} could not be synchronized (SECCOMP_FILTER_FLAG_TSYNC)")]
    TsyncFailed {
        /// The thread that could not be synchronized.
        tid: libc::c_long,
    },

    /// The container process state could not be serialized.
    #[error("seccomp: serializing the container process state: {0}")]
    State(#[from] serde_json::Error),

    /// Connecting to the seccomp agent failed.
    #[error("seccomp: connecting to the seccomp agent at {path}: {source}")]
    ListenerConnect {
        /// `listenerPath`.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },

    /// Sending the notify fd and state to the seccomp agent failed.
    #[error("seccomp: sending the seccomp fd to the agent at {path}: {source}")]
    ListenerSend {
        /// `listenerPath`.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}
