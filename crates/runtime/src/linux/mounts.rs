//! The spec's `mounts`: option parsing and mounting each entry inside the rootfs.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Mount;

use super::secure_path::{self, Kind};
use crate::error::Context;
use crate::{Error, Result};

/// A mount's options split the way mount(2) wants them.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Flags for the mount itself.
    pub flags: MsFlags,
    /// Propagation changes, applied with separate mount(2) calls afterwards.
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific options (`mode=755,size=64k`).
    pub data: String,
    /// rbind or bind was asked for.
    pub bind: bool,
    /// `tmpcopyup` (runc's extension): copy the existing content under the tmpfs into it.
    pub copy_up: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            flags: MsFlags::empty(),
            propagation: Vec::new(),
            data: String::new(),
            bind: false,
            copy_up: false,
        }
    }
}

/// Parses mount options as runc does.
pub fn parse_options(opts: &[String]) -> Result<Options> {
    let mut o = Options::default();
    let mut data = Vec::new();
    for opt in opts {
        let (set, clear): (MsFlags, MsFlags) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "lazytime" => (MsFlags::MS_LAZYTIME, MsFlags::empty()),
            "nolazytime" => (MsFlags::empty(), MsFlags::MS_LAZYTIME),
            "silent" => (MsFlags::MS_SILENT, MsFlags::empty()),
            "loud" => (MsFlags::empty(), MsFlags::MS_SILENT),
            "bind" => {
                o.bind = true;
                (MsFlags::MS_BIND, MsFlags::empty())
            }
            "rbind" => {
                o.bind = true;
                (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty())
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                o.propagation.push(propagation_flag(opt)?);
                continue;
            }
            "tmpcopyup" => {
                o.copy_up = true;
                continue;
            }
            "idmap" | "ridmap" => {
                return Err(Error::Unsupported(format!(
                    "mount option {opt:?} (id-mapped mounts) is not supported by berth-runtime"
                )))
            }
            "defaults" => continue,
            other => {
                data.push(other.to_string());
                continue;
            }
        };
        o.flags.insert(set);
        o.flags.remove(clear);
    }
    o.data = data.join(",");
    Ok(o)
}

/// The mount(2) flags of a propagation name (`rshared`, `private`, ...).
pub fn propagation_flag(name: &str) -> Result<MsFlags> {
    Ok(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        other => return Err(Error::Invalid(format!("unknown propagation {other:?}"))),
    })
}

/// Flags that a read-only/nosuid/... bind mount needs re-applied with MS_REMOUNT (bind ignores them).
const REMOUNT_FLAGS: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NOATIME)
    .union(MsFlags::MS_NODIRATIME)
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME);

/// Mounts one entry of `mounts` under the rootfs given by `root` (an O_PATH descriptor).
/// `cgroup` mounts are handled by the caller (they need the cgroup manager).
pub fn mount_entry(root: BorrowedFd, m: &Mount, in_userns: bool) -> Result<()> {
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]))?;
    let typ = m.typ().as_deref().unwrap_or("");
    let dest = m.destination();
    if opts.copy_up {
        return Err(Error::Unsupported(format!(
            "mount option \"tmpcopyup\" on {} is not supported by berth-runtime",
            dest.display()
        )));
    }
    let bind = opts.bind || typ == "bind";
    let src = m.source().as_deref();
    if bind {
        let src = src.ok_or_else(|| {
            Error::Invalid(format!("bind mount to {} has no source", dest.display()))
        })?;
        let kind = if std::fs::metadata(src)
            .ctx(|| format!("bind mount source {}", src.display()))?
            .is_dir()
        {
            Kind::Dir
        } else {
            Kind::File
        };
        let target = secure_path::ensure(root, dest, kind)?;
        let tpath = secure_path::proc_fd_path(&target);
        let flags = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
        mount(Some(src), &tpath, None::<&str>, flags, None::<&str>)
            .ctx(|| format!("bind mounting {} on {}", src.display(), dest.display()))?;
        drop(target);
        let extra = opts.flags & REMOUNT_FLAGS;
        if !extra.is_empty() {
            remount_bind_at(root, dest, extra)?;
        }
        apply_propagation(root, dest, &opts.propagation)?;
        return Ok(());
    }
    let target = secure_path::ensure(root, dest, Kind::Dir)?;
    let tpath = secure_path::proc_fd_path(&target);
    let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
    let res = mount(
        Some(src.map(|s| s.as_os_str()).unwrap_or(typ.as_ref())),
        &tpath,
        Some(typ),
        opts.flags & !MsFlags::MS_REMOUNT,
        data,
    );
    match res {
        Ok(()) => {}
        // sysfs cannot be mounted in a user namespace that does not own the network namespace:
        // fall back to a recursive bind of the host's /sys, as runc does.
        Err(nix::errno::Errno::EPERM) if typ == "sysfs" && in_userns => {
            mount(
                Some("/sys"),
                &tpath,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .ctx(|| format!("bind mounting /sys on {}", dest.display()))?;
            let extra = opts.flags & REMOUNT_FLAGS;
            if !extra.is_empty() {
                remount_bind_at(root, dest, extra)?;
            }
        }
        Err(e) => {
            return Err(e).ctx(|| {
                format!(
                    "mounting {typ} on {} (options {:?})",
                    dest.display(),
                    m.options().as_deref().unwrap_or(&[])
                )
            })
        }
    }
    drop(target);
    apply_propagation(root, dest, &opts.propagation)
}

/// mount_setattr(2) with AT_RECURSIVE: applies the per-mount flags among `flags` (ro, nosuid, nodev,
/// noexec) to the mount at `fd` and every mount below it, in one call.
pub fn set_attr_recursive(fd: &impl std::os::fd::AsRawFd, flags: MsFlags) -> nix::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let mut set = 0u64;
    for (ms, attr) in [
        (MsFlags::MS_RDONLY, 0x1u64),
        (MsFlags::MS_NOSUID, 0x2),
        (MsFlags::MS_NODEV, 0x4),
        (MsFlags::MS_NOEXEC, 0x8),
    ] {
        if flags.contains(ms) {
            set |= attr;
        }
    }
    if set == 0 {
        return Ok(());
    }
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    // SAFETY: mount_setattr reads a mount_attr struct of the given size that we own; "" with AT_EMPTY_PATH
    // means the descriptor itself.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    nix::errno::Errno::result(r).map(drop)
}

/// Reopens `dest` inside `root` (so the descriptor refers to the mount just made on it, not to what was
/// underneath) and remounts it with `flags`.
pub fn remount_bind_at(root: BorrowedFd, dest: &Path, flags: MsFlags) -> Result<()> {
    let fd = secure_path::open(root, dest, nix::fcntl::OFlag::O_PATH)
        .ctx(|| format!("reopening {}", dest.display()))?;
    remount_bind(&secure_path::proc_fd_path(&fd), flags, dest)
}

/// Re-applies per-mount flags on a bind mount, keeping the flags the kernel insists on (locked in a user
/// namespace) so the remount is not refused.
pub fn remount_bind(target: &Path, flags: MsFlags, what: &Path) -> Result<()> {
    let locked = match nix::sys::statvfs::statvfs(target) {
        Ok(st) => {
            use nix::sys::statvfs::FsFlags;
            let f = st.flags();
            let mut m = MsFlags::empty();
            for (a, b) in [
                (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
                (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
                (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
                (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
            ] {
                if f.contains(a) {
                    m |= b;
                }
            }
            m
        }
        Err(_) => MsFlags::empty(),
    };
    mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | locked,
        None::<&str>,
    )
    .ctx(|| format!("remounting {} with {flags:?}", what.display()))
}

fn apply_propagation(root: BorrowedFd, dest: &Path, props: &[MsFlags]) -> Result<()> {
    if props.is_empty() {
        return Ok(());
    }
    let fd = secure_path::open(root.as_fd(), dest, nix::fcntl::OFlag::O_PATH)
        .ctx(|| format!("reopening {}", dest.display()))?;
    let p = secure_path::proc_fd_path(&fd);
    for flag in props {
        mount(None::<&str>, &p, None::<&str>, *flag, None::<&str>)
            .ctx(|| format!("setting propagation {flag:?} on {}", dest.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_flags_data_and_propagation() {
        let o = parse_options(&s(&["nosuid", "noexec", "mode=755", "size=65536k", "ro"])).unwrap();
        assert_eq!(
            o.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY
        );
        assert_eq!(o.data, "mode=755,size=65536k");
        let o = parse_options(&s(&["rbind", "rslave", "rw"])).unwrap();
        assert!(o.bind);
        assert_eq!(o.flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        let o = parse_options(&s(&["ro", "rw"])).unwrap();
        assert!(o.flags.is_empty());
    }

    #[test]
    fn idmap_is_a_clear_error() {
        let e = parse_options(&s(&["idmap"])).unwrap_err().to_string();
        assert!(e.contains("idmap"), "{e}");
    }
}
