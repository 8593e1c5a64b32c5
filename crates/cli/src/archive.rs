//! `berth save`, `berth load` and `berth import`: images to and from tarballs.
//!
//! - oci-archive: a tar of an OCI image layout (`oci-layout`, `index.json`, `blobs/`), the image
//!   named by the `org.opencontainers.image.ref.name` annotation. Blobs are written as stored; a
//!   Docker schema 2 manifest is rewritten with OCI media types (same config and layer digests).
//! - docker-archive: `docker save`'s format (`manifest.json`, `<hex>.json` config, uncompressed
//!   `<diffid>/layer.tar` layers).
//! - import: a rootfs tarball (plain, gzip or zstd) becomes a one-layer image.
//!
//! Output files are written beside their destination and renamed into place when complete.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use berth_image::formats::{
    host_platform, parse_document, select_platform, Compression, Descriptor, Document, ImageConfig,
    Manifest, RunConfig, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD,
    OCI_MANIFEST,
};
use berth_image::layout::{DockerArchive, OciLayout};
use berth_image::unpack::sniff_compression;
use berth_image::Digest;

use crate::db::ImageRow;
use crate::store::{read_limited, tag_name, Store, MAX_JSON};
use crate::util::{now_rfc3339, short_name};

/// Archive formats of `save`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// OCI image layout in a tar.
    OciArchive,
    /// `docker save` tarball.
    DockerArchive,
}

fn temp_beside(out: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    tempfile::Builder::new()
        .prefix(".berth-save")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))
}

/// `berth save`.
pub fn save(store: &Store, image: &str, out: &Path, format: Format) -> Result<()> {
    let img = store.resolve(image)?;
    let name = match tag_name(image) {
        Ok(t) if img.tags.contains(&t) => Some(t),
        _ => img.tags.first().cloned(),
    };
    let tmp = temp_beside(out)?;
    let mut tar = tar::Builder::new(BufWriter::new(tmp.as_file()));
    tar.mode(tar::HeaderMode::Deterministic);
    match format {
        Format::OciArchive => save_oci(store, &img, name.as_deref(), &mut tar)?,
        Format::DockerArchive => save_docker(store, &img, name.as_deref(), &mut tar)?,
    }
    tar.into_inner()
        .context("finishing the archive")?
        .flush()
        .context("writing the archive")?;
    tmp.as_file().sync_all().context("syncing the archive")?;
    tmp.persist(out)
        .with_context(|| format!("renaming the archive to {}", out.display()))?;
    Ok(())
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(bytes.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, name, bytes)
        .with_context(|| format!("writing {name} to the archive"))
}

fn append_reader<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    r: impl Read,
) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    let mut counted = Counted { inner: r, n: 0 };
    tar.append_data(&mut h, name, (&mut counted).take(size))
        .with_context(|| format!("writing {name} to the archive"))?;
    if counted.n != size {
        bail!("{name}: expected {size} bytes, read {}", counted.n);
    }
    Ok(())
}

struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, name: &str) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    h.set_mode(0o755);
    h.set_entry_type(tar::EntryType::Directory);
    tar.append_data(&mut h, name, io::empty())
        .with_context(|| format!("writing {name} to the archive"))
}

fn oci_layer_type(media_type: &str) -> Result<&'static str> {
    Ok(
        match berth_image::formats::layer_type(media_type)?.compression {
            Compression::None => OCI_LAYER_TAR,
            Compression::Gzip => OCI_LAYER_GZIP,
            Compression::Zstd => OCI_LAYER_ZSTD,
        },
    )
}

fn save_oci<W: Write>(
    store: &Store,
    img: &ImageRow,
    name: Option<&str>,
    tar: &mut tar::Builder<W>,
) -> Result<()> {
    let manifest_bytes = store.read_blob(&img.manifest_digest)?;
    let manifest_bytes = if img.manifest_media_type == OCI_MANIFEST {
        manifest_bytes
    } else {
        let mut m =
            berth_image::formats::parse_manifest(&manifest_bytes, Some(&img.manifest_media_type))?;
        m.media_type = Some(OCI_MANIFEST.into());
        m.config.media_type = OCI_CONFIG.into();
        for l in &mut m.layers {
            l.media_type = oci_layer_type(&l.media_type)?.into();
        }
        serde_json::to_vec(&m)?
    };
    let mut desc = Descriptor::new(
        OCI_MANIFEST,
        Digest::of_bytes(&manifest_bytes),
        manifest_bytes.len() as u64,
    );
    if let Some(n) = name {
        desc.annotations.insert(
            berth_image::formats::REF_NAME_ANNOTATION.into(),
            n.to_string(),
        );
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [desc],
    });
    append_bytes(tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    append_bytes(tar, "index.json", &serde_json::to_vec(&index)?)?;
    append_dir(tar, "blobs/")?;
    append_dir(tar, "blobs/sha256/")?;
    let mut seen = std::collections::HashSet::new();
    let mut blob = |tar: &mut tar::Builder<W>, d: &Digest| -> Result<()> {
        if !seen.insert(d.clone()) {
            return Ok(());
        }
        let size = store.blobs.size(d)?;
        let f = store.blobs.get(d)?;
        append_reader(tar, &format!("blobs/sha256/{}", d.hex()), size, f)
    };
    for l in &img.layers {
        blob(tar, &Digest::parse(&l.blob_digest)?)?;
    }
    blob(tar, &Digest::parse(&img.id)?)?;
    let md = Digest::of_bytes(&manifest_bytes);
    if seen.insert(md.clone()) {
        append_bytes(tar, &format!("blobs/sha256/{}", md.hex()), &manifest_bytes)?;
    }
    Ok(())
}

fn save_docker<W: Write>(
    store: &Store,
    img: &ImageRow,
    name: Option<&str>,
    tar: &mut tar::Builder<W>,
) -> Result<()> {
    let cfg = Digest::parse(&img.id)?;
    let cfg_name = format!("{}.json", cfg.hex());
    let mut layer_names = Vec::new();
    for l in &img.layers {
        let diff = Digest::parse(&l.diff_id)?;
        let blob = Digest::parse(&l.blob_digest)?;
        let dir = format!("{}/", diff.hex());
        let member = format!("{}/layer.tar", diff.hex());
        if layer_names.contains(&member) {
            continue;
        }
        append_dir(tar, &dir)?;
        let f = BufReader::with_capacity(1 << 16, store.blobs.get(&blob)?);
        let compression = berth_image::formats::layer_type(&l.media_type)?.compression;
        let r: Box<dyn Read> = match compression {
            Compression::None => Box::new(f),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(f)),
            Compression::Zstd => {
                Box::new(zstd::stream::read::Decoder::with_buffer(f).context("starting zstd")?)
            }
        };
        append_reader(tar, &member, l.size, r)?;
        layer_names.push(member);
    }
    let mut cfg_bytes = Vec::new();
    store
        .blobs
        .get(&cfg)?
        .read_to_end(&mut cfg_bytes)
        .context("reading the config")?;
    append_bytes(tar, &cfg_name, &cfg_bytes)?;
    let layers: Vec<String> = img
        .layers
        .iter()
        .map(|l| format!("{}/layer.tar", l.diff_id.trim_start_matches("sha256:")))
        .collect();
    let repo_tags: Vec<String> = name.map(short_name).into_iter().collect();
    let manifest = serde_json::json!([{
        "Config": cfg_name,
        "RepoTags": repo_tags,
        "Layers": layers,
    }]);
    append_bytes(tar, "manifest.json", &serde_json::to_vec(&manifest)?)?;
    Ok(())
}

/// Whether the tarball holds an `oci-layout` member (else it is taken as a docker-archive).
fn is_oci_archive(path: &Path) -> Result<bool> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut a = tar::Archive::new(BufReader::new(f));
    for e in a
        .entries()
        .with_context(|| format!("reading {}", path.display()))?
    {
        let e = e.with_context(|| format!("reading {}", path.display()))?;
        let p = e.path()?.into_owned();
        let p = p.strip_prefix(".").unwrap_or(&p);
        if p == Path::new("oci-layout") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `berth load`: returns the names (or ids) of the images loaded.
pub fn load(store: &mut Store, path: &Path) -> Result<Vec<String>> {
    let _lock = store.lock_shared()?;
    if is_oci_archive(path)? {
        load_oci(store, path)
    } else {
        load_docker(store, path)
    }
}

fn load_oci(store: &mut Store, path: &Path) -> Result<Vec<String>> {
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".load-{}-", std::process::id()))
        .tempdir_in(store.blobs.root())
        .context("creating a temp dir")?;
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    tar::Archive::new(BufReader::new(f))
        .unpack(tmp.path())
        .with_context(|| format!("extracting {}", path.display()))?;
    let layout = OciLayout::open(tmp.path())?;
    let mut loaded = Vec::new();
    for top in &layout.index().manifests {
        let bytes = layout.read_verified(top)?;
        let (desc, bytes) = match parse_document(&bytes, Some(&top.media_type))? {
            Document::Manifest(_) => (top.clone(), bytes),
            Document::Index(i) => {
                let h = host_platform();
                let d = select_platform(&i, &h.os, &h.architecture, h.variant.as_deref())?;
                (d.clone(), layout.read_verified(d)?)
            }
        };
        let manifest: Manifest = layout.read_manifest(&desc)?;
        let config_bytes = layout.read_verified(&manifest.config)?;
        for l in &manifest.layers {
            if !store.blobs.has(&l.digest) {
                let mut f = layout.open_blob(l)?;
                store.blobs.put_reader(&mut f, Some(&l.digest))?;
            }
        }
        let tags: Vec<String> = top
            .annotations
            .get(berth_image::formats::REF_NAME_ANNOTATION)
            .filter(|n| n.contains('/') || n.contains(':'))
            .and_then(|n| tag_name(n).ok())
            .into_iter()
            .collect();
        let media_type = manifest
            .media_type
            .clone()
            .unwrap_or_else(|| OCI_MANIFEST.into());
        let id = store.commit_image(&bytes, &media_type, &manifest, &config_bytes, &tags, None)?;
        loaded.push(tags.first().cloned().unwrap_or(id));
    }
    if loaded.is_empty() {
        bail!("{}: the archive holds no image", path.display());
    }
    Ok(loaded)
}

/// Store `r` as a blob and describe it as an OCI layer (compression sniffed).
fn store_layer(store: &Store, r: &mut impl Read) -> Result<Descriptor> {
    let d = store.blobs.put_reader(r, None)?;
    let mut head = [0u8; 8];
    let mut f = store.blobs.get(&d)?;
    let n = read_up_to(&mut f, &mut head)?;
    let media = match sniff_compression(&head[..n])? {
        Compression::None => OCI_LAYER_TAR,
        Compression::Gzip => OCI_LAYER_GZIP,
        Compression::Zstd => OCI_LAYER_ZSTD,
    };
    Ok(Descriptor::new(media, d.clone(), store.blobs.size(&d)?))
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]).context("reading a layer")? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn oci_manifest(config: Descriptor, layers: Vec<Descriptor>) -> Manifest {
    Manifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        config,
        layers,
        annotations: Default::default(),
    }
}

fn load_docker(store: &mut Store, path: &Path) -> Result<Vec<String>> {
    let archive = DockerArchive::open(path)?;
    let mut loaded = Vec::new();
    for image in &archive.images {
        let config_bytes = read_limited(archive.open_member(&image.config)?, MAX_JSON, "config")?;
        let mut layers = Vec::new();
        for l in &image.layers {
            layers.push(store_layer(store, &mut archive.open_member(l)?)?);
        }
        let config = Descriptor::new(
            OCI_CONFIG,
            Digest::of_bytes(&config_bytes),
            config_bytes.len() as u64,
        );
        let manifest = oci_manifest(config, layers);
        let bytes = serde_json::to_vec(&manifest)?;
        let tags = image
            .repo_tags
            .iter()
            .map(|t| tag_name(t))
            .collect::<Result<Vec<_>>>()?;
        let id = store.commit_image(&bytes, OCI_MANIFEST, &manifest, &config_bytes, &tags, None)?;
        loaded.push(tags.first().cloned().unwrap_or(id));
    }
    if loaded.is_empty() {
        bail!("{}: the archive holds no image", path.display());
    }
    Ok(loaded)
}

/// `berth import FILE|- [REF]`: returns the image id.
pub fn import(
    store: &mut Store,
    file: &str,
    reference: Option<&str>,
    changes: &[String],
) -> Result<String> {
    let tags = match reference {
        Some(r) => vec![tag_name(r)?],
        None => vec![],
    };
    // Checked before anything is stored.
    let mut run_config = RunConfig::default();
    for c in changes {
        apply_change(&mut run_config, c).with_context(|| format!("invalid --change {c:?}"))?;
    }
    let _lock = store.lock_shared()?;
    let layer = if file == "-" {
        store_layer(store, &mut io::stdin().lock())?
    } else {
        let mut f = File::open(file).with_context(|| format!("opening {file}"))?;
        store_layer(store, &mut f)?
    };
    let compression = berth_image::formats::layer_type(&layer.media_type)?.compression;
    let (diff_id, size) = store.unpack_blob(&layer.digest, Some(compression), None)?;
    let mut config = ImageConfig::new(run_config, vec![diff_id]);
    let now = now_rfc3339();
    config.created = Some(now.clone());
    config.history = vec![serde_json::json!({
        "created": now,
        "created_by": "berth import",
    })];
    let config_bytes = serde_json::to_vec(&config)?;
    let config_desc = Descriptor::new(
        OCI_CONFIG,
        Digest::of_bytes(&config_bytes),
        config_bytes.len() as u64,
    );
    let manifest = oci_manifest(config_desc, vec![layer]);
    let bytes = serde_json::to_vec(&manifest)?;
    store.commit_image(
        &bytes,
        OCI_MANIFEST,
        &manifest,
        &config_bytes,
        &tags,
        Some(&[size]),
    )
}

/// Words of a Dockerfile instruction's arguments: split on whitespace outside double quotes
/// (the quotes removed, `\"` kept as a quote).
fn words(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut any) = (false, false);
    let mut chars = s.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => {
                cur.extend(chars.next());
                any = true;
            }
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if quoted {
        bail!("unbalanced double quote");
    }
    if any {
        out.push(cur);
    }
    Ok(out)
}

/// A JSON array of strings (`["a", "b"]`), or None when `s` is not one.
fn json_words(s: &str) -> Option<Vec<String>> {
    s.trim_start()
        .starts_with('[')
        .then(|| serde_json::from_str(s).ok())
        .flatten()
}

/// `KEY=VALUE ...` (or the legacy `KEY VALUE`) of ENV and LABEL.
fn pairs(rest: &str) -> Result<Vec<(String, String)>> {
    let w = words(rest)?;
    if w.first().is_some_and(|f| !f.contains('=')) {
        let (k, v) = rest
            .trim()
            .split_once(char::is_whitespace)
            .ok_or_else(|| anyhow::anyhow!("want KEY=VALUE"))?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    w.into_iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("{p:?}: want KEY=VALUE"),
        })
        .collect()
}

/// One `import --change` instruction (docker's: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL,
/// USER, VOLUME, WORKDIR) applied to an image's run config.
pub fn apply_change(c: &mut RunConfig, change: &str) -> Result<()> {
    let change = change.trim();
    let (ins, rest) = change
        .split_once(char::is_whitespace)
        .map_or((change, ""), |(a, b)| (a, b.trim()));
    if rest.is_empty() {
        bail!("{ins} needs arguments");
    }
    let command =
        || json_words(rest).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into(), rest.into()]);
    match ins.to_ascii_uppercase().as_str() {
        "CMD" => c.cmd = Some(command()),
        "ENTRYPOINT" => c.entrypoint = Some(command()),
        "ENV" => {
            for (k, v) in pairs(rest)? {
                let item = format!("{k}={v}");
                c.env.retain(|e| e.split('=').next() != Some(k.as_str()));
                c.env.push(item);
            }
        }
        "LABEL" => c.labels.extend(pairs(rest)?),
        "EXPOSE" => {
            for p in words(rest)? {
                let (port, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                if port.parse::<u16>().is_err() || !matches!(proto, "tcp" | "udp" | "sctp") {
                    bail!("EXPOSE {p:?}: want PORT[/tcp|udp|sctp]");
                }
                c.exposed_ports.insert(format!("{port}/{proto}"));
            }
        }
        "STOPSIGNAL" => c.stop_signal = Some(rest.to_string()),
        "USER" => c.user = Some(rest.to_string()),
        "WORKDIR" => {
            if !rest.starts_with('/') {
                bail!("WORKDIR {rest:?}: the path must be absolute");
            }
            c.working_dir = Some(rest.to_string());
        }
        "VOLUME" => {
            let paths = match json_words(rest) {
                Some(p) => p,
                None => words(rest)?,
            };
            for p in paths {
                if !p.starts_with('/') {
                    bail!("VOLUME {p:?}: the path must be absolute");
                }
                c.volumes.insert(p);
            }
        }
        i => bail!(
            "unknown instruction {i:?}: import takes CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR"
        ),
    }
    Ok(())
}

#[cfg(test)]
mod change_tests {
    use super::*;

    #[test]
    fn import_changes_are_dockerfile_instructions() {
        let mut c = RunConfig::default();
        for ch in [
            "VOLUME /data",
            r#"VOLUME ["/a", "/b"]"#,
            "CMD echo hi",
            r#"ENTRYPOINT ["/bin/app", "-v"]"#,
            "ENV A=1 B=\"two words\"",
            "ENV A 3",
            "LABEL x=y",
            "EXPOSE 80 53/udp",
            "WORKDIR /srv",
            "USER app",
            "STOPSIGNAL SIGINT",
        ] {
            apply_change(&mut c, ch).unwrap();
        }
        assert_eq!(c.volumes.iter().collect::<Vec<_>>(), ["/a", "/b", "/data"]);
        assert_eq!(c.cmd.as_deref().unwrap(), ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(c.entrypoint.as_deref().unwrap(), ["/bin/app", "-v"]);
        assert_eq!(c.env, ["B=two words", "A=3"]);
        assert_eq!(c.labels["x"], "y");
        assert!(c.exposed_ports.contains("53/udp") && c.exposed_ports.contains("80/tcp"));
        for bad in [
            "VOLUME data",
            "FROM x",
            "CMD",
            "EXPOSE 99999",
            "WORKDIR rel",
            "ENV =x",
        ] {
            assert!(apply_change(&mut c, bad).is_err(), "{bad}");
        }
    }
}
