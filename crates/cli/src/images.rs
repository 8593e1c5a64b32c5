//! Local image commands: `images`, `inspect`, `history`, `tag`, `rmi`, `image prune`.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::db::{self, ImageRow, LayerRow};
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
    Ok(table(&rows))
}

/// `berth inspect IMAGE...`: a JSON array like podman's.
pub fn inspect(store: &Store, names: &[String]) -> Result<Vec<Value>> {
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
    Ok(out)
}

/// One row of `berth history`: a history entry of the image config, with the layer it made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// `created` of the entry (RFC 3339), if any.
    pub created: Option<String>,
    /// `created_by`.
    pub created_by: String,
    /// `comment`.
    pub comment: String,
    /// The layer this step made (none for `empty_layer` entries).
    pub layer: Option<LayerRow>,
}

/// Match the config's `history` (oldest first) to the image's layers (base first): every entry
/// without `empty_layer: true` made the next layer. Layers left over (a config with a short or
/// no history) get rows of their own. Returns the rows newest first, like `podman history`.
pub fn history_rows(history: &[Value], layers: &[LayerRow]) -> Vec<HistoryRow> {
    let text = |h: &Value, k: &str| h.get(k).and_then(Value::as_str).map(str::to_string);
    let mut layers = layers.iter();
    let mut rows: Vec<HistoryRow> = history
        .iter()
        .map(|h| {
            let empty = h.get("empty_layer").and_then(Value::as_bool) == Some(true);
            HistoryRow {
                created: text(h, "created"),
                created_by: text(h, "created_by").unwrap_or_default(),
                comment: text(h, "comment").unwrap_or_default(),
                layer: if empty { None } else { layers.next().cloned() },
            }
        })
        .collect();
    rows.extend(layers.map(|l| HistoryRow {
        created: None,
        created_by: String::new(),
        comment: String::new(),
        layer: Some(l.clone()),
    }));
    rows.reverse();
    rows
}

/// `CREATED BY` cut to `max` characters with `...`, newlines and tabs as spaces.
fn truncate(s: &str, max: usize) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .collect();
    if s.chars().count() <= max {
        return s;
    }
    let cut: String = s.chars().take(max.saturating_sub(3)).collect();
    format!("{cut}...")
}

/// Lay out rows of cells in columns two spaces apart.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
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
    out
}

/// `berth history [--format json] [--no-trunc] IMAGE`: the steps that built an image, newest
/// first (ID, CREATED, CREATED BY, SIZE, COMMENT). The newest row carries the image id; older
/// ones show `<missing>`, as for any image not built locally.
pub fn history(store: &Store, name: &str, json_out: bool, no_trunc: bool) -> Result<String> {
    let img = store.resolve(name)?;
    let cfg = store.config(&img)?;
    let rows = history_rows(&cfg.history, &img.layers);
    let id_of = |i: usize| (i == 0).then(|| img.id.clone());
    if json_out {
        let v: Vec<Value> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                json!({
                    "id": id_of(i).map_or("<missing>".to_string(), |id| id.trim_start_matches("sha256:").to_string()),
                    "created": r.created,
                    "createdBy": r.created_by,
                    "size": r.layer.as_ref().map_or(0, |l| l.size),
                    "comment": r.comment,
                    "layer": r.layer.as_ref().map(|l| l.diff_id.clone()),
                    "tags": if i == 0 { img.tags.clone() } else { Vec::new() },
                })
            })
            .collect();
        return Ok(serde_json::to_string_pretty(&v)? + "\n");
    }
    let now = now_secs();
    let mut cells = vec![[
        "ID".to_string(),
        "CREATED".into(),
        "CREATED BY".into(),
        "SIZE".into(),
        "COMMENT".into(),
    ]];
    for (i, r) in rows.iter().enumerate() {
        let id = match id_of(i) {
            Some(id) if no_trunc => id,
            Some(id) => short_id(&id).to_string(),
            None => "<missing>".into(),
        };
        let by = if no_trunc {
            r.created_by.clone()
        } else {
            truncate(&r.created_by, 45)
        };
        cells.push([
            id,
            human_ago(r.created.as_deref(), now),
            by,
            human_size(r.layer.as_ref().map_or(0, |l| l.size)),
            r.comment.clone(),
        ]);
    }
    Ok(table(&cells))
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
    let lock = store.lock_exclusive()?;
    let mut out = Vec::new();
    let tx = store.db.write()?;
    let in_use = crate::container::record::images_in_use(&tx)?;
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
        if db::tags_of(&tx, &id)?.is_empty() {
            if let Some((_, name)) = in_use.iter().find(|(i, _)| *i == id) {
                bail!(
                    "unable to delete image {}: container {name} uses it (remove the container first)",
                    short_id(&id)
                );
            }
        }
        if db::tags_of(&tx, &id)?.is_empty() && db::remove_image(&tx, &id)? {
            out.push(format!("Deleted: {id}"));
        }
    }
    tx.commit()?;
    store.gc(&lock)?;
    Ok(out)
}

/// `berth image prune`: delete untagged images and collect unreferenced content.
pub fn prune(store: &mut Store) -> Result<Vec<String>> {
    let lock = store.lock_exclusive()?;
    let tx = store.db.write()?;
    let in_use = crate::container::record::images_in_use(&tx)?;
    let ids: Vec<String> = db::dangling(&tx)?
        .into_iter()
        .filter(|id| !in_use.iter().any(|(i, _)| i == id))
        .collect();
    for id in &ids {
        db::remove_image(&tx, id)?;
    }
    tx.commit()?;
    store.gc(&lock)?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(n: u8, size: u64) -> LayerRow {
        LayerRow {
            diff_id: format!("sha256:{}", format!("{n:02x}").repeat(32)),
            blob_digest: format!("sha256:{}", format!("{:02x}", n + 100).repeat(32)),
            blob_size: size / 2,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            size,
        }
    }

    #[test]
    fn history_matches_non_empty_entries_to_layers_newest_first() {
        let h = vec![
            json!({"created": "2024-01-01T00:00:00Z", "created_by": "ADD rootfs.tar /"}),
            json!({"created": "2024-01-02T00:00:00Z", "created_by": "ENV A=1", "empty_layer": true}),
            json!({"created": "2024-01-03T00:00:00Z", "created_by": "RUN make", "comment": "built"}),
            json!({"created_by": "CMD [\"sh\"]", "empty_layer": true}),
        ];
        let rows = history_rows(&h, &[layer(1, 1000), layer(2, 20)]);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].created_by, "CMD [\"sh\"]");
        assert_eq!(rows[0].layer, None);
        assert_eq!(rows[1].created_by, "RUN make");
        assert_eq!(rows[1].comment, "built");
        assert_eq!(rows[1].layer.as_ref().map(|l| l.size), Some(20));
        assert_eq!(rows[2].layer, None, "ENV made no layer");
        assert_eq!(rows[3].layer.as_ref().map(|l| l.size), Some(1000));
        assert_eq!(rows[3].created.as_deref(), Some("2024-01-01T00:00:00Z"));
    }

    #[test]
    fn layers_without_history_get_rows_of_their_own() {
        let rows = history_rows(&[], &[layer(1, 5), layer(2, 6)]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].layer.as_ref().map(|l| l.size), Some(6));
        assert_eq!(rows[0].created_by, "");
        let short = vec![json!({"created_by": "first"})];
        let rows = history_rows(&short, &[layer(1, 5), layer(2, 6)]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].created_by, "first");
        assert_eq!(rows[1].layer.as_ref().map(|l| l.size), Some(5));
    }

    #[test]
    fn created_by_is_truncated_and_flattened() {
        assert_eq!(truncate("short", 45), "short");
        let long = format!("/bin/sh -c {}", "x".repeat(60));
        let t = truncate(&long, 45);
        assert_eq!(t.chars().count(), 45);
        assert!(t.ends_with("..."));
        assert_eq!(truncate("a\nb\tc", 45), "a b c");
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(&[
            ["A".to_string(), "BB".into()],
            ["ccc".to_string(), "d".into()],
        ]);
        assert_eq!(t, "A    BB\nccc  d\n");
    }
}
