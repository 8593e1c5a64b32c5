//! Pulling blobs: `HEAD`, and streaming `GET` with digest verification, `Range` resume and retries.

use std::io::{Read, Write};

use crate::client::{pull_scope, Client, Req, Subject};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Repository;

impl Client {
    pub(crate) fn blob_url(&self, repo: &Repository, d: &Digest) -> Result<String> {
        Ok(format!(
            "{}/v2/{}/blobs/{d}",
            self.base_url(&repo.registry)?,
            repo.name
        ))
    }

    /// `HEAD` on a blob: its size, or `None` when the repository does not have it.
    pub fn head_blob(&self, repo: &Repository, d: &Digest) -> Result<Option<u64>> {
        self.head_blob_scoped(repo, d, vec![pull_scope(&repo.name)])
    }

    pub(crate) fn head_blob_scoped(
        &self,
        repo: &Repository,
        d: &Digest,
        scopes: Vec<String>,
    ) -> Result<Option<u64>> {
        let url = self.blob_url(repo, d)?;
        let req = Req {
            method: "HEAD",
            registry: &repo.registry,
            url: url.clone(),
            headers: vec![],
            body: None,
            scopes,
        };
        let resp = self.send(&req)?;
        match resp.status() {
            200 => Ok(Some(
                resp.header("content-length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0),
            )),
            404 => Ok(None),
            _ => Err(self.error_from("HEAD", &url, resp, Subject::Blob(repo, d))),
        }
    }

    /// Streams a blob into `sink`, verifying its digest, and returns its total size.
    ///
    /// `resume` holds the bytes already fetched by an interrupted download (what the sink got before):
    /// they are hashed and only the rest is requested with `Range`. A connection lost mid-body is retried
    /// the same way. On [`Error::DigestMismatch`] the sink holds bad data and must be discarded.
    pub fn get_blob(
        &self,
        repo: &Repository,
        d: &Digest,
        sink: &mut dyn Write,
        resume: Option<&mut dyn Read>,
    ) -> Result<u64> {
        let mut hasher = d.verifier();
        let mut offset = 0u64;
        let mut buf = vec![0u8; 64 << 10];
        if let Some(r) = resume {
            loop {
                let n = r
                    .read(&mut buf)
                    .map_err(|e| Error::io("reading the partial blob to resume", e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                offset += n as u64;
            }
        }
        let url = self.blob_url(repo, d)?;
        let mut attempt = 0u32;
        'request: loop {
            let mut headers = vec![];
            if offset > 0 {
                headers.push(("Range", format!("bytes={offset}-")));
            }
            let req = Req {
                method: "GET",
                registry: &repo.registry,
                url: url.clone(),
                headers,
                body: None,
                scopes: vec![pull_scope(&repo.name)],
            };
            let resp = self.send(&req)?;
            let mut skip = match resp.status() {
                200 => offset,
                206 => {
                    let start = resp
                        .header("content-range")
                        .and_then(|c| c.trim().strip_prefix("bytes "))
                        .and_then(|c| c.split('-').next())
                        .and_then(|s| s.parse::<u64>().ok());
                    if start != Some(offset) {
                        return Err(Error::Protocol {
                            registry: repo.registry.clone(),
                            detail: format!(
                                "asked for bytes from {offset}, got Content-Range {:?}",
                                resp.header("content-range")
                            ),
                        });
                    }
                    0
                }
                416 if offset > 0 => {
                    hasher.check(d)?;
                    return Ok(offset);
                }
                _ => return Err(self.error_from("GET", &url, resp, Subject::Blob(repo, d))),
            };
            let mut body = resp.into_reader();
            loop {
                let n = match body.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        if attempt < self.opts.retry.max_retries {
                            std::thread::sleep(self.opts.retry.backoff(attempt, None));
                            attempt += 1;
                            self.bump(|s| s.retries += 1);
                            continue 'request;
                        }
                        return Err(Error::Unreachable {
                            registry: repo.registry.clone(),
                            detail: format!(
                                "connection lost while downloading {d} at byte {offset}: {e}"
                            ),
                        });
                    }
                };
                let mut chunk = &buf[..n];
                if skip > 0 {
                    let s = skip.min(n as u64) as usize;
                    skip -= s as u64;
                    chunk = &chunk[s..];
                }
                if chunk.is_empty() {
                    continue;
                }
                hasher.update(chunk);
                sink.write_all(chunk)
                    .map_err(|e| Error::io(format!("writing blob {d}"), e))?;
                offset += chunk.len() as u64;
            }
            hasher.check(d)?;
            sink.flush()
                .map_err(|e| Error::io(format!("writing blob {d}"), e))?;
            return Ok(offset);
        }
    }
}
