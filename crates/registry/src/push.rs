//! Pushing: blobs (existence check, cross-repository mount, chunked upload) and manifests.

use std::io::Read;

use crate::client::{pull_scope, Client, Req, Subject};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::{Reference, Repository};

/// How a blob got into the target repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobPush {
    /// The repository already had it (`HEAD` answered 200).
    AlreadyExists,
    /// Mounted from another repository of the same registry (`POST ?mount=` answered 201).
    Mounted,
    /// Uploaded in this many `PATCH` chunks.
    Uploaded {
        /// Number of chunks sent.
        chunks: u64,
    },
}

fn push_scope(name: &str) -> String {
    format!("repository:{name}:pull,push")
}

impl Client {
    /// Pushes a blob of `size` bytes read from `data` to `repo`.
    ///
    /// First asks whether `repo` has it; then, with `mount_from` (a repository of the same registry that
    /// has it), tries a cross-repository mount; otherwise uploads in chunks of
    /// [`crate::ClientOptions::chunk_size`] (`PATCH` with `Content-Range`) and closes with `PUT ?digest=`.
    /// The data is hashed on the way and a mismatch with `digest` aborts the upload.
    pub fn push_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
        size: u64,
        data: &mut dyn Read,
        mount_from: Option<&Repository>,
    ) -> Result<BlobPush> {
        let mut scopes = vec![push_scope(&repo.name)];
        let from = mount_from.filter(|f| f.registry == repo.registry && f.name != repo.name);
        if let Some(f) = from {
            scopes.push(pull_scope(&f.name));
        }
        if self
            .head_blob_scoped(repo, digest, scopes.clone())?
            .is_some()
        {
            return Ok(BlobPush::AlreadyExists);
        }
        let base = self.base_url(&repo.registry)?;
        let mut url = format!("{base}/v2/{}/blobs/uploads/", repo.name);
        if let Some(f) = from {
            url.push_str(&format!("?mount={digest}&from={}", f.name));
        }
        let req = Req {
            method: "POST",
            registry: &repo.registry,
            url: url.clone(),
            headers: vec![],
            body: Some(&[]),
            scopes: scopes.clone(),
        };
        let resp = self.send(&req)?;
        match resp.status() {
            201 if from.is_some() => {
                self.bump(|s| s.mounts += 1);
                return Ok(BlobPush::Mounted);
            }
            202 => {}
            _ => return Err(self.error_from("POST", &url, resp, Subject::Repo(repo))),
        }
        let mut location = self.location(&url, &resp, repo)?;
        drop(resp);

        let chunk_size = self.opts.chunk_size.max(1);
        let mut buf = vec![0u8; chunk_size];
        let mut hasher = digest.verifier();
        let mut sent = 0u64;
        let mut chunks = 0u64;
        while sent < size {
            let want = (size - sent).min(chunk_size as u64) as usize;
            let got = read_full(data, &mut buf[..want])
                .map_err(|e| Error::io(format!("reading blob {digest} to push"), e))?;
            if got < want {
                self.abort_upload(repo, &location, &scopes);
                return Err(Error::Config(format!(
                    "blob {digest}: data ended after {} bytes, {size} announced",
                    sent + got as u64
                )));
            }
            hasher.update(&buf[..got]);
            let req = Req {
                method: "PATCH",
                registry: &repo.registry,
                url: location.clone(),
                headers: vec![
                    ("Content-Type", "application/octet-stream".into()),
                    (
                        "Content-Range",
                        format!("{}-{}", sent, sent + got as u64 - 1),
                    ),
                ],
                body: Some(&buf[..got]),
                scopes: scopes.clone(),
            };
            let resp = self.send(&req)?;
            if resp.status() != 202 {
                let err = self.error_from("PATCH", &location, resp, Subject::Repo(repo));
                self.abort_upload(repo, &location, &scopes);
                return Err(err);
            }
            location = self.location(&location, &resp, repo)?;
            sent += got as u64;
            chunks += 1;
        }
        if let Err(e) = hasher.check(digest) {
            self.abort_upload(repo, &location, &scopes);
            return Err(e);
        }
        let mut put = url::Url::parse(&location)
            .map_err(|e| Error::Config(format!("bad upload URL {location}: {e}")))?;
        put.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let put = put.to_string();
        let req = Req {
            method: "PUT",
            registry: &repo.registry,
            url: put.clone(),
            headers: vec![("Content-Type", "application/octet-stream".into())],
            body: Some(&[]),
            scopes,
        };
        let resp = self.send(&req)?;
        if resp.status() != 201 {
            return Err(self.error_from("PUT", &put, resp, Subject::Blob(repo, digest)));
        }
        self.bump(|s| s.uploads += 1);
        Ok(BlobPush::Uploaded { chunks })
    }

    /// Pushes a manifest under `r`'s tag (or digest) with `media_type` as `Content-Type`; returns its digest.
    pub fn push_manifest(&self, r: &Reference, bytes: &[u8], media_type: &str) -> Result<Digest> {
        let digest = Digest::sha256_of(bytes);
        if let Some(d) = r.digest() {
            d.verify(bytes)?;
        }
        let url = self.manifest_url(r)?;
        let req = Req {
            method: "PUT",
            registry: r.registry(),
            url: url.clone(),
            headers: vec![("Content-Type", media_type.to_string())],
            body: Some(bytes),
            scopes: vec![push_scope(r.repository())],
        };
        let resp = self.send(&req)?;
        if resp.status() != 201 {
            return Err(self.error_from("PUT", &url, resp, Subject::Manifest(r)));
        }
        if let Some(h) = resp.header("docker-content-digest") {
            if let Ok(h) = Digest::parse(h) {
                if h.algorithm() == digest.algorithm() && h != digest {
                    return Err(Error::DigestMismatch {
                        expected: digest.to_string(),
                        actual: h.to_string(),
                    });
                }
            }
        }
        Ok(digest)
    }

    /// Resolves an upload `Location` header against the request URL.
    fn location(&self, base: &str, resp: &ureq::Response, repo: &Repository) -> Result<String> {
        let loc = resp.header("location").ok_or_else(|| Error::Protocol {
            registry: repo.registry.clone(),
            detail: "upload response without Location header".into(),
        })?;
        let base =
            url::Url::parse(base).map_err(|e| Error::Config(format!("bad URL {base}: {e}")))?;
        base.join(loc)
            .map(|u| u.to_string())
            .map_err(|e| Error::Protocol {
                registry: repo.registry.clone(),
                detail: format!("bad upload Location {loc:?}: {e}"),
            })
    }

    /// Best-effort cancel of an upload session.
    fn abort_upload(&self, repo: &Repository, location: &str, scopes: &[String]) {
        let req = Req {
            method: "DELETE",
            registry: &repo.registry,
            url: location.to_string(),
            headers: vec![],
            body: None,
            scopes: scopes.to_vec(),
        };
        let _ = self.send(&req);
    }
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
