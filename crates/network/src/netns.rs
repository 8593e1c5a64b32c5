//! Persistent network namespaces: a new namespace bind-mounted onto a file (as `ip netns add`
//! does), so that it lives without a process until it is unmounted, and can be configured from
//! the host and joined by path by the OCI runtime. Work inside one runs on a short-lived thread
//! that enters it (a network namespace is per thread), so the calling process never moves.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;

use crate::netlink::Netlink;
use crate::{Error, Result};

/// Creates a network namespace bound to `path` (a stale one there is removed first), with its
/// loopback up; an fd of it.
pub fn create(path: &Path) -> Result<OwnedFd> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    remove(path)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    let made = std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::io("unsharing the network namespace", e.into()))?;
            let own = format!("/proc/self/task/{}/ns/net", nix::unistd::gettid());
            nix::mount::mount(
                Some(own.as_str()),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| {
                Error::io(
                    format!("bind-mounting {own} on {}", path.display()),
                    e.into(),
                )
            })?;
            // The loopback of a new namespace is index 1 and down.
            Netlink::new()?.set_up(1)
        })
        .join()
        .unwrap_or_else(|_| {
            Err(Error::io(
                "creating a network namespace",
                std::io::Error::other("thread panicked"),
            ))
        })
    });
    let opened = made.and_then(|()| open(path));
    if opened.is_err() {
        let _ = remove(path);
    }
    opened
}

/// Opens a network namespace file (a persistent one, or `/proc/PID/ns/net`).
pub fn open(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::io(format!("opening {}", path.display()), e.into()))
}

/// Unmounts and deletes a namespace file made by [`create`]; nothing to do when it is not there.
/// The namespace goes when nothing else holds it (a process in it, an open fd).
pub fn remove(path: &Path) -> Result<()> {
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => {
            return Err(Error::io(
                format!("unmounting {}", path.display()),
                e.into(),
            ))
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

/// Runs `f` on a thread inside the network namespace `ns`; its result.
pub fn run_in<T: Send>(ns: BorrowedFd<'_>, f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| -> Result<T> {
            nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::io("entering the network namespace", e.into()))?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| {
            Err(Error::io(
                "working in a network namespace",
                std::io::Error::other("thread panicked"),
            ))
        })
    })
}
