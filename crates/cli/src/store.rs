//! The local image store: `<root>/blobs/sha256/<hex>` (content-addressed blobs),
//! `<root>/layers/<diffid-hex>/` (unpacked layers, overlay-ready), `<root>/berth.db` (metadata).
//!
//! Layers are unpacked into `<root>/layers/.tmp-<pid>-<n>` and renamed to their final name only when
//! complete (with a `<hex>.size` sidecar written first), so a killed process never leaves a half
//! layer under its final name; temp dirs of dead processes are removed on open. Pulls and imports
//! hold a shared `flock` on `<root>/lock` and garbage collection an exclusive one, so GC never
//! removes content a concurrent pull is about to record. Under that exclusive lock no writer can
//! be at work, so GC also removes what dead or interrupted writers left: blobs and layer dirs no
//! image references, and temp files older than the GC's own process (a live pid on an old temp
//! file is a recycled pid).

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use anyhow::{anyhow, bail, Context, Result};
use berth_image::formats::{layer_type, Compression, ImageConfig, Manifest};
use berth_image::unpack::{unpack_layer, UnpackOptions};
use berth_image::{BlobStore, Digest};
use berth_registry::Reference;
use nix::fcntl::{Flock, FlockArg};

use crate::db::{self, Db, ImageRow, LayerRow};

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Largest manifest or config read into memory.
pub const MAX_JSON: u64 = 8 << 20;

/// The on-disk content of the store (shareable between threads).
pub struct Content {
    root: PathBuf,
    /// When this process opened the store: GC takes temp files older than this for stale.
    opened: SystemTime,
    /// Blobs (manifests, configs, compressed layers).
    pub blobs: BlobStore,
}

/// The store under `--root`: content plus the metadata database.
pub struct Store {
    content: Content,
    /// Metadata.
    pub db: Db,
}

impl std::ops::Deref for Store {
    type Target = Content;
    fn deref(&self) -> &Content {
        &self.content
    }
}

/// A held `flock` on the store's lock file.
pub struct StoreLock {
    _lock: Flock<File>,
    exclusive: bool,
}

/// What one garbage collection removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs no image references (and junk names in the blob dir).
    pub blobs: usize,
    /// Unpacked layer dirs no image uses (and their `.size` sidecars).
    pub layers: usize,
    /// Temp files and dirs of dead or earlier writers.
    pub temp: usize,
}

impl Store {
    /// Open (creating) the store at `root`, cleaning temp files of dead processes.
    pub fn open(root: &Path, runroot: &Path) -> Result<Self> {
        let opened = SystemTime::now();
        for d in [root, &root.join("layers"), runroot] {
            fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let blobs = BlobStore::open(root)?;
        clean_stale(&root.join("layers"), ".tmp-")?;
        clean_stale(root, ".load-")?;
        // Opening runs the WAL switch and the schema: SQLite can answer "database is locked" at once
        // (no busy wait) when several processes do that on a brand-new file, so openings take turns.
        let init = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join("init.lock"))
            .with_context(|| format!("opening {}", root.join("init.lock").display()))?;
        let init = Flock::lock(init, FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow!("locking {}: {e}", root.join("init.lock").display()))?;
        let db = Db::open(&root.join("berth.db"))?;
        drop(init);
        Ok(Store {
            content: Content {
                root: root.to_path_buf(),
                opened,
                blobs,
            },
            db,
        })
    }

    /// Unpack the layers of `manifest` (blobs already stored), store the config and manifest bytes,
    /// and record the image with `tags` in one transaction. Returns the image id.
    pub fn commit_image(
        &mut self,
        manifest_bytes: &[u8],
        manifest_media_type: &str,
        manifest: &Manifest,
        config_bytes: &[u8],
        tags: &[String],
        sizes: Option<&[u64]>,
    ) -> Result<String> {
        let config = ImageConfig::parse(config_bytes)?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            bail!(
                "image has {} layers but its config lists {} diff_ids",
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            );
        }
        let id = self.blobs.put_bytes(config_bytes)?;
        if id != manifest.config.digest {
            bail!(
                "config digest mismatch: manifest says {}, content is {id}",
                manifest.config.digest
            );
        }
        let manifest_digest = self.blobs.put_bytes(manifest_bytes)?;
        let mut layers = Vec::new();
        for (i, (l, diff)) in manifest
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .enumerate()
        {
            let size = match sizes.and_then(|s| s.get(i)) {
                Some(s) => *s,
                None => self.ensure_layer(&l.digest, &l.media_type, diff)?,
            };
            layers.push(LayerRow {
                diff_id: diff.to_string(),
                blob_digest: l.digest.to_string(),
                blob_size: l.size,
                media_type: l.media_type.clone(),
                size,
            });
        }
        let row = ImageRow {
            id: id.to_string(),
            manifest_digest: manifest_digest.to_string(),
            manifest_media_type: manifest_media_type.to_string(),
            created: config.created.clone(),
            size: layers.iter().map(|l| l.size).sum(),
            tags: tags.to_vec(),
            layers,
        };
        let tx = self.db.write()?;
        db::record_image(&tx, &row, now_secs())?;
        tx.commit()?;
        Ok(row.id)
    }

    /// Find an image by id (or unique id prefix) or by reference.
    pub fn resolve(&self, name: &str) -> Result<ImageRow> {
        let hexish = name.strip_prefix("sha256:").unwrap_or(name);
        if hexish.len() >= 3 && hexish.bytes().all(|b| b.is_ascii_hexdigit()) {
            let ids = self.db.ids_with_prefix(hexish)?;
            match ids.as_slice() {
                [id] => {
                    if let Some(img) = self.db.image(id)? {
                        return Ok(img);
                    }
                }
                [] => {}
                _ => bail!("short id {name:?} is ambiguous ({} images)", ids.len()),
            }
        }
        if let Ok(tag) = tag_name(name) {
            if let Some(id) = self.db.tag_target(&tag)? {
                if let Some(img) = self.db.image(&id)? {
                    return Ok(img);
                }
            }
        }
        bail!("image not known: {name}")
    }

    /// Garbage collection, under the exclusive lock (`held`): remove blobs and unpacked layers no
    /// image references (whatever put them there: an `rmi`, an interrupted pull or load, a stray
    /// file), names in the blob dir that are not digests, and temp files and dirs (`tmp/*`,
    /// `layers/.tmp-*`, `.load-*`) of other processes that are dead or older than this one.
    pub fn gc(&mut self, held: &StoreLock) -> Result<GcReport> {
        if !held.exclusive {
            bail!("garbage collection needs the store's exclusive lock");
        }
        let mut report = GcReport {
            temp: self.clean_temp()?,
            ..GcReport::default()
        };
        let tx = self.db.write()?;
        let (blobs, diffs) = db::sweep(&tx)?;
        tx.commit()?;
        let blob_dir = self.root.join("blobs/sha256");
        for e in
            fs::read_dir(&blob_dir).with_context(|| format!("reading {}", blob_dir.display()))?
        {
            let e = e.with_context(|| format!("reading {}", blob_dir.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let referenced = Digest::parse(&format!("sha256:{name}"))
                .is_ok_and(|d| blobs.iter().any(|b| b == d.as_str()));
            if !referenced {
                remove_any(&e.path())?;
                report.blobs += 1;
            }
        }
        let dir = self.root.join("layers");
        for e in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let e = e.with_context(|| format!("reading {}", dir.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let hex = name.strip_suffix(".size").unwrap_or(&name);
            if diffs.iter().any(|d| d.strip_prefix("sha256:") == Some(hex)) {
                continue;
            }
            let p = e.path();
            if p.is_dir() {
                report.layers += 1;
            }
            remove_any(&p)?;
        }
        Ok(report)
    }

    /// Remove temp entries of other processes that are gone or older than this one; returns how
    /// many. Only sound under the exclusive lock, when no writer is at work.
    fn clean_temp(&self) -> Result<usize> {
        let me = std::process::id();
        let mut n = 0;
        for (dir, prefix, sep) in [
            (self.root.join("tmp"), "", '.'),
            (self.root.join("layers"), ".tmp-", '-'),
            (self.root.clone(), ".load-", '-'),
        ] {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
            };
            for e in entries {
                let e = e.with_context(|| format!("reading {}", dir.display()))?;
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(rest) = name.strip_prefix(prefix) else {
                    continue;
                };
                let pid = rest.split(sep).next().and_then(|p| p.parse::<u32>().ok());
                if pid == Some(me) {
                    continue;
                }
                let modified = e.metadata().and_then(|m| m.modified()).ok();
                if !pid_alive(pid) || modified.is_some_and(|m| m < self.opened) {
                    remove_any(&e.path())?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}

impl Content {
    fn lock(&self, arg: FlockArg) -> Result<StoreLock> {
        let path = self.root.join("lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let lock =
            Flock::lock(f, arg).map_err(|(_, e)| anyhow!("locking {}: {e}", path.display()))?;
        Ok(StoreLock {
            _lock: lock,
            exclusive: arg == FlockArg::LockExclusive,
        })
    }

    /// Shared lock: content may be added, nothing is collected.
    pub fn lock_shared(&self) -> Result<StoreLock> {
        self.lock(FlockArg::LockShared)
    }

    /// Exclusive lock: for garbage collection.
    pub fn lock_exclusive(&self) -> Result<StoreLock> {
        self.lock(FlockArg::LockExclusive)
    }

    /// Where the layer with `diff_id` is unpacked.
    pub fn layer_dir(&self, diff_id: &str) -> PathBuf {
        self.root
            .join("layers")
            .join(diff_id.strip_prefix("sha256:").unwrap_or(diff_id))
    }

    fn size_file(&self, diff_hex: &str) -> PathBuf {
        self.root.join("layers").join(format!("{diff_hex}.size"))
    }

    /// Make sure the layer whose blob `blob` (already in the store) has DiffID `diff_id` is
    /// unpacked; returns its uncompressed size.
    pub fn ensure_layer(&self, blob: &Digest, media_type: &str, diff_id: &Digest) -> Result<u64> {
        let dir = self.layer_dir(diff_id.as_str());
        if dir.is_dir() {
            if let Some(n) = fs::read_to_string(self.size_file(diff_id.hex()))
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                return Ok(n);
            }
        }
        let lt = layer_type(media_type)?;
        Ok(self
            .unpack_blob(blob, Some(lt.compression), Some(diff_id))?
            .1)
    }

    /// Unpack stored blob `blob` into a temp dir, check its DiffID against `expected` (if given),
    /// and rename it to `layers/<diffid>`. Returns the DiffID and the uncompressed size.
    pub fn unpack_blob(
        &self,
        blob: &Digest,
        compression: Option<Compression>,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64)> {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .root
            .join("layers")
            .join(format!(".tmp-{}-{n}", std::process::id()));
        fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let res = (|| -> Result<(Digest, u64)> {
            let f = self.blobs.get(blob)?;
            let opts = UnpackOptions {
                compression,
                expected_digest: Some(blob.clone()),
                expected_diff_id: expected.cloned(),
                ..UnpackOptions::default()
            };
            let u = unpack_layer(io::BufReader::with_capacity(1 << 16, f), &tmp, &opts)
                .with_context(|| format!("unpacking layer {blob}"))?;
            let size_file = self.size_file(u.diff_id.hex());
            fs::write(&size_file, u.uncompressed_size.to_string())
                .with_context(|| format!("writing {}", size_file.display()))?;
            let dir = self.layer_dir(u.diff_id.as_str());
            match fs::rename(&tmp, &dir) {
                Ok(()) => {}
                // Someone else finished the same layer first: theirs is as good as ours.
                Err(e)
                    if dir.is_dir()
                        && matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) =>
                {
                    let _ = fs::remove_dir_all(&tmp);
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("renaming layer into {}", dir.display()))
                }
            }
            Ok((u.diff_id, u.uncompressed_size))
        })();
        if res.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        res
    }

    /// Read a (small) blob fully.
    pub fn read_blob(&self, d: &str) -> Result<Vec<u8>> {
        let d = Digest::parse(d)?;
        Ok(self.blobs.read_limited(&d, MAX_JSON)?)
    }

    /// The parsed config of an image.
    pub fn config(&self, img: &ImageRow) -> Result<ImageConfig> {
        Ok(ImageConfig::parse(&self.read_blob(&img.id)?)?)
    }
}

/// A reference's full tag name (`registry/repo:tag`); digest-only references have none.
pub fn tag_name(reference: &str) -> Result<String> {
    let r = Reference::parse(reference)?;
    match r.tag() {
        Some(t) => Ok(format!("{}:{t}", r.name())),
        None => bail!("{reference} has no tag"),
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Read all of `r` up to `max` bytes.
pub fn read_limited(mut r: impl Read, max: u64, what: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    (&mut r)
        .take(max + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {what}"))?;
    if buf.len() as u64 > max {
        bail!("{what} is larger than {max} bytes");
    }
    Ok(buf)
}

/// Remove `<dir>/<prefix><pid>-...` directories whose process is gone.
fn clean_stale(dir: &Path, prefix: &str) -> Result<()> {
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if !pid_alive(pid) {
            let p = e.path();
            fs::remove_dir_all(&p).with_context(|| format!("removing stale {}", p.display()))?;
        }
    }
    Ok(())
}

/// Whether `pid` names a live process (`None`, 0 or out of range: no).
fn pid_alive(pid: Option<u32>) -> bool {
    pid.and_then(|p| i32::try_from(p).ok()).is_some_and(|p| {
        p > 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok()
    })
}

/// Remove a file, a symlink or a whole directory tree.
fn remove_any(p: &Path) -> Result<()> {
    let res = match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    res.with_context(|| format!("removing {}", p.display()))
}
