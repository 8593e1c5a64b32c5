//! Joining a cgroup cheaply at container start.
//!
//! Moving another process through `cgroup.procs` takes the kernel's global threadgroup rwsem for writing,
//! which waits for an RCU grace period: 10 to 15 ms on the development hosts, more than the rest of a
//! container start. Two ways around it, used by the runtime:
//! - cgroup v1: a single-threaded process moves itself by writing "0" to `tasks` (the kernel skips the
//!   global lock when one thread moves itself);
//! - cgroup v2: the child is created directly in its cgroup with clone3(CLONE_INTO_CGROUP), see
//!   [`Cgroup::v2_path`].

use std::path::Path;

use crate::cgroup::Cgroup;
use crate::error::Result;
use crate::fsutil;

impl Cgroup {
    /// Moves the calling thread (which must be the only thread of its process) into the container's
    /// cgroup in every v1 hierarchy. The cgroup2 part, if any, is not touched.
    pub fn join_self_v1(&self) -> Result<()> {
        for d in &self.v1 {
            fsutil::write_in(&d.path, "tasks", "0")?;
        }
        Ok(())
    }

    /// The container's cgroup2 directory (unified or hybrid host), for clone3(CLONE_INTO_CGROUP).
    pub fn v2_path(&self) -> Option<&Path> {
        self.v2_dir()
    }
}
