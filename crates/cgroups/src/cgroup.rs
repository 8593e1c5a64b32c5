//! [`Cgroup`]: a handle to one container's cgroup in every hierarchy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::error::{CgroupError, Result};
use crate::layout::{self, Layout, Mounts, ProcCgroup};
use crate::stats::Stats;
use crate::{freezer, fsutil, hybrid, v2};

/// The container's directory in one cgroup v1 hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct V1Dir {
    /// Controllers of the hierarchy, e.g. ["cpu", "cpuacct"], ["name=systemd"].
    pub controllers: Vec<String>,
    /// Mount point of the hierarchy, e.g. /sys/fs/cgroup/memory.
    pub mountpoint: PathBuf,
    /// The container's cgroup directory.
    pub path: PathBuf,
}

/// The container's directory in the cgroup2 hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct V2Dir {
    /// Mount point, /sys/fs/cgroup (unified) or /sys/fs/cgroup/unified (hybrid).
    pub mountpoint: PathBuf,
    /// The container's cgroup directory.
    pub path: PathBuf,
}

/// A handle to one container's cgroup in every hierarchy of the host.
///
/// Built by [`Cgroup::new`] (which only reads /proc; it creates nothing),
/// serializable so a runtime can keep it in its state file and use it in
/// later commands without looking anything up again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    layout: Layout,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) v1: Vec<V1Dir>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    v2: Option<V2Dir>,
}

/// What a runtime bind-mounts into a container's /sys/fs/cgroup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupMount {
    /// Directory name on the host: "memory", "cpu,cpuacct", "systemd",
    /// "unified" (the cgroup2 mount of a hybrid or unified host).
    pub name: String,
    /// The container's cgroup directory in this hierarchy on the host.
    pub host_path: PathBuf,
    /// Where to mount it, relative to the container's /sys/fs/cgroup:
    /// `name` for v1 and hybrid cgroup2, empty (the directory itself) for a
    /// unified host.
    pub mountpoint_rel: PathBuf,
    /// Symlinks to create in /sys/fs/cgroup pointing at `name`, one per
    /// co-mounted controller ("cpu" and "cpuacct" for "cpu,cpuacct").
    pub symlinks: Vec<String>,
    /// True for the cgroup2 filesystem.
    pub cgroup2: bool,
    /// Controllers of a v1 hierarchy (e.g. ["cpu", "cpuacct"]); empty for v2.
    pub controllers: Vec<String>,
}

/// Rejects ids that are not a single path component.
fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id == "." || id == ".." || id.contains('/') || id.contains('\0') {
        return Err(CgroupError::InvalidPath {
            path: PathBuf::from(id),
            reason: "the container id must be a single, non-empty path component".into(),
        });
    }
    Ok(())
}

impl Cgroup {
    /// Resolves the container's cgroup in every hierarchy. `cgroups_path`
    /// is the spec's `linux.cgroupsPath`: absolute paths start at each
    /// hierarchy's root, relative ones at the calling process's own cgroup
    /// (per /proc/self/cgroup); `None` means `/berth/<id>`. Reads
    /// /proc/self/mountinfo (and, for a relative path, /proc/self/cgroup)
    /// once; creates nothing.
    pub fn new(cgroups_path: Option<&Path>, id: &str) -> Result<Self> {
        check_id(id)?;
        let mounts = layout::read_mounts()?;
        let own = match cgroups_path {
            Some(p) if !p.is_absolute() => Some(layout::parse_proc_cgroup(&fsutil::read(
                Path::new("/proc/self/cgroup"),
            )?)),
            _ => None,
        };
        let default = PathBuf::from("/berth").join(id);
        let path = cgroups_path.unwrap_or(&default);
        Self::from_mounts(&mounts, path, own.as_deref())
    }

    /// Builds the handle from parsed mounts; `own` is /proc/self/cgroup
    /// when `path` is relative.
    pub(crate) fn from_mounts(
        mounts: &Mounts,
        path: &Path,
        own: Option<&[ProcCgroup]>,
    ) -> Result<Self> {
        let resolve = |mountpoint: &Path, root: &str, own_path: Option<&str>| -> Result<PathBuf> {
            let cg = match own_path {
                Some(o) => Path::new(o).join(path),
                None => PathBuf::from("/").join(path),
            };
            let dir = layout::dir_in_mount(mountpoint, root, &cg)?;
            if dir == mountpoint {
                return Err(CgroupError::InvalidPath {
                    path: path.to_owned(),
                    reason: format!(
                        "resolves to the root of the hierarchy at {}",
                        mountpoint.display()
                    ),
                });
            }
            Ok(dir)
        };
        let own_for = |controllers: &[String]| -> Option<&str> {
            let own = own?;
            let line = own.iter().find(|l| {
                if controllers.is_empty() {
                    l.controllers.is_empty()
                } else {
                    l.controllers.len() == controllers.len()
                        && controllers.iter().all(|c| l.controllers.contains(c))
                }
            });
            Some(line.map_or("/", |l| l.path.as_str()))
        };
        let mut v1 = Vec::with_capacity(mounts.v1.len());
        for m in &mounts.v1 {
            v1.push(V1Dir {
                controllers: m.controllers.clone(),
                mountpoint: m.mountpoint.clone(),
                path: resolve(&m.mountpoint, &m.root, own_for(&m.controllers))?,
            });
        }
        let v2 = match &mounts.v2 {
            Some(m) if mounts.layout != Layout::Legacy => Some(V2Dir {
                mountpoint: m.mountpoint.clone(),
                path: resolve(&m.mountpoint, &m.root, own_for(&[]))?,
            }),
            _ => None,
        };
        Ok(Cgroup {
            layout: mounts.layout,
            v1,
            v2,
        })
    }

    /// A v2-only handle for `path` under the cgroup2 mount `mountpoint`
    /// (used to exercise the v2 code on a hybrid host's unified mount).
    #[cfg(test)]
    pub(crate) fn for_v2_mount(mountpoint: &Path, path: &Path) -> Result<Self> {
        let mounts = Mounts {
            layout: Layout::Unified,
            v1: Vec::new(),
            v2: Some(layout::V2Mount {
                mountpoint: mountpoint.to_owned(),
                root: "/".into(),
            }),
        };
        Self::from_mounts(&mounts, path, None)
    }

    /// The host layout this handle was built for.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The container's directory in the v1 hierarchy holding `controller`
    /// ("memory", "cpu", "name=systemd"...).
    pub(crate) fn v1_dir(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|d| d.controllers.iter().any(|c| c == controller))
            .map(|d| d.path.as_path())
    }

    /// The container's cgroup2 directory (whole tree on unified, the
    /// /sys/fs/cgroup/unified part on hybrid).
    pub(crate) fn v2_dir(&self) -> Option<&Path> {
        self.v2.as_ref().map(|d| d.path.as_path())
    }

    /// Every directory of the container, v1 then v2.
    fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.v1
            .iter()
            .map(|d| d.path.as_path())
            .chain(self.v2_dir())
    }

    /// Creates the cgroup (mkdir -p) in every hierarchy. New v1 cpuset
    /// levels get their parent's cpus and mems (else no task could join);
    /// on cgroup2 the ancestors enable every available controller in
    /// `cgroup.subtree_control` (as runc; one that cannot be enabled is
    /// reported when a resource needs it).
    pub fn create(&self) -> Result<()> {
        for d in &self.v1 {
            let mut created = Vec::new();
            fsutil::mkdir_p(&d.path, &mut created)?;
            if !created.is_empty() && d.controllers.iter().any(|c| c == "cpuset") {
                init_cpuset(&d.mountpoint, &created)?;
            }
        }
        self.create_v2()
    }

    /// Creates only the cgroup2 directory (mkdir -p), with every new level's
    /// ancestors enabling the available controllers; what `create` does for
    /// cgroup2. For a child cloned straight into it (CLONE_INTO_CGROUP)
    /// before the v1 hierarchies are made.
    pub fn create_v2(&self) -> Result<()> {
        if let Some(d) = &self.v2 {
            let mut created = Vec::new();
            fsutil::mkdir_p(&d.path, &mut created)?;
            if !created.is_empty() {
                enable_controllers(&d.mountpoint, &d.path)?;
            }
        }
        Ok(())
    }

    /// Moves process `pid` into the cgroup in every hierarchy (including
    /// name=systemd and, on hybrid hosts, the cgroup2 one).
    pub fn add_process(&self, pid: i32) -> Result<()> {
        if pid <= 0 {
            return Err(CgroupError::Invalid {
                field: "pid".into(),
                reason: format!("{pid} is not a process id"),
            });
        }
        let value = pid.to_string();
        for dir in self.dirs() {
            write_procs(dir, &value)?;
        }
        Ok(())
    }

    /// Applies the spec's resources; every requested resource is either
    /// applied or an error (an unavailable controller or a setting this
    /// cgroup version lacks is reported before anything is written).
    pub fn apply(&self, res: &LinuxResources) -> Result<()> {
        hybrid::apply(self, res, false)
    }

    /// Applies new resources to a running container. Absent fields are left
    /// alone; device rules are changed by difference where possible (v1) or
    /// by atomically replacing the BPF program (v2).
    pub fn update(&self, res: &LinuxResources) -> Result<()> {
        hybrid::apply(self, res, true)
    }

    /// Where the freezer is: v1 freezer hierarchy, else cgroup2 core.
    fn freezer(&self) -> Result<(bool, &Path)> {
        if let Some(d) = self.v1_dir("freezer") {
            return Ok((true, d));
        }
        if let Some(d) = self.v2_dir() {
            return Ok((false, d));
        }
        Err(CgroupError::ControllerMissing {
            controller: "freezer".into(),
            resource: "freeze/thaw".into(),
        })
    }

    /// Freezes every process and waits until the kernel reports the cgroup
    /// frozen.
    pub fn freeze(&self) -> Result<()> {
        match self.freezer()? {
            (true, d) => freezer::freeze_v1(d),
            (false, d) => freezer::freeze_v2(d),
        }
    }

    /// Thaws the cgroup.
    pub fn thaw(&self) -> Result<()> {
        match self.freezer()? {
            (true, d) => freezer::thaw_v1(d),
            (false, d) => freezer::thaw_v2(d),
        }
    }

    /// Whether the cgroup is frozen.
    pub fn is_frozen(&self) -> Result<bool> {
        match self.freezer()? {
            (true, d) => freezer::is_frozen_v1(d),
            (false, d) => freezer::is_frozen_v2(d),
        }
    }

    /// Every process in the cgroup and its descendant cgroups, sorted.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let dir = ["freezer", "pids", "memory"]
            .iter()
            .find_map(|c| self.v1_dir(c))
            .or_else(|| self.v1.first().map(|d| d.path.as_path()))
            .or_else(|| self.v2_dir())
            .ok_or_else(|| CgroupError::NoCgroupFs("the handle has no hierarchy".into()))?;
        let mut pids = Vec::new();
        fsutil::read_procs_recursive(dir, &mut pids)?;
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Sends `sig` to every process in the cgroup. SIGKILL uses cgroup2's
    /// `cgroup.kill` where the kernel has it (also on hybrid hosts, where the
    /// processes are in the cgroup2 tree too); otherwise the cgroup is
    /// frozen, every process signalled, and thawed, so no process escapes by
    /// forking. A cgroup that does not exist has nothing to kill.
    pub fn kill_all(&self, sig: Signal) -> Result<()> {
        if sig == Signal::SIGKILL {
            if let Some(d) = self.v2_dir() {
                match fsutil::write_in(d, "cgroup.kill", "1") {
                    Ok(()) => return Ok(()),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let frozen = match self.freeze() {
            Ok(()) => true,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(CgroupError::ControllerMissing { .. }) => false,
            Err(e) => return Err(e),
        };
        let pids = match self.pids() {
            Ok(p) => p,
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut result = Ok(());
        for pid in pids {
            match kill(Pid::from_raw(pid), sig) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(source) => {
                    result = Err(CgroupError::Signal {
                        signal: sig.as_str().to_owned(),
                        pid,
                        source,
                    });
                }
            }
        }
        if frozen {
            self.thaw()?;
        }
        result
    }

    /// Resource usage, in runc's `events --stats` shape.
    pub fn stats(&self) -> Result<Stats> {
        hybrid::stats(self)
    }

    /// Removes the cgroup (and any child cgroups) in every hierarchy,
    /// retrying briefly while exiting tasks keep it busy. Absent
    /// directories are fine. Parents such as /berth are left in place.
    pub fn destroy(&self) -> Result<()> {
        let mut first_err = None;
        for dir in self.dirs() {
            if let Err(e) = fsutil::remove_cgroup_dir(dir) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The bind mounts that give a container its own view of
    /// /sys/fs/cgroup: one per v1 hierarchy and one for cgroup2.
    pub fn mounts(&self) -> Vec<CgroupMount> {
        let mut out: Vec<CgroupMount> = self
            .v1
            .iter()
            .map(|d| {
                let name = d
                    .mountpoint
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| d.controllers.join(","));
                let symlinks = if name.contains(',') {
                    name.split(',').map(str::to_owned).collect()
                } else {
                    Vec::new()
                };
                CgroupMount {
                    mountpoint_rel: PathBuf::from(&name),
                    name,
                    host_path: d.path.clone(),
                    symlinks,
                    cgroup2: false,
                    controllers: d.controllers.clone(),
                }
            })
            .collect();
        if let Some(d) = &self.v2 {
            out.push(CgroupMount {
                name: "unified".into(),
                host_path: d.path.clone(),
                mountpoint_rel: if self.layout == Layout::Unified {
                    PathBuf::new()
                } else {
                    PathBuf::from("unified")
                },
                symlinks: Vec::new(),
                cgroup2: true,
                controllers: Vec::new(),
            });
        }
        out
    }

    /// How many times the kernel OOM killer killed a process in the cgroup
    /// (v1 memory.oom_control, v2 memory.events `oom_kill`).
    pub fn oom_kill_count(&self) -> Result<u64> {
        let r = hybrid::Router::new(self, false);
        let (dir, file) = match r.require("memory", "memory", "OOM kill count")? {
            hybrid::Target::V1(d) => (d, "memory.oom_control"),
            hybrid::Target::V2(d) => (d, "memory.events"),
        };
        let content = fsutil::read_in(dir, file).map_err(|e| {
            if e.is_not_found() {
                v2::explain_missing(dir, file, "OOM kill count")
            } else {
                e
            }
        })?;
        fsutil::keyed_value(&content, "oom_kill").ok_or_else(|| CgroupError::Parse {
            path: dir.join(file),
            content: "no oom_kill line".into(),
        })
    }
}

/// How many times the OOM killer killed a process in the cgroup at `cgroups_path` (absolute, as
/// the spec's cgroupsPath), like [`Cgroup::oom_kill_count`] but without reading mountinfo first
/// when the memory controller is at its usual place (`/sys/fs/cgroup/memory` on v1 and hybrid
/// hosts, `/sys/fs/cgroup` on a pure v2 host): for callers on a hot path, such as a container's
/// clean-up. Elsewhere it resolves the hierarchy as [`Cgroup::new`] does.
pub fn oom_kill_count_at(cgroups_path: &Path, id: &str) -> Result<u64> {
    let rel = cgroups_path.strip_prefix("/").unwrap_or(cgroups_path);
    for (dir, file) in [
        (
            Path::new("/sys/fs/cgroup/memory").join(rel),
            "memory.oom_control",
        ),
        (Path::new("/sys/fs/cgroup").join(rel), "memory.events"),
    ] {
        if let Ok(content) = fsutil::read_in(&dir, file) {
            return fsutil::keyed_value(&content, "oom_kill").ok_or_else(|| CgroupError::Parse {
                path: dir.join(file),
                content: "no oom_kill line".into(),
            });
        }
    }
    Cgroup::new(Some(cgroups_path), id)?.oom_kill_count()
}

/// Writes a pid to `dir/cgroup.procs`, retrying EINVAL a few times: a task
/// still being created (TASK_NEW) cannot be moved yet.
fn write_procs(dir: &Path, pid: &str) -> Result<()> {
    let mut tries = 0;
    loop {
        match fsutil::write_in(dir, "cgroup.procs", pid) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && tries < 5 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(30));
            }
            r => return r,
        }
    }
}

/// cpus and mems of a v1 cpuset directory, copying them from the nearest
/// configured ancestor where empty.
fn cpuset_values(dir: &Path, mountpoint: &Path) -> Result<(String, String)> {
    let cpus = fsutil::read_in(dir, "cpuset.cpus")?.trim().to_owned();
    let mems = fsutil::read_in(dir, "cpuset.mems")?.trim().to_owned();
    if (!cpus.is_empty() && !mems.is_empty()) || dir == mountpoint {
        return Ok((cpus, mems));
    }
    let parent = dir.parent().unwrap_or(mountpoint);
    let (pc, pm) = cpuset_values(parent, mountpoint)?;
    if cpus.is_empty() {
        fsutil::write_in(dir, "cpuset.cpus", &pc)?;
    }
    if mems.is_empty() {
        fsutil::write_in(dir, "cpuset.mems", &pm)?;
    }
    Ok((pc, pm))
}

/// Gives newly created v1 cpuset directories (top-down) their parent's
/// cpus and mems.
fn init_cpuset(mountpoint: &Path, created: &[PathBuf]) -> Result<()> {
    let Some(parent) = created.first().and_then(|d| d.parent()) else {
        return Ok(());
    };
    let (cpus, mems) = cpuset_values(parent, mountpoint)?;
    for d in created {
        fsutil::write_in(d, "cpuset.cpus", &cpus)?;
        fsutil::write_in(d, "cpuset.mems", &mems)?;
    }
    Ok(())
}

/// Enables the root's available controllers in `cgroup.subtree_control` of
/// every ancestor of `leaf` below and including `mountpoint`. A level that
/// refuses the whole set gets them one by one, and refusals are left for
/// the resource that needs the controller to report.
fn enable_controllers(mountpoint: &Path, leaf: &Path) -> Result<()> {
    let available = v2::controllers(mountpoint)?;
    if available.is_empty() {
        return Ok(());
    }
    let all: Vec<String> = available.iter().map(|c| format!("+{c}")).collect();
    let joined = all.join(" ");
    let Ok(rel) = leaf.strip_prefix(mountpoint) else {
        return Ok(());
    };
    let mut dir = mountpoint.to_path_buf();
    for c in rel.components() {
        // `dir` is the parent of `c`: let `c` use the controllers.
        if fsutil::write_in(&dir, "cgroup.subtree_control", &joined).is_err() {
            for one in &all {
                let _ = fsutil::write_in(&dir, "cgroup.subtree_control", one);
            }
        }
        dir.push(c);
    }
    Ok(())
}
