//! A compiled filter: the BPF program and the kernel flags to load it with.

use std::fmt;
use std::os::fd::{FromRawFd, OwnedFd};

use libc::{c_ulong, sock_filter};
use nix::errno::Errno;

use crate::{kernel, SeccompError};

/// A seccomp filter compiled by [`compile`](crate::compile), ready to be loaded.
///
/// Build it in the runtime's parent process before forking; load it in the container's init
/// with [`load`](Self::load) right before `execve`. Loading needs no libseccomp and allocates
/// nothing on success, so it is safe in a child of a multi-threaded parent.
#[derive(Clone)]
pub struct CompiledFilter {
    program: Vec<sock_filter>,
    flags: c_ulong,
    notify: bool,
}

impl CompiledFilter {
    pub(crate) fn new(program: Vec<sock_filter>, flags: c_ulong, notify: bool) -> Self {
        Self {
            program,
            flags,
            notify,
        }
    }

    /// Whether some rule uses `SCMP_ACT_NOTIFY` (`SCMP_ACT_NOTIFY` as the default action is
    /// refused by `compile`), so that [`load`](Self::load) returns a notify fd that the runtime
    /// must hand to the seccomp agent (see [`send_to_listener`](crate::send_to_listener)).
    pub fn uses_notify(&self) -> bool {
        self.notify
    }

    /// The BPF program.
    pub fn program(&self) -> &[sock_filter] {
        &self.program
    }

    /// The flags it is loaded with.
    pub fn flags(&self) -> c_ulong {
        self.flags
    }

    /// Number of BPF instructions in the program.
    pub fn instruction_count(&self) -> usize {
        self.program.len()
    }

    /// Loads the filter into the calling thread (every thread with `SECCOMP_FILTER_FLAG_TSYNC`).
    ///
    /// `no_new_privs` is not set here: the process needs it (`process.noNewPrivileges`) or
    /// `CAP_SYS_ADMIN`, else [`SeccompError::LoadDenied`]. Returns the notify fd (close-on-exec)
    /// when [`uses_notify`](Self::uses_notify) is true, else `None`.
    pub fn load(&self) -> Result<Option<OwnedFd>, SeccompError> {
        let rc =
            kernel::set_mode_filter(self.flags, &self.program).map_err(|errno| match errno {
                Errno::EACCES => SeccompError::LoadDenied,
                other => SeccompError::Load(other),
            })?;
        if self.notify {
            let raw = kernel::as_fd(rc).map_err(SeccompError::Load)?;
            // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER the kernel returns a new fd that
            // nothing else owns.
            Ok(Some(unsafe { OwnedFd::from_raw_fd(raw) }))
        } else if rc != 0 {
            Err(SeccompError::TsyncFailed { tid: rc })
        } else {
            Ok(None)
        }
    }
}

impl fmt::Debug for CompiledFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledFilter")
            .field("instructions", &self.program.len())
            .field("flags", &kernel::flag_names(self.flags))
            .field("notify", &self.notify)
            .finish()
    }
}
