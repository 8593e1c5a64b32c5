//! The engine benchmark (`engine-bench`): berth, podman (crun, runc) and docker running
//! containers from the same busybox image.

pub mod engines;
pub mod exec;
pub mod image;
pub mod procs;
pub mod report;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::mount::{mount, MsFlags};

/// `tool` as a path: itself if it contains a `/` and is a file, else the first match on `$PATH` or
/// in the sbin/bin dirs (sudo's PATH may lack /usr/sbin).
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    if tool.contains('/') {
        let p = PathBuf::from(tool);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Mounts an empty tmpfs on `/run` in the bench's (private) mount namespace, so that the paths the
/// tools use there without being told (crun's `/run/crun`, containerd's `/run/containerd/s`
/// shim sockets, dockerd's `/run/docker/plugins`, a system containerd's socket that dockerd would
/// otherwise attach to) are the bench's own and vanish with it; the host's `/run` is untouched.
pub fn mask_run() -> Result<()> {
    let run = Path::new("/run");
    if !run.is_dir() {
        return Ok(());
    }
    mount(
        Some("tmpfs"),
        run,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=755"),
    )
    .context("mounting a tmpfs on /run in the bench's mount namespace")
}
