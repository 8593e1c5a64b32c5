//! The columns: each run pulls + unpacks one image into a fresh store under the same base dir
//! (same filesystem for all), timed; the store is removed afterwards, untimed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use super::cmd;
use super::images::Image;
use crate::mounts::unmount_under;

/// Every column, in table order.
pub const ALL: [&str; 4] = ["berth", "podman", "skopeo+umoci", "tar"];

/// The peers berth is compared with (the floor `tar` is not one).
pub const PEERS: [&str; 2] = ["podman", "skopeo+umoci"];

/// One column.
pub struct Column {
    /// Name, one of [`ALL`].
    pub name: &'static str,
    /// The binary it runs (for the header).
    pub bin: PathBuf,
    /// Its version line.
    pub version: String,
}

impl Column {
    /// One timed pull + unpack of `img` into a fresh dir under `base`, in milliseconds.
    pub fn once(&self, img: &Image, base: &Path) -> Result<f64> {
        let t = tempfile::Builder::new()
            .prefix(&format!("{}-", self.name.replace('+', "-")))
            .tempdir_in(base)?;
        let d = t.path();
        let ms = self
            .measure(img, d)
            .with_context(|| format!("{} on {}", self.name, img.key));
        unmount_under(d);
        let rm = fs::remove_dir_all(d).with_context(|| format!("removing {}", d.display()));
        let ms = ms?;
        rm?;
        Ok(ms)
    }

    fn measure(&self, img: &Image, d: &Path) -> Result<f64> {
        let insecure = "--tls-verify=false";
        match self.name {
            "berth" => cmd::timed(
                Command::new(&self.bin)
                    .arg("--root")
                    .arg(d.join("root"))
                    .arg("--runroot")
                    .arg(d.join("run"))
                    .args(["pull", insecure, "--quiet", &img.reference]),
            ),
            "podman" => cmd::timed(
                Command::new(&self.bin)
                    .arg("--root")
                    .arg(d.join("root"))
                    .arg("--runroot")
                    .arg(d.join("run"))
                    .arg("--tmpdir")
                    .arg(d.join("tmp"))
                    .args([
                        "--storage-driver=overlay",
                        "--events-backend=none",
                        "pull",
                        insecure,
                        "--quiet",
                        &img.reference,
                    ]),
            ),
            "skopeo+umoci" => {
                let layout = format!("{}:t", d.join("layout").display());
                let a = cmd::timed(Command::new(&self.bin).args([
                    "copy",
                    "--quiet",
                    "--src-tls-verify=false",
                    &format!("docker://{}", img.reference),
                    &format!("oci:{layout}"),
                ]))?;
                let b = cmd::timed(
                    Command::new("umoci")
                        .args(["unpack", "--image", &layout])
                        .arg(d.join("bundle")),
                )?;
                Ok(a + b)
            }
            _ => {
                // The floor: `tar -xzf` of each (already fetched) blob, one after the other.
                let root = d.join("rootfs");
                fs::create_dir(&root)?;
                let mut total = 0.0;
                for b in &img.blobs {
                    total += cmd::timed(
                        Command::new(&self.bin)
                            .arg("-xzf")
                            .arg(b)
                            .arg("-C")
                            .arg(&root),
                    )?;
                }
                Ok(total)
            }
        }
    }
}

/// Columns asked for (`only` empty: all) whose tools are installed; a missing one is skipped
/// with a message.
pub fn discover(only: &[String], berth: &Path) -> Vec<Column> {
    let mut cols = Vec::new();
    for name in ALL {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        let (bin, need): (PathBuf, &[&str]) = match name {
            "berth" => (berth.to_path_buf(), &[]),
            "podman" => ("podman".into(), &["podman"]),
            "skopeo+umoci" => ("skopeo".into(), &["skopeo", "umoci"]),
            _ => ("tar".into(), &["tar", "gzip"]),
        };
        if let Some(m) = need.iter().find(|t| !cmd::on_path(t)) {
            eprintln!("skipping {name}: {m} not on PATH");
            continue;
        }
        if name == "berth" && !berth.is_file() {
            eprintln!(
                "skipping berth: {} not found (cargo build --release -p berth-cli, or --berth PATH)",
                berth.display()
            );
            continue;
        }
        let version = cmd::output(Command::new(&bin).arg("--version"))
            .map(|s| s.lines().next().unwrap_or("").trim().to_string())
            .unwrap_or_else(|e| format!("? ({e})"));
        cols.push(Column { name, bin, version });
    }
    cols
}
