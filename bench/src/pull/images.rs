//! The test images: built offline as OCI layouts (one `tar` per layer, added with
//! `umoci raw add-layer`, which gzips it), pushed to the registry with skopeo.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::cmd;
use super::gen;
use super::registry::Registry;

/// One image pushed to the registry.
pub struct Image {
    /// Short key: `busybox`, `debian`, `multi`.
    pub key: &'static str,
    /// Table heading.
    pub title: String,
    /// `127.0.0.1:PORT/bench/KEY:1`.
    pub reference: String,
    /// The gzip layer blobs in order (in the local layout, for the tar floor).
    pub blobs: Vec<PathBuf>,
    /// Sum of the compressed layer sizes.
    pub compressed: u64,
    /// Sum of the uncompressed layer (tar) sizes.
    pub uncompressed: u64,
}

/// Shape of the multi-layer image.
#[derive(Debug, Clone, Copy)]
pub struct MultiShape {
    /// Layers.
    pub layers: u64,
    /// Small text files per layer.
    pub small: u64,
    /// Large files per layer.
    pub large: u64,
    /// MiB per large file.
    pub large_mib: u64,
}

impl MultiShape {
    /// The multi-layer image: about 400 MB uncompressed in many files. 8 layers of 3600
    /// text files (0.5-16 KiB) and two 8 MiB files each: 28 816 files, ~400 MB of tar.
    pub const DEFAULT: MultiShape = MultiShape {
        layers: 8,
        small: 3600,
        large: 2,
        large_mib: 8,
    };

    /// Expected uncompressed size (tar bytes): small files average 8.25 KiB, plus a 512-byte
    /// header and on average 256 bytes of padding per file.
    pub fn approx_tar_bytes(&self) -> u64 {
        let small = self.small * (512 + (16 * 1024 - 512) / 2 + 512 + 256);
        let large = self.large * ((self.large_mib << 20) + 512);
        self.layers * (small + large)
    }

    /// Regular files in the image.
    pub fn files(&self) -> u64 {
        self.layers * (self.small + self.large)
    }
}

/// An OCI layout under construction in `dir`, image tag `t`.
struct Layout {
    dir: PathBuf,
    tars: Vec<u64>,
}

impl Layout {
    fn new(dir: PathBuf) -> Result<Layout> {
        let l = dir.display().to_string();
        cmd::run(Command::new("umoci").args(["init", "--layout", &l]))?;
        cmd::run(Command::new("umoci").args(["new", "--image", &format!("{l}:t")]))?;
        Ok(Layout {
            dir,
            tars: Vec::new(),
        })
    }

    /// Tar `tree` (sorted, mtime 0; owners forced to root when `root_owned`) and add it as
    /// the next layer.
    fn add_tree(&mut self, tree: &Path, root_owned: bool) -> Result<()> {
        let tar = self
            .dir
            .with_extension(format!("layer{}.tar", self.tars.len()));
        let mut c = Command::new("tar");
        c.args(["--sort=name", "--mtime=@0", "--numeric-owner"]);
        if root_owned {
            c.args(["--owner=0", "--group=0"]);
        }
        c.arg("-cf").arg(&tar).arg("-C").arg(tree).arg(".");
        cmd::run(&mut c)?;
        self.tars.push(fs::metadata(&tar)?.len());
        cmd::run(
            Command::new("umoci")
                .args(["raw", "add-layer", "--image"])
                .arg(format!("{}:t", self.dir.display()))
                .arg(&tar),
        )?;
        fs::remove_file(&tar)?;
        Ok(())
    }

    /// Push it as `bench/KEY:1` and describe it.
    fn push(self, reg: &Registry, key: &'static str, title: String) -> Result<Image> {
        let repo = format!("bench/{key}:1");
        reg.push(&self.dir, "t", &repo)?;
        let layers = manifest_layers(&self.dir)?;
        if layers.len() != self.tars.len() {
            bail!(
                "{key}: {} layers in the manifest, {} added",
                layers.len(),
                self.tars.len()
            );
        }
        Ok(Image {
            key,
            title,
            reference: format!("{}/{repo}", reg.host()),
            compressed: layers.iter().map(|(_, s)| s).sum(),
            blobs: layers.into_iter().map(|(p, _)| p).collect(),
            uncompressed: self.tars.iter().sum(),
        })
    }
}

/// `(blob path, size)` of each layer of tag `t` in layout `dir`.
fn manifest_layers(dir: &Path) -> Result<Vec<(PathBuf, u64)>> {
    let blob = |digest: &str| -> Result<PathBuf> {
        let hex = digest
            .strip_prefix("sha256:")
            .with_context(|| format!("digest {digest:?} is not sha256"))?;
        Ok(dir.join("blobs/sha256").join(hex))
    };
    let index: Value = serde_json::from_slice(&fs::read(dir.join("index.json"))?)?;
    let desc = index["manifests"]
        .as_array()
        .and_then(|m| {
            m.iter().find(|d| {
                d["annotations"]["org.opencontainers.image.ref.name"].as_str() == Some("t")
            })
        })
        .context("tag t not in index.json")?;
    let mpath = blob(desc["digest"].as_str().context("manifest digest")?)?;
    let manifest: Value = serde_json::from_slice(&fs::read(mpath)?)?;
    manifest["layers"]
        .as_array()
        .context("manifest without layers")?
        .iter()
        .map(|l| {
            let d = l["digest"].as_str().context("layer digest")?;
            let s = l["size"].as_u64().context("layer size")?;
            Ok((blob(d)?, s))
        })
        .collect()
}

/// (a) one layer holding `/usr/bin/busybox`.
pub fn busybox(work: &Path, reg: &Registry) -> Result<Image> {
    let tree = work.join("busybox-tree");
    fs::create_dir_all(tree.join("usr/bin"))?;
    fs::copy("/usr/bin/busybox", tree.join("usr/bin/busybox"))
        .context("copying /usr/bin/busybox (apt-get install busybox-static)")?;
    let mut l = Layout::new(work.join("busybox-layout"))?;
    l.add_tree(&tree, true)?;
    fs::remove_dir_all(&tree)?;
    l.push(reg, "busybox", "busybox (1 layer)".into())
}

/// (b) one layer holding the debootstrap tree `rootfs`.
pub fn debian(work: &Path, reg: &Registry, rootfs: &Path) -> Result<Image> {
    let mut l = Layout::new(work.join("debian-layout"))?;
    l.add_tree(rootfs, false)?;
    l.push(
        reg,
        "debian",
        "Debian bookworm minbase rootfs (debootstrap, 1 layer)".into(),
    )
}

/// (c) `shape.layers` generated layers (see [`gen::layer_tree`]).
pub fn multi(work: &Path, reg: &Registry, shape: MultiShape) -> Result<Image> {
    eprintln!(
        "multi: generating {} layers, {} files, ~{} MB ...",
        shape.layers,
        shape.files(),
        shape.approx_tar_bytes() / 1_000_000
    );
    let mut l = Layout::new(work.join("multi-layout"))?;
    let mut files = 0;
    for i in 0..shape.layers {
        let tree = work.join(format!("multi-tree{i}"));
        let st = gen::layer_tree(&tree, i, shape.small, shape.large, shape.large_mib)?;
        files += st.files;
        l.add_tree(&tree, true)?;
        fs::remove_dir_all(&tree)?;
    }
    if files != shape.files() {
        bail!("multi: {files} files generated, {} expected", shape.files());
    }
    let title = format!(
        "multi-layer ({} gzip layers, {files} files, generated)",
        shape.layers
    );
    l.push(reg, "multi", title)
}

/// Make sure a Debian bookworm minbase tree exists at `dir` (kept between runs: debootstrap
/// takes minutes); `mirror` from the apt sources. On failure the partial tree is removed.
pub fn ensure_debootstrap(dir: &Path, mirror: &str) -> Result<()> {
    if dir.join("usr/bin/dpkg").exists() {
        return Ok(());
    }
    if !cmd::on_path("debootstrap") {
        bail!("debootstrap not installed");
    }
    let _ = fs::remove_dir_all(dir);
    if let Some(p) = dir.parent() {
        fs::create_dir_all(p)?;
    }
    eprintln!(
        "debootstrap --variant=minbase bookworm {} {mirror} ...",
        dir.display()
    );
    let r = cmd::run(
        Command::new("debootstrap")
            .args(["--variant=minbase", "bookworm"])
            .arg(dir)
            .arg(mirror),
    );
    if r.is_err() {
        let _ = fs::remove_dir_all(dir);
    }
    r
}

/// The first `URIs:` (deb822) or `deb URL` line of the apt sources, else deb.debian.org.
pub fn apt_mirror() -> String {
    let mut texts = vec![fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()];
    if let Ok(rd) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        texts.extend(paths.iter().filter_map(|p| fs::read_to_string(p).ok()));
    }
    mirror_from(&texts.join("\n")).unwrap_or_else(|| "http://deb.debian.org/debian".into())
}

fn mirror_from(text: &str) -> Option<String> {
    text.lines().map(str::trim).find_map(|l| {
        if let Some(u) = l.strip_prefix("URIs:") {
            u.split_whitespace()
                .find(|u| !u.contains("security"))
                .map(String::from)
        } else if let Some(rest) = l.strip_prefix("deb ") {
            rest.split_whitespace()
                .find(|w| w.contains("://") && !w.contains("security"))
                .map(String::from)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::{mirror_from, MultiShape};

    #[test]
    fn default_multi_image_is_about_400_mb_in_many_files() {
        let s = MultiShape::DEFAULT;
        let mb = s.approx_tar_bytes() as f64 / 1e6;
        assert!((380.0..=420.0).contains(&mb), "{mb} MB");
        assert!(s.files() > 25_000, "{} files", s.files());
        assert!(s.layers > 4, "more layers than pulled at once");
    }

    #[test]
    fn mirror_from_both_formats() {
        let deb822 = "Types: deb\nURIs: http://deb.debian.org/debian-security\n\nTypes: deb\nURIs: http://m.example/debian\n";
        assert_eq!(mirror_from(deb822).unwrap(), "http://m.example/debian");
        let one_line = "# c\ndeb [arch=amd64] http://x.example/debian bookworm main\n";
        assert_eq!(mirror_from(one_line).unwrap(), "http://x.example/debian");
        assert!(mirror_from("# nothing\n").is_none());
    }
}
