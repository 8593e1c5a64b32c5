//! Manifests, indexes and image configs, OCI and Docker schema 2, plus layer media types and
//! platform selection.
//!
//! Documents are told apart by their `mediaType` field, else by the caller-given content type
//! (e.g. a registry's `Content-Type`), else (OCI allows omitting `mediaType`) by shape:
//! `manifests` means an index, `config` + `layers` a manifest. Unknown media types are errors.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;
use crate::error::{invalid, Error, Result};

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema 2 manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// OCI uncompressed layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker uncompressed layer.
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker foreign (non-distributable) gzip layer.
pub const DOCKER_LAYER_FOREIGN_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Annotation naming a manifest's tag in an OCI layout's index.json.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// A layer's compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

/// What a layer media type says about the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerType {
    /// The compression of the blob.
    pub compression: Compression,
    /// Non-distributable ("foreign") layer: may have to be fetched from its `urls`.
    pub non_distributable: bool,
}

/// Classify a layer media type (OCI and Docker names, including non-distributable ones).
pub fn layer_type(media_type: &str) -> Result<LayerType> {
    let (compression, non_distributable) = match media_type {
        OCI_LAYER_TAR | DOCKER_LAYER_TAR => (Compression::None, false),
        OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => (Compression::Gzip, false),
        OCI_LAYER_ZSTD => (Compression::Zstd, false),
        "application/vnd.oci.image.layer.nondistributable.v1.tar" => (Compression::None, true),
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | DOCKER_LAYER_FOREIGN_GZIP => (Compression::Gzip, true),
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => (Compression::Zstd, true),
        other => return Err(Error::UnsupportedMediaType(other.to_owned())),
    };
    Ok(LayerType {
        compression,
        non_distributable,
    })
}

/// Which family a manifest or index came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// OCI image-spec.
    Oci,
    /// Docker distribution schema 2.
    Docker,
}

/// An OS/architecture pair (plus variant) as used in indexes and configs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture in GOARCH terms (`amd64`, `arm64`, ...).
    pub architecture: String,
    /// Operating system in GOOS terms (`linux`, ...).
    pub os: String,
    /// CPU variant (`v7`, `v8`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// OS version (Windows).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// OS features.
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub os_features: Vec<String>,
}

impl Platform {
    /// `os/arch[/variant]`.
    pub fn display(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{}", self.os, self.architecture, v),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// The platform this process runs on, in OCI terms (`linux/amd64` on x86_64).
pub fn host_platform() -> Platform {
    let (arch, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" => ("arm", Some("v7")),
        "x86" => ("386", None),
        "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
        "riscv64" => ("riscv64", None),
        "s390x" => ("s390x", None),
        other => (other, None),
    };
    Platform {
        architecture: arch.into(),
        os: std::env::consts::OS.into(),
        variant: variant.map(Into::into),
        ..Default::default()
    }
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The target's media type.
    pub media_type: String,
    /// The target's digest (validated on parse).
    pub digest: Digest,
    /// The target's size in bytes.
    pub size: u64,
    /// Alternate download locations (non-distributable layers).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub urls: Vec<String>,
    /// Annotations.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub annotations: BTreeMap<String, String>,
    /// Platform (index entries only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    /// A descriptor with no urls, annotations or platform.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            platform: None,
        }
    }
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type, if written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config.
    pub config: Descriptor,
    /// Layers, base first.
    #[serde(deserialize_with = "null_as_default")]
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// OCI or Docker, from the media type (absent = OCI).
    pub fn flavor(&self) -> Flavor {
        match self.media_type.as_deref() {
            Some(DOCKER_MANIFEST) => Flavor::Docker,
            _ => Flavor::Oci,
        }
    }

    /// Check that the config and layer media types are known.
    fn validate(&self) -> Result<()> {
        if self.schema_version != 2 {
            return Err(invalid(
                "manifest",
                format!("schemaVersion {} (want 2)", self.schema_version),
            ));
        }
        match self.config.media_type.as_str() {
            OCI_CONFIG | DOCKER_CONFIG => {}
            other => return Err(Error::UnsupportedMediaType(other.to_owned())),
        }
        for l in &self.layers {
            layer_type(&l.media_type)?;
        }
        Ok(())
    }
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// The index's own media type, if written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The referenced manifests.
    #[serde(deserialize_with = "null_as_default")]
    pub manifests: Vec<Descriptor>,
    /// Annotations.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub annotations: BTreeMap<String, String>,
}

impl Index {
    /// An empty OCI index.
    pub fn new_oci() -> Self {
        Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: Vec::new(),
            annotations: BTreeMap::new(),
        }
    }

    /// OCI or Docker, from the media type (absent = OCI).
    pub fn flavor(&self) -> Flavor {
        match self.media_type.as_deref() {
            Some(DOCKER_MANIFEST_LIST) => Flavor::Docker,
            _ => Flavor::Oci,
        }
    }
}

/// A parsed manifest-ish document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    /// A single-image manifest.
    Manifest(Box<Manifest>),
    /// A multi-platform index / manifest list.
    Index(Index),
}

/// Content types that say nothing about the document.
fn is_generic(ct: &str) -> bool {
    matches!(
        ct,
        "" | "application/json" | "application/octet-stream" | "text/plain"
    )
}

/// Parse a manifest or index, detecting the kind from its `mediaType`, else `content_type`,
/// else its shape. Unknown or conflicting media types are errors.
pub fn parse_document(bytes: &[u8], content_type: Option<&str>) -> Result<Document> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|source| Error::Json {
        what: "manifest".into(),
        source,
    })?;
    let content_type = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|c| !is_generic(c));
    let media_type = match (probe.media_type.as_deref(), content_type) {
        (Some(a), Some(b)) if a != b => {
            return Err(invalid(
                "manifest",
                format!("mediaType {a:?} contradicts content type {b:?}"),
            ))
        }
        (Some(a), _) => a.to_owned(),
        (None, Some(b)) => b.to_owned(),
        (None, None) if probe.manifests.is_some() => OCI_INDEX.to_owned(),
        (None, None) if probe.config.is_some() && probe.layers.is_some() => OCI_MANIFEST.to_owned(),
        (None, None) => {
            return Err(invalid(
                "manifest",
                "no mediaType and not shaped like a manifest or index",
            ))
        }
    };
    let parse_err = |source| Error::Json {
        what: media_type.clone(),
        source,
    };
    match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let mut m: Manifest = serde_json::from_slice(bytes).map_err(parse_err)?;
            m.media_type = Some(media_type.clone());
            m.validate()?;
            Ok(Document::Manifest(Box::new(m)))
        }
        OCI_INDEX | DOCKER_MANIFEST_LIST => {
            let mut i: Index = serde_json::from_slice(bytes).map_err(parse_err)?;
            if i.schema_version != 2 {
                return Err(invalid(
                    "index",
                    format!("schemaVersion {} (want 2)", i.schema_version),
                ));
            }
            i.media_type = Some(media_type.clone());
            Ok(Document::Index(i))
        }
        "application/vnd.docker.distribution.manifest.v1+json"
        | "application/vnd.docker.distribution.manifest.v1+prettyjws" => Err(invalid(
            "manifest",
            "Docker schema 1 manifests are deprecated and not supported",
        )),
        other => Err(Error::UnsupportedMediaType(other.to_owned())),
    }
}

/// Parse a document that must be a single-image manifest.
pub fn parse_manifest(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest> {
    match parse_document(bytes, content_type)? {
        Document::Manifest(m) => Ok(*m),
        Document::Index(_) => Err(invalid("manifest", "got an index, expected a manifest")),
    }
}

fn arch_default_variant(arch: &str) -> Option<&'static str> {
    match arch {
        "arm64" => Some("v8"),
        "arm" => Some("v7"),
        _ => None,
    }
}

/// Choose the manifest for `os`/`arch`/`variant` from an index.
///
/// An exact variant match wins; with no variant requested the architecture's default (arm64:
/// v8, arm: v7) or a variant-less entry is preferred, then any variant. Entries without a
/// platform are skipped.
pub fn select_platform<'a>(
    index: &'a Index,
    os: &str,
    arch: &str,
    variant: Option<&str>,
) -> Result<&'a Descriptor> {
    let default = arch_default_variant(arch);
    let wanted_variant = variant.or(default);
    let mut best: Option<(u8, &Descriptor)> = None;
    for d in &index.manifests {
        let Some(p) = &d.platform else { continue };
        if p.os != os || p.architecture != arch {
            continue;
        }
        let have = p.variant.as_deref().or(default);
        let score = if have == wanted_variant {
            2
        } else if variant.is_none() {
            1
        } else {
            continue;
        };
        match best {
            Some((s, _)) if s >= score => {}
            _ => best = Some((score, d)),
        }
    }
    best.map(|(_, d)| d)
        .ok_or_else(|| Error::NoMatchingPlatform {
            wanted: match variant {
                Some(v) => format!("{os}/{arch}/{v}"),
                None => format!("{os}/{arch}"),
            },
            available: index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref().map(Platform::display))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The runtime part of an image config (`config` in the JSON; same names in OCI and Docker).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// `User`: `user[:group]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `ExposedPorts`: `port/proto` names.
    #[serde(
        default,
        skip_serializing_if = "BTreeSet::is_empty",
        with = "set_as_map"
    )]
    pub exposed_ports: BTreeSet<String>,
    /// `Env`: `KEY=value`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub env: Vec<String>,
    /// `Entrypoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `Volumes`: mount point paths.
    #[serde(
        default,
        skip_serializing_if = "BTreeSet::is_empty",
        with = "set_as_map"
    )]
    pub volumes: BTreeSet<String>,
    /// `WorkingDir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `Labels`.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub labels: BTreeMap<String, String>,
    /// `StopSignal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// DiffIDs (digests of the uncompressed layer tars), base first.
    #[serde(deserialize_with = "null_as_default")]
    pub diff_ids: Vec<Digest>,
}

/// An image config (OCI `config.v1+json` or Docker `container.image.v1+json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// Creation time (RFC 3339), kept as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// CPU architecture.
    pub architecture: String,
    /// Operating system.
    pub os: String,
    /// CPU variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// How to run the image.
    #[serde(default, deserialize_with = "null_as_default")]
    pub config: RunConfig,
    /// Layer DiffIDs.
    pub rootfs: RootFs,
    /// Build history, kept as raw JSON.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub history: Vec<serde_json::Value>,
}

impl ImageConfig {
    /// A config for the host platform with the given layers.
    pub fn new(config: RunConfig, diff_ids: Vec<Digest>) -> Self {
        let host = host_platform();
        ImageConfig {
            created: None,
            author: None,
            architecture: host.architecture,
            os: host.os,
            variant: host.variant,
            config,
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids,
            },
            history: Vec::new(),
        }
    }

    /// Parse an image config (OCI or Docker; the JSON is the same shape).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let c: ImageConfig = serde_json::from_slice(bytes).map_err(|source| Error::Json {
            what: "image config".into(),
            source,
        })?;
        if c.rootfs.kind != "layers" {
            return Err(invalid(
                "image config",
                format!("rootfs.type {:?} (want \"layers\")", c.rootfs.kind),
            ));
        }
        Ok(c)
    }
}

/// `null` reads as the type's default (Docker writes `"Env": null` etc.).
fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `{"80/tcp": {}}` maps as a set of keys.
mod set_as_map {
    use super::*;

    pub fn serialize<S: Serializer>(
        set: &BTreeSet<String>,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        let map: BTreeMap<&String, serde_json::Map<String, serde_json::Value>> =
            set.iter().map(|k| (k, serde_json::Map::new())).collect();
        map.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<BTreeSet<String>, D::Error> {
        let map = Option::<BTreeMap<String, serde::de::IgnoredAny>>::deserialize(d)?;
        Ok(map.unwrap_or_default().into_keys().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn docker_manifest() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",
            "config":{{"mediaType":"{DOCKER_CONFIG}","size":10,"digest":"{D1}"}},
            "layers":[{{"mediaType":"{DOCKER_LAYER_GZIP}","size":20,"digest":"{D2}"}},
                      {{"mediaType":"{DOCKER_LAYER_FOREIGN_GZIP}","size":30,"digest":"{D2}",
                        "urls":["https://example.com/l"]}}]}}"#
        )
    }

    #[test]
    fn docker_and_oci_manifests() {
        let m = parse_manifest(docker_manifest().as_bytes(), None).unwrap();
        assert_eq!(m.flavor(), Flavor::Docker);
        assert_eq!(m.config.digest.as_str(), D1);
        assert_eq!(m.layers.len(), 2);
        let lt = layer_type(&m.layers[1].media_type).unwrap();
        assert!(lt.non_distributable);
        assert_eq!(lt.compression, Compression::Gzip);
        assert_eq!(m.layers[1].urls, vec!["https://example.com/l".to_string()]);

        // OCI without mediaType field, detected from content type and from shape.
        let oci = format!(
            r#"{{"schemaVersion":2,
            "config":{{"mediaType":"{OCI_CONFIG}","size":10,"digest":"{D1}"}},
            "layers":[{{"mediaType":"{OCI_LAYER_ZSTD}","size":20,"digest":"{D2}"}}]}}"#
        );
        let m = parse_manifest(oci.as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(m.flavor(), Flavor::Oci);
        assert_eq!(m.media_type.as_deref(), Some(OCI_MANIFEST));
        let m2 = parse_manifest(oci.as_bytes(), Some("application/json")).unwrap();
        assert_eq!(m2, m);
        // Content type contradicting the field is refused.
        let err = parse_document(docker_manifest().as_bytes(), Some(OCI_MANIFEST)).unwrap_err();
        assert!(err.to_string().contains("contradicts"), "{err}");
    }

    #[test]
    fn unknown_and_bad_documents_are_errors() {
        let unknown = r#"{"schemaVersion":2,"mediaType":"application/x-nope"}"#;
        assert!(matches!(
            parse_document(unknown.as_bytes(), None),
            Err(Error::UnsupportedMediaType(t)) if t == "application/x-nope"
        ));
        let v1 = r#"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}"#;
        assert!(parse_document(v1.as_bytes(), None)
            .unwrap_err()
            .to_string()
            .contains("schema 1"));
        let bad_digest = docker_manifest().replace(D2, "sha256:../../etc");
        assert!(parse_document(bad_digest.as_bytes(), None).is_err());
        let bad_layer = docker_manifest().replace(DOCKER_LAYER_GZIP, "application/x-tar-lz4");
        assert!(matches!(
            parse_document(bad_layer.as_bytes(), None),
            Err(Error::UnsupportedMediaType(_))
        ));
        assert!(parse_document(b"{}", None).is_err());
        assert!(parse_document(b"not json", None).is_err());
        assert!(layer_type("application/vnd.oci.image.layer.v1.tar+lz4").is_err());
        for (mt, c) in [
            (OCI_LAYER_TAR, Compression::None),
            (DOCKER_LAYER_TAR, Compression::None),
            (OCI_LAYER_GZIP, Compression::Gzip),
            (OCI_LAYER_ZSTD, Compression::Zstd),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
                Compression::Zstd,
            ),
        ] {
            assert_eq!(layer_type(mt).unwrap().compression, c, "{mt}");
        }
    }

    fn entry(os: &str, arch: &str, variant: Option<&str>, digest: &str) -> String {
        let v = variant
            .map(|v| format!(r#","variant":"{v}""#))
            .unwrap_or_default();
        format!(
            r#"{{"mediaType":"{DOCKER_MANIFEST}","size":1,"digest":"{digest}",
                "platform":{{"architecture":"{arch}","os":"{os}"{v}}}}}"#
        )
    }

    #[test]
    fn platform_selection() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let list = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST_LIST}","manifests":[{},{},{},{},{}]}}"#,
            entry("linux", "arm", Some("v6"), &d('1')),
            entry("linux", "arm", Some("v7"), &d('2')),
            entry("linux", "arm64", None, &d('3')),
            entry("linux", "amd64", None, &d('4')),
            entry("unknown", "unknown", None, &d('5')),
        );
        let Document::Index(idx) = parse_document(list.as_bytes(), None).unwrap() else {
            panic!("not an index")
        };
        assert_eq!(idx.flavor(), Flavor::Docker);
        let pick = |os, arch, v| select_platform(&idx, os, arch, v).map(|d| d.digest.to_string());
        assert_eq!(pick("linux", "amd64", None).unwrap(), d('4'));
        assert_eq!(pick("linux", "arm", None).unwrap(), d('2'));
        assert_eq!(pick("linux", "arm", Some("v6")).unwrap(), d('1'));
        assert_eq!(pick("linux", "arm64", Some("v8")).unwrap(), d('3'));
        let err = pick("linux", "s390x", None).unwrap_err().to_string();
        assert!(
            err.contains("linux/s390x") && err.contains("linux/arm/v7"),
            "{err}"
        );
        assert!(pick("linux", "arm", Some("v5")).is_err());
        if cfg!(target_arch = "x86_64") {
            let h = host_platform();
            assert_eq!((h.os.as_str(), h.architecture.as_str()), ("linux", "amd64"));
        }
    }

    #[test]
    fn docker_config_with_nulls_and_roundtrip() {
        let cfg = r#"{"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:00Z",
            "config":{"User":"1000:1000","ExposedPorts":{"80/tcp":{},"53/udp":{}},
              "Env":["PATH=/bin","A=b"],"Entrypoint":["/bin/sh","-c"],"Cmd":null,
              "Volumes":null,"WorkingDir":"/srv","Labels":{"k":"v"},"StopSignal":"SIGQUIT",
              "Hostname":"ignored"},
            "container_config":{"Cmd":["x"]},
            "rootfs":{"type":"layers","diff_ids":["sha256:1111111111111111111111111111111111111111111111111111111111111111"]},
            "history":[{"created_by":"x"}]}"#;
        let c = ImageConfig::parse(cfg.as_bytes()).unwrap();
        assert_eq!(c.config.user.as_deref(), Some("1000:1000"));
        assert_eq!(
            c.config.exposed_ports.iter().cloned().collect::<Vec<_>>(),
            vec!["53/udp".to_string(), "80/tcp".to_string()]
        );
        assert_eq!(c.config.env, vec!["PATH=/bin", "A=b"]);
        assert_eq!(c.config.entrypoint.as_deref().unwrap(), ["/bin/sh", "-c"]);
        assert!(c.config.cmd.is_none());
        assert!(c.config.volumes.is_empty());
        assert_eq!(c.config.working_dir.as_deref(), Some("/srv"));
        assert_eq!(c.config.labels.get("k").map(String::as_str), Some("v"));
        assert_eq!(c.config.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(c.rootfs.diff_ids.len(), 1);
        let again = ImageConfig::parse(&serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(again, c);
        let json: serde_json::Value = serde_json::to_value(&c).unwrap();
        assert!(json["config"]["ExposedPorts"]["80/tcp"].is_object());

        let bad = cfg.replace(r#""type":"layers""#, r#""type":"tarballs""#);
        assert!(ImageConfig::parse(bad.as_bytes()).is_err());
    }
}
