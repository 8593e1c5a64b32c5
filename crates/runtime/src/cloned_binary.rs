//! Protection against overwriting the runtime binary from inside a container (the CVE-2019-5736 class).
//!
//! A process in the container could reach the runtime's own executable through /proc/<pid>/exe (or a
//! `#!/proc/self/exe` script run by `exec`) and, once the runtime exits, write to it. Before any command that
//! puts a process into a container, the runtime makes sure the image it runs from cannot be written:
//!
//! - fast path: it re-executes itself from an *immutable* copy (FS_IMMUTABLE_FL, which even root cannot
//!   write or clear without CAP_LINUX_IMMUTABLE) kept in a cache directory, made once per build of the binary;
//! - strict path: where the container may hold CAP_LINUX_IMMUTABLE (and so could clear the flag), or the
//!   cache cannot be used, it re-executes itself from a sealed memfd copy, as runc and crun do. That costs a
//!   copy of the whole binary on every command, which is why it is not the default.
//!
//! Either way the check after the re-exec is on the running image itself (`/proc/self/exe`), so a copy that
//! is not (yet) protected is never trusted.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

use crate::error::Context;
use crate::{Error, Result};

const SEALS: SealFlag = SealFlag::F_SEAL_SEAL
    .union(SealFlag::F_SEAL_SHRINK)
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_WRITE);

/// Where immutable copies of the runtime binary are kept.
pub const DEFAULT_CACHE_DIR: &str = "/run/berth-runtime-exe";
const FS_IMMUTABLE_FL: libc::c_long = 0x10;
const KEEP_COPIES: usize = 4;

fn is_sealed(f: &File) -> bool {
    fcntl(f.as_fd(), FcntlArg::F_GET_SEALS)
        .is_ok_and(|s| SealFlag::from_bits_truncate(s).contains(SEALS))
}

fn is_immutable(f: &File) -> bool {
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes an int-sized flag word into `flags`.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) };
    r == 0 && flags & FS_IMMUTABLE_FL != 0
}

fn set_immutable(f: &File, on: bool) -> std::io::Result<()> {
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS/SETFLAGS read and write an int-sized flag word we own.
    unsafe {
        if libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if on {
            flags |= FS_IMMUTABLE_FL;
        } else {
            flags &= !FS_IMMUTABLE_FL;
        }
        if libc::ioctl(f.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether the running executable cannot be written from a container: a sealed memfd, or (unless
/// `strict`) an immutable file.
pub fn is_protected(strict: bool) -> bool {
    File::open("/proc/self/exe").is_ok_and(|f| is_sealed(&f) || (!strict && is_immutable(&f)))
}

/// Makes sure the running image cannot be overwritten from a container, re-executing the program (same
/// arguments and environment) from a protected copy if needed; on success that does not return.
/// `strict` forces the memfd copy (use it when the container may hold CAP_LINUX_IMMUTABLE).
pub fn ensure_protected(cache_dir: &Path, strict: bool) -> Result<()> {
    let exe = File::open("/proc/self/exe").ctx(|| "opening /proc/self/exe".into())?;
    if is_sealed(&exe) || (!strict && is_immutable(&exe)) {
        return Ok(());
    }
    if !strict {
        if let Ok(copy) = immutable_copy(&exe, cache_dir) {
            exec_fd_or_path(None, Some(&copy))?;
        }
    }
    ensure_cloned_from(exe)
}

/// The immutable copy of `exe` in `dir` (made if missing), named by the source's identity so that a
/// rebuilt binary gets a new copy.
fn immutable_copy(exe: &File, dir: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let md = exe.metadata()?;
    let name = format!(
        "berth-runtime-{:x}-{:x}-{:x}-{:x}",
        md.dev(),
        md.ino(),
        md.size(),
        md.mtime_nsec() as u64 ^ (md.mtime() as u64) << 20
    );
    let path = dir.join(&name);
    if let Ok(f) = File::open(&path) {
        if is_immutable(&f) {
            return Ok(path);
        }
    }
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    {
        let mut src = exe.try_clone()?;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o555)
            .open(&tmp)?;
        std::io::copy(&mut src, &mut out)?;
        out.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    let f = File::open(&path)?;
    if let Err(e) = set_immutable(&f, true) {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    prune(dir, &name);
    Ok(path)
}

/// Keeps the newest few copies (each build of the binary leaves one).
fn prune(dir: &Path, keep: &str) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<(std::time::SystemTime, PathBuf)> = rd
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("berth-runtime-")
        })
        .filter(|e| e.file_name() != keep)
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    for (_, p) in entries.into_iter().skip(KEEP_COPIES - 1) {
        if let Ok(f) = File::open(&p) {
            let _ = set_immutable(&f, false);
        }
        let _ = std::fs::remove_file(&p);
    }
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
    exec_fd_or_path(Some(memfd.as_raw_fd()), None)
}

/// execveat(fd, "") or execve(path) with our own arguments and environment; returns only on failure.
fn exec_fd_or_path(fd: Option<i32>, path: Option<&Path>) -> Result<()> {
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
    let path_c = match path {
        Some(p) => CString::new(p.as_os_str().as_bytes())
            .map_err(|_| Error::Invalid("cache path contains a NUL byte".into()))?,
        None => CString::default(),
    };
    let (dirfd, flags) = match fd {
        Some(fd) => (fd, libc::AT_EMPTY_PATH),
        None => (libc::AT_FDCWD, 0),
    };
    // SAFETY: execveat with a NUL-terminated path and NUL-terminated argv/envp arrays of pointers into
    // CStrings that outlive the call.
    let r = unsafe {
        let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
        envp.push(std::ptr::null());
        libc::syscall(
            libc::SYS_execveat,
            dirfd,
            path_c.as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            flags,
        )
    };
    Err(Error::Io {
        context: format!("re-executing the runtime from its protected copy (returned {r})"),
        err: std::io::Error::last_os_error(),
    })
}
