//! `berth pull`: manifest (an index resolved to one platform), config, then the layers, fetched in
//! parallel (one thread per layer, at most [`PARALLEL`] at once).
//!
//! Each layer blob is streamed from the registry into the blob store's temp file while its digest is
//! checked (the registry client verifies it, the store verifies it again on commit), then unpacked
//! from the stored file into a temp dir that is renamed into `layers/<diffid>` (the DiffID is checked
//! while unpacking). Storing first and unpacking second (rather than teeing the HTTP body straight
//! into the unpacker) keeps a retried or resumed download from ever feeding a half body to the
//! unpacker, at the cost of reading each blob twice from the page cache. The image is recorded in
//! one transaction only after every blob and layer is in place.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use berth_image::formats::{
    host_platform, parse_document, select_platform, Descriptor, Document, Manifest,
};
use berth_image::Digest;
use berth_registry::{Client, Reference, Repository};

use crate::registry::{client_for, to_registry_digest};
use crate::store::{Content, Store, MAX_JSON};

/// Most layers downloaded at once.
pub const PARALLEL: usize = 4;

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
    let progress = !opts.quiet && std::io::stdout().is_terminal();
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
    fetch_blob(&client, store, &repo, &manifest.config.digest)
        .with_context(|| format!("fetching config {}", manifest.config.digest))?;
    if progress {
        eprintln!(
            "Copying config {} done",
            &manifest.config.digest.hex()[..12]
        );
    }
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
        progress,
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
    if progress {
        eprintln!("Writing manifest to image destination");
    }
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

/// Download blob `d` into the store unless it is there already.
fn fetch_blob(client: &Client, store: &Content, repo: &Repository, d: &Digest) -> Result<()> {
    if store.blobs.has(d) {
        return Ok(());
    }
    let mut w = store.blobs.writer()?;
    client.get_blob(repo, &to_registry_digest(d)?, &mut w, None)?;
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
    progress: bool,
) -> Result<Vec<u64>> {
    let n = manifest.layers.len();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<u64>>>> = Mutex::new((0..n).map(|_| None).collect());
    let work = |i: usize, l: &Descriptor| -> Result<u64> {
        fetch_blob(client, store, repo, &l.digest)
            .with_context(|| format!("fetching layer {}", l.digest))?;
        let size = store.ensure_layer(&l.digest, &l.media_type, &diff_ids[i])?;
        if progress {
            eprintln!(
                "Copying blob {} done ({} bytes)",
                &l.digest.hex()[..12],
                l.size
            );
        }
        Ok(size)
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
