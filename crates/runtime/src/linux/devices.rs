//! Device nodes in the container's /dev: the runtime-spec's default set and `linux.devices`.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::sys::stat::{makedev, mknodat, Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

use super::secure_path::{self, Kind};
use crate::error::Context;
use crate::{Error, Result};

/// A device node to create.
#[derive(Debug, Clone)]
pub struct Node {
    pub path: PathBuf,
    pub kind: LinuxDeviceType,
    pub major: i64,
    pub minor: i64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The runtime-spec's default devices (all 0666, owned by root).
pub const DEFAULTS: [(&str, i64, i64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// The devices to create: the spec's, then the defaults the spec did not override.
pub fn nodes(spec_devices: &[LinuxDevice]) -> Vec<Node> {
    let mut out: Vec<Node> = spec_devices
        .iter()
        .map(|d| Node {
            path: d.path().clone(),
            kind: d.typ(),
            major: d.major(),
            minor: d.minor(),
            mode: d.file_mode().unwrap_or(0o666),
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        })
        .collect();
    for (p, major, minor) in DEFAULTS {
        if !out.iter().any(|n| n.path == Path::new(p)) {
            out.push(Node {
                path: PathBuf::from(p),
                kind: LinuxDeviceType::C,
                major,
                minor,
                mode: 0o666,
                uid: 0,
                gid: 0,
            });
        }
    }
    out
}

/// Creates one node inside the rootfs: mknod, or (in a user namespace, where mknod is not allowed) a
/// bind mount of the host's node of the same path. `umask` is the process's current umask (a chmod
/// fixes the mode only if it took bits off).
pub fn create(root: BorrowedFd, n: &Node, in_userns: bool, umask: u32) -> Result<()> {
    if !n.path.starts_with("/dev") {
        return Err(Error::Invalid(format!(
            "device path {} is not under /dev",
            n.path.display()
        )));
    }
    let parent = n.path.parent().unwrap_or(Path::new("/dev"));
    let name = n
        .path
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("device path {} has no name", n.path.display())))?;
    if in_userns {
        let target = secure_path::ensure(root, &n.path, Kind::File)?;
        return nix::mount::mount(
            Some(&n.path),
            &secure_path::proc_fd_path(&target),
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .ctx(|| format!("bind mounting device {}", n.path.display()));
    }
    // An O_PATH descriptor is a valid dirfd for the *at calls below.
    let dir = secure_path::ensure(root, parent, Kind::Dir)?;
    let kind = match n.kind {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(Error::Invalid(format!(
                "device {} has type \"a\", which is only for cgroup rules",
                n.path.display()
            )))
        }
    };
    let dev = makedev(n.major as u64, n.minor as u64);
    let mode = Mode::from_bits_truncate(n.mode & 0o7777);
    let mknod = || mknodat(dir.as_fd(), name, kind, mode, dev);
    match mknod() {
        Ok(()) => {}
        // Replace whatever the image left there (unlinkat removes a symlink itself, never its target).
        Err(nix::errno::Errno::EEXIST) => {
            let _ =
                nix::unistd::unlinkat(dir.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir);
            mknod().ctx(|| format!("mknod {}", n.path.display()))?;
        }
        Err(e) => return Err(e).ctx(|| format!("mknod {}", n.path.display())),
    }
    if (n.uid, n.gid)
        != (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    {
        nix::unistd::fchownat(
            dir.as_fd(),
            name,
            Some(n.uid.into()),
            Some(n.gid.into()),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .ctx(|| format!("chown {}", n.path.display()))?;
    }
    // mknod applied the umask: set the exact mode asked for, unless the umask took nothing off.
    if n.mode & 0o7777 & umask != 0 {
        nix::sys::stat::fchmodat(
            dir.as_fd(),
            name,
            mode,
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .ctx(|| format!("chmod {}", n.path.display()))?;
    }
    Ok(())
}

/// The device cgroup rules every container gets after the spec's own (as runc): mknod of anything, and
/// read/write of the default devices, ptys, the console and /dev/net/tun.
pub fn default_cgroup_rules() -> Vec<LinuxDeviceCgroup> {
    let rule = |typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true)
            .set_typ(Some(typ))
            .set_major(major)
            .set_minor(minor)
            .set_access(Some(access.to_string()));
        r
    };
    let c = LinuxDeviceType::C;
    vec![
        rule(c, None, None, "m"),
        rule(LinuxDeviceType::B, None, None, "m"),
        rule(c, Some(1), Some(3), "rwm"),
        rule(c, Some(1), Some(8), "rwm"),
        rule(c, Some(1), Some(7), "rwm"),
        rule(c, Some(5), Some(0), "rwm"),
        rule(c, Some(1), Some(5), "rwm"),
        rule(c, Some(1), Some(9), "rwm"),
        rule(c, Some(5), Some(1), "rwm"),
        rule(c, Some(136), None, "rwm"),
        rule(c, Some(5), Some(2), "rwm"),
        rule(c, Some(10), Some(200), "rwm"),
    ]
}
