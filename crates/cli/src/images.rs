//! Local image commands: `images`, `inspect`, `tag`, `rmi`, `image prune`.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::db::{self, ImageRow};
use crate::store::{now_secs, tag_name, Store};
use crate::util::{human_ago, human_size};

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// `registry/repo:tag` -> (`registry/repo`, `tag`).
fn split_tag(t: &str) -> (&str, &str) {
    match t.rfind(':') {
        Some(i) if !t[i..].contains('/') => (&t[..i], &t[i + 1..]),
        _ => (t, "<none>"),
    }
}

fn repo_digests(img: &ImageRow) -> Vec<String> {
    let mut out: Vec<String> = img
        .tags
        .iter()
        .map(|t| format!("{}@{}", split_tag(t).0, img.manifest_digest))
        .collect();
    out.dedup();
    out
}

/// `berth images [--format json]`.
pub fn images(store: &Store, json_out: bool) -> Result<String> {
    let imgs = store.db.images()?;
    let now = now_secs();
    if json_out {
        let v: Vec<Value> = imgs
            .iter()
            .map(|i| {
                json!({
                    "Id": i.id.trim_start_matches("sha256:"),
                    "Names": i.tags,
                    "RepoTags": i.tags,
                    "RepoDigests": repo_digests(i),
                    "Digest": i.manifest_digest,
                    "Created": i.created,
                    "Size": i.size,
                    "Dangling": i.tags.is_empty(),
                })
            })
            .collect();
        return Ok(serde_json::to_string_pretty(&v)? + "\n");
    }
    let mut rows = vec![[
        "REPOSITORY".to_string(),
        "TAG".into(),
        "IMAGE ID".into(),
        "CREATED".into(),
        "SIZE".into(),
    ]];
    for i in &imgs {
        let names: Vec<(&str, &str)> = if i.tags.is_empty() {
            vec![("<none>", "<none>")]
        } else {
            i.tags.iter().map(|t| split_tag(t)).collect()
        };
        for (repo, tag) in names {
            rows.push([
                repo.to_string(),
                tag.to_string(),
                short_id(&i.id).to_string(),
                human_ago(i.created.as_deref(), now),
                human_size(i.size),
            ]);
        }
    }
    let mut widths = [0usize; 5];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    Ok(out)
}

/// `berth inspect IMAGE...`: a JSON array like podman's.
pub fn inspect(store: &Store, names: &[String]) -> Result<String> {
    let mut out = Vec::new();
    for n in names {
        let img = store.resolve(n)?;
        let cfg = store.config(&img)?;
        let c = &cfg.config;
        let ports: BTreeMap<&str, Value> = c
            .exposed_ports
            .iter()
            .map(|p| (p.as_str(), json!({})))
            .collect();
        let vols: BTreeMap<&str, Value> =
            c.volumes.iter().map(|p| (p.as_str(), json!({}))).collect();
        out.push(json!({
            "Id": img.id.trim_start_matches("sha256:"),
            "Digest": img.manifest_digest,
            "RepoTags": img.tags,
            "RepoDigests": repo_digests(&img),
            "Created": cfg.created,
            "Author": cfg.author,
            "Architecture": cfg.architecture,
            "Os": cfg.os,
            "Variant": cfg.variant,
            "Config": {
                "User": c.user,
                "ExposedPorts": ports,
                "Env": c.env,
                "Entrypoint": c.entrypoint,
                "Cmd": c.cmd,
                "Volumes": vols,
                "WorkingDir": c.working_dir,
                "Labels": c.labels,
                "StopSignal": c.stop_signal,
            },
            "RootFS": {
                "Type": "layers",
                "Layers": img.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
            },
            "Size": img.size,
            "ManifestType": img.manifest_media_type,
            "History": cfg.history,
        }));
    }
    Ok(serde_json::to_string_pretty(&out)? + "\n")
}

/// `berth tag SRC DST...`.
pub fn tag(store: &mut Store, src: &str, dsts: &[String]) -> Result<()> {
    let img = store.resolve(src)?;
    let names = dsts
        .iter()
        .map(|d| tag_name(d))
        .collect::<Result<Vec<_>>>()?;
    let tx = store.db.write()?;
    for n in names {
        db::set_tag(&tx, &n, &img.id)?;
    }
    tx.commit()?;
    Ok(())
}

/// `berth rmi [-f] IMAGE...`: untags; images left without tags are deleted, then unreferenced
/// blobs and layers are collected. Returns the lines to print.
pub fn rmi(store: &mut Store, names: &[String], force: bool) -> Result<Vec<String>> {
    // Resolve everything first: an unknown name changes nothing.
    let mut targets = Vec::new();
    for n in names {
        let img = store.resolve(n)?;
        let by_tag = tag_name(n).ok().filter(|t| img.tags.contains(t));
        if by_tag.is_none() && img.tags.len() > 1 && !force {
            bail!(
                "unable to delete image {} (referenced by {} tags: {}): remove the tags, or use -f",
                short_id(&img.id),
                img.tags.len(),
                img.tags.join(", ")
            );
        }
        targets.push((img.id, by_tag));
    }
    let _lock = store.lock_exclusive()?;
    let mut out = Vec::new();
    let tx = store.db.write()?;
    for (id, by_tag) in targets {
        match by_tag {
            Some(t) => {
                if db::remove_tag(&tx, &t)? {
                    out.push(format!("Untagged: {t}"));
                }
            }
            None => {
                for t in db::tags_of(&tx, &id)? {
                    db::remove_tag(&tx, &t)?;
                    out.push(format!("Untagged: {t}"));
                }
            }
        }
        if db::tags_of(&tx, &id)?.is_empty() && db::remove_image(&tx, &id)? {
            out.push(format!("Deleted: {id}"));
        }
    }
    tx.commit()?;
    store.gc()?;
    Ok(out)
}

/// `berth image prune`: delete untagged images and collect unreferenced content.
pub fn prune(store: &mut Store) -> Result<Vec<String>> {
    let _lock = store.lock_exclusive()?;
    let tx = store.db.write()?;
    let ids = db::dangling(&tx)?;
    for id in &ids {
        db::remove_image(&tx, id)?;
    }
    tx.commit()?;
    store.gc()?;
    Ok(ids)
}
