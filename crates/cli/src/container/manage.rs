//! `rename` and `container prune`.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{bail, Result};

use super::lifecycle;
use super::record;
use super::Paths;
use crate::store::Store;

/// `rename OLD NEW`.
pub fn rename(store: &mut Store, old: &str, new: &str) -> Result<()> {
    lifecycle::check_name(new)?;
    let c = record::resolve(store.db.conn(), old)?;
    if c.name == new {
        bail!("container {old} is already named {new:?}");
    }
    if let Some(other) = record::all(store.db.conn())?
        .into_iter()
        .find(|o| o.name == new)
    {
        bail!(
            "the container name {new:?} is already in use by container {}: remove or rename that container, or choose another name",
            other.short_id()
        );
    }
    let tx = store.db.write()?;
    record::rename(&tx, &c.id, new)?;
    tx.commit()?;
    Ok(())
}

/// Bytes on disk under `dir` (hard links counted once, other filesystems such as a mount left
/// behind not entered).
pub fn disk_usage(dir: &Path) -> u64 {
    fn walk(p: &Path, dev: u64, seen: &mut HashSet<(u64, u64)>) -> u64 {
        let Ok(m) = std::fs::symlink_metadata(p) else {
            return 0;
        };
        if m.dev() != dev || !seen.insert((m.dev(), m.ino())) {
            return 0;
        }
        let mut n = m.blocks() * 512;
        if m.is_dir() {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    n += walk(&e.path(), dev, seen);
                }
            }
        }
        n
    }
    match std::fs::symlink_metadata(dir) {
        Ok(m) => walk(dir, m.dev(), &mut HashSet::new()),
        Err(_) => 0,
    }
}

/// What `container prune` removed.
pub struct Pruned {
    pub ids: Vec<String>,
    pub bytes: u64,
    /// Containers that could not be removed, with why.
    pub errors: Vec<String>,
}

/// `container prune`: removes every container that is not running (created or exited).
pub fn prune(store: &mut Store, paths: &Paths) -> Result<Pruned> {
    let mut p = Pruned {
        ids: Vec::new(),
        bytes: 0,
        errors: Vec::new(),
    };
    for c in record::all(store.db.conn())? {
        // Read again just before removing: it may have been started or removed meanwhile.
        let Some(c) = record::get(store.db.conn(), &c.id)? else {
            continue;
        };
        // A pod's infra container goes with its pod (`pod rm`).
        if c.status().is_running() || crate::pod::is_live_infra(store, &c)? {
            continue;
        }
        let size = disk_usage(&paths.container_dir(&c.id));
        match lifecycle::remove(store, paths, &c, false) {
            Ok(()) => {
                p.ids.push(c.id.clone());
                p.bytes += size;
            }
            Err(e) => p.errors.push(format!("{}: {e:#}", c.name)),
        }
    }
    Ok(p)
}
