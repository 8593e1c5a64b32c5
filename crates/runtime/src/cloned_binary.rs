//! The strict protection against overwriting the runtime binary from inside a container (the
//! CVE-2019-5736 class): re-executing the runtime from a sealed memfd copy of itself, as runc and crun do on
//! every command.
//!
//! Berth's default protection is cheaper (see `linux::trampoline`): the user's program is exec'd through a
//! tiny sealed trampoline and the runtime's processes are non-dumpable while they set up. That leaves one
//! way in: a container allowed CAP_SYS_PTRACE over the host's user namespace could open /proc/<pid>/exe of a
//! non-dumpable setup process. For such containers (and on architectures without a trampoline) the CLI
//! asks for this copy, which costs a copy of the whole binary per command.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

use crate::error::Context;
use crate::{Error, Result};

const SEALS: SealFlag = SealFlag::F_SEAL_SEAL
    .union(SealFlag::F_SEAL_SHRINK)
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_WRITE);

fn is_sealed(f: &File) -> bool {
    fcntl(f.as_fd(), FcntlArg::F_GET_SEALS)
        .is_ok_and(|s| SealFlag::from_bits_truncate(s).contains(SEALS))
}

/// Re-executes the current program from a sealed memfd copy unless it already runs from one.
pub fn ensure_cloned() -> Result<()> {
    let exe = File::open("/proc/self/exe").ctx(|| "opening /proc/self/exe".into())?;
    if is_sealed(&exe) {
        return Ok(());
    }
    ensure_cloned_from(exe)
}

fn ensure_cloned_from(exe: File) -> Result<()> {
    let size = exe.metadata().ctx(|| "stat /proc/self/exe".into())?.len() as usize;
    let memfd = memfd_create(
        "berth-runtime",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .ctx(|| "memfd_create for the cloned runtime binary".into())?;
    let mut copied = 0usize;
    let mut offset: libc::off_t = 0;
    while copied < size {
        let n = nix::sys::sendfile::sendfile(
            memfd.as_fd(),
            exe.as_fd(),
            Some(&mut offset),
            size - copied,
        )
        .ctx(|| "copying the runtime binary into a memfd".into())?;
        if n == 0 {
            break;
        }
        copied += n;
    }
    fcntl(memfd.as_fd(), FcntlArg::F_ADD_SEALS(SEALS))
        .ctx(|| "sealing the cloned runtime binary".into())?;
    exec_fd(memfd.as_raw_fd())
}

/// execveat(fd, "") with our own arguments and environment; returns only on failure.
fn exec_fd(fd: i32) -> Result<()> {
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::Invalid("an argument contains a NUL byte".into()))?;
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    let empty = CString::default();
    // SAFETY: execveat with a NUL-terminated path and NUL-terminated argv/envp arrays of pointers into
    // CStrings that outlive the call.
    let r = unsafe {
        let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
        envp.push(std::ptr::null());
        libc::syscall(
            libc::SYS_execveat,
            fd,
            empty.as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Err(Error::Io {
        context: format!("re-executing the runtime from its protected copy (returned {r})"),
        err: std::io::Error::last_os_error(),
    })
}
