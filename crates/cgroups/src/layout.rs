//! Detection of the host's cgroup layout and of where each hierarchy is
//! mounted. [`detect_layout`] uses statfs(2) as the spec describes; the
//! constructor instead parses `/proc/self/mountinfo` once, which gives the
//! layout and every mount point in one read.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, TMPFS_MAGIC};
use serde::{Deserialize, Serialize};

use crate::error::{CgroupError, Result};

/// Where the host's cgroup filesystems are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Layout {
    /// cgroup v1 only: one hierarchy per controller (set) under /sys/fs/cgroup.
    Legacy,
    /// cgroup v1 controllers plus a cgroup2 mount at /sys/fs/cgroup/unified.
    Hybrid,
    /// cgroup v2 only, mounted at /sys/fs/cgroup.
    Unified,
}

/// Default mount point of the cgroup filesystems.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Detects the layout with statfs(2): cgroup2 at /sys/fs/cgroup means
/// [`Layout::Unified`]; a tmpfs there means [`Layout::Legacy`], or
/// [`Layout::Hybrid`] when /sys/fs/cgroup/unified is a cgroup2 mount.
pub fn detect_layout() -> Result<Layout> {
    let st = statfs(CGROUP_ROOT)
        .map_err(|e| CgroupError::NoCgroupFs(format!("statfs {CGROUP_ROOT}: {e}")))?;
    let ty = st.filesystem_type();
    if ty == CGROUP2_SUPER_MAGIC {
        return Ok(Layout::Unified);
    }
    if ty == TMPFS_MAGIC {
        let unified = format!("{CGROUP_ROOT}/unified");
        return Ok(match statfs(unified.as_str()) {
            Ok(u) if u.filesystem_type() == CGROUP2_SUPER_MAGIC => Layout::Hybrid,
            _ => Layout::Legacy,
        });
    }
    Err(CgroupError::NoCgroupFs(format!(
        "{CGROUP_ROOT} is neither cgroup2 nor tmpfs (filesystem magic {:#x})",
        ty.0
    )))
}

/// A mounted cgroup v1 hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct V1Mount {
    /// Controllers bound to it, e.g. ["cpu", "cpuacct"] or ["name=systemd"].
    pub controllers: Vec<String>,
    pub mountpoint: PathBuf,
    /// The cgroup shown at the mount point ("/" unless bind-mounted).
    pub root: String,
}

/// The cgroup2 mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct V2Mount {
    pub mountpoint: PathBuf,
    pub root: String,
}

/// Every cgroup mount relevant to the runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mounts {
    pub layout: Layout,
    pub v1: Vec<V1Mount>,
    pub v2: Option<V2Mount>,
}

/// Mount options of cgroup v1 that are not controller names.
const V1_OPTIONS: &[&str] = &[
    "rw",
    "ro",
    "none",
    "noprefix",
    "clone_children",
    "xattr",
    "cpuset_v2_mode",
    "favordynmods",
    "nofavordynmods",
];

/// Undoes the octal escapes (`\040` etc.) of mountinfo fields.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Preference of a mount point: the standard places first.
fn rank(mp: &Path) -> u8 {
    if mp == Path::new(CGROUP_ROOT) {
        0
    } else if mp.parent() == Some(Path::new(CGROUP_ROOT)) {
        1
    } else {
        2
    }
}

/// Parses `/proc/self/mountinfo` content into the cgroup mounts.
pub(crate) fn parse_mountinfo(content: &str) -> Result<Mounts> {
    let mut v1: Vec<V1Mount> = Vec::new();
    let mut v2: Option<V2Mount> = None;
    for line in content.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split(' ');
        let fstype = post.next().unwrap_or("");
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        let _source = post.next();
        let superopts = post.next().unwrap_or("");
        let pre: Vec<&str> = pre.split(' ').collect();
        if pre.len() < 5 {
            continue;
        }
        let root = unescape(pre[3]);
        let mountpoint = PathBuf::from(unescape(pre[4]));
        if fstype == "cgroup2" {
            let better = match &v2 {
                None => true,
                Some(cur) => rank(&mountpoint) < rank(&cur.mountpoint),
            };
            if better {
                v2 = Some(V2Mount { mountpoint, root });
            }
            continue;
        }
        let mut controllers: Vec<String> = superopts
            .split(',')
            .filter(|o| !V1_OPTIONS.contains(o) && (!o.contains('=') || o.starts_with("name=")))
            .map(str::to_owned)
            .collect();
        controllers.sort();
        if controllers.is_empty() {
            continue;
        }
        match v1.iter_mut().find(|m| m.controllers == controllers) {
            Some(cur) if rank(&mountpoint) < rank(&cur.mountpoint) => {
                cur.mountpoint = mountpoint;
                cur.root = root;
            }
            Some(_) => {}
            None => v1.push(V1Mount {
                controllers,
                mountpoint,
                root,
            }),
        }
    }
    let unified_at_root = v2
        .as_ref()
        .is_some_and(|m| m.mountpoint == Path::new(CGROUP_ROOT));
    let layout = if unified_at_root || (v1.is_empty() && v2.is_some()) {
        v1.clear();
        Layout::Unified
    } else if v1.is_empty() {
        return Err(CgroupError::NoCgroupFs(
            "no cgroup or cgroup2 mount in /proc/self/mountinfo".into(),
        ));
    } else if v2
        .as_ref()
        .is_some_and(|m| m.mountpoint.parent() == Some(Path::new(CGROUP_ROOT)))
    {
        // systemd's hybrid layout: /sys/fs/cgroup/unified (as detect_layout).
        Layout::Hybrid
    } else {
        v2 = None;
        Layout::Legacy
    };
    Ok(Mounts { layout, v1, v2 })
}

/// Reads and parses `/proc/self/mountinfo`.
pub(crate) fn read_mounts() -> Result<Mounts> {
    parse_mountinfo(&crate::fsutil::read(Path::new("/proc/self/mountinfo"))?)
}

/// One line of `/proc/<pid>/cgroup`: the controller set and the cgroup path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProcCgroup {
    /// Sorted controller names; empty for the cgroup2 line.
    pub controllers: BTreeSet<String>,
    pub path: String,
}

/// Parses `/proc/<pid>/cgroup` content.
pub(crate) fn parse_proc_cgroup(content: &str) -> Vec<ProcCgroup> {
    content
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            let ctrls = it.next()?;
            let path = it.next()?;
            Some(ProcCgroup {
                controllers: ctrls
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect(),
                path: path.to_owned(),
            })
        })
        .collect()
}

/// Lexically cleans a cgroup path into components relative to a root,
/// refusing `..` that would climb above it.
pub(crate) fn clean_relative(p: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                if !out.pop() {
                    return Err(CgroupError::InvalidPath {
                        path: p.to_owned(),
                        reason: "'..' climbs above the cgroup root".into(),
                    });
                }
            }
            Component::Prefix(_) => {
                return Err(CgroupError::InvalidPath {
                    path: p.to_owned(),
                    reason: "unexpected path prefix".into(),
                })
            }
        }
    }
    Ok(out)
}

/// The directory for cgroup `cg` (a path from the hierarchy's root, e.g. one
/// of /proc/self/cgroup) in a hierarchy mounted at `mountpoint` showing the
/// cgroup `root`.
pub(crate) fn dir_in_mount(mountpoint: &Path, root: &str, cg: &Path) -> Result<PathBuf> {
    let cg = clean_relative(cg)?;
    let root = clean_relative(Path::new(root))?;
    let rel = cg.strip_prefix(&root).unwrap_or(&cg);
    Ok(mountpoint.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
90 22 0:32 /foo /mnt/mem\\040x rw - cgroup cgroup rw,memory
";

    #[test]
    fn parses_hybrid_mountinfo() {
        let m = parse_mountinfo(HYBRID).unwrap();
        assert_eq!(m.layout, Layout::Hybrid);
        assert_eq!(m.v1.len(), 3);
        assert_eq!(m.v1[0].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(m.v1[1].mountpoint, Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(m.v1[2].controllers, vec!["name=systemd"]);
        assert_eq!(
            m.v2.unwrap().mountpoint,
            Path::new("/sys/fs/cgroup/unified")
        );
    }

    #[test]
    fn parses_unified_and_legacy() {
        let u = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let m = parse_mountinfo(u).unwrap();
        assert_eq!(m.layout, Layout::Unified);
        assert!(m.v1.is_empty());
        let l = "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(parse_mountinfo(l).unwrap().layout, Layout::Legacy);
        // A cgroup2 mount elsewhere does not make a legacy host hybrid.
        let l2 = format!("{l}36 31 0:33 / /mnt/cg2 rw - cgroup2 cgroup2 rw\n");
        let m = parse_mountinfo(&l2).unwrap();
        assert_eq!(m.layout, Layout::Legacy);
        assert!(m.v2.is_none());
        assert!(parse_mountinfo("1 2 0:1 / / rw - ext4 /dev/vda rw\n").is_err());
    }

    #[test]
    fn unescapes_and_resolves() {
        assert_eq!(unescape("/mnt/mem\\040x"), "/mnt/mem x");
        let d = dir_in_mount(Path::new("/m"), "/foo", Path::new("/foo/bar")).unwrap();
        assert_eq!(d, Path::new("/m/bar"));
        let d = dir_in_mount(Path::new("/m"), "/", Path::new("/a/./b/../c")).unwrap();
        assert_eq!(d, Path::new("/m/a/c"));
        assert!(clean_relative(Path::new("/a/../../etc")).is_err());
    }

    #[test]
    fn parses_proc_cgroup() {
        let p = parse_proc_cgroup("4:memory:/x/y\n1:cpu,cpuacct:/\n0::/user.slice\n");
        assert_eq!(p.len(), 3);
        assert!(p[1].controllers.contains("cpuacct"));
        assert!(p[2].controllers.is_empty());
        assert_eq!(p[2].path, "/user.slice");
    }

    #[test]
    fn detect_layout_matches_mountinfo() {
        let by_statfs = detect_layout().unwrap();
        let by_mountinfo = read_mounts().unwrap().layout;
        assert_eq!(by_statfs, by_mountinfo);
    }
}
