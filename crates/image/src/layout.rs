//! OCI image layout directories (`oci-layout`, `index.json`, `blobs/`) and docker-archive
//! tarballs (`docker save`: `manifest.json` plus config and layer members).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{invalid, Error, IoContext, Result};
use crate::formats::{
    host_platform, parse_document, select_platform, Descriptor, Document, ImageConfig, Index,
    Manifest, OCI_CONFIG, OCI_MANIFEST, REF_NAME_ANNOTATION,
};
use crate::store::BlobStore;

/// Largest manifest, index or config read into memory.
pub const MAX_JSON_BYTES: u64 = 8 << 20;

const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_VERSION: &str = "1.0.0";

#[derive(Serialize, Deserialize)]
struct LayoutMarker {
    #[serde(rename = "imageLayoutVersion")]
    image_layout_version: String,
}

/// An OCI image layout directory.
#[derive(Debug)]
pub struct OciLayout {
    root: PathBuf,
    store: BlobStore,
    index: Index,
}

impl OciLayout {
    /// Open an existing layout; `oci-layout` must say version 1.0.0.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let root = dir.as_ref().to_path_buf();
        let marker_path = root.join(LAYOUT_FILE);
        let marker: LayoutMarker = read_json_file(&marker_path, "oci-layout")?;
        if marker.image_layout_version != LAYOUT_VERSION {
            return Err(invalid(
                "oci-layout",
                format!(
                    "imageLayoutVersion {:?} (want {LAYOUT_VERSION})",
                    marker.image_layout_version
                ),
            ));
        }
        let bytes = read_file_limited(&root.join("index.json"))?;
        let index = match parse_document(&bytes, None)? {
            Document::Index(i) => i,
            Document::Manifest(_) => {
                return Err(invalid("index.json", "is a manifest, not an index"))
            }
        };
        let store = BlobStore::open(&root)?;
        store.remove_tmp_dir()?;
        Ok(OciLayout { root, store, index })
    }

    /// Create a new, empty layout in `dir` (created if missing; must not already be a layout).
    pub fn create(dir: impl AsRef<Path>) -> Result<Self> {
        let root = dir.as_ref().to_path_buf();
        fs::create_dir_all(&root).ctx(|| format!("create {}", root.display()))?;
        if root.join(LAYOUT_FILE).exists() {
            return Err(invalid(
                format!("layout {}", root.display()),
                "already exists",
            ));
        }
        let store = BlobStore::open(&root)?;
        let layout = OciLayout {
            root,
            store,
            index: Index::new_oci(),
        };
        let marker = LayoutMarker {
            image_layout_version: LAYOUT_VERSION.into(),
        };
        write_atomic(
            &layout.root.join(LAYOUT_FILE),
            &serde_json::to_vec(&marker).map_err(|source| Error::Json {
                what: "oci-layout".into(),
                source,
            })?,
        )?;
        layout.save_index()?;
        Ok(layout)
    }

    /// The layout directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The blob store under `blobs/`.
    pub fn store(&self) -> &BlobStore {
        &self.store
    }

    /// The top-level index (`index.json`).
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Tag names (`org.opencontainers.image.ref.name`) with their descriptors.
    pub fn refs(&self) -> Vec<(&str, &Descriptor)> {
        self.index
            .manifests
            .iter()
            .filter_map(|d| {
                d.annotations
                    .get(REF_NAME_ANNOTATION)
                    .map(|n| (n.as_str(), d))
            })
            .collect()
    }

    /// The descriptor tagged `tag`, or with `None` the only entry of the index.
    pub fn resolve(&self, tag: Option<&str>) -> Result<&Descriptor> {
        match tag {
            Some(t) => self
                .refs()
                .into_iter()
                .find(|(n, _)| *n == t)
                .map(|(_, d)| d)
                .ok_or_else(|| Error::RefNotFound(t.to_owned())),
            None => match self.index.manifests.as_slice() {
                [only] => Ok(only),
                [] => Err(Error::RefNotFound("(layout is empty)".into())),
                _ => Err(invalid(
                    "reference",
                    "the layout holds several images; name a tag",
                )),
            },
        }
    }

    /// Read a small blob (manifest, index, config), checking its size and digest.
    pub fn read_verified(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        if desc.size > MAX_JSON_BYTES {
            return Err(invalid(
                format!("blob {}", desc.digest),
                format!("{} bytes is too large for a JSON document", desc.size),
            ));
        }
        let bytes = self.store.read_limited(&desc.digest, desc.size)?;
        let actual = Digest::of_bytes(&bytes);
        if actual != desc.digest {
            return Err(Error::DigestMismatch {
                expected: desc.digest.clone(),
                actual,
            });
        }
        if bytes.len() as u64 != desc.size {
            return Err(invalid(
                format!("blob {}", desc.digest),
                format!("size {} but descriptor says {}", bytes.len(), desc.size),
            ));
        }
        Ok(bytes)
    }

    /// The image manifest `desc` points at; an index is resolved (recursively, at most a few
    /// levels) to the host platform's manifest.
    pub fn read_manifest(&self, desc: &Descriptor) -> Result<Manifest> {
        let host = host_platform();
        let mut desc = desc.clone();
        for _ in 0..4 {
            let bytes = self.read_verified(&desc)?;
            match parse_document(&bytes, Some(&desc.media_type))? {
                Document::Manifest(m) => return Ok(*m),
                Document::Index(i) => {
                    desc =
                        select_platform(&i, &host.os, &host.architecture, host.variant.as_deref())?
                            .clone();
                }
            }
        }
        Err(invalid("index", "nested too deeply"))
    }

    /// The image config of `manifest`.
    pub fn read_config(&self, manifest: &Manifest) -> Result<ImageConfig> {
        ImageConfig::parse(&self.read_verified(&manifest.config)?)
    }

    /// Open a blob (e.g. a layer) for streaming; the caller verifies while reading.
    pub fn open_blob(&self, desc: &Descriptor) -> Result<File> {
        self.store.get(&desc.digest)
    }

    /// Store `value` as JSON and return its descriptor.
    pub fn put_json<T: Serialize>(&self, media_type: &str, value: &T) -> Result<Descriptor> {
        let bytes = serde_json::to_vec(value).map_err(|source| Error::Json {
            what: media_type.into(),
            source,
        })?;
        let digest = self.store.put_bytes(&bytes)?;
        Ok(Descriptor::new(media_type, digest, bytes.len() as u64))
    }

    /// Write `config` and a manifest over `layers` (already in the store), tag it `tag` and save
    /// `index.json`. Returns the manifest's descriptor.
    pub fn write_image(
        &mut self,
        tag: &str,
        config: &ImageConfig,
        layers: Vec<Descriptor>,
    ) -> Result<Descriptor> {
        if config.rootfs.diff_ids.len() != layers.len() {
            return Err(invalid(
                "image",
                format!(
                    "{} layers but {} diff_ids in the config",
                    layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            ));
        }
        for l in &layers {
            crate::formats::layer_type(&l.media_type)?;
            if self.store.size(&l.digest)? != l.size {
                return Err(invalid(
                    format!("layer {}", l.digest),
                    "size differs from its descriptor",
                ));
            }
        }
        let config_desc = self.put_json(OCI_CONFIG, config)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            config: config_desc,
            layers,
            annotations: Default::default(),
        };
        let desc = self.put_json(OCI_MANIFEST, &manifest)?;
        self.tag(tag, desc.clone())?;
        Ok(desc)
    }

    /// Point `tag` at `desc` (replacing an existing entry with that tag) and save `index.json`.
    pub fn tag(&mut self, tag: &str, mut desc: Descriptor) -> Result<()> {
        if tag.is_empty() || tag.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(invalid(
                "tag",
                format!("{tag:?} is not a valid reference name"),
            ));
        }
        self.index
            .manifests
            .retain(|d| d.annotations.get(REF_NAME_ANNOTATION).map(String::as_str) != Some(tag));
        desc.annotations
            .insert(REF_NAME_ANNOTATION.into(), tag.to_owned());
        self.index.manifests.push(desc);
        self.save_index()
    }

    /// Write `index.json` atomically and drop the store's empty temp dir.
    pub fn save_index(&self) -> Result<()> {
        let bytes = serde_json::to_vec(&self.index).map_err(|source| Error::Json {
            what: "index.json".into(),
            source,
        })?;
        write_atomic(&self.root.join("index.json"), &bytes)?;
        self.store.remove_tmp_dir()
    }
}

fn read_file_limited(path: &Path) -> Result<Vec<u8>> {
    let f = File::open(path).ctx(|| format!("open {}", path.display()))?;
    let mut buf = Vec::new();
    f.take(MAX_JSON_BYTES + 1)
        .read_to_end(&mut buf)
        .ctx(|| format!("read {}", path.display()))?;
    if buf.len() as u64 > MAX_JSON_BYTES {
        return Err(invalid(path.display().to_string(), "file too large"));
    }
    Ok(buf)
}

fn read_json_file<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    serde_json::from_slice(&read_file_limited(path)?).map_err(|source| Error::Json {
        what: what.into(),
        source,
    })
}

/// Write via a temp file + fsync + rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let res = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.ctx(|| format!("write {}", path.display()))
}

/// One image in a docker-archive's `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct DockerArchiveImage {
    /// Member holding the image config.
    #[serde(rename = "Config")]
    pub config: String,
    /// `name:tag` references.
    #[serde(rename = "RepoTags", default, deserialize_with = "null_vec")]
    pub repo_tags: Vec<String>,
    /// Members holding the layer tars, base first.
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

fn null_vec<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone)]
enum Member {
    File { offset: u64, size: u64 },
    Link(String),
}

/// A `docker save` tarball, indexed once so members can be read in any order.
#[derive(Debug)]
pub struct DockerArchive {
    path: PathBuf,
    members: HashMap<String, Member>,
    /// The parsed `manifest.json`.
    pub images: Vec<DockerArchiveImage>,
}

/// Lexically normalise a member name (`./a/../b` -> `b`); `None` if it climbs out.
fn normalize_member(name: &Path) -> Option<String> {
    let mut out: Vec<String> = Vec::new();
    for c in name.components() {
        match c {
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop()?;
            }
            _ => {}
        }
    }
    Some(out.join("/"))
}

impl DockerArchive {
    /// Index the tarball at `path` and parse its `manifest.json`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).ctx(|| format!("open {}", path.display()))?;
        let mut archive = tar::Archive::new(file);
        let mut members = HashMap::new();
        let mut manifest = None;
        for entry in archive
            .entries()
            .ctx(|| format!("read {}", path.display()))?
        {
            let mut entry = entry.ctx(|| format!("read {}", path.display()))?;
            let name_path = entry.path().ctx(|| "member name".into())?.into_owned();
            let Some(name) = normalize_member(&name_path) else {
                continue;
            };
            let kind = entry.header().entry_type();
            if kind.is_file() {
                members.insert(
                    name.clone(),
                    Member::File {
                        offset: entry.raw_file_position(),
                        size: entry.size(),
                    },
                );
                if name == "manifest.json" {
                    let mut buf = Vec::new();
                    (&mut entry)
                        .take(MAX_JSON_BYTES)
                        .read_to_end(&mut buf)
                        .ctx(|| "read manifest.json".into())?;
                    manifest = Some(buf);
                }
            } else if kind.is_symlink() || kind.is_hard_link() {
                let Some(target) = entry.link_name().ctx(|| "member link".into())? else {
                    continue;
                };
                let base = if kind.is_symlink() {
                    name_path.parent().unwrap_or(Path::new("")).join(target)
                } else {
                    target.into_owned()
                };
                if let Some(t) = normalize_member(&base) {
                    members.insert(name, Member::Link(t));
                }
            }
        }
        let manifest = manifest.ok_or_else(|| {
            invalid(
                format!("docker archive {}", path.display()),
                "no manifest.json (not a docker save tarball?)",
            )
        })?;
        let images: Vec<DockerArchiveImage> =
            serde_json::from_slice(&manifest).map_err(|source| Error::Json {
                what: "docker archive manifest.json".into(),
                source,
            })?;
        Ok(DockerArchive {
            path,
            members,
            images,
        })
    }

    /// Stream a member's content (following in-archive links).
    pub fn open_member(&self, name: &str) -> Result<impl Read> {
        let mut key = normalize_member(Path::new(name))
            .ok_or_else(|| invalid("docker archive member", format!("{name:?} climbs out")))?;
        for _ in 0..8 {
            match self.members.get(&key) {
                Some(Member::File { offset, size }) => {
                    let mut f =
                        File::open(&self.path).ctx(|| format!("open {}", self.path.display()))?;
                    f.seek(SeekFrom::Start(*offset))
                        .ctx(|| format!("seek {}", self.path.display()))?;
                    return Ok(f.take(*size));
                }
                Some(Member::Link(t)) => key = t.clone(),
                None => break,
            }
        }
        Err(invalid(
            format!("docker archive {}", self.path.display()),
            format!("member {name:?} not found"),
        ))
    }

    /// The config of `image`, with its digest (sha256 of the member's bytes).
    pub fn read_config(&self, image: &DockerArchiveImage) -> Result<(ImageConfig, Digest)> {
        let mut buf = Vec::new();
        self.open_member(&image.config)?
            .take(MAX_JSON_BYTES)
            .read_to_end(&mut buf)
            .ctx(|| "read docker archive config".into())?;
        Ok((ImageConfig::parse(&buf)?, Digest::of_bytes(&buf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_open_and_tag() {
        let dir = tempfile::tempdir().unwrap();
        let l = dir.path().join("layout");
        let mut layout = OciLayout::create(&l).unwrap();
        assert!(OciLayout::create(&l).is_err());
        let cfg = ImageConfig::new(Default::default(), vec![]);
        let d1 = layout.write_image("one", &cfg, vec![]).unwrap();
        let mut cfg2 = cfg.clone();
        cfg2.config.cmd = Some(vec!["x".into()]);
        let d2 = layout.write_image("one", &cfg2, vec![]).unwrap();
        assert_ne!(d1.digest, d2.digest);
        assert!(!l.join("tmp").exists());
        let reopened = OciLayout::open(&l).unwrap();
        assert_eq!(reopened.refs().len(), 1, "retag replaces");
        let m = reopened
            .read_manifest(reopened.resolve(Some("one")).unwrap())
            .unwrap();
        assert_eq!(reopened.read_config(&m).unwrap(), cfg2);
        assert_eq!(reopened.resolve(None).unwrap().digest, d2.digest);
        assert!(matches!(
            reopened.resolve(Some("two")),
            Err(Error::RefNotFound(_))
        ));
        // Tampered blob is caught.
        fs::write(reopened.store().path(&m.config.digest), b"{}").unwrap();
        assert!(reopened.read_config(&m).is_err());
        // Not a layout / wrong version.
        fs::write(l.join("oci-layout"), br#"{"imageLayoutVersion":"9"}"#).unwrap();
        assert!(OciLayout::open(&l).unwrap_err().to_string().contains("9"));
        assert!(OciLayout::open(dir.path()).is_err());
        // diff_ids must match layers.
        let mut lay2 = OciLayout::create(dir.path().join("l2")).unwrap();
        let bad = ImageConfig::new(Default::default(), vec![Digest::of_bytes(b"")]);
        assert!(lay2.write_image("t", &bad, vec![]).is_err());
    }

    /// What we write is valid per the oci-spec crate's typed model.
    #[test]
    fn written_documents_parse_with_oci_spec() {
        let dir = tempfile::tempdir().unwrap();
        let mut layout = OciLayout::create(dir.path()).unwrap();
        let layer = layout.store().put_bytes(&[0u8; 1024]).unwrap();
        let run = crate::formats::RunConfig {
            entrypoint: Some(vec!["/bin/sh".into()]),
            exposed_ports: ["80/tcp".to_string()].into(),
            volumes: ["/data".to_string()].into(),
            ..Default::default()
        };
        let cfg = ImageConfig::new(run, vec![Digest::of_bytes(&[0u8; 1024])]);
        let desc = layout
            .write_image(
                "v1",
                &cfg,
                vec![Descriptor::new(crate::formats::OCI_LAYER_TAR, layer, 1024)],
            )
            .unwrap();
        oci_spec::image::OciLayout::from_file(dir.path().join("oci-layout")).unwrap();
        let index = oci_spec::image::ImageIndex::from_file(dir.path().join("index.json")).unwrap();
        assert_eq!(index.manifests().len(), 1);
        let m =
            oci_spec::image::ImageManifest::from_file(layout.store().path(&desc.digest)).unwrap();
        assert_eq!(m.layers().len(), 1);
        let c = oci_spec::image::ImageConfiguration::from_file(
            layout
                .store()
                .path(&m.config().digest().to_string().parse().unwrap()),
        )
        .unwrap();
        let cc = c.config().as_ref().unwrap();
        assert_eq!(cc.entrypoint().as_deref().unwrap(), ["/bin/sh"]);
        assert_eq!(cc.exposed_ports().as_deref().unwrap(), ["80/tcp"]);
    }

    /// Newer `docker save` writes layers under blobs/ with symlinks from `<id>/layer.tar`.
    #[test]
    fn docker_archive_follows_member_symlinks() {
        let config = br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},
            "rootfs":{"type":"layers","diff_ids":[]}}"#;
        let cfg_digest = Digest::of_bytes(config);
        let manifest = format!(
            r#"[{{"Config":"blobs/sha256/{}","RepoTags":null,"Layers":["abc/layer.tar"]}}]"#,
            cfg_digest.hex()
        );
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8], kind: tar::EntryType, link: &str| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            b.append_data(&mut h, name, data).unwrap();
        };
        add(
            &format!("blobs/sha256/{}", cfg_digest.hex()),
            config,
            tar::EntryType::Regular,
            "",
        );
        add("blobs/sha256/feed", b"LAYER", tar::EntryType::Regular, "");
        add(
            "abc/layer.tar",
            b"",
            tar::EntryType::Symlink,
            "../blobs/sha256/feed",
        );
        add(
            "manifest.json",
            manifest.as_bytes(),
            tar::EntryType::Regular,
            "",
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar");
        fs::write(&path, b.into_inner().unwrap()).unwrap();
        let da = DockerArchive::open(&path).unwrap();
        assert!(da.images[0].repo_tags.is_empty());
        let (c, d) = da.read_config(&da.images[0]).unwrap();
        assert_eq!(d, cfg_digest);
        assert_eq!(c.config.cmd, Some(vec!["sh".to_string()]));
        let mut s = String::new();
        da.open_member(&da.images[0].layers[0])
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "LAYER");
        assert!(da.open_member("../etc/passwd").is_err());
        assert!(da.open_member("nope").is_err());
        let plain = dir.path().join("plain.tar");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        b.append_data(&mut h, "x", &b"x"[..]).unwrap();
        fs::write(&plain, b.into_inner().unwrap()).unwrap();
        assert!(DockerArchive::open(&plain)
            .unwrap_err()
            .to_string()
            .contains("manifest.json"));
    }
}
