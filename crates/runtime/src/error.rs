//! The runtime's error type: every variant says what was being done and to what.

use std::path::PathBuf;

/// Result with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, with enough context for a user to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid container id {0:?}: use 1 to 1024 characters of [A-Za-z0-9_.-], not \".\" or \"..\"")]
    InvalidId(String),
    #[error("container {0:?} already exists")]
    Exists(String),
    #[error("container {0:?} does not exist")]
    NotFound(String),
    #[error("cannot {op} container {id:?}: it is {status}")]
    WrongState {
        op: &'static str,
        id: String,
        status: crate::Status,
    },
    #[error("invalid config {path}: {msg}")]
    Config { path: PathBuf, msg: String },
    /// The I/O error is part of the message (not a `source`), so printing the chain does not repeat it.
    #[error("{context}: {err}")]
    Io {
        context: String,
        err: std::io::Error,
    },
    #[error("{context}: {err}")]
    Sys {
        context: String,
        err: nix::errno::Errno,
    },
    #[error(transparent)]
    Cgroup(#[from] berth_cgroups::CgroupError),
    #[error(transparent)]
    Seccomp(#[from] berth_seccomp::SeccompError),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Invalid(String),
    /// An error reported by the container's init process over the sync socket.
    #[error("{0}")]
    Child(String),
}

/// Adds a description of the operation to low-level errors.
pub trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|err| Error::Io {
            context: what(),
            err,
        })
    }
}

impl<T> Context<T> for nix::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|err| Error::Sys {
            context: what(),
            err,
        })
    }
}
