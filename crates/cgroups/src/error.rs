//! The crate's error type. Every variant names the file, controller or
//! resource concerned, so a message alone tells the user what went wrong.

use std::io;
use std::path::PathBuf;

/// Errors from cgroup detection, creation, configuration and queries.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No usable cgroup filesystem was found.
    #[error("no cgroup filesystem found: {0}")]
    NoCgroupFs(String),

    /// Reading a file or directory failed.
    #[error("failed to read {path}: {source}")]
    Read {
        /// File or directory read.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },

    /// Writing a value to a cgroup file failed.
    #[error("failed to write {value:?} to {path}: {source}")]
    Write {
        /// File written.
        path: PathBuf,
        /// Value written.
        value: String,
        /// Underlying error.
        #[source]
        source: io::Error,
    },

    /// Creating or removing a cgroup directory failed.
    #[error("failed to {op} cgroup directory {path}: {source}")]
    Dir {
        /// "create" or "remove".
        op: &'static str,
        /// Directory concerned.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },

    /// A file had content this crate cannot parse.
    #[error("unexpected content in {path}: {content:?}")]
    Parse {
        /// File read.
        path: PathBuf,
        /// The offending content (line or value).
        content: String,
    },

    /// The spec asked for a resource whose controller is not mounted or not
    /// enabled for this cgroup.
    #[error(
        "cgroup controller '{controller}' is not available on this host, cannot apply {resource}"
    )]
    ControllerMissing {
        /// Controller name, e.g. "net_cls".
        controller: String,
        /// Spec field concerned, e.g. "linux.resources.network.classID".
        resource: String,
    },

    /// The controller exists but this kernel lacks the interface file.
    #[error("{resource} is not supported by this kernel: {path} does not exist")]
    FileMissing {
        /// Spec field concerned.
        resource: String,
        /// Missing file.
        path: PathBuf,
    },

    /// The resource cannot be expressed on this cgroup version or host.
    #[error("{0}")]
    Unsupported(String),

    /// The spec's value is out of range or malformed.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Spec field concerned.
        field: String,
        /// Why it is rejected.
        reason: String,
    },

    /// The cgroup path or container id is unusable.
    #[error("invalid cgroup path {path:?}: {reason}")]
    InvalidPath {
        /// Path given.
        path: PathBuf,
        /// Why it is rejected.
        reason: String,
    },

    /// A bpf(2) operation for the v2 device controller failed.
    #[error("bpf {op} failed for {path}: {source}{log}")]
    Bpf {
        /// BPF command, e.g. "BPF_PROG_LOAD".
        op: &'static str,
        /// Cgroup directory concerned.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
        /// Verifier log (empty or starting with a newline).
        log: String,
    },

    /// A state change did not finish in time.
    #[error("timed out waiting for {what} in {path}")]
    Timeout {
        /// What was awaited, e.g. "freezer.state FROZEN".
        what: String,
        /// Cgroup directory concerned.
        path: PathBuf,
    },

    /// Sending a signal failed.
    #[error("failed to send {signal} to pid {pid}: {source}")]
    Signal {
        /// Signal name.
        signal: String,
        /// Target pid.
        pid: i32,
        /// Underlying error.
        #[source]
        source: nix::Error,
    },
}

/// Shorthand used throughout the crate.
pub type Result<T> = std::result::Result<T, CgroupError>;

impl CgroupError {
    /// The `io::ErrorKind`-level errno behind a read or write error, if any.
    pub(crate) fn raw_os_error(&self) -> Option<i32> {
        match self {
            Self::Read { source, .. } | Self::Write { source, .. } | Self::Dir { source, .. } => {
                source.raw_os_error()
            }
            _ => None,
        }
    }

    /// True if this is a read or write that failed because the file is absent.
    pub(crate) fn is_not_found(&self) -> bool {
        self.raw_os_error() == Some(libc::ENOENT)
    }
}
