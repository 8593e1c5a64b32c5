//! The runtime's commands, one file per group: create/run, the container init, start/kill/delete,
//! exec, and the queries (state, list, ps, pause, update, stats).

mod create;
mod exec;
mod init;
mod lifecycle;
mod query;
mod wait;

use std::path::{Path, PathBuf};

pub use create::CreateOptions;
pub use exec::ExecOptions;
pub use lifecycle::{DeleteOptions, KillOptions};

use crate::error::Context;
use crate::state::{ContainerState, Lock};
use crate::{id, Error, Result};

/// An OCI runtime rooted at a state directory (runc's `--root`).
#[derive(Debug, Clone)]
pub struct Runtime {
    root: PathBuf,
}

/// A process the runtime started: the container's init (create/run) or an exec'd process.
#[derive(Debug, Clone, Copy)]
pub struct StartedProcess {
    pub pid: i32,
}

impl Runtime {
    /// Uses `root` as the state directory, creating it (mode 0700) if needed.
    pub fn new(root: impl Into<PathBuf>) -> Result<Runtime> {
        let root = root.into();
        if !root.is_dir() {
            std::fs::create_dir_all(&root)
                .ctx(|| format!("creating the state directory {}", root.display()))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))
                .ctx(|| format!("chmod {}", root.display()))?;
        }
        // Compiled seccomp filters are cached beside the containers' state (only root writes
        // there); a name with '+' can never be a container id (see `id::validate`).
        berth_seccomp::set_cache_dir(root.join("+seccomp-cache"));
        Ok(Runtime { root })
    }

    /// The state directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, id: &str) -> Result<PathBuf> {
        id::validate(id)?;
        Ok(self.root.join(id))
    }

    /// Loads a container's record; `NotFound` if there is none.
    fn load(&self, id: &str) -> Result<(PathBuf, ContainerState)> {
        let dir = self.dir(id)?;
        if !dir.is_dir() {
            return Err(Error::NotFound(id.to_string()));
        }
        let st = ContainerState::load(&dir, id)?;
        Ok((dir, st))
    }

    /// Loads a container's record under its lock.
    fn load_locked(&self, id: &str) -> Result<(PathBuf, ContainerState, Lock)> {
        let dir = self.dir(id)?;
        if !dir.is_dir() {
            return Err(Error::NotFound(id.to_string()));
        }
        let lock = Lock::acquire(&dir)?;
        let st = ContainerState::load(&dir, id)?;
        Ok((dir, st, lock))
    }
}
