//! The one image every engine runs: a busybox-static rootfs (`/bin/busybox` and the applets the
//! bench calls as links to it) imported into berth, saved as a docker-archive and loaded from that
//! archive into podman and dockerd, so that all of them run the same layer and config.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use super::exec;

/// The applets linked to busybox in the rootfs.
const APPLETS: [&str; 3] = ["sh", "true", "sleep"];

/// Makes `dir/rootfs.tar` (sorted, mtime 0, root-owned) from `busybox`; its path.
pub fn rootfs_tar(busybox: &Path, dir: &Path) -> Result<PathBuf> {
    let root = dir.join("rootfs");
    let bin = root.join("bin");
    fs::create_dir_all(&bin).with_context(|| format!("mkdir {}", bin.display()))?;
    fs::copy(busybox, bin.join("busybox"))
        .with_context(|| format!("copying {}", busybox.display()))?;
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", bin.join(a))
            .with_context(|| format!("linking /bin/{a}"))?;
    }
    let tar = dir.join("rootfs.tar");
    exec::run(
        Command::new("tar")
            .args([
                "--sort=name",
                "--mtime=@0",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "-cf",
            ])
            .arg(&tar)
            .arg("-C")
            .arg(&root)
            .arg("."),
        Duration::from_secs(60),
    )?;
    Ok(tar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_holds_busybox_and_links() {
        let t = tempfile::tempdir().unwrap();
        let fake = t.path().join("bb");
        fs::write(&fake, b"\x7fELF").unwrap();
        let tar = rootfs_tar(&fake, t.path()).unwrap();
        let list = exec::run(
            Command::new("tar").arg("-tvf").arg(&tar),
            Duration::from_secs(10),
        )
        .unwrap()
        .stdout;
        assert!(list.contains("./bin/busybox"), "{list}");
        assert!(list.contains("./bin/sleep -> busybox"), "{list}");
        assert!(list.contains("root/root") || list.contains("0/0"), "{list}");
    }
}
