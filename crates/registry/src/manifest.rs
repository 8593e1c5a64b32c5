//! Pulling manifests: `GET` with content negotiation and digest checks, `HEAD` for existence.

use crate::client::{pull_scope, read_limited, Client, Req, Subject};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The media types a pull accepts by default.
pub const DEFAULT_ACCEPT: [&str; 4] = [
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

const MAX_MANIFEST: u64 = 4 << 20;

/// A manifest as pulled: raw bytes (hash them, never re-serialise), media type and digest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Raw body.
    pub bytes: Vec<u8>,
    /// `Content-Type` (or the body's `mediaType` when the header is missing).
    pub media_type: String,
    /// Digest of `bytes`, verified against the reference's digest when pulled by digest.
    pub digest: Digest,
}

/// What a `HEAD` on a manifest tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// `Docker-Content-Digest`, if sent.
    pub digest: Option<Digest>,
    /// `Content-Type`, if sent.
    pub media_type: Option<String>,
    /// `Content-Length`, if sent.
    pub size: Option<u64>,
}

impl Client {
    pub(crate) fn manifest_url(&self, r: &Reference) -> Result<String> {
        Ok(format!(
            "{}/v2/{}/manifests/{}",
            self.base_url(r.registry())?,
            r.repository(),
            r.manifest_ref()
        ))
    }

    /// Pulls a manifest. `accept` lists the media types wanted ([`DEFAULT_ACCEPT`] if empty).
    /// When `r` has a digest, the body is verified against it; otherwise against `Docker-Content-Digest`.
    pub fn get_manifest(&self, r: &Reference, accept: &[&str]) -> Result<Manifest> {
        let url = self.manifest_url(r)?;
        let accept = if accept.is_empty() {
            &DEFAULT_ACCEPT[..]
        } else {
            accept
        };
        let req = Req {
            method: "GET",
            registry: r.registry(),
            url: url.clone(),
            headers: vec![("Accept", accept.join(", "))],
            body: None,
            scopes: vec![pull_scope(r.repository())],
        };
        let resp = self.send(&req)?;
        if resp.status() != 200 {
            return Err(self.error_from("GET", &url, resp, Subject::Manifest(r)));
        }
        let header_digest = resp.header("docker-content-digest").map(str::to_string);
        let content_type = resp
            .header("content-type")
            .map(|c| c.split(';').next().unwrap_or(c).trim().to_string());
        let bytes = read_limited(resp, MAX_MANIFEST).map_err(|e| Error::Unreachable {
            registry: r.registry().to_string(),
            detail: format!("reading manifest: {e}"),
        })?;
        let digest = match r.digest() {
            Some(d) => {
                d.verify(&bytes)?;
                d.clone()
            }
            None => {
                let d = Digest::sha256_of(&bytes);
                if let Some(h) = header_digest.and_then(|h| Digest::parse(&h).ok()) {
                    let mut v = h.verifier();
                    v.update(&bytes);
                    v.check(&h)?;
                    h
                } else {
                    d
                }
            }
        };
        let media_type = content_type
            .filter(|c| !c.is_empty() && c != "application/octet-stream")
            .or_else(|| {
                serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()?
                    .get("mediaType")?
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_default();
        Ok(Manifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// `HEAD` on a manifest: `None` when it does not exist.
    pub fn head_manifest(&self, r: &Reference, accept: &[&str]) -> Result<Option<ManifestHead>> {
        let url = self.manifest_url(r)?;
        let accept = if accept.is_empty() {
            &DEFAULT_ACCEPT[..]
        } else {
            accept
        };
        let req = Req {
            method: "HEAD",
            registry: r.registry(),
            url: url.clone(),
            headers: vec![("Accept", accept.join(", "))],
            body: None,
            scopes: vec![pull_scope(r.repository())],
        };
        let resp = self.send(&req)?;
        match resp.status() {
            200 => Ok(Some(ManifestHead {
                digest: resp
                    .header("docker-content-digest")
                    .and_then(|d| Digest::parse(d).ok()),
                media_type: resp.header("content-type").map(str::to_string),
                size: resp.header("content-length").and_then(|l| l.parse().ok()),
            })),
            404 => Ok(None),
            _ => Err(self.error_from("HEAD", &url, resp, Subject::Manifest(r))),
        }
    }
}
