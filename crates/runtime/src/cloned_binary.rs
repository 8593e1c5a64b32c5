//! Protection against overwriting the runtime binary from inside a container (the CVE-2019-5736 class).
//!
//! A process in the container could reach the runtime's own executable through /proc/<pid>/exe (or a
//! `#!/proc/self/exe` script run by `exec`) and, once the runtime exits, write to it. Before any command that
//! puts a process into a container, the runtime re-executes itself from a sealed, read-only memfd copy, so
//! the only executable a container can ever reach is that anonymous copy.

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

/// Whether the running executable is already a sealed memfd.
pub fn is_cloned() -> bool {
    File::open("/proc/self/exe")
        .ok()
        .and_then(|f| fcntl(f.as_fd(), FcntlArg::F_GET_SEALS).ok())
        .is_some_and(|s| SealFlag::from_bits_truncate(s).contains(SEALS))
}

/// Re-executes the current program from a sealed memfd copy unless it already runs from one. On success
/// this does not return (the new image starts again from `main` with the same arguments).
pub fn ensure_cloned() -> Result<()> {
    let exe = File::open("/proc/self/exe").ctx(|| "opening /proc/self/exe".into())?;
    if fcntl(exe.as_fd(), FcntlArg::F_GET_SEALS)
        .is_ok_and(|s| SealFlag::from_bits_truncate(s).contains(SEALS))
    {
        return Ok(());
    }
    let size = exe
        .metadata()
        .ctx(|| "stat /proc/self/exe".into())?
        .len() as usize;
    let memfd = memfd_create(
        "berth-runtime",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .ctx(|| "memfd_create for the cloned runtime binary".into())?;
    let mut copied = 0usize;
    while copied < size {
        let n = nix::sys::sendfile::sendfile(memfd.as_fd(), exe.as_fd(), None, size - copied)
            .ctx(|| "copying the runtime binary into a memfd".into())?;
        if n == 0 {
            break;
        }
        copied += n;
    }
    fcntl(memfd.as_fd(), FcntlArg::F_ADD_SEALS(SEALS))
        .ctx(|| "sealing the cloned runtime binary".into())?;
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
    // SAFETY: execveat with AT_EMPTY_PATH on our memfd; argv/envp are NUL-terminated arrays of pointers into
    // CStrings that outlive the call.
    let r = unsafe {
        let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
        envp.push(std::ptr::null());
        libc::syscall(
            libc::SYS_execveat,
            memfd.as_raw_fd(),
            empty.as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Err(Error::Io {
        context: format!("re-executing the runtime from its sealed copy (returned {r})"),
        err: std::io::Error::last_os_error(),
    })
}
