//! The private mount namespace every benchmarked command runs in.
//!
//! crun 1.8 refuses hybrid cgroup hosts (v1 controllers plus a cgroup2 mount at
//! `/sys/fs/cgroup/unified`). So that all columns see the same layout, the bench moves itself
//! into a new mount namespace, makes every mount private (nothing propagates back to the host)
//! and unmounts `/sys/fs/cgroup/unified` there. Must run before any thread is spawned: mount
//! namespaces are per thread until the thread has its own `fs_struct`, and children inherit
//! the namespace of the thread that forks them.

use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// The cgroup2 mount of hybrid hosts that crun rejects.
pub const UNIFIED: &str = "/sys/fs/cgroup/unified";

/// What [`enter_private_mount_ns`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsSetup {
    /// Whether `/sys/fs/cgroup/unified` was mounted (and so was unmounted in the namespace).
    pub unified_unmounted: bool,
}

/// A tmpfs mounted (in the private namespace only) for the runtimes' state directories and the bundle,
/// as `/run` is on most hosts: state on a disk filesystem would measure that filesystem's inode
/// allocator (ext4's recently-deleted-inode scan dominated every column here) rather than the runtimes.
/// The mount point is an empty directory under the temp dir, removed on drop.
pub struct StateTmpfs {
    pub path: std::path::PathBuf,
}

impl StateTmpfs {
    pub fn mount() -> Result<StateTmpfs> {
        let path = std::env::temp_dir().join(format!("berth-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("mkdir {}", path.display()))?;
        mount(
            Some("tmpfs"),
            &path,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=755"),
        )
        .with_context(|| format!("mounting a tmpfs on {}", path.display()))?;
        Ok(StateTmpfs { path })
    }
}

impl Drop for StateTmpfs {
    fn drop(&mut self) {
        let _ = umount2(&self.path, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// Whether `path` is a mount point in the calling thread's mount namespace.
pub fn is_mount_point(path: &str) -> Result<bool> {
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo")
        .context("reading /proc/thread-self/mountinfo")?;
    // Field 5 of each line is the mount point (spaces escaped as \040, which UNIFIED has none of).
    Ok(info.lines().any(|l| l.split(' ').nth(4) == Some(path)))
}

/// Unshares the mount namespace, makes `/` recursively private and unmounts
/// `/sys/fs/cgroup/unified` (every stacked mount there) if it is mounted.
pub fn enter_private_mount_ns() -> Result<NsSetup> {
    unshare(CloneFlags::CLONE_NEWNS)
        .context("unshare(CLONE_NEWNS) (the bench must run as root)")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making / recursively private")?;
    let mut unified_unmounted = false;
    if Path::new(UNIFIED).exists() {
        for _ in 0..8 {
            if !is_mount_point(UNIFIED)? {
                break;
            }
            umount2(UNIFIED, MntFlags::MNT_DETACH).with_context(|| format!("umount {UNIFIED}"))?;
            unified_unmounted = true;
        }
        if is_mount_point(UNIFIED)? {
            bail!("{UNIFIED} is still mounted after 8 unmounts");
        }
    }
    Ok(NsSetup { unified_unmounted })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a thread of its own (a multi-threaded process's unshare(CLONE_NEWNS) moves only the
    /// calling thread): unified is gone there, and still as it was for the rest of the host.
    #[test]
    fn unified_is_unmounted_in_the_namespace_only() {
        let host_before = is_mount_point(UNIFIED).unwrap();
        let (setup, inside) = std::thread::spawn(|| {
            let setup = enter_private_mount_ns().unwrap();
            (setup, is_mount_point(UNIFIED).unwrap())
        })
        .join()
        .unwrap();
        assert!(!inside, "{UNIFIED} still mounted inside the namespace");
        assert_eq!(setup.unified_unmounted, host_before);
        assert_eq!(
            is_mount_point(UNIFIED).unwrap(),
            host_before,
            "host mounts changed"
        );
    }
}
