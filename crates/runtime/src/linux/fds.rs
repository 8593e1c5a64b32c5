//! File descriptor hygiene: nothing of the host leaks into a container (the CVE-2024-21626 class).

use crate::error::Context;
use crate::Result;

/// Marks every descriptor from `first` up close-on-exec, so the exec'd process sees only 0..first.
pub fn cloexec_from(first: u32) -> Result<()> {
    // SAFETY: close_range only changes descriptor flags in our own table.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error())
            .ctx(|| "marking inherited descriptors close-on-exec".into());
    }
    Ok(())
}

/// Clears close-on-exec on one descriptor (for --preserve-fds and stdio).
pub fn clear_cloexec(fd: i32) -> Result<()> {
    // SAFETY: F_SETFD on a descriptor number; no memory is involved.
    let r = unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    if r < 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| format!("fcntl F_SETFD on fd {fd}"));
    }
    Ok(())
}

/// Leaves open across exec only stdio and the `preserve` descriptors that follow it (3 .. 3+preserve):
/// everything above is marked close-on-exec, the preserved ones are cleared of it.
pub fn keep_only_stdio_and(preserve: u32) -> Result<()> {
    cloexec_from(3 + preserve)?;
    for fd in 3..3 + preserve as i32 {
        clear_cloexec(fd)?;
    }
    Ok(())
}
