//! OCI layouts built with umoci in a temp dir.

use std::path::PathBuf;
use std::process::Command;

use crate::{require_tool, run};

/// An OCI layout (`path()`) with image `t`, and a bundle (`bundle()`) to change it from.
pub struct Layout {
    /// Holds `layout/` and `bundle/`; removed on drop.
    pub work: tempfile::TempDir,
}

impl Layout {
    /// The OCI layout.
    pub fn path(&self) -> PathBuf {
        self.work.path().join("layout")
    }

    /// The unpacked bundle (`rootfs/` inside).
    pub fn bundle(&self) -> PathBuf {
        self.work.path().join("bundle")
    }

    /// A new image `t` holding `/bin/busybox`, unpacked afresh in `bundle()` (so changes made
    /// there become a new layer on top).
    pub fn busybox() -> Layout {
        for t in ["umoci", "skopeo", "busybox"] {
            require_tool(t);
        }
        let l = Layout {
            work: tempfile::tempdir().expect("creating the layout's temp dir"),
        };
        let lp = l.path().display().to_string();
        run(Command::new("umoci").args(["init", "--layout", &lp]));
        run(Command::new("umoci").args(["new", "--image", &format!("{lp}:t")]));
        l.unpack();
        std::fs::create_dir_all(l.bundle().join("rootfs/bin")).expect("creating rootfs/bin");
        std::fs::copy("/usr/bin/busybox", l.bundle().join("rootfs/bin/busybox"))
            .expect("copying /usr/bin/busybox");
        l.repack();
        l.unpack();
        l
    }

    /// (Re)unpack image `t` into `bundle()`.
    pub fn unpack(&self) {
        let _ = std::fs::remove_dir_all(self.bundle());
        run(Command::new("umoci")
            .args(["unpack", "--image", &format!("{}:t", self.path().display())])
            .arg(self.bundle()));
    }

    /// Add a layer with the changes made in `bundle()` to image `t` (call `unpack` again before
    /// the next change).
    pub fn repack(&self) {
        run(Command::new("umoci")
            .args(["repack", "--image", &format!("{}:t", self.path().display())])
            .arg(self.bundle()));
    }

    /// Set the image config of `t` (umoci config flags).
    pub fn config(&self, args: &[&str]) {
        run(Command::new("umoci")
            .args(["config", "--image", &format!("{}:t", self.path().display())])
            .args(args));
    }
}
