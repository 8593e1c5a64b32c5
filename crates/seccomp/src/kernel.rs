//! Raw `seccomp(2)` calls: loading a BPF program and probing what the running kernel supports.
//!
//! Loading goes straight to the kernel (not through libseccomp) so that the container's init
//! only makes one syscall and allocates nothing, and so that `no_new_privs` stays the runtime's
//! decision (libseccomp's `seccomp_load` would set it).

use std::os::fd::RawFd;

use libc::{c_long, c_uint, c_ulong, sock_filter, sock_fprog};
use nix::errno::Errno;

/// `SECCOMP_FILTER_FLAG_*` values (uapi/linux/seccomp.h).
pub(crate) const FLAG_TSYNC: c_ulong = libc::SECCOMP_FILTER_FLAG_TSYNC;
pub(crate) const FLAG_LOG: c_ulong = libc::SECCOMP_FILTER_FLAG_LOG;
pub(crate) const FLAG_SPEC_ALLOW: c_ulong = libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW;
pub(crate) const FLAG_NEW_LISTENER: c_ulong = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
pub(crate) const FLAG_TSYNC_ESRCH: c_ulong = libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH;

/// Kernel names of the filter flags, for error messages.
pub(crate) fn flag_names(flags: c_ulong) -> String {
    const NAMES: [(c_ulong, &str); 5] = [
        (FLAG_TSYNC, "SECCOMP_FILTER_FLAG_TSYNC"),
        (FLAG_LOG, "SECCOMP_FILTER_FLAG_LOG"),
        (FLAG_SPEC_ALLOW, "SECCOMP_FILTER_FLAG_SPEC_ALLOW"),
        (FLAG_NEW_LISTENER, "SECCOMP_FILTER_FLAG_NEW_LISTENER"),
        (FLAG_TSYNC_ESRCH, "SECCOMP_FILTER_FLAG_TSYNC_ESRCH"),
    ];
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    names.join("|")
}

fn seccomp(op: c_uint, flags: c_ulong, args: *const libc::c_void) -> Result<c_long, Errno> {
    // SAFETY: seccomp(2) reads at most `args` as documented for `op`; callers pass a valid
    // pointer for that operation, or NULL for the flag probe (which the kernel rejects with EFAULT).
    let rc = unsafe { libc::syscall(libc::SYS_seccomp, op, flags, args) };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(rc)
    }
}

/// Whether the kernel implements the seccomp return action `ret` (a `SECCOMP_RET_*` value).
pub(crate) fn action_available(ret: u32) -> bool {
    let action: u32 = ret;
    seccomp(
        libc::SECCOMP_GET_ACTION_AVAIL,
        0,
        (&action as *const u32).cast(),
    )
    .is_ok()
}

/// Whether the kernel accepts `flags` for `SECCOMP_SET_MODE_FILTER`. The probe passes a NULL
/// program: the flags are checked first (EINVAL), then the program is copied in (EFAULT), so
/// EFAULT means "flags accepted" and nothing is ever installed.
pub(crate) fn flags_supported(flags: c_ulong) -> bool {
    matches!(
        seccomp(libc::SECCOMP_SET_MODE_FILTER, flags, std::ptr::null()),
        Err(Errno::EFAULT)
    )
}

/// Installs `program` on the calling thread. Returns the listener fd when `flags` holds
/// `SECCOMP_FILTER_FLAG_NEW_LISTENER` (the kernel opens it close-on-exec), else 0 or, with
/// `SECCOMP_FILTER_FLAG_TSYNC`, the id of a thread that could not be synchronized.
pub(crate) fn set_mode_filter(flags: c_ulong, program: &[sock_filter]) -> Result<c_long, Errno> {
    let len = u16::try_from(program.len()).map_err(|_| Errno::EINVAL)?;
    let fprog = sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    seccomp(
        libc::SECCOMP_SET_MODE_FILTER,
        flags,
        (&fprog as *const sock_fprog).cast(),
    )
}

/// Converts a listener fd returned by [`set_mode_filter`] to a `RawFd`.
pub(crate) fn as_fd(rc: c_long) -> Result<RawFd, Errno> {
    RawFd::try_from(rc).map_err(|_| Errno::EBADF)
}
