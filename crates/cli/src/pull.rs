//! `berth pull`: manifest (an index resolved to one platform), config, then the layers, fetched in
//! parallel (one thread per layer, at most [`PARALLEL`] at once).
//!
//! Each layer blob is downloaded once and teed: every chunk goes into the blob store's temp file
//! and, through a bounded channel, to `unpack_layer` on a second thread, so download, hashing,
//! decompression and unpacking overlap. The registry client never hands the sink a byte twice
//! (a retried download resumes with a `Range` request past what was written), and a download that
//! fails ends the channel with an error rather than an EOF, so the unpacker never takes a short
//! body for a whole one; an unpacker that stops early on bad data lets the download finish into
//! the store's temp file, so a corrupt blob is still reported as a digest mismatch. The layer is unpacked into a temp dir that is renamed into
//! `layers/<diffid>` only after the unpacker has checked both the blob digest and the DiffID AND
//! the blob store has committed the blob (checking its digest again); on any failure the temp
//! dir is removed and nothing is recorded. A blob already in the store (or a layer already
//! unpacked) takes the old path: store, then unpack from the stored file. The image is recorded
//! in one transaction only after every blob and layer is in place.

use std::fs;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use berth_image::formats::{
    host_platform, layer_type, parse_document, select_platform, Descriptor, Document, Manifest,
};
use berth_image::unpack::{unpack_layer, UnpackOptions};
use berth_image::Digest;
use berth_registry::{Client, Reference, Repository};

use crate::progress::{self, Bar, Progress};
use crate::registry::{client_for, to_registry_digest};
use crate::store::{Content, Store, MAX_JSON};

/// Most layers downloaded at once.
pub const PARALLEL: usize = 4;

/// Chunks (of up to 64 KiB) queued between a download and its unpacker.
const QUEUE: usize = 64;

static STREAM_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Options of `berth pull`.
pub struct PullOpts {
    /// Print nothing but the image id.
    pub quiet: bool,
    /// `os/arch[/variant]`; default the host's.
    pub platform: Option<String>,
    /// `--tls-verify`.
    pub tls_verify: Option<bool>,
    /// `--authfile`.
    pub authfile: Option<PathBuf>,
}

/// Pull `reference` into `store`; returns the image id.
pub fn pull(store: &mut Store, reference: &str, opts: &PullOpts) -> Result<String> {
    let r = Reference::parse(reference)?;
    let client = client_for(r.registry(), opts.tls_verify, opts.authfile.clone());
    let progress = Progress::new(progress::enabled(
        opts.quiet,
        std::io::stderr().is_terminal(),
    ));
    let _lock = store.lock_shared()?;

    let top = client
        .get_manifest(&r, &[])
        .with_context(|| format!("fetching the manifest of {r}"))?;
    let (manifest_bytes, media_type) = match parse_document(&top.bytes, Some(&top.media_type))? {
        Document::Manifest(_) => (top.bytes, top.media_type),
        Document::Index(index) => {
            let (os, arch, variant) = platform(opts.platform.as_deref())?;
            let desc = select_platform(&index, &os, &arch, variant.as_deref())?;
            let by_digest =
                Reference::new(&r.repo(), None, Some(to_registry_digest(&desc.digest)?))?;
            let m = client
                .get_manifest(&by_digest, &[])
                .with_context(|| format!("fetching the {os}/{arch} manifest of {r}"))?;
            (m.bytes, m.media_type)
        }
    };
    let manifest = match parse_document(&manifest_bytes, Some(&media_type))? {
        Document::Manifest(m) => *m,
        Document::Index(_) => bail!("{r}: an index points at another index"),
    };
    if manifest.config.size > MAX_JSON {
        bail!("{r}: config of {} bytes is too large", manifest.config.size);
    }
    let repo = r.repo();
    let config_bar = progress.bar(
        "config",
        manifest.config.digest.as_str(),
        manifest.config.size,
    );
    fetch_blob(&client, store, &repo, &manifest.config.digest, &config_bar)
        .with_context(|| format!("fetching config {}", manifest.config.digest))?;
    config_bar.finish("done");
    let config_bytes = store.read_blob(manifest.config.digest.as_str())?;
    let config = berth_image::formats::ImageConfig::parse(&config_bytes)?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        bail!(
            "{r}: {} layers but {} diff_ids in the config",
            manifest.layers.len(),
            config.rootfs.diff_ids.len()
        );
    }
    let sizes = fetch_layers(
        &client,
        store,
        &repo,
        &manifest,
        &config.rootfs.diff_ids,
        &progress,
    )?;
    let tags: Vec<String> = r
        .tag()
        .map(|t| format!("{}:{t}", r.name()))
        .into_iter()
        .collect();
    let id = store.commit_image(
        &manifest_bytes,
        &media_type,
        &manifest,
        &config_bytes,
        &tags,
        Some(&sizes),
    )?;
    progress.println("Writing manifest to image destination");
    Ok(id)
}

fn platform(p: Option<&str>) -> Result<(String, String, Option<String>)> {
    match p {
        None => {
            let h = host_platform();
            Ok((h.os, h.architecture, h.variant))
        }
        Some(p) => {
            let parts: Vec<&str> = p.split('/').collect();
            match parts.as_slice() {
                [os, arch] => Ok((os.to_string(), arch.to_string(), None)),
                [os, arch, v] => Ok((os.to_string(), arch.to_string(), Some(v.to_string()))),
                _ => bail!("invalid platform {p:?} (want os/arch[/variant])"),
            }
        }
    }
}

/// Download blob `d` into the store unless it is there already, counting bytes on `bar`.
fn fetch_blob(
    client: &Client,
    store: &Content,
    repo: &Repository,
    d: &Digest,
    bar: &Bar,
) -> Result<()> {
    if store.blobs.has(d) {
        bar.finish("already exists");
        return Ok(());
    }
    bar.start();
    let mut w = store.blobs.writer()?;
    client.get_blob(repo, &to_registry_digest(d)?, &mut bar.writer(&mut w), None)?;
    w.commit(Some(d))?;
    Ok(())
}

/// Fetch and unpack every layer, [`PARALLEL`] at a time; returns uncompressed sizes in order.
fn fetch_layers(
    client: &Client,
    store: &Content,
    repo: &Repository,
    manifest: &Manifest,
    diff_ids: &[Digest],
    progress: &Progress,
) -> Result<Vec<u64>> {
    let n = manifest.layers.len();
    // One bar per layer, in manifest order, made before any download starts.
    let bars: Vec<Bar> = manifest
        .layers
        .iter()
        .map(|l| progress.bar("blob", l.digest.as_str(), l.size))
        .collect();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<u64>>>> = Mutex::new((0..n).map(|_| None).collect());
    let work = |i: usize, l: &Descriptor| -> Result<u64> {
        let bar = &bars[i];
        match fetch_layer(client, store, repo, l, &diff_ids[i], bar) {
            Ok(size) => {
                bar.finish("done");
                Ok(size)
            }
            Err(e) => {
                bar.fail();
                Err(e.context(format!("fetching layer {}", l.digest)))
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 0..PARALLEL.min(n) {
            s.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(l) = manifest.layers.get(i) else {
                    break;
                };
                let r = work(i, l);
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut sizes = Vec::with_capacity(n);
    let mut first_err = None;
    for r in results {
        match r {
            Some(Ok(s)) => sizes.push(s),
            Some(Err(e)) => {
                first_err.get_or_insert(e);
            }
            None => {}
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    if sizes.len() != n {
        return Err(anyhow!("only {} of {n} layers were fetched", sizes.len()));
    }
    Ok(sizes)
}

/// Fetch and unpack layer `l`; returns its uncompressed size. Streams (see the module docs)
/// unless the blob or the layer is in the store already.
fn fetch_layer(
    client: &Client,
    store: &Content,
    repo: &Repository,
    l: &Descriptor,
    diff_id: &Digest,
    bar: &Bar,
) -> Result<u64> {
    if store.blobs.has(&l.digest) || store.layer_dir(diff_id.as_str()).is_dir() {
        fetch_blob(client, store, repo, &l.digest, bar)?;
        return store.ensure_layer(&l.digest, &l.media_type, diff_id);
    }
    let final_dir = store.layer_dir(diff_id.as_str());
    let layers = final_dir
        .parent()
        .ok_or_else(|| anyhow!("layer dir {} has no parent", final_dir.display()))?;
    // `.tmp-<pid>-` like the store's own temp dirs, so a dead pull's leftovers are cleaned.
    let n = STREAM_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = layers.join(format!(".tmp-{}-s{n}", std::process::id()));
    fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let dirs = LayerDirs {
        tmp: &tmp,
        final_dir: &final_dir,
    };
    let res = stream_layer(client, store, repo, l, diff_id, dirs, bar);
    if res.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    res
}

/// Where a streamed layer is unpacked, and where it goes once verified.
struct LayerDirs<'a> {
    tmp: &'a Path,
    final_dir: &'a Path,
}

/// Download `l` once into the blob store and, at the same time, unpack it into `tmp`; rename
/// `tmp` to `final_dir` once both digests, the DiffID and the blob commit are good.
fn stream_layer(
    client: &Client,
    store: &Content,
    repo: &Repository,
    l: &Descriptor,
    diff_id: &Digest,
    dirs: LayerDirs<'_>,
    bar: &Bar,
) -> Result<u64> {
    let LayerDirs { tmp, final_dir } = dirs;
    let compression = layer_type(&l.media_type)?.compression;
    let registry_digest = to_registry_digest(&l.digest)?;
    let mut w = store.blobs.writer()?;
    bar.start();
    let mut counted = bar.writer(&mut w);
    let (tx, rx) = sync_channel(QUEUE);
    let (download, unpacked) = std::thread::scope(|s| {
        let unpacker = s.spawn(move || {
            let opts = UnpackOptions {
                compression: Some(compression),
                expected_digest: Some(l.digest.clone()),
                expected_diff_id: Some(diff_id.clone()),
                ..UnpackOptions::default()
            };
            unpack_layer(ChannelReader::new(rx), tmp, &opts).map_err(anyhow::Error::from)
        });
        let mut tee = Tee {
            file: &mut counted,
            tx: Some(tx),
            unpacker_gone: false,
        };
        let download = client.get_blob(repo, &registry_digest, &mut tee, None);
        if download.is_ok() {
            tee.finish();
        }
        // Dropping the sender without `Done` makes the unpacker fail rather than see an EOF.
        drop(tee);
        let unpacked = unpacker
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the unpacker thread panicked")));
        (download, unpacked)
    });
    // A bad download (digest mismatch, lost connection) is the cause of any unpack error too.
    download?;
    let u = unpacked.context("unpacking")?;
    w.commit(Some(&l.digest))?;
    let size_file = final_dir.with_extension("size");
    fs::write(&size_file, u.uncompressed_size.to_string())
        .with_context(|| format!("writing {}", size_file.display()))?;
    match fs::rename(tmp, final_dir) {
        Ok(()) => {}
        // Someone else finished the same layer first: theirs is as good as ours.
        Err(e)
            if final_dir.is_dir()
                && matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) =>
        {
            let _ = fs::remove_dir_all(tmp);
        }
        Err(e) => {
            return Err(e).with_context(|| format!("renaming layer into {}", final_dir.display()))
        }
    }
    Ok(u.uncompressed_size)
}

/// What travels from a download to its unpacker.
enum Chunk {
    Data(Vec<u8>),
    /// The download finished and its digest checked out.
    Done,
}

/// Writes each chunk to the blob file and sends a copy to the unpacker.
struct Tee<'a, W: Write> {
    file: &'a mut W,
    tx: Option<SyncSender<Chunk>>,
    unpacker_gone: bool,
}

impl<W: Write> Tee<'_, W> {
    fn finish(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Chunk::Done);
        }
    }
}

impl<W: Write> Write for Tee<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| io::Error::other("layer stream already finished"))?;
        self.file.write_all(buf)?;
        // An unpacker that stopped (on bad data) no longer gets chunks, but the download goes
        // on so that its digest check can say whether the blob itself was bad.
        if !self.unpacker_gone && tx.send(Chunk::Data(buf.to_vec())).is_err() {
            self.unpacker_gone = true;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Reads the chunks a [`Tee`] sends; a sender dropped before `Done` is an error, not an EOF.
struct ChannelReader {
    rx: Receiver<Chunk>,
    cur: Vec<u8>,
    pos: usize,
    done: bool,
}

impl ChannelReader {
    fn new(rx: Receiver<Chunk>) -> Self {
        ChannelReader {
            rx,
            cur: Vec::new(),
            pos: 0,
            done: false,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Chunk::Data(v)) => {
                    self.cur = v;
                    self.pos = 0;
                }
                Ok(Chunk::Done) => self.done = true,
                Err(_) => return Err(io::Error::other("the layer download was aborted")),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tee_feeds_both_and_done_is_eof() {
        let (tx, rx) = sync_channel(QUEUE);
        let mut file = Vec::new();
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            ChannelReader::new(rx).read_to_end(&mut out).map(|_| out)
        });
        let mut tee = Tee {
            file: &mut file,
            tx: Some(tx),
            unpacker_gone: false,
        };
        tee.write_all(b"hello ").unwrap();
        tee.write_all(b"world").unwrap();
        tee.finish();
        assert!(tee.write(b"late").is_err());
        drop(tee);
        assert_eq!(reader.join().unwrap().unwrap(), b"hello world");
        assert_eq!(file, b"hello world");
    }

    #[test]
    fn aborted_download_is_an_error_not_eof() {
        let (tx, rx) = sync_channel(QUEUE);
        tx.send(Chunk::Data(b"half".to_vec())).unwrap();
        drop(tx);
        let mut out = Vec::new();
        let e = ChannelReader::new(rx).read_to_end(&mut out).unwrap_err();
        assert!(e.to_string().contains("aborted"), "{e}");
        assert_eq!(out, b"half");
    }

    #[test]
    fn gone_unpacker_lets_the_download_finish() {
        let (tx, rx) = sync_channel(1);
        drop(rx);
        let mut file = Vec::new();
        let mut tee = Tee {
            file: &mut file,
            tx: Some(tx),
            unpacker_gone: false,
        };
        tee.write_all(b"x").unwrap();
        tee.write_all(b"y").unwrap();
        assert!(tee.unpacker_gone);
        drop(tee);
        assert_eq!(file, b"xy", "the blob file still gets every byte");
    }
}
