//! Read-mostly commands: state, list, ps, update, stats.

use oci_spec::runtime::LinuxResources;

use super::Runtime;
use crate::state::{ContainerState, StateView, Status};
use crate::{Error, Result};

impl Runtime {
    /// `state`: the runtime-spec state of one container.
    pub fn state(&self, id: &str) -> Result<StateView> {
        let (dir, st) = self.load(id)?;
        let status = st.status(&dir);
        Ok(st.view(status))
    }

    /// `list`: every container under the root, sorted by id.
    pub fn list(&self) -> Result<Vec<StateView>> {
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(self.root()) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => {
                return Err(Error::Io {
                    context: format!("listing {}", self.root().display()),
                    err: e,
                })
            }
        };
        for entry in rd.flatten() {
            let dir = entry.path();
            let Some(id) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if let Ok(st) = ContainerState::load(&dir, &id) {
                let status = st.status(&dir);
                out.push(st.view(status));
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// `ps`: host pids of every process in the container.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let (dir, st) = self.load(id)?;
        let status = st.status(&dir);
        if status == Status::Stopped {
            return Err(Error::WrongState {
                op: "list processes of",
                id: id.into(),
                status,
            });
        }
        Ok(st.cgroup.pids()?)
    }

    /// `update`: applies new resource limits to a running container and remembers them.
    pub fn update(&self, id: &str, res: &LinuxResources) -> Result<()> {
        let (dir, st, _lock) = self.load_locked(id)?;
        let status = st.status(&dir);
        if status == Status::Stopped {
            return Err(Error::WrongState {
                op: "update",
                id: id.into(),
                status,
            });
        }
        st.cgroup.update(res)?;
        let mut spec = st.spec()?;
        if let Some(linux) = spec.linux_mut() {
            let merged = merge_resources(linux.resources().clone().unwrap_or_default(), res);
            linux.set_resources(Some(merged));
        }
        let mut st = st;
        st.config = serde_json::value::to_raw_value(&spec)
            .map_err(|e| Error::Invalid(format!("encoding config: {e}")))?;
        st.save(&dir)
    }

    /// `events --stats`: the container's cgroup statistics.
    pub fn stats(&self, id: &str) -> Result<berth_cgroups::Stats> {
        let (dir, st) = self.load(id)?;
        let status = st.status(&dir);
        if status == Status::Stopped {
            return Err(Error::WrongState {
                op: "read stats of",
                id: id.into(),
                status,
            });
        }
        Ok(st.cgroup.stats()?)
    }

    /// The cgroup handle and status, for `events` streaming.
    pub fn cgroup_of(&self, id: &str) -> Result<(berth_cgroups::Cgroup, Status)> {
        let (dir, st) = self.load(id)?;
        let status = st.status(&dir);
        Ok((st.cgroup, status))
    }
}

/// Fields set in `new` replace those of `old`.
fn merge_resources(mut old: LinuxResources, new: &LinuxResources) -> LinuxResources {
    if new.memory().is_some() {
        old.set_memory(*new.memory());
    }
    if new.cpu().is_some() {
        old.set_cpu(new.cpu().clone());
    }
    if new.pids().is_some() {
        old.set_pids(*new.pids());
    }
    if new.block_io().is_some() {
        old.set_block_io(new.block_io().clone());
    }
    if new.hugepage_limits().is_some() {
        old.set_hugepage_limits(new.hugepage_limits().clone());
    }
    if new.unified().is_some() {
        old.set_unified(new.unified().clone());
    }
    if new.devices().is_some() {
        old.set_devices(new.devices().clone());
    }
    old
}
