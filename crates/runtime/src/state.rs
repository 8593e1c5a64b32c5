//! What the runtime remembers about a container between commands: `<root>/<id>/state.json`, written
//! atomically (temp file + rename), and the lock that serialises commands on one container.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Context;
use crate::{Error, Result};

/// The lifecycle states of the runtime-spec, plus runc's `paused`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// The persisted record of one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    pub oci_version: String,
    pub id: String,
    /// Host pid of the container's init process.
    pub pid: i32,
    /// The init's start time (field 22 of /proc/<pid>/stat), so a recycled pid is never mistaken for it.
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    pub cgroup: berth_cgroups::Cgroup,
    /// Whether the container has its own pid namespace (then killing init kills everything in it).
    pub private_pid_ns: bool,
    /// The config.json the container was created from (updated by `update`), kept verbatim: one file per
    /// container is all the runtime writes.
    pub config: Box<serde_json::value::RawValue>,
}

/// The runtime-spec state object that `state` prints (plus runc's `rootfs`, `created`, `owner`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateView {
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "HashMap::is_empty", default)]
    pub annotations: HashMap<String, String>,
}

pub(crate) const STATE_FILE: &str = "state.json";
pub(crate) const FIFO: &str = "exec.fifo";

impl ContainerState {
    /// Loads `<dir>/state.json`.
    pub fn load(dir: &Path, id: &str) -> Result<Self> {
        let path = dir.join(STATE_FILE);
        let raw = match std::fs::read(&path) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_string()))
            }
            Err(e) => return Err(e).ctx(|| format!("reading {}", path.display())),
        };
        serde_json::from_slice(&raw)
            .map_err(|e| Error::Invalid(format!("corrupt state file {}: {e}", path.display())))
    }

    /// Writes `<dir>/state.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let data =
            serde_json::to_vec(self).map_err(|e| Error::Invalid(format!("encoding state: {e}")))?;
        write_atomic(&dir.join(STATE_FILE), &data)
    }

    /// The saved config.
    pub fn spec(&self) -> Result<oci_spec::runtime::Spec> {
        serde_json::from_str(self.config.get())
            .map_err(|e| Error::Invalid(format!("corrupt saved config of {}: {e}", self.id)))
    }

    /// The current status, derived from the kernel's view of the init process.
    pub fn status(&self, dir: &Path) -> Status {
        if !process_matches(self.pid, self.pid_start) {
            return Status::Stopped;
        }
        if dir.join(FIFO).exists() {
            return Status::Created;
        }
        if self.cgroup.is_frozen().unwrap_or(false) {
            return Status::Paused;
        }
        Status::Running
    }

    /// The printable state.
    pub fn view(&self, status: Status) -> StateView {
        StateView {
            oci_version: self.oci_version.clone(),
            id: self.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            status,
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            owner: self.owner.clone(),
            annotations: self.annotations.clone(),
        }
    }
}

/// Writes a file through a temp file and a rename, so readers see the old or the new content, never half.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .ctx(|| format!("creating {}", tmp.display()))?;
    f.write_all(data)
        .ctx(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).ctx(|| format!("renaming to {}", path.display()))
}

/// Start time (clock ticks since boot) and state letter of a process, from /proc/<pid>/stat.
pub fn proc_stat(pid: i32) -> Option<(u64, char)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain spaces or ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    // rest starts at field 3; starttime is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state))
}

/// Whether `pid` is still the live process that was recorded with `start`.
pub fn process_matches(pid: i32, start: u64) -> bool {
    pid > 0 && matches!(proc_stat(pid), Some((s, st)) if s == start && st != 'Z' && st != 'X')
}

/// An exclusive lock on one container's directory, held for the duration of a mutating command.
pub struct Lock {
    _file: nix::fcntl::Flock<File>,
}

impl Lock {
    /// Locks the container's directory itself (no lock file to create).
    pub fn acquire(dir: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_DIRECTORY)
            .open(dir)
            .ctx(|| format!("opening {}", dir.display()))?;
        let path = dir;
        let file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .ctx(|| format!("locking {}", path.display()))?;
        Ok(Lock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_reads_our_own_process() {
        let me = std::process::id() as i32;
        let (start, state) = proc_stat(me).unwrap();
        assert!(start > 0);
        assert!(state == 'R' || state == 'S');
        assert!(process_matches(me, start));
        assert!(!process_matches(me, start + 1));
        assert!(!process_matches(0, start));
    }

    #[test]
    fn atomic_write_replaces_content() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert!(!d.path().join("f.tmp").exists());
    }
}
