//! Registry-facing commands besides pull: `push`, `login`, `logout`, and the client set-up they
//! share (`--tls-verify`, `--authfile`).

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use berth_image::Digest;
use berth_registry::auth::default_auth_file;
use berth_registry::{BlobPush, Client, ClientOptions, Credentials, Reference};

use crate::progress::{self, Bar, Progress};
use crate::store::Store;

/// A client for `registry` honouring `--tls-verify` and `--authfile`.
pub fn client_for(registry: &str, tls_verify: Option<bool>, authfile: Option<PathBuf>) -> Client {
    let opts = ClientOptions {
        auth_file: authfile.or_else(default_auth_file),
        ..ClientOptions::default()
    };
    let c = Client::new(opts);
    if tls_verify == Some(false) {
        c.set_tls_verify(registry, false);
    }
    c
}

/// berth-image digest to berth-registry digest.
pub fn to_registry_digest(d: &Digest) -> Result<berth_registry::Digest> {
    Ok(berth_registry::Digest::parse(d.as_str())?)
}

/// `berth push IMAGE [DEST]`: layers, config, then the manifest under DEST's tag.
pub fn push(
    store: &Store,
    image: &str,
    dest: Option<&str>,
    tls_verify: Option<bool>,
    authfile: Option<PathBuf>,
    quiet: bool,
) -> Result<String> {
    let img = store.resolve(image)?;
    let dest = match dest {
        Some(d) => d.to_string(),
        None => {
            // Pushing by one of its names pushes to that name; by id, to its first name.
            match crate::store::tag_name(image) {
                Ok(t) if img.tags.contains(&t) => t,
                _ => match img.tags.first() {
                    Some(t) => t.clone(),
                    None => bail!("image {image} has no name to push to: give a destination"),
                },
            }
        }
    };
    let dest = dest.strip_prefix("docker://").unwrap_or(&dest);
    let r = Reference::parse(dest)?;
    let repo = r.repo();
    let client = client_for(r.registry(), tls_verify, authfile);
    let progress = Progress::new(progress::enabled(quiet, std::io::stderr().is_terminal()));
    let bars: Vec<Bar> = img
        .layers
        .iter()
        .map(|l| progress.bar("blob", &l.blob_digest, l.blob_size))
        .collect();
    for (l, bar) in img.layers.iter().zip(&bars) {
        let d = Digest::parse(&l.blob_digest)?;
        push_one(&client, store, &repo, &d, l.blob_size, bar)
            .with_context(|| format!("pushing layer {d} to {repo}"))?;
    }
    let cfg = Digest::parse(&img.id)?;
    let size = store.blobs.size(&cfg)?;
    let bar = progress.bar("config", cfg.as_str(), size);
    push_one(&client, store, &repo, &cfg, size, &bar)
        .with_context(|| format!("pushing config {cfg} to {repo}"))?;
    progress.println("Writing manifest to image destination");
    let manifest = store.read_blob(&img.manifest_digest)?;
    let d = client
        .push_manifest(&r, &manifest, &img.manifest_media_type)
        .with_context(|| format!("pushing the manifest to {r}"))?;
    Ok(d.to_string())
}

/// Push stored blob `d` of `size` bytes to `repo`, counting on `bar`.
fn push_one(
    client: &Client,
    store: &Store,
    repo: &berth_registry::Repository,
    d: &Digest,
    size: u64,
    bar: &Bar,
) -> Result<()> {
    let f = store.blobs.get(d)?;
    bar.start();
    match client.push_blob(
        repo,
        &to_registry_digest(d)?,
        size,
        &mut bar.reader(f),
        None,
    ) {
        Ok(how) => {
            bar.finish(match how {
                BlobPush::AlreadyExists => "already exists",
                BlobPush::Mounted => "mounted",
                BlobPush::Uploaded { .. } => "done",
            });
            Ok(())
        }
        Err(e) => {
            bar.fail();
            Err(e.into())
        }
    }
}

/// `berth login`.
pub fn login(
    registry: &str,
    username: Option<String>,
    password: Option<String>,
    password_stdin: bool,
    tls_verify: Option<bool>,
    authfile: Option<PathBuf>,
) -> Result<()> {
    let registry = normalise_registry(registry);
    let Some(username) = username else {
        bail!("--username (-u) is required");
    };
    let password = match (password, password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => p,
        (None, true) => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the password from stdin")?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => bail!("--password (-p) or --password-stdin is required"),
    };
    let path = authfile
        .clone()
        .or_else(default_auth_file)
        .context("no auth file: set --authfile, REGISTRY_AUTH_FILE or HOME")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let client = client_for(&registry, tls_verify, authfile);
    client.login(
        &registry,
        &Credentials::new(&username, &password),
        Some(&path),
    )?;
    Ok(())
}

/// `berth logout`.
pub fn logout(registry: &str, authfile: Option<PathBuf>) -> Result<()> {
    let registry = normalise_registry(registry);
    let path = authfile
        .or_else(default_auth_file)
        .context("no auth file: set --authfile, REGISTRY_AUTH_FILE or HOME")?;
    let client = client_for(&registry, None, Some(path.clone()));
    if !client.logout(&registry, Some(&path))? {
        bail!("not logged into {registry}");
    }
    Ok(())
}

/// `https://host/` or `host/path` -> `host`; `docker.io` aliases stay as given.
fn normalise_registry(r: &str) -> String {
    let r = r
        .strip_prefix("https://")
        .or_else(|| r.strip_prefix("http://"))
        .unwrap_or(r);
    r.split('/').next().unwrap_or(r).to_string()
}
