//! A content-addressed blob store: `<root>/blobs/sha256/<hex>`.
//!
//! Writes stream into `<root>/tmp/<pid>.<n>` while hashing; [`BlobWriter::commit`] fsyncs,
//! verifies the digest and renames into place, so a blob path only ever holds complete, verified
//! content. Temp files left by a killed process (its pid no longer alive) are removed by
//! [`BlobStore::open`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A blob store rooted at a directory.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// Open (creating if needed) the store at `root` and remove temp files of dead writers.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let blobs = root.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).ctx(|| format!("create {}", blobs.display()))?;
        let store = BlobStore { root };
        store.clean_tmp()?;
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Remove temp files whose writer process is gone.
    fn clean_tmp(&self) -> Result<()> {
        let dir = self.tmp_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).ctx(|| format!("read {}", dir.display())),
        };
        for entry in entries {
            let entry = entry.ctx(|| format!("read {}", dir.display()))?;
            let name = entry.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.split('.').next())
                .and_then(|p| p.parse::<i32>().ok());
            let alive = pid.is_some_and(|p| {
                p > 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok()
            });
            if !alive {
                let path = entry.path();
                fs::remove_file(&path).ctx(|| format!("remove stale {}", path.display()))?;
            }
        }
        Ok(())
    }

    /// Remove the temp directory if it is empty (keeps an OCI layout directory tidy).
    pub fn remove_tmp_dir(&self) -> Result<()> {
        match fs::remove_dir(self.tmp_dir()) {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTEMPTY)) => Ok(()),
            Err(e) => Err(e).ctx(|| "remove blob store tmp dir".into()),
        }
    }

    /// Where the blob `digest` lives (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.hex())
    }

    /// Start writing a new blob.
    pub fn writer(&self) -> Result<BlobWriter> {
        let dir = self.tmp_dir();
        fs::create_dir_all(&dir).ctx(|| format!("create {}", dir.display()))?;
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}.{}", std::process::id(), n));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .ctx(|| format!("create {}", path.display()))?;
        Ok(BlobWriter {
            file: Some(file),
            path,
            hasher: Sha256::new(),
            size: 0,
            store: self.clone(),
        })
    }

    /// Store `bytes`, returning their digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let mut w = self.writer()?;
        w.write_all(bytes).ctx(|| "write blob".into())?;
        w.commit(None)
    }

    /// Stream `reader` into the store, verifying against `expected` if given.
    pub fn put_reader(&self, reader: &mut impl Read, expected: Option<&Digest>) -> Result<Digest> {
        let mut w = self.writer()?;
        io::copy(reader, &mut w).ctx(|| "write blob".into())?;
        w.commit(expected)
    }

    /// Open a blob for reading.
    pub fn get(&self, digest: &Digest) -> Result<File> {
        let path = self.path(digest);
        match File::open(&path) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(Error::BlobNotFound(digest.clone()))
            }
            Err(e) => Err(e).ctx(|| format!("open {}", path.display())),
        }
    }

    /// Read a whole blob into memory, refusing blobs larger than `max` bytes.
    pub fn read_limited(&self, digest: &Digest, max: u64) -> Result<Vec<u8>> {
        let size = self.size(digest)?;
        if size > max {
            return Err(crate::error::invalid(
                format!("blob {digest}"),
                format!("{size} bytes is over the {max} byte limit for this document"),
            ));
        }
        let mut buf = Vec::with_capacity(size as usize);
        self.get(digest)?
            .read_to_end(&mut buf)
            .ctx(|| format!("read blob {digest}"))?;
        Ok(buf)
    }

    /// Whether the blob exists.
    pub fn has(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// The blob's size in bytes.
    pub fn size(&self, digest: &Digest) -> Result<u64> {
        match fs::metadata(self.path(digest)) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(Error::BlobNotFound(digest.clone()))
            }
            Err(e) => Err(e).ctx(|| format!("stat blob {digest}")),
        }
    }

    /// Delete a blob; `Ok(false)` if it was not there.
    pub fn remove(&self, digest: &Digest) -> Result<bool> {
        match fs::remove_file(self.path(digest)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).ctx(|| format!("remove blob {digest}")),
        }
    }

    /// All blobs in the store (names that are not valid digests are skipped), sorted.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let dir = self.root.join("blobs").join("sha256");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).ctx(|| format!("read {}", dir.display()))? {
            let entry = entry.ctx(|| format!("read {}", dir.display()))?;
            if let Some(name) = entry.file_name().to_str() {
                if let Ok(d) = Digest::parse(&format!("sha256:{name}")) {
                    out.push(d);
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// A blob being written; dropped without [`commit`](BlobWriter::commit), its temp file is removed.
pub struct BlobWriter {
    file: Option<File>,
    path: PathBuf,
    hasher: Sha256,
    size: u64,
    store: BlobStore,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Fsync, verify against `expected` (if given) and move the blob into place.
    ///
    /// On a mismatch the temp file is removed and nothing appears under `blobs/`.
    pub fn commit(mut self, expected: Option<&Digest>) -> Result<Digest> {
        let file = self.file.take().ok_or_else(|| Error::Io {
            context: "commit blob".into(),
            source: io::Error::other("writer already finished"),
        })?;
        file.sync_all()
            .ctx(|| format!("fsync {}", self.path.display()))?;
        drop(file);
        let actual = Digest::from_sha256(std::mem::take(&mut self.hasher).finalize().into());
        if let Some(expected) = expected {
            if *expected != actual {
                // Drop removes the temp file.
                return Err(Error::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        let dest = self.store.path(&actual);
        fs::rename(&self.path, &dest).ctx(|| format!("rename blob into {}", dest.display()))?;
        self.path = PathBuf::new();
        if let Some(parent) = dest.parent() {
            File::open(parent)
                .and_then(|d| d.sync_all())
                .ctx(|| format!("fsync {}", parent.display()))?;
        }
        Ok(actual)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer finished"))?;
        let n = file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_files(store: &BlobStore) -> usize {
        fs::read_dir(store.root().join("tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    #[test]
    fn put_get_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let d = store.put_bytes(b"hello").unwrap();
        assert_eq!(d, Digest::of_bytes(b"hello"));
        assert!(store.has(&d));
        assert_eq!(store.size(&d).unwrap(), 5);
        let mut s = String::new();
        store.get(&d).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        assert!(dir.path().join("blobs/sha256").join(d.hex()).is_file());
        // Same content again is fine.
        assert_eq!(store.put_bytes(b"hello").unwrap(), d);
        let d2 = store.put_bytes(b"world").unwrap();
        let mut want = vec![d.clone(), d2.clone()];
        want.sort();
        assert_eq!(store.list().unwrap(), want);
        assert!(store.remove(&d).unwrap());
        assert!(!store.remove(&d).unwrap());
        assert!(!store.has(&d));
        assert!(matches!(store.get(&d), Err(Error::BlobNotFound(_))));
        assert!(matches!(store.size(&d), Err(Error::BlobNotFound(_))));
        assert_eq!(tmp_files(&store), 0);
    }

    #[test]
    fn mismatch_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let wrong = Digest::of_bytes(b"something else");
        let mut w = store.writer().unwrap();
        w.write_all(b"actual content").unwrap();
        let err = w.commit(Some(&wrong)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(wrong.as_str()), "{msg}");
        assert!(
            msg.contains(Digest::of_bytes(b"actual content").as_str()),
            "{msg}"
        );
        assert!(store.list().unwrap().is_empty());
        assert_eq!(tmp_files(&store), 0);
        // Verified commit with the right digest works.
        let right = Digest::of_bytes(b"ok");
        let got = store.put_reader(&mut &b"ok"[..], Some(&right)).unwrap();
        assert_eq!(got, right);
    }

    #[test]
    fn dropped_writer_and_dead_pid_temp_files_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let mut w = store.writer().unwrap();
        w.write_all(b"partial").unwrap();
        assert_eq!(tmp_files(&store), 1);
        drop(w);
        assert_eq!(tmp_files(&store), 0);
        // A file left by a killed process (pid that cannot exist) and a foreign name go away;
        // a live writer's temp file (ours) stays.
        fs::write(dir.path().join("tmp/2147483646.0"), b"junk").unwrap();
        fs::write(dir.path().join("tmp/garbage"), b"junk").unwrap();
        let live = store.writer().unwrap();
        let store2 = BlobStore::open(dir.path()).unwrap();
        assert_eq!(tmp_files(&store2), 1);
        drop(live);
        assert_eq!(tmp_files(&store2), 0);
        store2.remove_tmp_dir().unwrap();
        assert!(!dir.path().join("tmp").exists());
    }
}
