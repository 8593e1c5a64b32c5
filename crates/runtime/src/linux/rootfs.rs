//! The container's mount namespace: rootfs propagation, the spec's mounts, /dev, pivot_root, and the
//! masked and read-only paths.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{Mount, Spec};

use super::devices;
use super::mounts::{self, parse_options, propagation_flag};
use super::secure_path::{self, Kind};
use crate::error::Context;
use crate::{Error, Result};

/// What the mount setup needs to know besides the spec.
pub struct Setup<'a> {
    pub rootfs: &'a Path,
    pub spec: &'a Spec,
    pub cgroup: &'a berth_cgroups::Cgroup,
    pub in_userns: bool,
    pub new_cgroupns: bool,
    /// process.cwd, created in the rootfs if missing (as runc does).
    pub cwd: &'a Path,
}

/// Everything before pivot_root: propagation, the rootfs bind, the spec's mounts and /dev.
/// `before_cgroups` runs exactly once, before the first cgroup mount (or at the end): the caller joins
/// its cgroups there. Returns an O_PATH descriptor of the rootfs mount.
pub fn prepare(s: &Setup, before_cgroups: &mut dyn FnMut() -> Result<()>) -> Result<OwnedFd> {
    let mut cgroups_joined = false;
    let linux = s.spec.linux().as_ref();
    let prop = match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        Some(p) if !p.is_empty() => propagation_flag(p)?,
        _ => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    };
    mount(None::<&str>, "/", None::<&str>, prop, None::<&str>)
        .ctx(|| format!("setting / propagation to {prop:?}"))?;
    if prop.contains(MsFlags::MS_SHARED) {
        make_parent_private(s.rootfs)?;
    }
    mount(
        Some(s.rootfs),
        s.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(|| format!("bind mounting the rootfs {}", s.rootfs.display()))?;
    let root = nix::fcntl::open(
        s.rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| format!("opening the rootfs {}", s.rootfs.display()))?;

    let mut dev_bound = false;
    let mut devpts = false;
    for m in s.spec.mounts().iter().flatten() {
        let typ = m.typ().as_deref().unwrap_or("");
        if m.destination() == Path::new("/dev") && (typ == "bind" || is_bind(m)) {
            dev_bound = true;
        }
        if m.destination() == Path::new("/dev/pts") && typ == "devpts" {
            devpts = true;
        }
        if typ == "cgroup" || typ == "cgroup2" {
            if !cgroups_joined {
                before_cgroups()?;
                cgroups_joined = true;
            }
            mount_cgroup(root.as_fd(), m, s)?;
        } else {
            mounts::mount_entry(root.as_fd(), m, s.in_userns)?;
        }
    }
    let spec_devices = linux.and_then(|l| l.devices().clone()).unwrap_or_default();
    let nodes = if dev_bound {
        devices::nodes(&spec_devices)
            .into_iter()
            .take(spec_devices.len())
            .collect()
    } else {
        devices::nodes(&spec_devices)
    };
    // With no umask, mknod gives each node exactly its mode (no chmod afterwards).
    let umask = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let made = nodes
        .iter()
        .try_for_each(|n| devices::create(root.as_fd(), n, s.in_userns, 0));
    nix::sys::stat::umask(umask);
    made?;
    if !dev_bound {
        dev_symlinks(root.as_fd(), devpts)?;
    }
    drop(secure_path::ensure(root.as_fd(), s.cwd, Kind::Dir)?);
    if !cgroups_joined {
        before_cgroups()?;
    }
    Ok(root)
}

fn is_bind(m: &Mount) -> bool {
    m.options()
        .iter()
        .flatten()
        .any(|o| o == "bind" || o == "rbind")
}

fn dev_symlinks(root: BorrowedFd, devpts: bool) -> Result<()> {
    let dev = secure_path::ensure(root, Path::new("/dev"), Kind::Dir)?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    if devpts {
        links.push(("pts/ptmx", "ptmx"));
    }
    for (target, name) in links {
        if name == "ptmx" {
            let _ =
                nix::unistd::unlinkat(dev.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir);
        }
        match nix::unistd::symlinkat(target, dev.as_fd(), name) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(e).ctx(|| format!("symlink /dev/{name} -> {target}")),
        }
    }
    Ok(())
}

/// A `cgroup` mount: on v2 the cgroup2 filesystem (its root is the container's cgroup when the container has
/// a cgroup namespace) or a bind of the container's cgroup; on v1 a tmpfs with one bind per hierarchy.
fn mount_cgroup(root: BorrowedFd, m: &Mount, s: &Setup) -> Result<()> {
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]))?;
    let dest = m.destination();
    let target = secure_path::ensure(root, dest, Kind::Dir)?;
    let tpath = secure_path::proc_fd_path(&target);
    let flags = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    let per_mount = flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    let cg_mounts = s.cgroup.mounts();
    if s.cgroup.layout() == berth_cgroups::Layout::Unified {
        if s.new_cgroupns {
            mount(
                Some("cgroup2"),
                &tpath,
                Some("cgroup2"),
                flags,
                None::<&str>,
            )
            .ctx(|| format!("mounting cgroup2 on {}", dest.display()))?;
        } else if let Some(cm) = cg_mounts.first() {
            mount(
                Some(&cm.host_path),
                &tpath,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .ctx(|| {
                format!(
                    "bind mounting {} on {}",
                    cm.host_path.display(),
                    dest.display()
                )
            })?;
            mounts::remount_bind_at(root, dest, flags)?;
        }
        return Ok(());
    }
    mount(
        Some("tmpfs"),
        &tpath,
        Some("tmpfs"),
        per_mount,
        Some("mode=755"),
    )
    .ctx(|| format!("mounting tmpfs for cgroups on {}", dest.display()))?;
    drop(target);
    // The tmpfs is ours and fresh: its entries are single names we create, so plain *at calls on it are safe.
    let dir = secure_path::open(root, dest, OFlag::O_PATH | OFlag::O_DIRECTORY)
        .ctx(|| format!("opening {}", dest.display()))?;
    for cm in &cg_mounts {
        let name = cm.mountpoint_rel.as_path();
        let sub = dest.join(name);
        nix::sys::stat::mkdirat(&dir, name, nix::sys::stat::Mode::from_bits_truncate(0o755))
            .ctx(|| format!("mkdir {}", sub.display()))?;
        let t = nix::fcntl::openat(
            &dir,
            name,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ctx(|| format!("opening {}", sub.display()))?;
        mount(
            Some(&cm.host_path),
            &secure_path::proc_fd_path(&t),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .ctx(|| {
            format!(
                "bind mounting {} on {}",
                cm.host_path.display(),
                sub.display()
            )
        })?;
        for link in &cm.symlinks {
            match nix::unistd::symlinkat(name, dir.as_fd(), link.as_str()) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(e).ctx(|| format!("cgroup symlink {link}")),
            }
        }
    }
    // The tmpfs and every bind under it get the mount's flags (ro, nosuid, ...) in one call.
    let dir = secure_path::open(root, dest, OFlag::O_PATH | OFlag::O_DIRECTORY)
        .ctx(|| format!("opening {}", dest.display()))?;
    if let Err(e) = mounts::set_attr_recursive(&dir, flags) {
        if e != nix::errno::Errno::ENOSYS {
            return Err(e).ctx(|| format!("setting {flags:?} on {}", dest.display()));
        }
        // Kernels before 5.12: one remount per mount.
        for cm in &cg_mounts {
            mounts::remount_bind_at(root, &dest.join(&cm.mountpoint_rel), flags)?;
        }
        if flags.contains(MsFlags::MS_RDONLY) {
            mount(
                None::<&str>,
                &secure_path::proc_fd_path(&dir),
                None::<&str>,
                MsFlags::MS_REMOUNT | flags,
                Some("mode=755"),
            )
            .ctx(|| format!("remounting {} read-only", dest.display()))?;
        }
    }
    Ok(())
}

/// Makes the mount that holds `path` private, so that pivot_root accepts a shared rootfs propagation.
fn make_parent_private(path: &Path) -> Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .ctx(|| "reading /proc/self/mountinfo".into())?;
    let mut best: Option<&str> = None;
    for line in info.lines() {
        let Some(mp) = line.split(' ').nth(4) else {
            continue;
        };
        if path.starts_with(mp) && best.is_none_or(|b| mp.len() > b.len()) {
            best = Some(mp);
        }
    }
    let mp = best.unwrap_or("/");
    mount(
        None::<&str>,
        mp,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .ctx(|| format!("making {mp} private"))
}

/// Switches the process's root to the rootfs: pivot_root(".", ".") and a lazy unmount of the old root (no
/// directory for the old root is ever created in the image), or MS_MOVE + chroot with `no_pivot`.
pub fn pivot(rootfs: &Path, no_pivot: bool) -> Result<()> {
    nix::unistd::chdir(rootfs).ctx(|| format!("chdir {}", rootfs.display()))?;
    if no_pivot {
        mount(
            Some(rootfs),
            "/",
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .ctx(|| "moving the rootfs onto / (--no-pivot)".into())?;
        nix::unistd::chroot(".").ctx(|| "chroot to the rootfs".into())?;
    } else {
        let old_root = nix::fcntl::open(
            "/",
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ctx(|| "opening the old root".into())?;
        nix::unistd::pivot_root(".", ".").ctx(|| "pivot_root".into())?;
        // The old root is now stacked on top of the new one; step into it so that "." means the old
        // root, keep its unmount from reaching the host, then drop it.
        nix::unistd::fchdir(&old_root).ctx(|| "fchdir to the old root".into())?;
        mount(
            None::<&str>,
            ".",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        )
        .ctx(|| "making the old root a slave".into())?;
        umount2(".", MntFlags::MNT_DETACH).ctx(|| "unmounting the old root".into())?;
    }
    nix::unistd::chdir("/").ctx(|| "chdir /".into())
}

/// Everything after pivot_root: the final rootfs propagation, a read-only root, masked and read-only paths.
pub fn finish(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    if let Some(p) = linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        if !p.is_empty() {
            let flag = propagation_flag(p)?;
            mount(None::<&str>, "/", None::<&str>, flag, None::<&str>)
                .ctx(|| format!("setting rootfs propagation {p}"))?;
        }
    }
    for p in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        readonly_path(Path::new(p))?;
    }
    for p in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
    {
        mask_path(Path::new(p))?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        mounts::remount_bind(Path::new("/"), MsFlags::MS_RDONLY, Path::new("/"))?;
    }
    Ok(())
}

fn readonly_path(p: &Path) -> Result<()> {
    match mount(
        Some(p),
        p,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    ) {
        Ok(()) => mounts::remount_bind(p, MsFlags::MS_RDONLY, p),
        Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(e).ctx(|| format!("making {} read-only", p.display())),
    }
}

fn mask_path(p: &Path) -> Result<()> {
    let r = mount(
        Some("/dev/null"),
        p,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    );
    match r {
        Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        // A directory: cover it with an empty read-only tmpfs.
        Err(nix::errno::Errno::ENOTDIR) => mount(
            Some("tmpfs"),
            p,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .ctx(|| format!("masking {}", p.display())),
        Err(e) => Err(e).ctx(|| format!("masking {}", p.display())),
    }
}

/// Checks that the hostname is settable before touching anything.
pub fn check_hostname(h: &str) -> Result<()> {
    if h.len() > 64 {
        return Err(Error::Invalid(format!(
            "hostname {h:?} is longer than 64 bytes"
        )));
    }
    Ok(())
}
